"""What partitions cache entries (scope), the exact and normalised keys, and eligibility.

A scope is everything besides the last user turn that changes the answer: the model, the
system prompt, the sampling parameters, the earlier turns of a conversation and who may share
the entry. Two requests can only ever hit each other inside one scope.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from gateway.cache.config import CacheConfig, Isolation

# Request parameters that change what a model answers; everything else (user, stream,
# metadata, ...) is left out so that it does not split the cache needlessly.
ANSWER_PARAMETERS = (
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "response_format",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "seed",
    "n",
    "frequency_penalty",
    "presence_penalty",
    "repetition_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "reasoning_effort",
)

# Request fields that cannot change what a model answers: everything else a request sets is
# part of its scope (two callers who asked the same under different sampling must not share).
NOT_ANSWER_PARAMETERS = frozenset(
    {
        "stream",
        "stream_options",
        "user",
        "metadata",
        "store",
        "service_tier",
        "safety_identifier",
        "prompt_cache_key",
    }
)

_SYSTEM_ROLES = frozenset({"system", "developer"})
_TOOL_ROLES = frozenset({"tool", "function"})


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        # Length-prefixed so that ("ab", "c") and ("a", "bc") never collide.
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message; OpenAI content-part lists are joined by newlines."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if isinstance(part, Mapping):
            if part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                # Images and audio are not embedded; their canonical form keeps them keyed.
                parts.append(_canonical(part))
        else:
            parts.append(str(part))
    return "\n".join(parts)


def split_last_user_turn(
    messages: Sequence[Mapping[str, Any]],
) -> tuple[list[Mapping[str, Any]], str]:
    """Return (every message but the last user turn, the last user turn's text)."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return [*messages[:i], *messages[i + 1 :]], message_text(messages[i])
    return list(messages), ""


def identity_for(isolation: Isolation, *, organisation: str, group: str, user: str) -> str:
    """The identity value that the isolation level partitions by ('' for global)."""
    return {"global": "", "organisation": organisation, "group": group, "user": user}[isolation]


def scope_key(
    *,
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    isolation: Isolation,
    identity: str = "",
) -> str:
    """Hash of everything that must partition entries, the last user turn excluded.

    System/developer messages count as the system prompt; all other turns before (and after)
    the last user turn are the conversation context; every parameter that is set takes part
    but those that cannot change an answer (`NOT_ANSWER_PARAMETERS`), so an explicit default
    and an omitted parameter still differ (the provider's default may not be ours to know),
    and a field a target takes beyond the wire model (`top_k`, `min_p`, ...) splits entries.
    """
    if isolation != "global" and not identity:
        raise ValueError(f"cache isolation {isolation!r} needs an identity value")
    context, _ = split_last_user_turn(messages)
    system = [message_text(m) for m in context if m.get("role") in _SYSTEM_ROLES]
    turns = [
        {
            "role": m.get("role"),
            "content": message_text(m),
            "tool_calls": m.get("tool_calls"),
            "tool_call_id": m.get("tool_call_id"),
            "name": m.get("name"),
        }
        for m in context
        if m.get("role") not in _SYSTEM_ROLES
    ]
    sampling = {k: v for k, v in params.items() if k not in NOT_ANSWER_PARAMETERS and v is not None}
    return _digest(
        "scope/v1",
        model,
        isolation,
        identity,
        _canonical(system),
        _digest(_canonical(turns)),
        _canonical(sampling),
    )


def derived_scope(base: str, kind: str, detail: Any) -> str:
    """A scope inside `base` for one kind of request (a conversation of a given shape, a
    route's exact keys): entries of different kinds or details never meet."""
    return _digest("derived/v1", base, kind, _canonical(detail))


_SPACE = re.compile(r"\s+")


def normalise_request(text: str) -> str:
    """Light normalisation for the exact key: Unicode NFC, trimmed, whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def exact_key(scope: str, text: str, context: str = "", *, raw: bool = False) -> str:
    """Phase 1 key: the scope, the conversation's context (earlier user turns, if any) and
    the (lightly normalised) last user turn. `raw` keys the text byte for byte (legacy
    completions and embeddings, where whitespace changes the answer)."""
    if raw:
        return _digest("exact-raw/v1", scope, text)
    if not context:
        return _digest("exact/v1", scope, normalise_request(text))
    return _digest("exact/v2", scope, normalise_request(context), normalise_request(text))


# Fillers that never carry meaning anywhere in a request.
_FILLER_ANYWHERE = frozenset({"please", "pls", "plz", "kindly"})
# Greetings and politeness that only open a request ("can you ..." mid-sentence may matter).
_FILLER_OPENERS: tuple[tuple[str, ...], ...] = (
    ("i", "was", "wondering", "if", "you", "could"),
    ("i", "would", "like", "you", "to"),
    ("would", "you", "be", "able", "to"),
    ("could", "you"),
    ("can", "you"),
    ("would", "you"),
    ("will", "you"),
    ("hey", "there"),
    ("hi", "there"),
    ("hello", "there"),
    ("hey",),
    ("hi",),
    ("hello",),
    ("thanks",),
    ("thank", "you"),
)
# Numbers keep their currency sign, decimal point, thousands separator and percent sign so
# that "3.5" and "35" never share a signature; apostrophes vanish so "don't" stays one token.
_TOKEN = re.compile(r"[$€£¥₹]?\d+(?:[.,]\d+)*%?|[^\W_]+")


def signature(text: str) -> str:
    """Phase 2 key material: case, spacing, punctuation and polite filler removed."""
    folded = unicodedata.normalize("NFKC", text).lower().replace("'", "").replace("\u2019", "")
    tokens = [t for t in _TOKEN.findall(folded) if t not in _FILLER_ANYWHERE]
    stripped = True
    while stripped:
        stripped = False
        for opener in _FILLER_OPENERS:
            if tuple(tokens[: len(opener)]) == opener and len(tokens) > len(opener):
                tokens = tokens[len(opener) :]
                stripped = True
                break
    return " ".join(tokens)


def normalised_key(scope: str, text: str, context: str = "") -> str:
    """Phase 2 key: the scope and the `signature` of the context and of the request."""
    if not context:
        return _digest("normalised/v1", scope, signature(text))
    return _digest("normalised/v2", scope, signature(context), signature(text))


class Eligibility(NamedTuple):
    """Whether a request may be answered by the semantic phase, and why not."""

    eligible: bool
    reason: str


def semantic_eligibility(
    messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any], config: CacheConfig
) -> Eligibility:
    """Decide if a paraphrase may answer this request.

    Tool use, several choices and hot sampling all make a stored answer a poor stand-in for a
    fresh one, so they only reach the semantic phase when the configuration says so. Exact and
    normalised phases are not affected: their scope already carries these parameters.
    """
    uses_tools = bool(params.get("tools") or params.get("functions")) or any(
        m.get("role") in _TOOL_ROLES or m.get("tool_calls") for m in messages
    )
    if uses_tools and not config.semantic_for_tools:
        return Eligibility(False, "tools")
    n = params.get("n")
    if n is not None and n > 1 and not config.semantic_for_multiple_choices:
        return Eligibility(False, "n>1")
    temperature = params.get("temperature")
    if temperature is not None and temperature > config.semantic_max_temperature:
        return Eligibility(False, "temperature")
    return Eligibility(True, "")
