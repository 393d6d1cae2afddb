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
    aws_credentials: dict[str, str] = Field(default_factory=dict)
    """Access key id -> secret key. When set, Bedrock requests must carry a SigV4 signature
    by one of them (or `api_key` as a Bedrock API key); when empty, any request is served."""
    gcp_service_accounts: dict[str, str] = Field(default_factory=dict)
    """Service-account email -> PEM public key. When set, `/token` issues OAuth tokens only
    for JWT assertions these keys signed, and Vertex AI routes need such a token."""
    azure_clients: dict[str, str] = Field(default_factory=dict)
    """Entra ID client id -> secret. When set, `/{tenant}/oauth2/v2.0/token` issues tokens to
    these clients, and Azure OpenAI routes take such a token as well as `api_key`."""
    oauth_token_ttl_s: int = Field(default=3600, ge=1)
    """Lifetime of the OAuth tokens the simulator issues (its `expires_in`)."""
    content_filter_terms: list[str] = Field(default_factory=list)
    """Prompts containing one of these (case-insensitive) trip Azure's content filter (a 400
    `content_filter`) and Bedrock's (`stopReason: content_filtered`)."""
