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

# An answer's text channels: (choice, part), the part "content", "refusal", a field the wire
# model does not name ("reasoning_content", "audio", ...), or the index of a tool call.
_Channel = tuple[int, str | int]
_NOT_TEXT = frozenset({"id", "type", "name", "data", "format", "expires_at", "detail", "role"})


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
        self.shapes: dict[_Channel, Any] = {}  # an unnamed field's last value, for its rest

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
    for name, value in (message.model_extra or {}).items():
        update[name] = _texts_filtered(value, whole)  # reasoning, audio transcripts, ...
    if message.tool_calls:
        update["tool_calls"] = [_with_arguments(call, whole) for call in message.tool_calls]
    return choice.model_copy(update={"message": message.model_copy(update=update)})


def _texts_filtered(value: Any, filtered: Callable[[str], str], key: str = "") -> Any:
    """`value` (a field the wire model does not name) with every text in it filtered: an
    answer's texts are read wherever they sit (`reasoning`, an audio `transcript`, legacy
    `function_call` arguments, citation titles). Ids, types, names and base64 data are not
    text."""
    if isinstance(value, str):
        return value if key in _NOT_TEXT or not value else filtered(value)
    if isinstance(value, dict):
        return {k: _texts_filtered(v, filtered, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_texts_filtered(v, filtered, key) for v in value]
    return value


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
                    yield _released(last, rests, channels.shapes)
                raise
            if last is not None and (rests := channels.finish()):
                yield _released(last, rests, channels.shapes)  # no finish chunks: release it
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
        for name, value in (delta.model_extra or {}).items():
            # reasoning, audio transcripts, legacy function_call arguments: a channel each
            channels.shapes[(index, name)] = value
            update[name] = _texts_filtered(value, partial(channels.feed, (index, name)), name)
        if delta.tool_calls:
            update["tool_calls"] = [
                _fed_call(call, position, index, channels)
                for position, call in enumerate(delta.tool_calls)
            ]
        delta = delta.model_copy(update=update)
        if choice.finish_reason is not None:
            delta = _with_rests(delta, channels.finish(index), channels.shapes)
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


def _with_rests(
    delta: ChoiceDelta, rests: dict[_Channel, str], shapes: dict[_Channel, Any]
) -> ChoiceDelta:
    """`delta` with the released rests of its choice's channels appended."""
    update: dict[str, Any] = {}
    calls = list(delta.tool_calls or [])
    for (choice, part), rest in rests.items():
        if part == "content":
            update["content"] = (delta.content or "") + rest
        elif part == "refusal":
            update["refusal"] = (delta.refusal or "") + rest
        elif isinstance(part, int):
            calls.append(ToolCall(index=part, function=FunctionCall(arguments=rest)))
        else:  # a field the wire model does not name: the rest goes where its text went
            current = (delta.model_extra or {}).get(part)
            if current is None:
                current = _blank(shapes.get((choice, part)))
            update[part] = _appended(current, rest)
    if calls:
        update["tool_calls"] = calls
    return delta.model_copy(update=update)


def _blank(value: Any) -> Any:
    """`value`'s shape (a dict's id and type) with its texts emptied, else None."""
    if not isinstance(value, dict):
        return None
    kept = {k: v for k, v in value.items() if k in ("id", "type")}
    return kept | {k: "" for k, v in value.items() if k not in _NOT_TEXT and isinstance(v, str)}


def _appended(value: Any, rest: str) -> Any:
    """`value` with `rest` added to its (last) text; `rest` alone where it held none."""
    if value is None or isinstance(value, str):
        return (value or "") + rest
    if isinstance(value, dict):
        for key in reversed(list(value)):
            if key not in _NOT_TEXT and isinstance(value[key], str | None):
                return {**value, key: (value[key] or "") + rest}
    return value


def _released(
    last: ChatCompletionChunk, rests: dict[_Channel, str], shapes: dict[_Channel, Any]
) -> ChatCompletionChunk:
    """A chunk shaped like `last` that carries the rests of every channel."""
    by_choice: dict[int, dict[_Channel, str]] = {}
    for channel, rest in rests.items():
        by_choice.setdefault(channel[0], {})[channel] = rest
    choices = [
        ChunkChoice(index=index, delta=_with_rests(ChoiceDelta(), held, shapes))
        for index, held in sorted(by_choice.items())
    ]
    return last.model_copy(update={"choices": choices, "usage": None})


def _carries(choice: ChunkChoice) -> bool:
    delta = choice.delta
    extra = any(_has_text(v) for v in (delta.model_extra or {}).values())
    calls = any(c.id or c.function.name or c.function.arguments for c in delta.tool_calls or [])
    return bool(
        delta.content or delta.refusal or delta.role or extra or calls or choice.finish_reason
    )


def _has_text(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_has_text(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_text(v) for v in value)
    return bool(value)


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
