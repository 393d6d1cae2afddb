"""The output policy stage: answers and streams through the caller's output rules.

A whole answer is redacted, or withheld (403). A stream's text is held back a short window
(the profile's `hold_back_chars`) so that a value split across chunks is still seen whole;
a blocking match ends the stream with an error event. Every answer a route sends passes here,
from a provider or from the cache alike: the pipeline applies it, not the routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from functools import partial

from gateway.api.backend import ChatAnswer, CompletionAnswer
from gateway.api.exchange import Exchange
from gateway.errors import GatewayError, PolicyViolation
from gateway.policy.engine import PolicyEngine
from gateway.policy.output import OutputBlocked, OutputFilter
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk, Completion
from gateway.routing.routed import Routed, RoutedStream


class OutputPolicy:
    """Applies the output rules of each caller's profile."""

    def __init__(self, engine: PolicyEngine | None) -> None:
        self._engine = engine

    async def chat(self, exchange: Exchange, answer: ChatAnswer) -> ChatAnswer:
        """A chat answer or stream through the caller's output rules."""
        rules = self._filter(exchange)
        if rules is None:
            return answer
        if isinstance(answer, RoutedStream):
            return RoutedStream(answer.route, _chat_stream(answer.chunks, rules, exchange))
        filtered = await asyncio.to_thread(_chat_answer, answer.response, rules, exchange)
        return Routed(filtered, answer.route)

    async def completion(self, exchange: Exchange, answer: CompletionAnswer) -> CompletionAnswer:
        """A legacy completion or its stream through the caller's output rules."""
        rules = self._filter(exchange)
        if rules is None:
            return answer
        if isinstance(answer, RoutedStream):
            return RoutedStream(answer.route, _completion_stream(answer.chunks, rules, exchange))
        filtered = await asyncio.to_thread(_completion_answer, answer.response, rules, exchange)
        return Routed(filtered, answer.route)

    def _filter(self, exchange: Exchange) -> OutputFilter | None:
        if self._engine is None or exchange.grant is None:
            return None
        return self._engine.output_filter(exchange.policy_profile, exchange.redacted)


def _chat_answer(
    response: ChatCompletion, rules: OutputFilter, exchange: Exchange
) -> ChatCompletion:
    choices = []
    for choice in response.choices:
        text = choice.message.content
        if isinstance(text, str) and text:
            text = _guarded(partial(_whole, rules, text), exchange, "withheld")
            choice = choice.model_copy(
                update={"message": choice.message.model_copy(update={"content": text})}
            )
        choices.append(choice)
    exchange.decisions += rules.decisions
    return response.model_copy(update={"choices": choices})


def _completion_answer(response: Completion, rules: OutputFilter, exchange: Exchange) -> Completion:
    choices = []
    for choice in response.choices:
        if choice.text:
            text = _guarded(partial(_whole, rules, choice.text), exchange)
            choice = choice.model_copy(update={"text": text})
        choices.append(choice)
    exchange.decisions += rules.decisions
    return response.model_copy(update={"choices": choices})


async def _chat_stream(
    chunks: AsyncGenerator[ChatCompletionChunk, None], rules: OutputFilter, exchange: Exchange
) -> AsyncGenerator[ChatCompletionChunk, None]:
    last: ChatCompletionChunk | None = None
    try:
        async with aclosing(chunks):
            try:
                async for chunk in chunks:
                    last = chunk
                    filtered = _filtered_chunk(chunk, rules, exchange)
                    if filtered is not None:
                        yield filtered
            except GatewayError:
                # The upstream broke mid-stream: what it did send is complete as far as it
                # goes, so check and release the held-back text before the error event.
                rest = _guarded(rules.finish, exchange) if last is not None else ""
                if last is not None and rest:
                    yield _with_content(last, rest, finish_reason=None)
                raise
            rest = _guarded(rules.finish, exchange) if last is not None else ""
            if last is not None and rest:  # ended without a finish chunk: release what is held
                yield _with_content(last, rest, finish_reason=None)
    finally:
        exchange.decisions += [d for d in rules.decisions if d.action != "block"]


async def _completion_stream(
    chunks: AsyncGenerator[Completion, None], rules: OutputFilter, exchange: Exchange
) -> AsyncGenerator[Completion, None]:
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                main = next((c for c in chunk.choices if c.index == 0), None)
                if main is None:
                    yield chunk
                    continue
                released = _guarded(partial(rules.feed, main.text), exchange)
                if main.finish_reason is not None:
                    released += _guarded(rules.finish, exchange)
                if not released and main.finish_reason is None and chunk.usage is None:
                    continue  # still held back
                choices = [
                    c.model_copy(update={"text": released}) if c.index == 0 else c
                    for c in chunk.choices
                ]
                yield chunk.model_copy(update={"choices": choices})
    finally:
        exchange.decisions += [d for d in rules.decisions if d.action != "block"]


def _whole(rules: OutputFilter, text: str) -> str:
    return rules.feed(text) + rules.finish()


def _filtered_chunk(
    chunk: ChatCompletionChunk, rules: OutputFilter, exchange: Exchange
) -> ChatCompletionChunk | None:
    main = next((c for c in chunk.choices if c.index == 0), None)
    if main is None:
        return chunk
    text = main.delta.content or ""
    released = _guarded(lambda: rules.feed(text), exchange) if text else ""
    if main.finish_reason is not None:
        released += _guarded(rules.finish, exchange)
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


def _guarded(release: Callable[[], str], exchange: Exchange, verb: str = "stopped") -> str:
    try:
        return release()
    except OutputBlocked as blocked:
        exchange.decisions += blocked.decisions
        raise PolicyViolation(f"The answer was {verb} by policy ({blocked}).") from None
