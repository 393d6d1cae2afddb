"""The Serve deployment of one local model: replicas that each hold a `VllmEngine`.

`local_model_app(name, config)` is what `deployments/app.py` binds for each entry of the
config's `local_models`; the router reaches the replicas through a DeploymentHandle
(`deployments.engines.ServeEngines`). Sizing comes from the model's config: CPUs, GPUs (a
fraction shares one), accelerator type, fixed replicas or autoscaling (scale to zero
included), and how many requests a replica batches and queues before the router falls over.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, cast

from ray import serve
from ray.serve import Application, Deployment

from gateway.observability.metrics import instruments, serve_metric
from gateway.protocol.openai import ChatCompletionRequest, CompletionRequest
from gateway.providers.local import (
    LocalChatCompletion,
    LocalChatCompletionChunk,
    LocalCompletion,
)
from gateway.providers.local_config import LocalModelConfig
from local_models.engine import VllmEngine


@serve.deployment(name="LocalModel", health_check_period_s=10, health_check_timeout_s=30)
class LocalModelDeployment:
    """One replica of a local model: a vLLM engine behind OpenAI-shaped methods. It reports
    how many requests its engine holds (running and queued) and how many it took."""

    def __init__(self, name: str, config: LocalModelConfig) -> None:
        replica = serve.get_replica_context().replica_id.unique_id
        self._engine = VllmEngine(name, config, replica=replica)
        self._tags = {"model": name}
        metrics = instruments(
            serve_metric, ["raygate_local_model_in_flight", "raygate_local_model_requests"]
        )
        self._in_flight_gauge = metrics["raygate_local_model_in_flight"]
        self._requests = metrics["raygate_local_model_requests"]
        self._in_flight = 0
        self._in_flight_gauge.set(0, tags=self._tags)

    @contextmanager
    def _held(self) -> Iterator[None]:
        self._requests.inc(tags=self._tags)
        self._in_flight += 1
        self._in_flight_gauge.set(self._in_flight, tags=self._tags)
        try:
            yield
        finally:
            self._in_flight -= 1
            self._in_flight_gauge.set(self._in_flight, tags=self._tags)

    async def chat(self, request: ChatCompletionRequest) -> LocalChatCompletion:
        with self._held():
            return await self._engine.chat(request)

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[LocalChatCompletionChunk]:
        with self._held():
            async for chunk in self._engine.chat_stream(request):
                yield chunk

    async def completion(self, request: CompletionRequest) -> LocalCompletion:
        with self._held():
            return await self._engine.completion(request)

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[LocalCompletion]:
        with self._held():
            async for chunk in self._engine.completion_stream(request):
                yield chunk

    async def check_health(self) -> None:
        """Serve's periodic check: a dead engine fails it, and Serve replaces the replica."""
        await self._engine.check_health()

    def __del__(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.shutdown()


def deployment_name(name: str) -> str:
    """The Serve deployment name of a local model (`LocalModel:<name>`, made safe)."""
    return "LocalModel:" + re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def deployment_options(name: str, config: LocalModelConfig) -> dict[str, Any]:
    """Keyword arguments for `Deployment.options` from a local model's config."""
    actor: dict[str, Any] = {"num_cpus": config.cpus}
    if config.device == "gpu":
        actor["num_gpus"] = config.gpus * config.tensor_parallel_size
        if config.accelerator_type:
            actor["accelerator_type"] = config.accelerator_type
    options: dict[str, Any] = {
        "name": deployment_name(name),
        "ray_actor_options": actor,
        "max_ongoing_requests": config.max_ongoing_requests,
        "max_queued_requests": config.max_queued_requests,
    }
    if config.autoscaling is not None:
        options["autoscaling_config"] = config.autoscaling.serve_config()
    else:
        options["num_replicas"] = config.replicas
    return options


def local_model_app(name: str, config: LocalModelConfig) -> Application:
    """The bound deployment of one local model, for `build_app`."""
    deployment = cast(Deployment, LocalModelDeployment).options(**deployment_options(name, config))
    return deployment.bind(name, config)
