"""Settings of the upstream simulator."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from gateway.simulator.faults import Fault

DEFAULT_MODELS: tuple[str, ...] = (
    "sim-small",
    "sim-large",
    "gpt-4o-mini",
    "claude-3-5-haiku-latest",
    "gemini-2.0-flash",
)


class SimulatorSettings(BaseModel):
    """How the simulator listens, paces its answers and checks credentials.

    Latency is drawn per request from a normal distribution with mean `latency_ms` and
    standard deviation `latency_jitter_ms`, truncated at 0, using an RNG seeded with `seed`
    (unseeded when `seed` is None). Every model name in a request is accepted; `models`
    only decides what `/v1/models` lists.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    latency_ms: float = Field(default=0.0, ge=0.0)
    latency_jitter_ms: float = Field(default=0.0, ge=0.0)
    tokens_per_s: float = Field(default=0.0, ge=0.0)
    answer_words: int = Field(default=24, ge=0)
    seed: int | None = None
    api_key: str | None = None
    models: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    embedding_dim: int = Field(default=64, ge=1, le=65536)
    answer_book: Path | None = None
    """A JSON file of fixed answers per conversation (see `answer_book.AnswerBook`)."""
    faults: list[Fault] = Field(default_factory=list)
    """Faults queued when the app is created (more can be added through `/_sim/faults`)."""
