"""What the cache needs from one request of each route, computed in one call per route.

`chat_request` is the one function the request path calls for chat completions (and for
Anthropic messages, which are translated to a chat request first): it returns the scope, the
text keyed and embedded (the last user turn), the conversation's context, whether the
semantic phases may answer, and the static threshold, as a `CacheRequest`. Its `query()` is
the lookup, its `entry()` what to store after a miss.

Conversations are matched on meaning: the earlier user turns are the `context`, embedded and
compared like the last turn, so "and what about contractors?" after an equivalent exchange
can hit and after a different one cannot. What must match exactly stays in the scope: the
model, the system prompt, the parameters, who may share the entry, the shape of the
conversation (its sequence of roles), and every short assistant turn (few-shot examples and
structured replies steer the answer; long ones are the model's own answers to the user turns
before them, so their meaning follows from those turns). A conversation that the semantic
phase may not answer (tools, several choices, hot sampling, messages after the last user
turn, images in earlier turns) keeps today's exact history hash and no context.

`completion_request` and `embedding_request` give the exact-only keys of `/v1/completions`
and `/v1/embeddings`: the raw prompt or input, byte for byte, in a scope of the route, the
model, the answer-changing parameters and the isolation identity.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gateway.cache.config import CacheConfig
from gateway.cache.keys import (
    ANSWER_PARAMETERS,
    derived_scope,
    identity_for,
    message_text,
    scope_key,
    semantic_eligibility,
)
from gateway.cache.lookup import CacheQuery, NewEntry

_SYSTEM_ROLES = frozenset({"system", "developer"})
# Assistant turns up to this many words are treated as steering (few-shot answers, labels,
# yes/no replies) and must match exactly; longer ones are answers whose meaning the user turns
# before them already carry.
SHORT_ASSISTANT_WORDS = 8
# Parameters that change a legacy completion or an embedding, besides the prompt or input.
COMPLETION_PARAMETERS = (
    *ANSWER_PARAMETERS,
    "suffix",
    "echo",
    "best_of",
)
EMBEDDING_PARAMETERS = ("encoding_format", "dimensions", "input_type", "truncate")


@dataclass(frozen=True)
class CacheRequest:
    """Everything a cache lookup and a store need from one request (plain, picklable data).

    `text` is what the keyed phases key on and the semantic phase embeds (the last user
    turn; for exact-only routes the canonical prompt or input); `context` the earlier user
    turns of a conversation, most recent first ("" for a single turn). `cacheable` is False
    when there is nothing to key on (no user turn); `eligible` whether the semantic phase may
    answer, `reason` why not.
    """

    model: str
    scope: str
    text: str
    context: str = ""
    eligible: bool = True
    reason: str = ""
    exact_only: bool = False
    threshold: float | None = None
    # The scope a follow-up to this request would have after a long answer (pre-caching);
    # None where the request is not matched on meaning.
    follow_up_scope: str | None = None

    @property
    def cacheable(self) -> bool:
        return bool(self.text)

    def query(self, embedding: np.ndarray | None = None, *, explore: bool = True) -> CacheQuery:
        """The lookup for this request; `embedding` is the last turn's, when already known.
        `explore`: the caller answers explorations fresh and calls `observe` after."""
        return CacheQuery(
            scope=self.scope,
            text=self.text,
            eligible=self.eligible and not self.exact_only,
            threshold=self.threshold,
            embedding=embedding,
            context=self.context,
            exact_only=self.exact_only,
            model=self.model,
            explore=explore,
        )

    def entry(self, response: str, *, embedding: np.ndarray | None = None) -> NewEntry:
        """What to store once this request was answered fresh (`response` serialised)."""
        return NewEntry(
            scope=self.scope,
            text=self.text,
            model=self.model,
            response=response,
            embedding=None if self.exact_only else embedding,
            context=self.context,
            exact_only=self.exact_only,
        )


def chat_request(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    params: Mapping[str, Any],
    config: CacheConfig,
    *,
    user: str,
    groups: Sequence[str] = (),
) -> CacheRequest:
    """The cache's view of a chat request (OpenAI chat, or Anthropic messages translated).

    `messages` and `params` are the request as plain data (`model_dump(exclude_none=True)`),
    params without `messages` and `model`; `user` and `groups` identify the caller for the
    configured isolation level. Call it after the input policy, on the redacted request.
    """
    identity = _identity(config, user, groups)
    last = _last_user_index(messages)
    threshold = config.threshold_for(model)
    if last is None:
        scope = scope_key(
            model=model,
            messages=messages,
            params=params,
            isolation=config.isolation,
            identity=identity,
        )
        return CacheRequest(model, scope, "", eligible=False, reason="no user turn")
    text = message_text(messages[last])
    before, after = messages[:last], messages[last + 1 :]
    eligibility = semantic_eligibility(messages, params, config)
    eligible = config.route(model).semantic and eligibility.eligible
    reason = eligibility.reason or ("" if eligible else "semantic off for this model")
    turns = [m for m in before if m.get("role") not in _SYSTEM_ROLES]
    system = [m for m in before if m.get("role") in _SYSTEM_ROLES]
    base = scope_key(
        model=model,
        messages=[*system, {"role": "user", "content": ""}],
        params=params,
        isolation=config.isolation,
        identity=identity,
    )
    if not turns and not after:
        # A single question: its scope is the base scope itself.
        follow = derived_scope(base, "conversation", _shape([*turns, *_NEXT_EXCHANGE]))
        return CacheRequest(
            model, base, text, "", eligible, reason, threshold=threshold,
            follow_up_scope=follow if eligible else None,
        )  # fmt: skip
    if not eligible or after or not all(_plain(m) for m in turns):
        # Keyed on the exact history, as before: nothing here may be matched on meaning.
        scope = scope_key(
            model=model,
            messages=messages,
            params=params,
            isolation=config.isolation,
            identity=identity,
        )
        return CacheRequest(model, scope, text, "", eligible, reason, threshold=threshold)
    scope = derived_scope(base, "conversation", _shape(turns))
    follow = derived_scope(base, "conversation", _shape([*turns, *_NEXT_EXCHANGE]))
    user_turns = [message_text(m) for m in turns if m.get("role") == "user"]
    context = "\n".join(reversed(user_turns))
    return CacheRequest(
        model, scope, text, context, eligible, reason, threshold=threshold, follow_up_scope=follow
    )


# The turns a follow-up adds before its own: this request's user turn and a long answer.
_NEXT_EXCHANGE: tuple[dict[str, Any], ...] = ({"role": "user"}, {"role": "assistant"})


def _shape(turns: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What of a conversation's earlier turns must match exactly: the roles, and the text of
    short assistant turns."""
    shape: list[dict[str, Any]] = []
    for m in turns:
        text = message_text(m) if "content" in m else ""
        if m.get("role") == "assistant" and text and _short(text):
            shape.append({"role": "assistant", "text": text})
        else:
            shape.append({"role": m.get("role")})
    return shape


def completion_request(
    model: str,
    prompt: str | Sequence[Any],
    params: Mapping[str, Any],
    config: CacheConfig,
    *,
    user: str,
    groups: Sequence[str] = (),
) -> CacheRequest:
    """The exact-only cache key of a legacy `/v1/completions` request (prompt byte for byte)."""
    return _exact_request(
        "/v1/completions", model, prompt, params, COMPLETION_PARAMETERS, config, user, groups
    )


def embedding_request(
    model: str,
    input: str | Sequence[Any],
    params: Mapping[str, Any],
    config: CacheConfig,
    *,
    user: str,
    groups: Sequence[str] = (),
) -> CacheRequest:
    """The exact-only cache key of an `/v1/embeddings` request (input byte for byte)."""
    return _exact_request(
        "/v1/embeddings", model, input, params, EMBEDDING_PARAMETERS, config, user, groups
    )


def _exact_request(
    route: str,
    model: str,
    payload: str | Sequence[Any],
    params: Mapping[str, Any],
    names: Sequence[str],
    config: CacheConfig,
    user: str,
    groups: Sequence[str],
) -> CacheRequest:
    base = scope_key(
        model=model,
        messages=[],
        params={},
        isolation=config.isolation,
        identity=_identity(config, user, groups),
    )
    chosen = {k: params[k] for k in names if params.get(k) is not None}
    scope = derived_scope(base, route, chosen)
    # A JSON string keeps a list of prompts, token arrays and plain text apart.
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    empty = payload == "" or (not isinstance(payload, str) and len(payload) == 0)
    return CacheRequest(
        model,
        scope,
        "" if empty else text,
        eligible=False,
        reason="exact only",
        exact_only=True,
    )


def _identity(config: CacheConfig, user: str, groups: Sequence[str]) -> str:
    return identity_for(
        config.isolation,
        organisation=config.organisation,
        group=",".join(sorted(groups)) or "(no group)",
        user=user,
    )


def _last_user_index(messages: Sequence[Mapping[str, Any]]) -> int | None:
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i
    return None


def _plain(message: Mapping[str, Any]) -> bool:
    """Text only: no tool calls, no name, no images or audio."""
    if message.get("tool_calls") or message.get("tool_call_id") or message.get("name"):
        return False
    content = message.get("content")
    if content is None or isinstance(content, str):
        return True
    return all(isinstance(p, Mapping) and p.get("type") == "text" for p in content)


def _short(text: str) -> bool:
    return len(text.split()) <= SHORT_ASSISTANT_WORDS
