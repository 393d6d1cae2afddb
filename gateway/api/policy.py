"""The input policy on the request path, for every route that sends text upstream.

`enforce` (chat; Anthropic messages once translated), `enforce_completion` (legacy prompt
string or list) and `enforce_embeddings` (input string or list) run the caller's profile (from
their groups) before the request is routed, in this order:

1. limits: the profile's model allow-list (403) and max_tokens ceiling (clamp, or 400);
2. detectors and the pattern jailbreak score: a `block` is a 403 and nothing goes upstream;
   a `redact` replaces values with typed placeholders;
3. embedding-based rules (topics, the similarity jailbreak signal) on the embedding of the
   redacted last user turn, computed once per request by `api.embedding` and shared with the
   cache; the engine's own phrases are embedded through `api.embed`. Without an embedder they
   do not run: recorded as such, and refused (503) where the profile fails closed.

Every decision and detected topic lands in the request's audit record. `POST
/admin/policy/check` runs the same decision on one text without calling any provider.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Literal

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.errors import validated
from gateway.api.exchange import Exchange
from gateway.api.policy_output import filter_answer, filter_stream
from gateway.audit.record import PolicyDecision
from gateway.cache.keys import split_last_user_turn
from gateway.errors import InvalidRequest, PermissionDenied, PolicyViolation, ServiceUnavailable
from gateway.identity.principal import Principal
from gateway.policy.engine import UNAVAILABLE_RULE, PolicyEngine, Verdict
from gateway.policy.limits import Admission
from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI

__all__ = [
    "add_policy_routes",
    "enforce",
    "enforce_completion",
    "enforce_embeddings",
    "filter_answer",
    "filter_stream",
]

log = logging.getLogger(__name__)

_PREPARE_TIMEOUT_S = 30.0  # embedding the engine's phrases, once (again after a reload)


async def enforce(
    api: GatewayAPI, request: Request, body: ChatCompletionRequest
) -> ChatCompletionRequest:
    """The input policy of the caller's profile on a chat request: refused (403/400, nothing
    sent upstream), redacted (typed placeholders), clamped, or passed as it is."""
    engine, profile = _engine(api, request)
    if engine is None:
        return body
    requested = body.max_completion_tokens or body.max_tokens
    admission = _admit(engine, request, profile, body.model, requested)
    slots = _text_slots(body)
    verdict = await _check(engine, request, profile, [t for _, t in slots], body.model)
    if verdict.action == "redact":
        body = _with_texts(body, [slot for slot, _ in slots], verdict.texts)
    messages = [m.model_dump(exclude_none=True) for m in body.messages]
    _, query = split_last_user_turn(messages)
    # Only when a rule of the profile is embedding-based: a keyed cache hit needs no embedding.
    embedding, unavailable = await _request_embedding(
        api, request, [query] if query else [], needed=engine.needs_embedding(verdict.profile)
    )
    await _judge(api, request, verdict, embedding, query, unavailable)
    if admission.max_tokens is not None:
        field = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        body = body.model_copy(update={field: admission.max_tokens})
    return body


async def enforce_completion(
    api: GatewayAPI, request: Request, body: CompletionRequest
) -> CompletionRequest:
    """The input policy on a legacy completion: the prompt (a string or a list of them) is
    checked and redacted like a chat message; token-id prompts cannot be read, so a profile
    that redacts or blocks anything refuses them (400)."""
    engine, profile = _engine(api, request)
    if engine is None:
        return body
    admission = _admit(engine, request, profile, body.model, body.max_tokens)
    texts = _strings(body.prompt)
    if texts is None:
        _unreadable(engine, request, profile, "prompt")
        texts = []
    verdict = await _check(engine, request, profile, texts, body.model)
    if verdict.action == "redact":
        prompt = verdict.texts[0] if isinstance(body.prompt, str) else verdict.texts
        body = body.model_copy(update={"prompt": prompt})
    query = [t for t in verdict.texts if t.strip()]
    embedding, unavailable = await _request_embedding(
        api, request, query, needed=engine.needs_embedding(verdict.profile)
    )
    await _judge(api, request, verdict, embedding, "\n".join(query), unavailable)
    if admission.max_tokens is not None:
        body = body.model_copy(update={"max_tokens": admission.max_tokens})
    return body


async def enforce_embeddings(
    api: GatewayAPI, request: Request, body: EmbeddingRequest
) -> EmbeddingRequest:
    """The input policy on an embeddings request: every input text is checked and redacted
    like a chat message (so what is indexed upstream holds placeholders, not values)."""
    engine, profile = _engine(api, request)
    if engine is None:
        return body
    _admit(engine, request, profile, body.model, None, generates=False)
    texts = _strings(body.input)
    if texts is None:
        _unreadable(engine, request, profile, "input")
        texts = []
    verdict = await _check(engine, request, profile, texts, body.model)
    if verdict.action == "redact":
        new_input = verdict.texts[0] if isinstance(body.input, str) else verdict.texts
        body = body.model_copy(update={"input": new_input})
    # Embedding a whole batch of documents twice is costly: only when a rule needs it.
    needed = bool(texts) and engine.needs_embedding(verdict.profile)
    query = verdict.texts if needed else []
    embedding, unavailable = await _request_embedding(api, request, query, needed=needed)
    await _judge(api, request, verdict, embedding, "\n".join(query), unavailable)
    return body


def _engine(api: GatewayAPI, request: Request) -> tuple[PolicyEngine | None, str | None]:
    exchange: Exchange = request.state.exchange
    if api.policy is None or exchange.grant is None:
        return None, None
    return api.policy, exchange.grant.policy


def _admit(
    engine: PolicyEngine,
    request: Request,
    profile: str | None,
    model: str,
    max_tokens: int | None,
    *,
    generates: bool = True,
) -> Admission:
    exchange: Exchange = request.state.exchange
    admission = engine.admit(profile, model, max_tokens, generates=generates)
    exchange.decisions += admission.decisions
    if admission.refused == "model":
        raise PermissionDenied(
            f"The model {model!r} is not allowed by your policy profile (rule: models).",
            param="model",
            code="model_not_allowed",
        )
    if admission.refused == "max_tokens":
        raise InvalidRequest(
            f"max_tokens {max_tokens} is over your policy profile's ceiling of "
            f"{admission.ceiling} for {model!r} (rule: max_tokens).",
            param="max_tokens",
            code="max_tokens_exceeded",
        )
    return admission


async def _check(
    engine: PolicyEngine, request: Request, profile: str | None, texts: list[str], model: str
) -> Verdict:
    """Stage 1 (detectors, patterns), off the event loop; a block ends the request here."""
    exchange: Exchange = request.state.exchange
    verdict = await asyncio.to_thread(engine.check, texts, profile, model=model)
    exchange.decisions += verdict.decisions
    exchange.redacted = verdict.mapping
    if verdict.action == "block":
        rules = ", ".join(verdict.blocking_rules)
        raise PolicyViolation(f"The request was blocked by policy ({rules}).")
    return verdict


async def _request_embedding(
    api: GatewayAPI, request: Request, texts: list[str], *, needed: bool = True
) -> tuple[np.ndarray | None, str | None]:
    """The request embedding of `texts` (one text: `api.embedding`, computed once per request
    and shared with the cache), with why there is none; the engine's phrases prepared."""
    if not texts or not needed:
        return None, "no text to embed" if not texts else "not needed"
    if api.embed is None:
        return None, "no embedder configured"
    assert api.policy is not None
    try:
        await asyncio.wait_for(api.policy.prepare(api.embed), _PREPARE_TIMEOUT_S)
    except Exception as exc:  # the embedder is a remote, optional stage: any failure degrades
        log.warning("policy phrases could not be embedded: %r", exc)
        return None, f"policy phrases could not be embedded ({type(exc).__name__})"
    if len(texts) == 1:
        embedding = await api.embedding(request, texts[0])
        return embedding, None if embedding is not None else "the embedder failed"
    try:
        return await api.embed(texts), None
    except Exception as exc:  # as above: degrade to "not run", never a 500
        log.warning("request embedding failed: %r", exc)
        return None, f"the embedder failed ({type(exc).__name__})"


async def _judge(
    api: GatewayAPI,
    request: Request,
    verdict: Verdict,
    embedding: np.ndarray | None,
    text: str,
    unavailable: str | None,
) -> None:
    """Stage 2 (topics, similarity) and what it means for the request."""
    assert api.policy is not None
    exchange: Exchange = request.state.exchange
    if embedding is None and not api.policy.needs_embedding(verdict.profile):
        return  # nothing embedding-based to run, and no embedding to score topics with
    before = len(verdict.decisions)
    api.policy.judge(verdict, embedding, text=text, unavailable=unavailable)
    exchange.decisions += verdict.decisions[before:]
    exchange.topics = [t.topic for t in verdict.topics]
    if verdict.action != "block":
        return
    rules = verdict.blocking_rules
    if rules == [UNAVAILABLE_RULE]:
        raise ServiceUnavailable(
            "The request needs the policy's embedding-based checks, which are unavailable "
            f"({verdict.embedding_checks}); the profile fails closed.",
            code="policy_unavailable",
        )
    raise PolicyViolation(f"The request was blocked by policy ({', '.join(rules)}).")


def _unreadable(engine: PolicyEngine, request: Request, profile: str | None, param: str) -> None:
    """Token ids instead of text: the detectors cannot read them. Recorded; refused where
    the profile redacts or blocks anything (outside a dry run)."""
    exchange: Exchange = request.state.exchange
    rules = engine.profile(profile)
    strict = any(a in ("redact", "block") for a in rules.pii.values())
    strict = strict or rules.jailbreak.action == "block" or "block" in rules.topics.values()
    refuse = strict and not engine.config.dry_run_for(rules)
    exchange.decisions.append(
        PolicyDecision(
            rule="input.token_ids",
            detector="input",
            action="block" if refuse else "not_run",
            detail="token ids cannot be checked by the policy",
        )
    )
    if refuse:
        raise InvalidRequest(
            f"Send {param} as text: your policy profile checks input, and token ids cannot "
            "be checked (rule: input.token_ids).",
            param=param,
            code="policy_unreadable_input",
        )


def _strings(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | None:
    """The texts of a prompt / input; None when it is (or holds) token ids."""
    if isinstance(value, str):
        return [value]
    if all(isinstance(v, str) for v in value):
        return [v for v in value if isinstance(v, str)]
    return None


def add_policy_routes(app: FastAPI, api: GatewayAPI) -> None:
    """Register `POST /admin/policy/check` on `app`."""

    @app.post("/admin/policy/check")
    async def policy_check(request: Request) -> Response:
        api.admin(request)
        if api.policy is None:
            raise InvalidRequest("The policy engine is off (policy.enabled).", code="policy_off")
        raw = await request.body()
        body = validated(PolicyCheck, raw)
        caller = Principal(body.user or "dry-run", "admin_dry_run", groups=tuple(body.groups))
        profile = api.identity.grant(caller).policy
        verdict = await asyncio.to_thread(api.policy.check, [body.text], profile, model=body.model)
        embedding, unavailable = await _check_embedding(api, verdict.texts[0])
        api.policy.judge(verdict, embedding, text=verdict.texts[0], unavailable=unavailable)
        return JSONResponse(
            {
                "direction": body.direction,
                "profile": profile or api.config.policy.default_profile,
                "action": verdict.action,
                "decisions": [d.model_dump(mode="json") for d in verdict.decisions],
                "spans": [
                    {
                        "type": s.type,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text,
                        "confidence": s.confidence,
                        "detector": s.detector,
                    }
                    for s in verdict.spans[0]
                ],
                "jailbreak_score": round(verdict.jailbreak_score, 4),
                "topics": [
                    {
                        "topic": t.topic,
                        "score": round(t.score, 4),
                        "threshold": t.threshold,
                        "nearest": t.nearest,
                        "keyword": t.keyword,
                    }
                    for t in verdict.topics
                ],
                "embedding_checks": verdict.embedding_checks,
                "redacted_text": verdict.texts[0] if verdict.action == "redact" else None,
                "latency_ms": round(verdict.latency_ms, 3),
            }
        )


async def _check_embedding(api: GatewayAPI, text: str) -> tuple[np.ndarray | None, str | None]:
    if api.embed is None or api.policy is None:
        return None, "no embedder configured"
    try:
        await asyncio.wait_for(api.policy.prepare(api.embed), _PREPARE_TIMEOUT_S)
        return (await api.embed([text]))[0], None
    except Exception as exc:  # the dry run reports what it could not check
        return None, f"the embedder failed ({type(exc).__name__})"


class PolicyCheck(BaseModel):
    """Body of `POST /admin/policy/check`: a dry run of the policy on one text."""

    model_config = ConfigDict(extra="forbid")

    text: str
    user: str | None = None
    groups: list[str] = Field(default_factory=list)
    model: str | None = Field(None, description="applies the profile's per-model overrides")
    direction: Literal["input", "output"] = "input"


def _text_slots(body: ChatCompletionRequest) -> list[tuple[tuple[int, int | None], str]]:
    """Each text of a chat request with where it sits: (message, part or None for a string)."""
    slots: list[tuple[tuple[int, int | None], str]] = []
    for i, message in enumerate(body.messages):
        if isinstance(message.content, str):
            slots.append(((i, None), message.content))
        elif message.content is not None:
            for j, part in enumerate(message.content):
                if part.type == "text" and part.text:
                    slots.append(((i, j), part.text))
    return slots


def _with_texts(
    body: ChatCompletionRequest, where: list[tuple[int, int | None]], texts: list[str]
) -> ChatCompletionRequest:
    messages = [m.model_copy(deep=True) for m in body.messages]
    for (i, j), text in zip(where, texts, strict=True):
        if j is None:
            messages[i].content = text
        else:
            parts = messages[i].content
            assert isinstance(parts, list)
            parts[j] = parts[j].model_copy(update={"text": text})
    return body.model_copy(update={"messages": messages})
