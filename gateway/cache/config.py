"""The `cache` section of the gateway's configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Isolation = Literal["global", "organisation", "group", "user"]


class CacheConfig(BaseModel):
    """How the exact, normalised and semantic cache phases behave."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="answer repeated and paraphrased requests from cache")
    isolation: Isolation = Field(
        "organisation", description="who may share an entry: global, organisation, group or user"
    )
    similarity_threshold: float = Field(
        0.90, ge=-1.0, le=1.0, description="lowest cosine similarity a semantic hit may have"
    )
    verify: bool = Field(
        True, description="reject semantic hits whose numbers, dates, names or polarity differ"
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
    semantic_for_multiple_choices: bool = Field(
        False, description="let requests with n > 1 use the semantic phase"
    )
    # Measured by benchmarks/cache_quality.py on 2 shared cores, 384-d MiniLM vectors of QQP:
    # flat search p50 1.2 ms at 10k entries, 4.0 ms at 20k, 10-29 ms at 50k; HNSW (M=32, ef=64)
    # 0.25-0.3 ms, recall@1 0.994-0.998 and 1.000 for neighbours at cosine >= 0.8.
    approximate_after: int = Field(
        10_000, ge=1, description="entries in one scope past which HNSW replaces the flat index"
    )
    hnsw_m: int = Field(32, ge=4, description="HNSW graph degree")
    hnsw_ef_search: int = Field(64, ge=1, description="HNSW candidate list length at query time")
    hnsw_ef_construction: int = Field(80, ge=1, description="HNSW candidate list length at build")
    embed_batch_size: int = Field(64, ge=1, description="texts per embedding batch")
