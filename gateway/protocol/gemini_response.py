"""Gemini's answers (`generateContent` and its SSE stream) onto canonical chat completions.

Pure functions and one stream translator, no I/O. finishReason STOP becomes `stop` (or
`tool_calls` when the candidate called a function), MAX_TOKENS `length`, the safety
reasons `content_filter`, anything else `stop`. A prompt blocked before any candidate
becomes one empty `content_filter` choice. Thought-summary parts come back as
`reasoning_content`; thought tokens count as completion tokens, as OpenAI counts reasoning.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from pydantic import ValidationError

from gateway.errors import UpstreamError
from gateway.protocol.gemini import Candidate, GenerateContentResponse, UsageMetadata
from gateway.protocol.gemini_request import SIGNATURE_MARK
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessage,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    ToolCall,
    Usage,
    new_id,
)

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
}


# --- whole answer ---------------------------------------------------------------------------


def gemini_to_chat(body: Any, *, model: str) -> ChatCompletion:
    """The chat completion for a `generateContent` answer; `UpstreamError` if it is not one."""
    response = _parse(body)
    choices = []
    for candidate in sorted(response.candidates, key=lambda c: c.index):
        text, reasoning, calls = _split_parts(candidate)
        message = ChatMessage(
            role="assistant", content=text if text or not calls else None, tool_calls=calls or None
        )
        if reasoning:
            message = ChatMessage.model_validate({**message.wire(), "reasoning_content": reasoning})
        finish = _finish_reason(candidate.finish_reason, tool_calls=bool(calls))
        choices.append(ChatChoice(index=candidate.index, message=message, finish_reason=finish))
    if not choices and _blocked(response):
        choices.append(
            ChatChoice(
                index=0,
                message=ChatMessage(role="assistant", content=""),
                finish_reason="content_filter",
            )
        )
    if not choices:
        raise UpstreamError("the upstream answered with no candidates")
    return ChatCompletion(
        id=_chat_id(response.response_id),
        model=model,
        choices=choices,
        usage=_usage(response.usage_metadata),
    )


def _parse(body: Any) -> GenerateContentResponse:
    try:
        return GenerateContentResponse.model_validate(body)
    except ValidationError:
        raise UpstreamError("the upstream answered in a shape that is not Gemini's") from None


def _split_parts(candidate: Candidate) -> tuple[str, str, list[ToolCall]]:
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for part in candidate.content.parts:
        if part.function_call is not None:
            call_id = part.function_call.id or f"call_{uuid.uuid4().hex[:24]}"
            if part.thought_signature:
                call_id += SIGNATURE_MARK + part.thought_signature
            arguments = json.dumps(part.function_call.args, ensure_ascii=False)
            calls.append(
                ToolCall(
                    id=call_id,
                    function=FunctionCall(name=part.function_call.name, arguments=arguments),
                )
            )
        elif part.text is not None:
            (reasoning if part.thought else text).append(part.text)
    return "".join(text), "".join(reasoning), calls


def _finish_reason(reason: str | None, *, tool_calls: bool) -> str | None:
    if reason is None:
        return None
    if tool_calls and reason == "STOP":
        return "tool_calls"
    return _FINISH_REASONS.get(reason, "stop")


def _blocked(response: GenerateContentResponse) -> bool:
    return (
        response.prompt_feedback is not None and response.prompt_feedback.block_reason is not None
    )


def _chat_id(response_id: str | None) -> str:
    return f"chatcmpl-{response_id}" if response_id else new_id("chatcmpl")


def _usage(meta: UsageMetadata | None) -> Usage | None:
    if meta is None:
        return None
    # OpenAI counts reasoning tokens as completion tokens; Gemini reports them apart.
    completion = meta.candidates_token_count + meta.thoughts_token_count
    fields: dict[str, Any] = {
        "prompt_tokens": meta.prompt_token_count,
        "completion_tokens": completion,
        "total_tokens": meta.total_token_count or meta.prompt_token_count + completion,
    }
    if meta.cached_content_token_count:
        fields["prompt_tokens_details"] = {"cached_tokens": meta.cached_content_token_count}
    if meta.thoughts_token_count:
        fields["completion_tokens_details"] = {"reasoning_tokens": meta.thoughts_token_count}
    return Usage.model_validate(fields)


# --- streamed answer ------------------------------------------------------------------------


class GeminiStreamTranslator:
    """Turns `streamGenerateContent?alt=sse` events, one at a time, into chat chunks.

    `feed` returns each event's chunks (a role chunk the first time a candidate appears,
    content and whole tool calls, a finish chunk when it carries a finishReason). The
    stream has no terminator: `finished` says whether every candidate seen has finished,
    and `usage_chunk()` gives the closing usage chunk (empty `choices`).
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.id: str | None = None
        self._open: dict[int, int] = {}  # candidate index -> tool calls sent so far
        self._finished: set[int] = set()
        self._usage: UsageMetadata | None = None

    @property
    def finished(self) -> bool:
        """Whether a finishReason has arrived for every candidate seen (and one was seen)."""
        return bool(self._finished) and self._finished >= set(self._open)

    def feed(self, data: Any) -> list[ChatCompletionChunk]:
        """The chunks for one event; `UpstreamError` if it is not a GenerateContentResponse."""
        response = _parse(data)
        if self.id is None:
            self.id = _chat_id(response.response_id)
        if response.usage_metadata is not None:
            self._usage = response.usage_metadata
        chunks = []
        for candidate in response.candidates:
            chunks.extend(self._candidate(candidate))
        if not response.candidates and _blocked(response) and not self._open:
            self._open[0], self._finished = 0, {0}
            chunks.append(self._chunk(0, ChoiceDelta(role="assistant", content="")))
            chunks.append(self._chunk(0, ChoiceDelta(), finish="content_filter"))
        return chunks

    def usage_chunk(self) -> ChatCompletionChunk:
        """The final chunk carrying the usage (zeros if Gemini sent none)."""
        usage = _usage(self._usage) or Usage()
        return ChatCompletionChunk(id=self.id or new_id("chatcmpl"), model=self.model, usage=usage)

    def _candidate(self, candidate: Candidate) -> list[ChatCompletionChunk]:
        index = candidate.index
        chunks = []
        if index not in self._open:
            self._open[index] = 0
            chunks.append(self._chunk(index, ChoiceDelta(role="assistant", content="")))
        text, reasoning, calls = _split_parts(candidate)
        if reasoning:
            chunks.append(
                self._chunk(index, ChoiceDelta.model_validate({"reasoning_content": reasoning}))
            )
        if text:
            chunks.append(self._chunk(index, ChoiceDelta(content=text)))
        for call in calls:
            call.index = self._open[index]
            self._open[index] += 1
            chunks.append(self._chunk(index, ChoiceDelta(tool_calls=[call])))
        if candidate.finish_reason is not None and index not in self._finished:
            self._finished.add(index)
            finish = _finish_reason(candidate.finish_reason, tool_calls=self._open[index] > 0)
            chunks.append(self._chunk(index, ChoiceDelta(), finish=finish))
        return chunks

    def _chunk(
        self, index: int, delta: ChoiceDelta, finish: str | None = None
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish)
        return ChatCompletionChunk(
            id=self.id or new_id("chatcmpl"), model=self.model, choices=[choice]
        )
