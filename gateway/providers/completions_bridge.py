"""Legacy completions answered through chat, for upstreams that only speak chat."""

from __future__ import annotations

from gateway.errors import UnsupportedParameter
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    Completion,
    CompletionChoice,
    CompletionRequest,
)

_CARRIED = ("model", "max_tokens", "temperature", "top_p", "n", "stream", "stop", "seed", "user")


def to_chat(request: CompletionRequest) -> ChatCompletionRequest:
    """One user turn holding the prompt; token-id prompts and echo/suffix cannot be bridged."""
    if not isinstance(request.prompt, str):
        if all(isinstance(p, str) for p in request.prompt) and len(request.prompt) == 1:
            prompt = str(request.prompt[0])
        else:
            raise UnsupportedParameter(
                "this provider answers completions through chat: send one string prompt",
                param="prompt",
            )
    else:
        prompt = request.prompt
    for param in ("echo", "suffix", "logprobs", "best_of"):
        if getattr(request, param) is not None:
            raise UnsupportedParameter(
                f"parameter {param!r} is not supported for completions on this provider",
                param=param,
            )
    fields = {k: getattr(request, k) for k in _CARRIED if getattr(request, k) is not None}
    if request.stream_options is not None:
        fields["stream_options"] = request.stream_options
    return ChatCompletionRequest(messages=[ChatMessage(role="user", content=prompt)], **fields)


def from_chat(chat: ChatCompletion) -> Completion:
    """A chat answer as a legacy completion."""
    return Completion(
        id=chat.id,
        created=chat.created,
        model=chat.model,
        usage=chat.usage,
        choices=[
            CompletionChoice(index=c.index, text=c.message.text(), finish_reason=c.finish_reason)
            for c in chat.choices
        ],
    )


def from_chat_chunk(chunk: ChatCompletionChunk) -> Completion:
    """A chat stream chunk as a legacy completion chunk."""
    return Completion(
        id=chunk.id,
        created=chunk.created,
        model=chunk.model,
        usage=chunk.usage,
        choices=[
            CompletionChoice(
                index=c.index, text=c.delta.content or "", finish_reason=c.finish_reason
            )
            for c in chunk.choices
        ],
    )
