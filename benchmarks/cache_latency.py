"""Semantic cache latency: embedder throughput, FAISS search at 10k-1M entries, cache hits.

Three parts, each optional (`--parts`):

- embed: MiniLM (raygate's `Embedder`) sentences/s at batch sizes 1-256 on this machine, over
  distinct QQP questions; each call embeds exactly one batch, as a request batch would
  (`benchmarks/cache_lookup.py` measures the same on a GPU, with a replica's lookups).
- index: single-query search (k=5, raygate's top_k) p50/p99, recall@1 against exact search
  and build time, for the flat index raygate starts with, the HNSW index it switches to past
  `CacheConfig.approximate_after` (M=32, efConstruction=80, efSearch 32/64/128) and IVF-Flat
  (nlist = 2 sqrt(N), nprobe 8-64; from 10k entries). Inner product on normalised 384-d vectors.
  Vectors: real MiniLM embeddings of distinct QQP questions (`--real`, 20k by default) fill
  the index first; the queries are the `similar` side of QQP pairs whose `origin` is in the
  index (a cache hit's shape) plus as many questions that are not (a miss's). Past the real
  vectors the index is filled with SYNTHETIC vectors: normalise(l * a + (1 - l) * b + noise)
  of two random real vectors a, b (l uniform in [0, 1], noise N(0, 0.15^2) per dimension).
  That noise (norm ~2.9) outweighs the mix, so the fill is close to random unit vectors with
  the embedding's mean direction kept: the queries' mean top-1 cosine is 0.26 against the fill
  and 0.77 against real vectors (both in the JSON). Such a fill rarely crowds a query's true
  neighbour, so recall past 20k entries is an upper bound of what real traffic would see.
  An HNSW build is added in chunks and stops once it passes `--build-cap-s`; that size is then
  reported as not built, with the rate reached.
- gateway: p50/p99 of cache hits (exact and semantic) through a running gateway against a bare
  Serve route, interleaved in one run, over HTTP (`--gateway-url`, `--bare-url`), or on a
  gateway started here the way benchmarks/overhead.py starts one (`--start-gateway`). Every
  response's `x-raygate-cache` header is counted; latencies are grouped by it. Paraphrases are
  sent with `no-store`, so that each is a semantic lookup (a served paraphrase is otherwise
  stored under its own key, and its repeats are exact hits). Then paraphrases (and the bare
  route) go in bursts of eight at once: the cache replica embeds what queues up in one batch.

Parts run separately share one file: a part this run did not measure is kept from the file,
and `runs` holds the metadata (time, commit, machine, load, parameters) of the run that did.

    .venv/bin/python -m benchmarks.cache_latency [--parts embed index]
        [--sizes 1000 2000 5000 10000 20000 50000 100000 1000000] [--real 20000]
        [--build-cap-s 600] [--embedding-cache /tmp/raygate-qqp-vectors.npz] [--out PATH]
    .venv/bin/python -m benchmarks.cache_latency --parts gateway --start-gateway
    .venv/bin/python -m benchmarks.cache_latency --parts gateway \
        --gateway-url http://127.0.0.1:8000 --bare-url http://127.0.0.1:8000/bare --api-key K
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple, cast

import faiss
import numpy as np

from benchmarks.cache_lookup import measure_embedder
from benchmarks.paraphrase_sets import DEFAULT_DATA
from benchmarks.report import RESULTS, ROOT, Report, percentile
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import Embedder

PARTS = ("embedder", "index", "gateway")
# What `runs` keeps of the run that measured a part: the report's metadata and `software`.
RUN_KEYS = ("timestamp", "finished", "commit", "machine", "load_average", "parameters", "software")
SIZES = (1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 1_000_000)
TOP_K = 5
HNSW_EF_SEARCH = (32, 64, 128)
IVF_NPROBE = (8, 16, 32, 64)
FILL_NOISE = 0.15
NEAR = 0.80  # the lowest cosine at which a cache could hit: recall that matters


def _ms(seconds: list[float], q: float) -> float | None:
    """The `q`-th percentile of `seconds`, in milliseconds."""
    return _rounded(percentile([s * 1000 for s in seconds], q), 3)


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def qqp_texts(data: Path, seed: int) -> tuple[list[tuple[str, str]], list[str]]:
    """(origin, similar) pairs and the other distinct QQP questions, in a seeded order."""
    rng = random.Random(seed)
    pairs = [
        (p["origin"], p["similar"])
        for p in json.loads((data / "gptcache_similar_qqp.json").read_text())
        if p["origin"] != p["similar"]
    ]
    rng.shuffle(pairs)
    with gzip.open(data / "gptcache_qqp_full.json.gz", "rt") as f:
        rows = json.load(f)
    others = list(dict.fromkeys(t for r in rows for t in (r["text_a"], r["text_b"])))
    rng.shuffle(others)
    return pairs, others


# ---------------------------------------------------------------------------------- index


def real_vectors(
    embedder: Embedder, data: Path, seed: int, real: int, queries: int, cache: Path | None
) -> tuple[np.ndarray, np.ndarray, int]:
    """(base, queries, hit_queries): `real` base rows (pair origins first), query rows.

    The first `queries // 2` queries are paraphrases of base rows; the rest are questions
    that are not in the base.
    """
    pairs, others = qqp_texts(data, seed)
    hits = pairs[: queries // 2]
    taken = {t for pair in hits for t in pair}
    rest = [t for t in others if t not in taken]
    misses = rest[: queries - len(hits)]
    base_texts = [o for o, _ in hits] + rest[len(misses) : len(misses) + real - len(hits)]
    query_texts = [s for _, s in hits] + misses
    texts = base_texts + query_texts
    key = f"{seed}:{real}:{queries}:{len(texts)}"
    if cache is not None and cache.exists():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            vectors = stored["vectors"]
            return vectors[: len(base_texts)], vectors[len(base_texts) :], len(hits)
    started = time.perf_counter()
    vectors = embedder.embed(texts)
    print(f"  embedded {len(texts)} texts in {time.perf_counter() - started:.0f} s", flush=True)
    if cache is not None:
        np.savez(cache, key=np.array(key), vectors=vectors)
    return vectors[: len(base_texts)], vectors[len(base_texts) :], len(hits)


def synthetic_fill(real: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` unit vectors mixed from pairs of real ones plus Gaussian noise (see docstring)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, real.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        a = real[rng.integers(0, len(real), n)]
        b = real[rng.integers(0, len(real), n)]
        mix = rng.random((n, 1), dtype=np.float32)
        v = mix * a + (1 - mix) * b
        v += rng.normal(0, FILL_NOISE, v.shape).astype(np.float32)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start : start + n] = v
    return out


def _timed_search(index: Any, queries: np.ndarray, timed: int) -> dict[str, float | None]:
    times = []
    for q in queries[:timed]:
        started = time.perf_counter()
        index.search(q[None, :], TOP_K)
        times.append(time.perf_counter() - started)
    return {"p50_ms": _ms(times, 50), "p99_ms": _ms(times, 99)}


def _recall(
    index: Any, queries: np.ndarray, truth_ids: np.ndarray, truth_scores: np.ndarray
) -> dict[str, float | None]:
    scores, ids = index.search(queries, 1)
    # A different row at the same score (duplicate vectors) is as good an answer.
    same = (ids[:, 0] == truth_ids) | (np.abs(scores[:, 0] - truth_scores) < 1e-6)
    near = truth_scores >= NEAR
    return {
        "recall_at_1": round(float(same.mean()), 4),
        "recall_at_1_near": round(float(same[near].mean()), 4) if near.any() else None,
        "near_queries": int(near.sum()),
    }


def _add_capped(index: Any, base: np.ndarray, cap_s: float) -> tuple[float, int]:
    """Add `base` in chunks; stop once `cap_s` has passed. Returns (seconds, rows added)."""
    started = time.perf_counter()
    chunk = 50_000
    for i in range(0, len(base), chunk):
        index.add(base[i : i + chunk])
        if time.perf_counter() - started > cap_s and i + chunk < len(base):
            return time.perf_counter() - started, i + chunk
    return time.perf_counter() - started, len(base)


def measure_size(
    base: np.ndarray, queries: np.ndarray, *, timed: int, cap_s: float, ivf: bool
) -> list[dict[str, Any]]:
    """Flat, HNSW and IVF at one size: build time, search p50/p99, recall@1 vs flat."""
    size, dim = base.shape
    config = CacheConfig()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    flat = faiss.IndexFlatIP(dim)
    flat.add(base)
    flat_build = time.perf_counter() - started
    truth_scores, truth_ids = flat.search(queries, 1)
    truth_scores, truth_ids = truth_scores[:, 0], truth_ids[:, 0]
    rows.append(
        {
            "index": "flat",
            "build_s": round(flat_build, 2),
            "recall_at_1": 1.0,
            "recall_at_1_near": 1.0,
            **_timed_search(flat, queries, timed),
        }
    )
    del flat
    gc.collect()

    hnsw = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = config.hnsw_ef_construction
    build_s, added = _add_capped(hnsw, base, cap_s)
    name = f"hnsw M={config.hnsw_m} efC={config.hnsw_ef_construction}"
    if added < size:
        rows.append(
            {
                "index": name,
                "build_s": round(build_s, 1),
                "not_built": f"stopped at the {cap_s:.0f} s cap after {added} of {size} rows "
                f"({added / build_s:.0f} rows/s)",
            }
        )
    else:
        for ef in HNSW_EF_SEARCH:
            hnsw.hnsw.efSearch = ef
            rows.append(
                {
                    "index": f"{name} efSearch={ef}",
                    "build_s": round(build_s, 2),
                    **_recall(hnsw, queries, truth_ids, truth_scores),
                    **_timed_search(hnsw, queries, timed),
                }
            )
    del hnsw
    gc.collect()

    if ivf and size >= 10_000:  # below that an inverted list of ~50 rows buys nothing
        nlist = int(2 * np.sqrt(size))
        started = time.perf_counter()
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantiser, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = base[np.random.default_rng(0).permutation(size)[: min(size, 50 * nlist)]]
        index.train(sample)
        index.add(base)
        build_s = time.perf_counter() - started
        for nprobe in IVF_NPROBE:
            index.nprobe = nprobe
            rows.append(
                {
                    "index": f"ivf nlist={nlist} nprobe={nprobe}",
                    "build_s": round(build_s, 2),
                    **_recall(index, queries, truth_ids, truth_scores),
                    **_timed_search(index, queries, timed),
                }
            )
        del index, quantiser
        gc.collect()
    return [{"size": size, **r} for r in rows]


def measure_indexes(args: argparse.Namespace, embedder: Embedder) -> dict[str, Any]:
    """Every size in `args.sizes`; real vectors first, synthetic fill past `args.real`."""
    real, queries, hit_queries = real_vectors(
        embedder, args.data, args.seed, args.real, args.queries, args.embedding_cache
    )
    biggest = max(args.sizes)
    fill = synthetic_fill(real, max(0, biggest - len(real)), args.seed)
    probe = faiss.IndexFlatIP(real.shape[1])
    probe.add(real)
    real_top = float(probe.search(queries, 1)[0].mean())
    probe = faiss.IndexFlatIP(real.shape[1])
    probe.add(fill[: len(real)])
    fill_top = float(probe.search(queries, 1)[0].mean()) if len(fill) else None
    del probe
    rows = []
    for size in sorted(args.sizes):
        base = (
            real[:size] if size <= len(real) else np.concatenate([real, fill[: size - len(real)]])
        )
        timed = args.timed_queries if size < 500_000 else max(50, args.timed_queries // 3)
        started = time.perf_counter()
        found = measure_size(base, queries, timed=timed, cap_s=args.build_cap_s, ivf=args.ivf)
        print(f"  size {size}: {time.perf_counter() - started:.0f} s", flush=True)
        for r in found:
            print(
                f"    {r['index']:<40} build {r['build_s']:7.1f} s  "
                + (
                    r["not_built"]
                    if "not_built" in r
                    else f"R@1 {r['recall_at_1']:.3f} (near {r['recall_at_1_near']})  "
                    f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
                ),
                flush=True,
            )
        rows += [{**r, "synthetic_rows": max(0, size - len(real))} for r in found]
        del base
        gc.collect()
    return {
        "real_vectors": len(real),
        "queries": len(queries),
        "queries_with_paraphrase_in_index": hit_queries,
        "fill": f"synthetic: normalise(l*a + (1-l)*b + N(0, {FILL_NOISE}^2)) of real a, b",
        "queries_mean_top1_cosine_vs_real": round(real_top, 4),
        "queries_mean_top1_cosine_vs_synthetic": None if fill_top is None else round(fill_top, 4),
        "top_k": TOP_K,
        "rows": rows,
    }


# -------------------------------------------------------------------------------- gateway

# (stored request, paraphrase): the paraphrase differs in wording, not in any fact, so it
# should be a semantic hit at the default threshold with verification on.
PROMPTS = (
    ("How far is the moon from the earth?", "how far is the moon from earth"),
    ("What is the capital city of Australia?", "what's the capital of Australia?"),
    ("How do I reverse a list in Python?", "How can I reverse a Python list?"),
    ("What causes the seasons on Earth?", "what causes seasons on the Earth?"),
)
# A semantic hit is otherwise stored under the paraphrase's own key, and its repeats are exact.
NO_STORE = {"x-raygate-cache-control": "no-store"}
BURST = 8


async def measure_gateway(
    gateway_url: str, bare_url: str, api_key: str, model: str, requests: int
) -> dict[str, Any]:
    """Exact hits, semantic hits and the bare route, interleaved at concurrency 1; then
    paraphrases and the bare route in bursts of eight at once."""
    import aiohttp

    run = uuid.uuid4().hex[:12]
    # A system prompt unique to this run gives it a fresh cache scope.
    system = {"role": "system", "content": f"cache latency benchmark {run}"}

    def body(text: str) -> dict[str, Any]:
        return {"model": model, "messages": [system, {"role": "user", "content": text}]}

    headers = {"authorization": f"Bearer {api_key}"}
    samples: dict[str, list[float]] = {}
    seen: dict[str, dict[str, int]] = {}
    async with aiohttp.ClientSession() as session:

        async def call(path: str, url: str, text: str, auth: bool, store: bool = True) -> str:
            sent = (headers if store else {**headers, **NO_STORE}) if auth else {}
            started = time.perf_counter()
            async with session.post(
                f"{url}/v1/chat/completions", json=body(text), headers=sent
            ) as response:
                await response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise RuntimeError(f"{url} answered {response.status}")
                state = response.headers.get("x-raygate-cache", "none")
            seen.setdefault(path, {}).setdefault(state, 0)
            seen[path][state] += 1
            samples.setdefault(f"{path} [{state}]", []).append(elapsed)
            return state

        for stored, _ in PROMPTS:  # the misses that store the entries
            await call("populate", gateway_url, stored, True)
        await asyncio.sleep(1.0)  # an insert may land off the hot path
        for i in range(requests):
            stored, paraphrase = PROMPTS[i % len(PROMPTS)]
            await call("bare Serve route", bare_url, stored, False)
            await call("gateway, exact request", gateway_url, stored, True)
            await call("gateway, paraphrase", gateway_url, paraphrase, True, store=False)
        # Eight lookups at once: the cache replica embeds those that queue up in one batch.
        for start in range(0, requests, BURST):
            texts = [PROMPTS[i % len(PROMPTS)] for i in range(start, start + BURST)]
            bare = [call("bare Serve route, 8 at once", bare_url, t, False) for t, _ in texts]
            await asyncio.gather(*bare)
            paraphrases = [
                call("gateway, paraphrase, 8 at once", gateway_url, p, True, store=False)
                for _, p in texts
            ]
            await asyncio.gather(*paraphrases)
    rows = [
        {"path": key, "requests": len(v), "p50_ms": _ms(v, 50), "p99_ms": _ms(v, 99)}
        for key, v in samples.items()
    ]
    for r in rows:
        print(f"  {r['path']:42} n={r['requests']:<4} p50 {r['p50_ms']:.1f} ms  "
              f"p99 {r['p99_ms']:.1f} ms", flush=True)  # fmt: skip
    if not any(s in ("exact", "semantic") for s in seen.get("gateway, exact request", {})):
        print("  no cache hits seen: is the cache wired into this gateway and enabled?")
    return {"x_raygate_cache_seen": seen, "rows": rows}


class Variant(NamedTuple):
    """How the gateway part sets up raygate: `similarity` blocks jailbreaks with the
    similarity signal (every request embedded), `near` the ingress's near cache, `onnx` the
    embedder in ONNX Runtime, `batch_wait_s` the embedder's wait to fill a batch."""

    similarity: bool = False
    near: bool = True
    onnx: bool = True
    batch_wait_s: float = 0.0


# Same run, same bare route: the shipped default, then one change at a time.
VARIANTS = {
    "default_policy": Variant(),
    "default_policy_near_cache_off": Variant(near=False),
    "default_policy_torch_embedder": Variant(onnx=False),
    "default_policy_batch_wait_2ms": Variant(batch_wait_s=0.002),
    "jailbreak_similarity_blocking": Variant(similarity=True),
}


def _deploy_with_cache(sim_url: str, serve_port: int, variant: Variant) -> None:
    """overhead.py's two apps (a bare forwarder at /bare, raygate at /), the cache enabled
    and set as `variant` says."""
    import ray
    import ray.cloudpickle
    from ray import serve

    from benchmarks import overhead
    from deployments.app import build_app
    from gateway.config import parse_config

    # Imported rather than run as __main__, overhead's forwarder must still travel by value.
    ray.cloudpickle.register_pickle_by_value(overhead)
    storage = tempfile.mkdtemp(prefix="raygate-bench-")
    # The default profile (jailbreak monitored: no embedding needed for a keyed hit), or one
    # that blocks jailbreaks with the similarity signal, which embeds every request.
    policy = (
        "policy: {profiles: {default: {jailbreak: {action: block, similarity: true}}}}\n"
        if variant.similarity
        else ""
    )
    cache = ["enabled: true"]
    cache += [] if variant.near else ["near_entries: 0"]
    cache += [] if variant.onnx else ["onnx: false"]
    cache += [f"batch_wait_timeout_s: {variant.batch_wait_s}"]
    config = parse_config(
        f"""
serve: {{port: {serve_port}, ingress: {{num_cpus: 0.1}}, router: {{num_cpus: 0.1}},
        cache: {{num_cpus: 0.1}}}}
auth: {{dev_key: {overhead.KEY}}}
cache: {{{", ".join(cache)}}}
{policy}storage: {{url: "sqlite:///{storage}/raygate.db"}}
providers:
  simulator: {{preset: simulator, base_url: "{sim_url}/v1"}}
models:
  sim-small: {{targets: [simulator/sim-small]}}
"""
    )
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 2,
            logging_level="ERROR",
            log_to_driver=False,
        )
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        bare = cast(Any, overhead.BareForwarder)
        serve.run(bare.bind(sim_url), name="bare", route_prefix="/bare")
    serve.run(build_app({"config": config}), name="raygate", route_prefix="/")


def run_gateway_part(args: argparse.Namespace) -> dict[str, Any]:
    """Against `--gateway-url`, or a simulator + bare route + raygate started here."""
    if not args.start_gateway:
        return asyncio.run(
            measure_gateway(
                args.gateway_url, args.bare_url, args.api_key, args.model, args.requests
            )
        )
    import subprocess

    from ray import serve

    from benchmarks import overhead

    sim_port, serve_port = overhead._free_port(), overhead._free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        overhead._wait(f"{sim_url}/healthz")
        serve_url = f"http://127.0.0.1:{serve_port}"
        results: dict[str, Any] = {}
        for label, variant in VARIANTS.items():
            print(f"  [{label}]", flush=True)
            _deploy_with_cache(sim_url, serve_port, variant)
            overhead._wait(f"{serve_url}/readyz", timeout_s=300)
            measured = measure_gateway(
                serve_url, f"{serve_url}/bare", overhead.KEY, "sim-small", args.requests
            )
            results[label] = {"settings": variant._asdict(), **asyncio.run(measured)}
        return results
    finally:
        simulator.terminate()
        serve.shutdown()


# ----------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["embed", "index"],
                        choices=["embed", "index", "gateway"])  # fmt: skip
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--embed-texts", type=int, default=768, help="texts per batch size")
    parser.add_argument("--embed-rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--real", type=int, default=20_000, help="real base vectors")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--timed-queries", type=int, default=300)
    parser.add_argument("--build-cap-s", type=float, default=600.0)
    parser.add_argument("--no-ivf", dest="ivf", action="store_false")
    parser.add_argument("--embedding-cache", type=Path, default=None)
    parser.add_argument("--gateway-url")
    parser.add_argument("--bare-url")
    parser.add_argument("--api-key", default="sk-bench")
    parser.add_argument("--model", default="sim-small")
    parser.add_argument("--requests", type=int, default=300, help="per gateway path")
    parser.add_argument("--start-gateway", action="store_true")
    parser.add_argument("--out", type=Path, help="the JSON to update (default: under results/)")
    args = parser.parse_args()
    if (
        "gateway" in args.parts
        and not args.start_gateway
        and not (args.gateway_url and args.bare_url)
    ):
        parser.error("the gateway part needs --start-gateway or --gateway-url and --bare-url")

    import torch

    report = Report("cache_latency", parameters=vars(args))
    measured: dict[str, Any] = {}
    embedder = Embedder() if {"embed", "index"} & set(args.parts) else None
    if "embed" in args.parts and embedder is not None:
        print("embedder throughput (MiniLM, CPU):", flush=True)
        _, others = qqp_texts(args.data, args.seed + 1)
        measured["embedder"] = {
            "device": embedder.device,
            "texts": args.embed_texts,
            "rows": measure_embedder(embedder, others[: args.embed_texts], args.embed_rounds),
        }
    if "index" in args.parts and embedder is not None:
        print("FAISS single-query search:", flush=True)
        measured["index"] = measure_indexes(args, embedder)
    if "gateway" in args.parts:
        print("cache hits through the gateway vs the bare Serve route:", flush=True)
        measured["gateway"] = run_gateway_part(args)
    results: dict[str, Any] = {
        "software": {
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "faiss": faiss.__version__,
            "faiss_omp_threads": faiss.omp_get_max_threads(),
        }
    }
    # Read the file just before writing it (parts may run at once, in two processes) and keep
    # what this run did not measure, with the metadata of the run that did.
    path = args.out or RESULTS / "cache_latency.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    runs = {}
    for part in PARTS:
        if part in measured:
            results[part] = measured[part]
        elif part in previous:
            results[part] = previous[part]
            runs[part] = previous.get("runs", {}).get(part) or {
                key: previous[key] for key in RUN_KEYS if key in previous
            }
    results["runs"] = runs
    report.write(results, path=path)


if __name__ == "__main__":
    main()
