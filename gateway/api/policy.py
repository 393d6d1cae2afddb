"""The policy engine on the request path and its dry-run route.

`enforce` runs the caller's profile (from their groups) over a chat request's texts before it
is routed: a `block` is a 403 and nothing goes upstream; a `redact` replaces values with typed
placeholders; every decision lands in the request's audit record. `POST /admin/policy/check`
runs the same decision on one text without calling any provider.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.errors import validated
from gateway.api.exchange import Exchange
from gateway.errors import GatewayError, InvalidRequest, PolicyViolation
from gateway.identity.principal import Principal
from gateway.policy.engine import OutputBlocked, OutputFilter
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


async def enforce(
    api: GatewayAPI, request: Request, body: ChatCompletionRequest
) -> ChatCompletionRequest:
    """The input policy of the caller's profile on a chat request: blocked (403, nothing
    sent upstream), redacted (typed placeholders), or passed as it is; decisions recorded."""
    exchange: Exchange = request.state.exchange
    if api.policy is None or exchange.grant is None:
        return body
    profile = exchange.grant.policy
    slots = _text_slots(body)
    verdict = await asyncio.to_thread(api.policy.check, [t for _, t in slots], profile)
    exchange.decisions += verdict.decisions
    exchange.redacted = verdict.mapping
    if verdict.action == "block":
        rules = ", ".join(verdict.blocking_rules)
        raise PolicyViolation(f"The request was blocked by policy ({rules}).")
    if verdict.action != "redact":
        return body
    return _with_texts(body, [slot for slot, _ in slots], verdict.texts)


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
        verdict = await asyncio.to_thread(api.policy.check, [body.text], profile)
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
                "redacted_text": verdict.texts[0] if verdict.action == "redact" else None,
                "latency_ms": round(verdict.latency_ms, 3),
            }
        )


class PolicyCheck(BaseModel):
    """Body of `POST /admin/policy/check`: a dry run of the policy on one text."""

    model_config = ConfigDict(extra="forbid")

    text: str
    user: str | None = None
    groups: list[str] = Field(default_factory=list)
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


async def filter_answer(api: GatewayAPI, request: Request, response: Any) -> Any:
    """A whole chat answer through the caller's output rules: redacted, or withheld (403)."""
    output_filter = _output_filter(api, request)
    if output_filter is None or not isinstance(response, ChatCompletion):
        return response
    exchange: Exchange = request.state.exchange
    choices = []
    for choice in response.choices:
        text = choice.message.content
        if isinstance(text, str) and text:
            try:
                text = await asyncio.to_thread(_whole, output_filter, text)
            except OutputBlocked as blocked:
                exchange.decisions += blocked.decisions
                raise PolicyViolation(f"The answer was withheld by policy ({blocked}).") from None
            choice = choice.model_copy(
                update={"message": choice.message.model_copy(update={"content": text})}
            )
        choices.append(choice)
    exchange.decisions += output_filter.decisions
    return response.model_copy(update={"choices": choices})


async def filter_stream(
    api: GatewayAPI, request: Request, items: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    """A chat stream through the caller's output rules, with the profile's hold-back window;
    a blocking match ends the stream with an error event (PolicyViolation)."""
    output_filter = _output_filter(api, request)
    exchange: Exchange = request.state.exchange
    last: ChatCompletionChunk | None = None
    try:
        try:
            async for item in items:
                if output_filter is None or not isinstance(item, ChatCompletionChunk):
                    yield item
                    continue
                last = item
                filtered = _filtered_chunk(item, output_filter, exchange)
                if filtered is not None:
                    yield filtered
        except GatewayError:
            # The upstream broke mid-stream: what it did send is complete as far as it goes,
            # so check and release the held-back text before the error event.
            if output_filter is not None and last is not None:
                rest = _guarded(output_filter.finish, exchange)
                if rest:
                    yield _with_content(last, rest, finish_reason=None)
            raise
        if output_filter is not None and last is not None:
            rest = _guarded(output_filter.finish, exchange)
            if rest:  # the upstream ended without a finish chunk: release what was held
                yield _with_content(last, rest, finish_reason=None)
    finally:
        if output_filter is not None:
            exchange.decisions += [d for d in output_filter.decisions if d.action != "block"]
        await items.aclose()  # type: ignore[attr-defined]


def _whole(output_filter: OutputFilter, text: str) -> str:
    return output_filter.feed(text) + output_filter.finish()


def _filtered_chunk(
    chunk: ChatCompletionChunk, output_filter: OutputFilter, exchange: Exchange
) -> ChatCompletionChunk | None:
    main = next((c for c in chunk.choices if c.index == 0), None)
    if main is None:
        return chunk
    text = main.delta.content or ""
    released = _guarded(lambda: output_filter.feed(text), exchange) if text else ""
    if main.finish_reason is not None:
        released += _guarded(output_filter.finish, exchange)
    carries_more = main.finish_reason or main.delta.role or main.delta.tool_calls or chunk.usage
    if not released and not carries_more:
        return None  # everything in it is still held back
    return _with_content(chunk, released or None, finish_reason=main.finish_reason)


def _with_content(
    chunk: ChatCompletionChunk, text: str | None, *, finish_reason: str | None
) -> ChatCompletionChunk:
    choices = []
    for choice in chunk.choices:
        if choice.index == 0:
            delta = choice.delta.model_copy(update={"content": text})
            choice = choice.model_copy(update={"delta": delta, "finish_reason": finish_reason})
        choices.append(choice)
    return chunk.model_copy(update={"choices": choices})


def _guarded(release: Callable[[], str], exchange: Exchange) -> str:
    try:
        return release()
    except OutputBlocked as blocked:
        exchange.decisions += blocked.decisions
        raise PolicyViolation(f"The answer was stopped by policy ({blocked}).") from None


def _output_filter(api: GatewayAPI, request: Request) -> OutputFilter | None:
    exchange: Exchange = request.state.exchange
    if api.policy is None or exchange.grant is None:
        return None
    return api.policy.output_filter(exchange.grant.policy, exchange.redacted)
