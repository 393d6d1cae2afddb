"""The output policy stage: answers and streams through the caller's output rules.

Every text an answer carries is checked, in every choice: the content, a refusal, reasoning
content, and each tool call's arguments (each one its own channel, all numbering their
placeholders together). A whole answer is redacted, or withheld (403). A stream's text is held
back a short window per channel (the profile's `hold_back_chars`), so that a value split
across chunks is still seen whole; a blocking match ends the stream with an error event. Every
answer a route sends passes here, from a provider or from the cache alike: the pipeline
applies it, not the routes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from functools import partial
from typing import Any

from gateway.api.backend import ChatAnswer, CompletionAnswer
from gateway.api.exchange import Exchange
from gateway.errors import GatewayError, PolicyViolation
from gateway.policy.engine import PolicyEngine
from gateway.policy.output import OutputBlocked, OutputFilter
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    FunctionCall,
    ToolCall,
)
from gateway.routing.routed import Routed, RoutedStream

# An answer's text channels: (choice, part), the part "content", "refusal", "reasoning", or
# the index of a tool call.
_Channel = tuple[int, str | int]
_REASONING = "reasoning_content"  # the field OpenAI-compatible servers stream reasoning in


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


class _Channels:
    """One output filter per channel of an answer, made on first use."""

    def __init__(self, rules: OutputFilter, exchange: Exchange) -> None:
        self._rules = rules
        self._exchange = exchange
        self._open: dict[_Channel, OutputFilter] = {}

    def feed(self, channel: _Channel, text: str) -> str:
        rules = self._open.get(channel)
        if rules is None:
            rules = self._open[channel] = self._rules.channel()
        return _guarded(lambda: rules.feed(text), self._exchange)

    def finish(self, choice: int | None = None) -> dict[_Channel, str]:
        """What the channels (of one choice, or all) still hold, now released."""
        rests = {}
        for channel in [c for c in self._open if choice is None or c[0] == choice]:
            rules = self._open.pop(channel)
            rest = _guarded(rules.finish, self._exchange)
            if rest:
                rests[channel] = rest
        return rests

    @property
    def decisions(self) -> list[Any]:
        return self._rules.decisions


def _chat_answer(
    response: ChatCompletion, rules: OutputFilter, exchange: Exchange
) -> ChatCompletion:
    def whole(text: str) -> str:
        return _guarded(partial(_whole, rules.channel(), text), exchange, "withheld")

    choices = [_filtered_choice(choice, whole) for choice in response.choices]
    exchange.decisions += rules.decisions
    return response.model_copy(update={"choices": choices})


def _filtered_choice(choice: ChatChoice, whole: Callable[[str], str]) -> ChatChoice:
    message = choice.message
    update: dict[str, Any] = {}
    if isinstance(message.content, str) and message.content:
        update["content"] = whole(message.content)
    elif isinstance(message.content, list):
        update["content"] = [
            part.model_copy(update={"text": whole(part.text)}) if part.text else part
            for part in message.content
        ]
    if message.refusal:
        update["refusal"] = whole(message.refusal)
    reasoning = (message.model_extra or {}).get(_REASONING)
    if isinstance(reasoning, str) and reasoning:
        update[_REASONING] = whole(reasoning)
    if message.tool_calls:
        update["tool_calls"] = [_with_arguments(call, whole) for call in message.tool_calls]
    return choice.model_copy(update={"message": message.model_copy(update=update)})


def _with_arguments(call: ToolCall, whole: Callable[[str], str]) -> ToolCall:
    arguments = call.function.arguments
    if not arguments:
        return call
    function = call.function.model_copy(update={"arguments": whole(arguments)})
    return call.model_copy(update={"function": function})


def _completion_answer(response: Completion, rules: OutputFilter, exchange: Exchange) -> Completion:
    choices = []
    for choice in response.choices:
        if choice.text:
            text = _guarded(partial(_whole, rules.channel(), choice.text), exchange)
            choice = choice.model_copy(update={"text": text})
        choices.append(choice)
    exchange.decisions += rules.decisions
    return response.model_copy(update={"choices": choices})


async def _chat_stream(
    chunks: AsyncGenerator[ChatCompletionChunk, None], rules: OutputFilter, exchange: Exchange
) -> AsyncGenerator[ChatCompletionChunk, None]:
    channels = _Channels(rules, exchange)
    last: ChatCompletionChunk | None = None
    try:
        async with aclosing(chunks):
            try:
                async for chunk in chunks:
                    last = chunk
                    filtered = _filtered_chunk(chunk, channels)
                    if filtered is not None:
                        yield filtered
            except GatewayError:
                # The upstream broke mid-stream: what it did send is complete as far as it
                # goes, so check and release the held-back text before the error event.
                if last is not None and (rests := channels.finish()):
                    yield _released(last, rests)
                raise
            if last is not None and (rests := channels.finish()):
                yield _released(last, rests)  # ended without finish chunks: release the rest
    finally:
        exchange.decisions += [d for d in channels.decisions if d.action != "block"]


def _filtered_chunk(chunk: ChatCompletionChunk, channels: _Channels) -> ChatCompletionChunk | None:
    choices = []
    for choice in chunk.choices:
        delta, index = choice.delta, choice.index
        update: dict[str, Any] = {}
        if delta.content:
            update["content"] = channels.feed((index, "content"), delta.content) or None
        if delta.refusal:
            update["refusal"] = channels.feed((index, "refusal"), delta.refusal) or None
        reasoning = (delta.model_extra or {}).get(_REASONING)
        if isinstance(reasoning, str) and reasoning:
            update[_REASONING] = channels.feed((index, "reasoning"), reasoning) or None
        if delta.tool_calls:
            update["tool_calls"] = [
                _fed_call(call, position, index, channels)
                for position, call in enumerate(delta.tool_calls)
            ]
        delta = delta.model_copy(update=update)
        if choice.finish_reason is not None:
            delta = _with_rests(delta, channels.finish(index))
        choice = choice.model_copy(update={"delta": delta})
        if _carries(choice):
            choices.append(choice)
    if not choices and chunk.usage is None and chunk.choices:
        return None  # everything in it is still held back
    return chunk.model_copy(update={"choices": choices})


def _fed_call(call: ToolCall, position: int, choice: int, channels: _Channels) -> ToolCall:
    arguments = call.function.arguments
    if not arguments:
        return call
    released = channels.feed((choice, _call_index(call, position)), arguments)
    return call.model_copy(
        update={"function": call.function.model_copy(update={"arguments": released})}
    )


def _call_index(call: ToolCall, position: int) -> int:
    return call.index if call.index is not None else position


def _with_rests(delta: ChoiceDelta, rests: dict[_Channel, str]) -> ChoiceDelta:
    """`delta` with the released rests of its choice's channels appended."""
    update: dict[str, Any] = {}
    calls = list(delta.tool_calls or [])
    for (_, part), rest in rests.items():
        if part == "content":
            update["content"] = (delta.content or "") + rest
        elif part == "refusal":
            update["refusal"] = (delta.refusal or "") + rest
        elif part == "reasoning":
            update[_REASONING] = str((delta.model_extra or {}).get(_REASONING) or "") + rest
        else:
            calls.append(ToolCall(index=int(part), function=FunctionCall(arguments=rest)))
    if calls:
        update["tool_calls"] = calls
    return delta.model_copy(update=update)


def _released(last: ChatCompletionChunk, rests: dict[_Channel, str]) -> ChatCompletionChunk:
    """A chunk shaped like `last` that carries the rests of every channel."""
    by_choice: dict[int, dict[_Channel, str]] = {}
    for channel, rest in rests.items():
        by_choice.setdefault(channel[0], {})[channel] = rest
    choices = [
        ChunkChoice(index=index, delta=_with_rests(ChoiceDelta(), held))
        for index, held in sorted(by_choice.items())
    ]
    return last.model_copy(update={"choices": choices, "usage": None})


def _carries(choice: ChunkChoice) -> bool:
    delta = choice.delta
    extra = (delta.model_extra or {}).get(_REASONING)
    calls = any(c.id or c.function.name or c.function.arguments for c in delta.tool_calls or [])
    return bool(
        delta.content or delta.refusal or delta.role or extra or calls or choice.finish_reason
    )


async def _completion_stream(
    chunks: AsyncGenerator[Completion, None], rules: OutputFilter, exchange: Exchange
) -> AsyncGenerator[Completion, None]:
    channels = _Channels(rules, exchange)
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                choices = []
                for choice in chunk.choices:
                    released = channels.feed((choice.index, "content"), choice.text)
                    if choice.finish_reason is not None:
                        released += "".join(channels.finish(choice.index).values())
                    if released or choice.finish_reason is not None:
                        choices.append(choice.model_copy(update={"text": released}))
                if choices or chunk.usage is not None or not chunk.choices:
                    yield chunk.model_copy(update={"choices": choices})
    finally:
        exchange.decisions += [d for d in channels.decisions if d.action != "block"]


def _whole(rules: OutputFilter, text: str) -> str:
    return rules.feed(text) + rules.finish()


def _guarded(release: Callable[[], str], exchange: Exchange, verb: str = "stopped") -> str:
    try:
        return release()
    except OutputBlocked as blocked:
        exchange.decisions += blocked.decisions
        raise PolicyViolation(f"The answer was {verb} by policy ({blocked}).") from None
