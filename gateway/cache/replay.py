"""What the cache would have done on real traffic, and how often it would have been wrong.

`replay` runs recorded requests, in order, through the same code the request path runs
(`request.chat_request` / `completion_request` / `embedding_request`, then `CacheService`:
lookup, observe, insert), in-process, with no upstream call: where the gateway would have
called upstream (a miss, or an exploration), the record's own answer stands in for the fresh
one. Time is the records' own (`ts`), so TTLs and windows behave as they did. It reports hits
per phase, tokens and dollars saved (list prices, `gateway/accounting/pricing.py`), what the
learned phase spent on explorations, and writes a sample of hits per similarity band for a
person to label ("label": "right" or "wrong").

`estimate` reads the labelled sample back and estimates the false-hit rate over all lookups:
each band's share of wrong hits (labelled) weighted by that band's hits in the replay, with a
95 % interval (normal approximation over strata, Agresti-Coull-adjusted per band; a band with
hits but no labels counts as all right at the low end and all wrong at the high end).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.accounting.pricing import PriceTable
from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import TextEmbedder
from gateway.cache.equivalence import answer_text
from gateway.cache.lookup import CacheResult
from gateway.cache.replay_input import ReplayRecord
from gateway.cache.request import (
    CacheRequest,
    chat_request,
    completion_request,
    embedding_request,
)
from gateway.cache.service import CacheService

BANDS: tuple[tuple[str, float], ...] = (
    ("0.95-1.00", 0.95),
    ("0.90-0.95", 0.90),
    ("0.85-0.90", 0.85),
    ("0.80-0.85", 0.80),
    ("below 0.80", -1.0),
)
_WRONG = frozenset({"wrong", "false", "no", "0"})
_RIGHT = frozenset({"right", "true", "yes", "1"})


def band_of(phase: str, similarity: float) -> str | None:
    """The labelling band of a hit: keyed hits are exact by construction, except the
    normalised phase, which gets its own band."""
    if phase == "exact":
        return None
    if phase == "normalized":
        return "normalized"
    return next(name for name, low in BANDS if similarity >= low)


@dataclass
class _Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Replay:
    """The running totals of one replay."""

    lookups: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    not_cacheable: int = 0
    tokens_saved: list[int] = field(default_factory=lambda: [0, 0])
    usd_saved: float = 0.0
    unpriced_hits: int = 0
    tokens_estimated: int = 0
    exploration_tokens: Counter[str] = field(default_factory=Counter)
    exploration_usd: float = 0.0
    band_hits: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


async def replay(
    records: Iterable[ReplayRecord],
    config: CacheConfig,
    embedder: TextEmbedder,
    *,
    prices: PriceTable,
    price_as: str | None = None,
    per_band: int = 25,
    seed: int = 7,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Replay `records`; return the report and the sample of hits to label."""
    clock = _Clock()
    rng = random.Random(seed)

    async def embed(texts: list[str]) -> Any:
        return await asyncio.to_thread(embedder.embed, texts)

    service = CacheService(SemanticCache(embedder, config, clock=clock, rng=rng), embed)
    totals = Replay()
    for record in records:
        clock.now = record.at if record.at is not None else clock.now + 1.0
        request = _request(record, config)
        if not request.cacheable:
            totals.not_cacheable += 1
            continue
        totals.lookups += 1
        result = await service.lookup(request.query())
        prompt_tokens, completion_tokens = _tokens(record, totals)
        model = price_as or record.model
        if result.hit is not None:
            _count_hit(
                totals, result, prompt_tokens, prices.cost(model, *_saved(result, prompt_tokens))
            )
            _sample(totals, record, request, result, per_band, rng)
            continue
        totals.phases["miss"] += 1
        if record.answer is None:
            # Nothing to store or to learn from: the next identical request misses again.
            continue
        if result.explore is not None:
            kind = "shadow" if result.explore.shadow else "observed"
            totals.phases[f"explored ({kind})"] += 1
            spent = prompt_tokens + completion_tokens
            await service.observe(result.explore, record.answer, tokens=spent)
            totals.exploration_tokens[kind] += spent
            if result.explore.shadow:
                totals.exploration_usd += (
                    prices.cost(model, prompt_tokens, completion_tokens) or 0.0
                )
        stored = json.dumps(
            {
                "content": record.answer,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
            }
        )
        await service.insert(request.entry(stored))
    return _report(totals, await service.stats(), per_band), _flatten(totals)


def _request(record: ReplayRecord, config: CacheConfig) -> CacheRequest:
    if record.route == "completions":
        return completion_request(
            record.model,
            record.prompt or "",
            record.params,
            config,
            user=record.user,
            groups=record.groups,
        )
    if record.route == "embeddings":
        return embedding_request(
            record.model,
            record.prompt or "",
            record.params,
            config,
            user=record.user,
            groups=record.groups,
        )
    return chat_request(
        record.model,
        list(record.messages),
        record.params,
        config,
        user=record.user,
        groups=record.groups,
    )


def _tokens(record: ReplayRecord, totals: Replay) -> tuple[int, int]:
    """The record's token counts; where unknown, 4 characters a token (counted as estimated)."""
    if record.prompt_tokens is not None and record.completion_tokens is not None:
        return record.prompt_tokens, record.completion_tokens
    totals.tokens_estimated += 1
    sent = record.prompt or "".join(str(m.get("content") or "") for m in record.messages)
    prompt = record.prompt_tokens if record.prompt_tokens is not None else math.ceil(len(sent) / 4)
    answer = record.answer or ""
    completion = (
        record.completion_tokens
        if record.completion_tokens is not None
        else math.ceil(len(answer) / 4)
    )
    return prompt, completion


def _saved(result: CacheResult, prompt_tokens: int) -> tuple[int, int]:
    """What a hit avoided: this request's prompt and the stored answer's completion."""
    assert result.hit is not None
    try:
        stored = json.loads(result.hit.response)
        completion = int(stored.get("completion_tokens") or 0)
    except (ValueError, AttributeError):
        completion = math.ceil(len(result.hit.response) / 4)
    return prompt_tokens, completion


def _count_hit(totals: Replay, result: CacheResult, prompt_tokens: int, cost: float | None) -> None:
    assert result.hit is not None
    totals.phases[result.hit.phase] += 1
    saved = _saved(result, prompt_tokens)
    totals.tokens_saved[0] += saved[0]
    totals.tokens_saved[1] += saved[1]
    if cost is None:
        totals.unpriced_hits += 1
    else:
        totals.usd_saved += cost


def _sample(
    totals: Replay,
    record: ReplayRecord,
    request: CacheRequest,
    result: CacheResult,
    per_band: int,
    rng: random.Random,
) -> None:
    """Reservoir-sample the hit into its band (uniform over the band's hits)."""
    assert result.hit is not None
    band = band_of(result.hit.phase, result.hit.similarity)
    if band is None:
        return
    totals.band_hits[band] += 1
    seen = totals.band_hits[band]
    kept = totals.samples.setdefault(band, [])
    item = {
        "band": band,
        "phase": result.hit.phase,
        "similarity": round(result.hit.similarity, 4),
        "request": request.text,
        "context": request.context,
        "cached_request": result.hit.cached_text,
        "cached_answer": answer_text(result.hit.response),
        "own_answer": record.answer,
        "label": None,
    }
    if len(kept) < per_band:
        kept.append(item)
    else:
        slot = rng.randrange(seen)
        if slot < per_band:
            kept[slot] = item


def _flatten(totals: Replay) -> list[dict[str, Any]]:
    return [
        {**item, "band_hits": totals.band_hits[band], "lookups": totals.lookups}
        for band, items in totals.samples.items()
        for item in items
    ]


def _report(totals: Replay, stats: dict[str, Any], per_band: int) -> dict[str, Any]:
    hits = sum(totals.phases[p] for p in ("exact", "normalized", "semantic"))
    lookups = max(1, totals.lookups)
    return {
        "lookups": totals.lookups,
        "not_cacheable": totals.not_cacheable,
        "hit_rate": round(hits / lookups, 4),
        "hit_rate_by_phase": {
            p: round(totals.phases[p] / lookups, 4) for p in ("exact", "normalized", "semantic")
        },
        "outcomes": dict(totals.phases),
        "learned_hits": stats.get("learned_hits", 0),
        "tokens_saved": {"prompt": totals.tokens_saved[0], "completion": totals.tokens_saved[1]},
        "usd_saved": round(totals.usd_saved, 6),
        "hits_without_a_price": totals.unpriced_hits,
        "records_with_estimated_tokens": totals.tokens_estimated,
        "exploration": {
            "tokens": dict(totals.exploration_tokens),
            "shadow_usd": round(totals.exploration_usd, 6),
        },
        "hits_to_label": {band: totals.band_hits[band] for band in sorted(totals.band_hits)},
        "sampled_per_band": per_band,
    }


def estimate(labelled: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The false-hit rate over all lookups, from a labelled sample (see the module docs)."""
    bands: dict[str, dict[str, int]] = {}
    lookups = 0
    for item in labelled:
        band = str(item["band"])
        entry = bands.setdefault(band, {"hits": int(item["band_hits"]), "labelled": 0, "wrong": 0})
        lookups = max(lookups, int(item["lookups"]))
        label = item.get("label")
        if label is None or str(label).strip() == "":
            continue
        value = str(label).strip().lower()
        if value not in _WRONG | _RIGHT:
            raise ValueError(f"label {label!r}: use right or wrong")
        entry["labelled"] += 1
        entry["wrong"] += value in _WRONG
    if not lookups:
        raise ValueError("no sampled hits to estimate from")
    point = variance = unknown = 0.0
    per_band: dict[str, Any] = {}
    for band, b in sorted(bands.items()):
        weight = b["hits"] / lookups
        if not b["labelled"]:
            unknown += weight
            per_band[band] = {"hits": b["hits"], "labelled": 0}
            continue
        share = b["wrong"] / b["labelled"]
        adjusted = (b["wrong"] + 2) / (b["labelled"] + 4)
        finite = (b["hits"] - b["labelled"]) / (b["hits"] - 1) if b["hits"] > 1 else 0.0
        point += weight * share
        variance += weight**2 * adjusted * (1 - adjusted) / (b["labelled"] + 4) * finite
        per_band[band] = {
            "hits": b["hits"],
            "labelled": b["labelled"],
            "wrong": b["wrong"],
            "wrong_share": round(share, 4),
        }
    margin = 1.96 * math.sqrt(variance)
    return {
        "lookups": lookups,
        "false_hit_rate": round(point, 5),
        "ci95": [round(max(0.0, point - margin), 5), round(min(1.0, point + margin + unknown), 5)],
        "unlabelled_share_of_lookups": round(unknown, 5),
        "bands": per_band,
    }


def write_samples(path: Path, samples: list[dict[str, Any]]) -> None:
    """The sample as JSON lines, one hit each, "label" left for a person to fill."""
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


def read_samples(path: Path) -> list[dict[str, Any]]:
    """A labelled sample file back."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
