"""Real prompts for `raygate cache replay`: an audit-trail export, or a JSONL file.

Accepted, one format per file (detected from its content):
- the audit trail exported as JSON (`raygate audit export --format json`: an array of
  records) or CSV, or audit records one per line; only records whose prompt was kept in
  `full` or `redacted` mode can be replayed (a hash says nothing about meaning); the answer
  is the record's response where it was kept the same way;
- JSONL, one request per line: `{"prompt": "..."}` or `{"messages": [...]}`, optionally
  `answer`, `model`, `user`, `groups`, `params`, `route` (chat, completions, embeddings),
  `prompt_tokens`, `completion_tokens` and `ts` (epoch seconds or ISO 8601).
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Route = Literal["chat", "completions", "embeddings"]
_ROUTES: dict[str, Route] = {
    "/v1/chat/completions": "chat",
    "/v1/messages": "chat",
    "/v1/responses": "chat",  # translated to chat before the cache: the same keys
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "chat": "chat",
    "completions": "completions",
    "embeddings": "embeddings",
}
_KEPT = frozenset({"full", "redacted"})
# The audit trail keeps a chat prompt as "role: text" lines (gateway.api.exchange.prompt_text).
_ROLE_LINE = re.compile(r"^(system|developer|user|assistant|tool): ?(.*)$")


@dataclass(frozen=True)
class ReplayRecord:
    """One request to replay: what the route received, and what it answered if known."""

    route: Route
    model: str
    user: str
    groups: tuple[str, ...] = ()
    messages: tuple[dict[str, Any], ...] = ()
    prompt: str | None = None  # completions / embeddings input
    params: dict[str, Any] = field(default_factory=dict)
    answer: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    at: float | None = None


@dataclass
class Skipped:
    """Records that could not be replayed, by reason."""

    reasons: Counter[str] = field(default_factory=Counter)


def read_records(path: Path, skipped: Skipped) -> Iterator[ReplayRecord]:
    """The replayable records of `path`, in file order; the others are counted in `skipped`."""
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        rows: list[Any] = json.loads(stripped)
    elif path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"{path}: record {number} is not an object")
        record = _audit(row, skipped) if "prompt_mode" in row else _plain(row, number, skipped)
        if record is not None:
            yield record


def _audit(row: dict[str, Any], skipped: Skipped) -> ReplayRecord | None:
    route = _ROUTES.get(str(row.get("route") or ""))
    if route is None:
        skipped.reasons["route not cached"] += 1
        return None
    if row.get("prompt_mode") not in _KEPT or not row.get("prompt"):
        skipped.reasons["prompt not kept (hash or none mode)"] += 1
        return None
    principal = row.get("principal") or {}
    if isinstance(principal, str):
        principal = json.loads(principal or "{}")
    groups = principal.get("groups") if principal else _json_list(row.get("principal_groups"))
    user = principal.get("user_id") if principal else row.get("user_id")
    answer = row.get("response") if row.get("response_mode") in _KEPT else None
    prompt = str(row["prompt"])
    return ReplayRecord(
        route=route,
        model=str(row.get("model_requested") or ""),
        user=str(user or "anonymous"),
        groups=tuple(groups or ()),
        messages=tuple(parse_prompt(prompt)) if route == "chat" else (),
        prompt=None if route == "chat" else prompt,
        answer=answer or None,
        prompt_tokens=_int(row.get("tokens_in")),
        completion_tokens=_int(row.get("tokens_out")),
        at=_time(row.get("ts")),
    )


def _plain(row: dict[str, Any], number: int, skipped: Skipped) -> ReplayRecord | None:
    route = _ROUTES.get(str(row.get("route") or "chat"))
    if route is None:
        skipped.reasons["route not cached"] += 1
        return None
    messages = row.get("messages")
    prompt = row.get("prompt")
    if messages is None and prompt is None and row.get("input") is None:
        raise ValueError(f"record {number}: needs prompt, messages or input")
    if route == "chat" and messages is None:
        messages = [{"role": "user", "content": str(prompt)}]
    return ReplayRecord(
        route=route,
        model=str(row.get("model") or ""),
        user=str(row.get("user") or "anonymous"),
        groups=tuple(row.get("groups") or ()),
        messages=tuple(messages or ()),
        prompt=None if route == "chat" else (prompt if prompt is not None else row.get("input")),
        params=dict(row.get("params") or {}),
        answer=row.get("answer"),
        prompt_tokens=_int(row.get("prompt_tokens")),
        completion_tokens=_int(row.get("completion_tokens")),
        at=_time(row.get("ts")),
    )


def parse_prompt(prompt: str) -> list[dict[str, Any]]:
    """Chat messages from the audit trail's "role: text" lines (a line without a role
    continues the message before it; text with no role line at all is one user turn)."""
    messages: list[dict[str, Any]] = []
    for line in prompt.split("\n"):
        match = _ROLE_LINE.match(line)
        if match:
            messages.append({"role": match.group(1), "content": match.group(2)})
        elif messages:
            messages[-1]["content"] += "\n" + line
        else:
            messages.append({"role": "user", "content": line})
    return messages


def _int(value: Any) -> int | None:
    if value in (None, ""):
        return None
    return int(float(value))


def _time(value: Any) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _json_list(value: Any) -> list[str]:
    if not value:
        return []
    return list(json.loads(value)) if isinstance(value, str) else list(value)
