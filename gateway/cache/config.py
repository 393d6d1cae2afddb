"""The `cache` section of the gateway's configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.section import ConfigSection

Isolation = Literal["global", "organisation", "group", "user"]


class CacheRoute(ConfigSection):
    """Per-model-alias overrides of the cache's behaviour."""

    enabled: bool | None = Field(None, description="cache this alias at all (default: cache's)")
    similarity_threshold: float | None = Field(
        None, ge=-1.0, le=1.0, description="the semantic threshold for this alias"
    )
    semantic: bool = Field(True, description="False: only exact and normalised phases")
    max_error_rate: float | None = Field(
        None, ge=0, le=0.5, description="this alias's false-hit bound (default: cache's)"
    )
    exploration_rate: float | None = Field(
        None, ge=0, le=1, description="this alias's share of would-be hits shadowed"
    )


class PrecacheConfig(ConfigSection):
    """Predictive pre-caching: answer the follow-ups that usually come next, in the background."""

    enabled: bool = Field(False, description="suggest follow-ups worth pre-answering")
    min_support: int = Field(
        2, ge=1, description="stored conversations that asked a follow-up before it counts"
    )
    min_share: float = Field(
        0.2, gt=0, le=1, description="share of the follow-ups seen after a question it must have"
    )
    max_follow_ups: int = Field(2, ge=0, description="follow-ups suggested per answer at most")
    budget_per_hour: int = Field(
        120, ge=0, description="follow-ups suggested per hour per cache replica at most"
    )
    # Generous on purpose: it only decides what is worth generating (a fresh answer for this
    # very exchange, stored like any other), never what is served.
    context_similarity: float = Field(
        0.8, ge=-1, le=1, description="how close an earlier exchange must be to count as this one"
    )


class JudgeConfig(ConfigSection):
    """A model asked whether a candidate's stored answer and its fresh answer say the same
    (the learned phase's checks), before the rules decide; off by default."""

    model: str | None = Field(
        None, description="the alias asked a constrained yes/no (a local model, say); unset: off"
    )
    max_answer_chars: int = Field(
        4000, ge=100, description="characters of each answer shown to the judge"
    )
    timeout_s: float = Field(
        30.0, gt=0, description="a verdict slower than this is no verdict (the rules decide)"
    )


class CacheConfig(ConfigSection):
    """How the exact, normalised and semantic cache phases behave."""

    enabled: bool = Field(True, description="answer repeated and paraphrased requests from cache")
    isolation: Isolation = Field(
        "organisation", description="who may share an entry: global, organisation, group or user"
    )
    # benchmarks/cache_quality.py (dev / test splits): 0.95 is the highest true-hit rate whose
    # false-hit rate stays <= 1 % on both (19 % true hits, 0.9 % false); 0.90 gives 39 % true
    # hits at 2.5 % false. Lower it per alias where a wrong answer is cheap.
    similarity_threshold: float = Field(
        0.95, ge=-1.0, le=1.0, description="lowest cosine similarity a semantic hit may have"
    )
    verify: bool = Field(
        True, description="reject semantic hits whose numbers, dates, names or polarity differ"
    )
    # The learned phase (gateway/cache/learning.py). None keeps the static threshold alone.
    max_error_rate: float | None = Field(
        0.01,
        ge=0,
        le=0.5,
        description="target share of lookups answered wrongly; None: static threshold only",
    )
    exploration_rate: float = Field(
        0.05, ge=0, le=1, description="share of would-be semantic hits answered fresh and compared"
    )
    exploration_budget_per_hour: int = Field(
        600, ge=0, description="shadow calls (fresh answers instead of hits) per hour per replica"
    )
    learn_min_similarity: float = Field(
        0.7, ge=-1, le=1, description="candidates below this are plain misses, never observed"
    )
    learning_window_s: float = Field(
        7 * 86400.0, gt=0, description="how long an observation counts towards its alias's rates"
    )
    max_hit_risk: float = Field(
        0.5,
        gt=0,
        le=1,
        description="answers served have a lower estimated chance of being wrong than this",
    )
    answer_similarity: float = Field(
        0.85, ge=-1, le=1, description="answer-embedding cosine from which two answers agree"
    )
    top_k: int = Field(5, ge=1, description="semantic candidates examined per lookup, best first")
    ttl_s: float = Field(86400.0, gt=0, description="seconds an entry stays servable")
    max_entries: int = Field(100_000, ge=1, description="entries kept; least recently used go")
    semantic_max_temperature: float = Field(
        1.0, ge=0, description="requests sampled hotter than this skip the semantic phase"
    )
    semantic_for_tools: bool = Field(
        False, description="let requests with tools or tool results use the semantic phase"
    )
    cache_tool_results: bool = Field(
        False,
        description="let requests that carry tool results (role tool or function) be answered"
        " from the cache and stored; off: they always reach the model",
    )
    semantic_for_multiple_choices: bool = Field(
        False, description="let requests with n > 1 use the semantic phase"
    )
    # Measured by benchmarks/cache_latency.py on 2 shared cores, 384-d MiniLM vectors of QQP:
    # flat search p50 1.2 ms at 10k entries, 4.0 ms at 20k, 10-29 ms at 50k; HNSW (M=32, ef=64)
    # 0.25-0.3 ms, recall@1 0.994-0.998 and 1.000 for neighbours at cosine >= 0.8.
    approximate_after: int = Field(
        10_000, ge=1, description="entries in one scope past which HNSW replaces the flat index"
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_search: int = Field(64, ge=1, description="HNSW candidate list length at query time")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW candidate list length at build")
    embed_batch_size: int = Field(64, ge=1, description="texts per embedding batch")
    cuda_graphs: bool = Field(
        True, description="on a GPU, replay CUDA graphs for batches of up to 8 texts (docs/gpu.md)"
    )
    onnx: bool = Field(
        True, description="on a CPU, run the embedder in ONNX Runtime (exported at start)"
    )
    routes: dict[str, CacheRoute] = Field(
        default_factory=dict, description="per model alias: enabled, threshold, semantic"
    )
    organisation: str = Field(
        "default", description="the partition for isolation 'organisation' (one per deployment)"
    )
    sync_interval_s: float = Field(
        0.2, gt=0, description="how often a cache replica applies other replicas' entries"
    )
    lookup_timeout_s: float = Field(
        2.0, gt=0, description="a lookup slower than this is served as a miss (logged)"
    )
    max_batch_size: int = Field(
        32, ge=1, description="requests the embedder deployment batches into one forward pass"
    )
    # A batch starts as soon as the embedder is free, with every text queued by then
    # (gateway.cache.batching): under load batches fill while the one before runs, so a wait
    # only delays a lone lookup.
    batch_wait_timeout_s: float = Field(
        0.0, ge=0, description="extra wait for more texts before a batch that is not full"
    )
    near_entries: int = Field(
        1000,
        ge=0,
        description="exact hits each ingress replica keeps and answers itself, with no hop "
        "to a cache replica (0: off; docs/cache.md)",
    )
    coalesce: bool = Field(
        True,
        description="identical requests in flight on one ingress replica share one upstream "
        "call (streamed requests wait for one, but never lead)",
    )
    coalesce_wait_s: float = Field(
        60.0, gt=0, description="how long a request waits for an identical one's answer"
    )
    precache: PrecacheConfig = Field(
        default_factory=PrecacheConfig, description="suggest likely follow-ups to pre-answer"
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig, description="a model deciding the learned phase's checks"
    )
    replay_chunk_chars: int = Field(
        24, ge=1, description="characters per SSE chunk when a hit is replayed as a stream"
    )

    def in_use(self) -> bool:
        """Whether any alias uses the cache (and so the embedder deployment runs)."""
        return self.enabled or any(r.enabled for r in self.routes.values())

    def route(self, alias: str) -> CacheRoute:
        """The alias's overrides (all defaults when it has none)."""
        return self.routes.get(alias) or CacheRoute()

    def enabled_for(self, alias: str) -> bool:
        """Whether requests for `alias` use the cache."""
        override = self.route(alias).enabled
        return self.enabled if override is None else override

    def threshold_for(self, alias: str) -> float:
        """The semantic similarity threshold for `alias`."""
        override = self.route(alias).similarity_threshold
        return self.similarity_threshold if override is None else override

    def max_error_rate_for(self, alias: str) -> float | None:
        """The false-hit bound for `alias` (None: the learned phase is off for it)."""
        override = self.route(alias).max_error_rate
        return self.max_error_rate if override is None else override

    def exploration_rate_for(self, alias: str) -> float:
        """The share of `alias`'s would-be semantic hits that are shadowed instead."""
        override = self.route(alias).exploration_rate
        return self.exploration_rate if override is None else override
