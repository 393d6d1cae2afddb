"""The output policy on the answer path: whole answers and streams through the caller's
output rules (redacted, withheld, or a stream ended with an error event)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from fastapi import Request

from gateway.api.exchange import Exchange
from gateway.errors import GatewayError, PolicyViolation
from gateway.policy.output import OutputBlocked, OutputFilter
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk, Completion

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


async def filter_answer(api: GatewayAPI, request: Request, response: Any) -> Any:
    """A whole chat or legacy completion answer through the caller's output rules: redacted,
    or withheld (403)."""
    output_filter = _output_filter(api, request)
    if output_filter is None:
        return response
    if isinstance(response, Completion):
        return _filtered_completion(response, output_filter, request.state.exchange)
    if not isinstance(response, ChatCompletion):
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


def _filtered_completion(
    response: Completion, output_filter: OutputFilter, exchange: Exchange
) -> Completion:
    choices = []
    for choice in response.choices:
        if choice.text:
            text = _guarded(partial(_whole, output_filter, choice.text), exchange)
            choice = choice.model_copy(update={"text": text})
        choices.append(choice)
    exchange.decisions += output_filter.decisions
    return response.model_copy(update={"choices": choices})


async def filter_completion_stream(
    api: GatewayAPI, request: Request, items: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    """A legacy completion stream through the caller's output rules (choice 0, as chat);
    a blocking match ends the stream with an error event."""
    output_filter = _output_filter(api, request)
    exchange: Exchange = request.state.exchange
    try:
        async for item in items:
            if output_filter is None or not isinstance(item, Completion):
                yield item
                continue
            main = next((c for c in item.choices if c.index == 0), None)
            if main is None:
                yield item
                continue
            released = _guarded(partial(output_filter.feed, main.text), exchange)
            if main.finish_reason is not None:
                released += _guarded(output_filter.finish, exchange)
            if not released and main.finish_reason is None and item.usage is None:
                continue  # still held back
            choices = [
                c.model_copy(update={"text": released}) if c.index == 0 else c for c in item.choices
            ]
            yield item.model_copy(update={"choices": choices})
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
