"""A cache replica's own work per lookup, in process, on each device this machine has.

What `benchmarks/cache_latency.py`'s end-to-end hit is made of, without the ingress or the
handle call. Two parts (`--parts`), for each device configuration, one after the other:

- `embedder`: MiniLM's sentences/s at batch sizes 1-256 (each call embeds exactly one batch,
  as a request batch would), and one text's latency (batch 1: a semantic lookup's embedding);
- `lookup`: the Cache deployment's `CacheService.lookup` (the exact phase, then MiniLM, FAISS
  and the fact checks for a semantic one) over `--entries` stored QQP questions, timed per
  lookup and grouped by what it found. `exact` repeats a stored question; `paraphrase` is a
  stored question's QQP duplicate (a semantic hit, or a miss where the cold static threshold
  or a fact check refuses it); `unrelated` was never stored.

Devices: `cpu` (float32 in ONNX Runtime, the embedded default), `cpu-torch` (the same model
in eager PyTorch, as before ONNX Runtime), `cuda-fp16` (what `Embedder` picks on a GPU:
half precision, batches of up to eight replayed from CUDA graphs), `cuda-fp16-eager` (the same
without graphs) and `cuda-fp32-eager` (without half precision either). Neither part needs
Ray, a database or a running gateway, and the embedder part needs no FAISS, so both run on a
lent GPU machine whose image lacks them (docs/gpu.md). A part this run did not measure for a
device is kept from the file, with the time it was measured.

    python -m benchmarks.cache_lookup [--parts embedder lookup] [--devices cpu cuda-fp16]
        [--entries 2000] [--lookups 300] [--model-path DIR] [--data DIR] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.paraphrase_sets import DEFAULT_DATA
from benchmarks.report import RESULTS, Report, latency_summary, percentile
from gateway.cache.embedder import Embedder

PARTS = ("embedder", "lookup")
DEVICES = ("cpu", "cpu-torch", "cuda-fp16", "cuda-fp16-eager", "cuda-fp32-eager")
BATCH_SIZES = (1, 8, 32, 64, 128, 256)
SCOPE = "bench"


def qqp_pairs(data: Path, seed: int) -> list[tuple[str, str]]:
    """Distinct (origin, duplicate) QQP pairs, in a seeded order, one per origin."""
    pairs = json.loads((data / "gptcache_similar_qqp.json").read_text())
    by_origin = {p["origin"]: p["similar"] for p in pairs if p["origin"] != p["similar"]}
    ordered = sorted(by_origin.items())
    random.Random(seed).shuffle(ordered)
    return ordered


def make_embedder(device: str, model_path: Path | None) -> Embedder:
    """MiniLM on `device` (one of DEVICES): `-torch` without ONNX Runtime, `-eager` without
    CUDA graphs, `fp32` without Embedder's half precision."""
    embedder = Embedder(
        model_path,
        device="cpu" if device.startswith("cpu") else "cuda",
        cuda_graphs="eager" not in device,
        onnx=device == "cpu",
    )
    if "fp32" in device:
        embedder._model.float()
    return embedder


def agreement(embedder: Embedder, texts: list[str]) -> dict[str, Any]:
    """What runs the model (ONNX Runtime, CUDA graphs or eager PyTorch), and the lowest cosine
    between its embeddings and sentence-transformers' eager ones of the same texts, one at a
    time and eight at a time."""
    graphed = embedder._graphed
    row: dict[str, Any] = {
        "runtime": embedder.runtime,
        "cuda_graphs": graphed is not None and graphed.enabled,
    }
    if embedder.runtime == "torch" and not row["cuda_graphs"]:
        return row  # eager is what it would be compared with
    ones = np.concatenate([embedder.embed([text]) for text in texts[:8]])
    eights = embedder.embed(texts[:8])
    eager = embedder._model.encode(texts[:8], normalize_embeddings=True, convert_to_numpy=True)
    lowest = min(float((ones * eager).sum(1).min()), float((eights * eager).sum(1).min()))
    row["lowest_cosine_to_eager"] = round(lowest, 5)
    return row


def measure_embedder(embedder: Embedder, texts: list[str], rounds: int) -> list[dict[str, Any]]:
    """Sentences/s per batch size: every call embeds one batch; median of `rounds` passes."""
    embedder.embed(texts[:64])  # warm-up
    configured = embedder.batch_size
    rows = []
    for size in BATCH_SIZES:
        embedder.batch_size = size
        rates, call_times = [], []
        for _ in range(rounds):
            started = time.perf_counter()
            for i in range(0, len(texts), size):
                call = time.perf_counter()
                embedder.embed(texts[i : i + size])
                call_times.append(time.perf_counter() - call)
            rates.append(len(texts) / (time.perf_counter() - started))
        row = {
            "batch_size": size,
            "sentences_per_s": round(percentile(rates, 50) or 0.0, 1),
            "sentences_per_s_rounds": [round(r, 1) for r in rates],
            "batch_p50_ms": round((percentile(call_times, 50) or 0.0) * 1000, 3),
            "batch_p99_ms": round((percentile(call_times, 99) or 0.0) * 1000, 3),
        }
        rows.append(row)
        print(
            f"  batch {size:>3}: {row['sentences_per_s']:8.1f} sentences/s, "
            f"one batch p50 {row['batch_p50_ms']:.2f} ms",
            flush=True,
        )
    embedder.batch_size = configured
    return rows


async def measure_lookups(
    embedder: Embedder, pairs: list[tuple[str, str]], entries: int, lookups: int, seed: int
) -> dict[str, Any]:
    """Fill a cache with `entries` origins, then time `lookups` of each kind, interleaved."""
    # Imported here: the lookup part needs FAISS, the embedder part runs without it.
    from gateway.cache.cache import SemanticCache
    from gateway.cache.config import CacheConfig
    from gateway.cache.lookup import CacheQuery
    from gateway.cache.service import CacheService

    stored, unstored = pairs[:entries], pairs[entries : entries + lookups]
    cache = SemanticCache(embedder, CacheConfig(), rng=random.Random(seed))
    vectors = embedder.embed([origin for origin, _ in stored])
    for (origin, _), vector in zip(stored, vectors, strict=True):
        cache.insert(origin, SCOPE, f"answer to {origin}", embedding=vector)

    async def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(texts)

    service = CacheService(cache, embed)
    rng = random.Random(seed)
    picked = rng.sample(stored, min(lookups, len(stored)))
    queries = [("exact", origin) for origin, _ in picked]
    queries += [("paraphrase", similar) for _, similar in picked]
    queries += [("unrelated", origin) for origin, _ in unstored]
    rng.shuffle(queries)
    for _, text in queries[:20]:  # warm-up: first calls allocate (and on a GPU, load kernels)
        await service.lookup(CacheQuery(SCOPE, text))
    timed: dict[str, list[float]] = defaultdict(list)
    for kind, text in queries:
        started = time.perf_counter()
        result = await service.lookup(CacheQuery(SCOPE, text))
        elapsed_ms = (time.perf_counter() - started) * 1000
        found = "miss" if result.hit is None else result.hit.phase
        timed[f"{kind}: {found}"].append(elapsed_ms)
    return {outcome: latency_summary(ms, digits=3) for outcome, ms in sorted(timed.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--devices", nargs="+", choices=DEVICES, default=None,
                        help="default: both cpu ones, and the cuda ones on a GPU")  # fmt: skip
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model-path", type=Path, default=None, help="MiniLM's folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--entries", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=300, help="per kind")
    parser.add_argument("--embed-texts", type=int, default=768, help="texts per batch size")
    parser.add_argument("--embed-rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="default: results/cache_lookup.json")
    args = parser.parse_args()

    import torch

    devices = args.devices or (list(DEVICES) if torch.cuda.is_available() else ["cpu", "cpu-torch"])
    path = args.out or RESULTS / "cache_lookup.json"
    report = Report("cache_lookup", parameters=vars(args))
    pairs = qqp_pairs(args.data, args.seed)
    texts = [similar for _, similar in pairs[-args.embed_texts :]]  # never stored or looked up
    measured: dict[str, dict[str, Any]] = {}
    for device in devices:
        print(f"{device}:", flush=True)
        started = time.perf_counter()
        embedder = make_embedder(device, args.model_path)
        load_s = round(time.perf_counter() - started, 1)  # with capturing the graphs
        at = datetime.now(UTC).isoformat(timespec="seconds")
        row = agreement(embedder, texts)
        row["load_s"] = load_s
        if "embedder" in args.parts:
            row["embedder"] = measure_embedder(embedder, texts, args.embed_rounds)
            row["embedder_measured_at"] = at
        if "lookup" in args.parts:
            found = measure_lookups(embedder, pairs, args.entries, args.lookups, args.seed)
            row["lookups"] = asyncio.run(found)
            row["lookups_measured_at"] = at
            for outcome, ms in row["lookups"].items():
                print(f"  {outcome:<22} p50 {ms['p50_ms']:7.3f} ms, p99 {ms['p99_ms']:7.3f} ms")
        measured[device] = row
        del embedder
    # Keep what an earlier run measured and this one did not (the parts may run apart).
    previous = json.loads(path.read_text()).get("devices", {}) if path.exists() else {}
    merged = {device: {**previous.get(device, {}), **measured.get(device, {})}
              for device in DEVICES if device in previous or device in measured}  # fmt: skip
    software = {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        software["cuda"] = torch.version.cuda
    report.write({"software": software, "devices": merged}, path=path)


if __name__ == "__main__":
    main()
