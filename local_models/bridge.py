"""OpenAI requests to vLLM sampling parameters, and vLLM outputs to OpenAI answers.

What OpenAI's chat and completion APIs define is mapped one to one; vLLM's own sampling
extras that its OpenAI server also accepts (`top_k`, `min_p`, `repetition_penalty`,
`min_tokens`, `ignore_eos`, `stop_token_ids`) pass through; anything else is refused with
400 `unsupported_parameter` before it reaches the engine.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
)

# Parameters a request may set that need no mapping (or are mapped below).
_HANDLED = {
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "user",
    "n",
    "temperature",
    "top_p",
    "stop",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
}
_VLLM_EXTRAS = {
    "top_k",
    "min_p",
    "repetition_penalty",
    "min_tokens",
    "ignore_eos",
    "stop_token_ids",
}


def sampling_kwargs(
    request: ChatCompletionRequest | CompletionRequest, prompt_tokens: int, max_model_len: int
) -> dict[str, Any]:
    """Keyword arguments for `SamplingParams.from_optional`, or a 400 for what the engine
    does not do. Without `max_tokens` the answer may fill the rest of the context, as on
    OpenAI (vLLM's own default would stop at 16 tokens)."""
    for param in sorted(request.set_params() - _HANDLED - _VLLM_EXTRAS):
        raise UnsupportedParameter(
            f"parameter {param!r} is not supported by local models", param=param
        )
    room = max_model_len - prompt_tokens
    if room < 1:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens; the prompt has "
            f"{prompt_tokens}.",
            code="context_length_exceeded",
            param="messages" if isinstance(request, ChatCompletionRequest) else "prompt",
        )
    wanted = getattr(request, "max_completion_tokens", None) or request.max_tokens
    if wanted is not None and wanted > room:
        raise InvalidRequest(
            f"This model's maximum context length is {max_model_len} tokens; the prompt has "
            f"{prompt_tokens} and max_tokens asks for {wanted}.",
            code="context_length_exceeded",
            param="max_tokens",
        )
    kwargs: dict[str, Any] = {
        "n": request.n or 1,
        "max_tokens": wanted or room,
        "stop": request.stop,
        "seed": request.seed,
    }
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(request, name)
        if value is not None:
            kwargs[name] = value
    if request.logit_bias:
        kwargs["logit_bias"] = request.logit_bias
    extra = request.model_extra or {}
    for name in _VLLM_EXTRAS & set(extra):
        kwargs[name] = extra[name]
    return kwargs


def chat_messages(request: ChatCompletionRequest) -> list[dict[str, str]]:
    """The conversation as the chat template takes it: role and text of each message."""
    messages = []
    for message in request.messages:
        if isinstance(message.content, list) and any(p.type != "text" for p in message.content):
            raise UnsupportedParameter(
                "local models take text content only", param="messages.content"
            )
        role = "system" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text()})
    return messages


def completion_prompt(request: CompletionRequest) -> str | list[int]:
    """One prompt, as text or token ids; a batch of prompts is refused."""
    prompt = request.prompt
    if isinstance(prompt, str):
        return prompt
    if prompt and all(isinstance(t, int) for t in prompt):
        return [int(t) for t in prompt]  # type: ignore[arg-type]
    if isinstance(prompt, list) and len(prompt) == 1:
        only = prompt[0]
        if isinstance(only, str):
            return only
        if isinstance(only, list):
            return [int(t) for t in only]
    raise UnsupportedParameter("local models take one prompt per request", param="prompt")


def finish_reason(reason: str | None) -> str | None:
    """vLLM's finish reason in OpenAI's words (`abort` and `error` have none there)."""
    if reason in (None, "stop", "length"):
        return reason
    return "stop"
