"""Local models as a provider: the router's side of a vLLM replica in the same Serve app.

The transport is injected (`LocalEngines`): in Serve, one DeploymentHandle per local model
(`deployments.engines.ServeEngines`); nothing here imports Ray or vLLM. To the router a local
model is one more target, `local/<name>`, with breakers, retries and strategies like any
other. A replica that is saturated, dead or not yet started raises a retryable
`UpstreamUnavailable`, so the router falls over to the alias's next target.

Answers carry two things the client never sees (excluded from the wire): the replica that
produced them (`replica`, for the route header and the audit record) and the engine time the
request was attributed (`LocalUsage.device_seconds`, which the meter prices).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Literal, Protocol, TypeVar

from pydantic import Field

from gateway.errors import UpstreamRejected, UpstreamTimeout
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Usage,
)
from gateway.providers.base import Provider
from gateway.providers.config import ProviderConfig
from gateway.providers.local_config import LOCAL_PROVIDER, LocalModelConfig

_T = TypeVar("_T")

# What the engine deployment does not implement; refused with 400 before any call, so an
# alias with `fallback_on: [unsupported_parameter]` can send such requests elsewhere.
UNSUPPORTED_PARAMS = (
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "response_format",
    "logprobs",
    "top_logprobs",
    "echo",
    "suffix",
    "best_of",
)


class LocalUsage(Usage):
    """Token usage of a local answer, and the engine time attributed to it."""

    device: Literal["gpu", "cpu"] = Field("gpu", exclude=True)
    device_seconds: float = Field(
        0.0, ge=0, exclude=True, description="engine seconds x devices the replica holds"
    )


class LocalChatCompletion(ChatCompletion):
    """A chat answer from a local replica."""

    replica: str = Field("", exclude=True, description="the Serve replica that answered")


class LocalChatCompletionChunk(ChatCompletionChunk):
    """A streamed chat chunk from a local replica."""

    replica: str = Field("", exclude=True)


class LocalCompletion(Completion):
    """A legacy completion (or a streamed piece of one) from a local replica."""

    replica: str = Field("", exclude=True)


def served_by(answer: object) -> str | None:
    """The replica that produced an answer or chunk, when a local model did."""
    if isinstance(answer, LocalChatCompletion | LocalChatCompletionChunk | LocalCompletion):
        return answer.replica or None
    return None


class LocalEngines(Protocol):
    """The transport to local models' replicas. `request.model` names the local model.

    Implementations raise GatewayErrors: `UpstreamUnavailable` when no replica can take the
    request now (saturated, dead, starting), `InvalidRequest` for what the engine refuses.
    """

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion: ...

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]: ...

    async def completion(self, request: CompletionRequest) -> Completion: ...

    def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]: ...

    async def aclose(self) -> None: ...

    async def running(self) -> Mapping[str, int]:
        """How many replicas of each model run now (a model missing: not known)."""
        ...


class LocalProvider(Provider):
    """The `local` provider: every configured local model, reached through `engines`."""

    def __init__(self, models: Mapping[str, LocalModelConfig], engines: LocalEngines) -> None:
        # No HTTP pool: the base class's client is never built.
        self.name = LOCAL_PROVIDER
        self.config = ProviderConfig(kind="openai", base_url=f"serve://{LOCAL_PROVIDER}")
        self.preset = self.config.resolved_preset.model_copy(
            update={"requires_key": False, "auth": "none", "unsupported_params": UNSUPPORTED_PARAMS}
        )
        self.timeouts = self.config.timeouts
        self._models = dict(models)
        self._engines = engines

    async def aclose(self) -> None:
        await self._engines.aclose()

    async def not_ready(self) -> list[str]:
        """The models that should have a running replica and have none yet (one that scales
        to zero is ready with none: its first request wakes it)."""
        running = await self._engines.running()
        return [
            f"local model {name!r}: no running replica yet"
            for name, config in self._models.items()
            if config.always_running and running.get(name, 1) == 0
        ]

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        model = self._model(request.model, request.set_params())
        return await self._whole(self._engines.chat(request), model, request.model)

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        model = self._model(request.model, request.set_params())
        return self._timed(self._engines.chat_stream(request), model, request.model)

    async def completion(self, request: CompletionRequest) -> Completion:
        model = self._model(request.model, request.set_params())
        return await self._whole(self._engines.completion(request), model, request.model)

    def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        model = self._model(request.model, request.set_params())
        return self._timed(self._engines.completion_stream(request), model, request.model)

    def _model(self, name: str, params: set[str]) -> LocalModelConfig:
        model = self._models.get(name)
        if model is None:
            raise UpstreamRejected(f"no local model {name!r} is configured")
        self.check_params(params)
        return model

    async def _whole(self, call: Awaitable[_T], model: LocalModelConfig, name: str) -> _T:
        try:
            async with asyncio.timeout(model.total_timeout):
                return await call
        except TimeoutError:
            raise UpstreamTimeout(
                f"local model {name!r} did not answer within {model.total_timeout:g}s"
            ) from None

    async def _timed(
        self, stream: AsyncIterator[_T], model: LocalModelConfig, name: str
    ) -> AsyncIterator[_T]:
        """The stream, within the first-token deadline (queueing and a replica's start
        included) and the total one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + model.total_timeout
        wait, what = model.first_token_timeout, "sent no token"
        try:
            while True:
                try:
                    async with asyncio.timeout(min(wait, max(deadline - loop.time(), 0))):
                        item = await anext(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise UpstreamTimeout(f"local model {name!r} {what} within {wait:g}s") from None
                yield item
                wait, what = model.total_timeout, "did not finish"
        finally:
            await stream.aclose()  # type: ignore[attr-defined]
