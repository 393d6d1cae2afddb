"""The embedding-based half of the policy evaluation (imported by ``policy_eval.py``).

* Jailbreak: the pattern score alone vs. with the similarity signal (nearest known attack in
  ``gateway/policy/jailbreak_corpus.yaml``), on llm-warden's train split (dev: where the
  corpus's weight curve was set) and test split (reported only), plus XSTest's safe prompts.
  Two controls: the pattern threshold alone tuned on dev, and threshold + curve tuned jointly
  on dev, both under the constraint of no benign false positive on dev, so the signal is
  credited only with what a retuned threshold could not do.
* Topics: ``benchmarks/data/topic_cases.yaml`` (hand-written, none of them a topic example):
  precision/recall of the packaged topics at the shipped threshold, and a threshold sweep on
  dev.
* Latency: topic scoring and the similarity signal on one request embedding; the whole input
  policy (both stages) on the ~1k-token prompt; MiniLM on that prompt, for scale.

Every embedding comes from the in-process MiniLM (``gateway.cache.embedder.Embedder``), the
same model the gateway's embedder deployment runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.report import percentile
from gateway.cache.embedder import Embedder
from gateway.policy.classifier import JailbreakClassifier, reads
from gateway.policy.config import NerConfig, PolicyConfig, PolicyProfile
from gateway.policy.engine import PolicyEngine
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.normalize import normalize
from gateway.policy.similarity import AttackCorpus, SimilaritySignal, load_corpus
from gateway.policy.topics import TopicIndex, load_topics
from gateway.policy.vectors import PhraseVectors

TOPIC_CASES = Path(__file__).with_name("data") / "topic_cases.yaml"

Rows = list[dict[str, str]]


class Vectors:
    """Embeddings of benchmark texts, optionally kept in an .npz between runs."""

    def __init__(self, embedder: Embedder, cache: Path | None) -> None:
        self.embedder = embedder
        self.cache = cache
        stored = dict(np.load(cache)) if cache is not None and cache.exists() else {}
        self._stored: dict[str, np.ndarray] = stored

    def of(self, texts: list[str]) -> np.ndarray:
        key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
        if key not in self._stored:
            self._stored[key] = self.embedder.embed(texts)
            if self.cache is not None:
                np.savez(self.cache, **self._stored)
        return self._stored[key]


def _counts(flagged: np.ndarray, positive: np.ndarray) -> dict[str, Any]:
    tp = int((flagged & positive).sum())
    fp = int((flagged & ~positive).sum())
    fn = int((~flagged & positive).sum())
    tn = int((~flagged & ~positive).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(f1, 3),
        "fpr": round(fpr, 3),
    }


class _Split:
    """One labelled prompt set: pattern scores and nearest-attack cosines, precomputed."""

    def __init__(self, rows: Rows, positive: np.ndarray, scorer: JailbreakScorer, sims: np.ndarray):
        self.rows = rows
        self.positive = positive
        self.pattern = np.array([scorer.score(r["prompt"]).score for r in rows])
        self.sims = sims

    def flagged(self, threshold: float, curve: AttackCorpus | None) -> np.ndarray:
        if curve is None:
            return self.pattern >= threshold
        rising = np.clip((self.sims - curve.floor) / (curve.full - curve.floor), 0.0, 1.0)
        weight = curve.max_weight * rising
        return 1.0 - (1.0 - self.pattern) * (1.0 - weight) >= threshold


def _curve(floor: float, full: float, max_weight: float) -> AttackCorpus:
    return AttackCorpus(floor=floor, full=full, max_weight=max_weight, families={})


def evaluate_jailbreak_similarity(
    splits: dict[str, Rows], xstest_safe: list[str], vectors: Vectors
) -> dict[str, Any]:
    """Patterns alone vs. patterns + similarity, shipped settings and dev-tuned controls."""
    scorer = JailbreakScorer()
    corpus = load_corpus()
    entries = corpus.entries()
    corpus_vectors = vectors.of([e.text for e in entries])
    signal = SimilaritySignal(corpus, corpus_vectors)
    data: dict[str, _Split] = {}
    for name, rows in splits.items():
        sims = (vectors.of([r["prompt"] for r in rows]) @ corpus_vectors.T).max(axis=1)
        positive = np.array([r["type"] == "jailbreak" for r in rows])
        data[name] = _Split(rows, positive, scorer, sims)
    xs_rows = [{"prompt": p} for p in xstest_safe]
    xs_sims = (vectors.of(xstest_safe) @ corpus_vectors.T).max(axis=1)
    data["xstest_safe"] = _Split(xs_rows, np.zeros(len(xs_rows), dtype=bool), scorer, xs_sims)

    def row(threshold: float, curve: AttackCorpus | None) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": round(threshold, 3)}
        if curve is not None:
            out["curve"] = curve.model_dump(include={"floor", "full", "max_weight"})
        for name in ("dev", "test"):
            out[name] = _counts(data[name].flagged(threshold, curve), data[name].positive)
        flagged = int(data["xstest_safe"].flagged(threshold, curve).sum())
        out["xstest_safe_flagged"] = f"{flagged}/{len(xs_rows)}"
        return out

    dev = data["dev"]
    thresholds = np.round(np.arange(0.05, 0.61, 0.05), 2)
    no_fp = [t for t in thresholds if _counts(dev.flagged(t, None), dev.positive)["fp"] == 0]
    tuned_t = max(no_fp, key=lambda t: (_counts(dev.flagged(t, None), dev.positive)["f1"], t))
    best: tuple[float, float, AttackCorpus] | None = None
    for t in thresholds:
        for floor in np.round(np.arange(0.30, 0.71, 0.05), 2):
            for full in np.round(np.arange(0.35, 0.96, 0.05), 2):
                if full <= floor:
                    continue
                for weight in (0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9):
                    curve = _curve(float(floor), float(full), weight)
                    stats = _counts(dev.flagged(t, curve), dev.positive)
                    if stats["fp"] == 0 and (best is None or stats["f1"] > best[0]):
                        best = (stats["f1"], float(t), curve)
    assert best is not None
    nearest = {
        name: _nearest_families(signal, vectors, split)
        for name, split in data.items()
        if name != "xstest_safe"
    }
    return {
        "corpus_entries": len(entries),
        "families": sorted(corpus.families),
        "dev_split": "llm_warden_train",
        "test_split": "llm_warden_test",
        "patterns_only_shipped": row(scorer.threshold, None),
        "patterns_plus_similarity_shipped": row(scorer.threshold, corpus),
        "control_patterns_threshold_tuned_on_dev": row(float(tuned_t), None),
        "control_joint_tuned_on_dev": row(best[1], best[2]),
        "newly_flagged_by_similarity_nearest_family": nearest,
    }


def _nearest_families(signal: SimilaritySignal, vectors: Vectors, split: _Split) -> dict[str, int]:
    """For prompts the signal newly flags (at the shipped settings): their nearest family."""
    threshold = JailbreakScorer().threshold
    new = split.flagged(threshold, signal.corpus) & ~split.flagged(threshold, None)
    texts = [r["prompt"] for r, n in zip(split.rows, new, strict=True) if n]
    counts: dict[str, int] = {}
    for vector in vectors.of(texts) if texts else []:
        family = signal.nearest(vector).entry.family
        counts[family] = counts.get(family, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def evaluate_topics(vectors: Vectors) -> dict[str, Any]:
    """Precision/recall of the packaged topics on the hand-written cases; a dev sweep."""
    topics = load_topics()
    index = TopicIndex(topics, vectors.of(topics.phrases()))
    cases = yaml.safe_load(TOPIC_CASES.read_text(encoding="utf-8"))
    scored: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for split in ("dev", "test"):
        items = [(gold, text) for gold, texts in cases[split].items() for text in texts]
        embedded = vectors.of([t for _, t in items])
        scored[split] = [
            (gold, {s.topic: s.score for s in index.score(v, text)})
            for (gold, text), v in zip(items, embedded, strict=True)
        ]

    def at(split: str, threshold: float) -> dict[str, Any]:
        tp = fp = fn = neg_hit = negatives = 0
        for gold, scores in scored[split]:
            found = {t for t, s in scores.items() if s >= threshold}
            if gold == "none":
                negatives += 1
                neg_hit += bool(found)
            else:
                tp += gold in found
                fn += gold not in found
            fp += len(found - {gold})
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        return {
            "threshold": threshold,
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "precision": round(p, 3),
            "recall": round(r, 3),
            "f1": round(2 * p * r / (p + r), 3) if p + r else 0.0,
            "off_topic_requests_flagged": f"{neg_hit}/{negatives}",
        }

    sweep = [at("dev", round(float(t), 2)) for t in np.arange(0.30, 0.66, 0.05)]
    return {
        "cases": str(TOPIC_CASES.relative_to(TOPIC_CASES.parents[2])),
        "topics": sorted(topics.topics),
        "shipped_threshold": topics.threshold,
        "keyword_bonus": topics.keyword_bonus,
        "dev": at("dev", topics.threshold),
        "test": at("test", topics.threshold),
        "dev_sweep": sweep,
    }


def _time(call: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(min(100, calls)):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return {
        "calls": calls,
        "p50_ms": round(percentile(samples, 50) or 0.0, 4),
        "p99_ms": round(percentile(samples, 99) or 0.0, 4),
    }


def evaluate_classifier(splits: dict[str, Rows], xstest: Rows, vectors: Vectors) -> dict[str, Any]:
    """The shipped classifier as the engine decides with it (pattern score at its threshold,
    or classifier probability at its own), on llm-warden test (the full official split) and
    XSTest; a precision/recall curve of the probability on the test split."""
    clf = JailbreakClassifier.load()
    scorer = JailbreakScorer()

    def scored(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        patterns = [scorer.score(normalize(t).text) for t in texts]
        embedded = vectors.of(texts)
        features = np.stack([clf.features(v, p) for v, p in zip(embedded, patterns, strict=True)])
        # as the engine: a text under MIN_WORDS words is the patterns' alone
        read = np.array([reads(t) for t in texts])
        return clf.probabilities(features) * read, np.array([p.score for p in patterns])

    out: dict[str, Any] = {
        "threshold": round(clf.threshold, 4),
        "pattern_threshold": scorer.threshold,
        "card": clf.card,
    }
    rows = splits["test"]
    positive = np.array([r["type"] == "jailbreak" for r in rows])
    prob, pattern = scored([r["prompt"] for r in rows])
    decided = (prob >= clf.threshold) | (pattern >= scorer.threshold)
    out["llm_warden_test"] = _counts(decided, positive)
    out["llm_warden_test_classifier_only"] = _counts(prob >= clf.threshold, positive)
    curve = []
    for t in np.unique(np.round(prob, 3)):
        flagged = (prob >= t) | (pattern >= scorer.threshold)
        c = _counts(flagged, positive)
        curve.append({"threshold": float(t), **{k: c[k] for k in ("precision", "recall", "fpr")}})
    out["llm_warden_test_curve"] = curve
    for label in ("safe", "unsafe"):
        texts = [r["prompt"] for r in xstest if r["label"] == label]
        prob, pattern = scored(texts)
        flagged = int(((prob >= clf.threshold) | (pattern >= scorer.threshold)).sum())
        out[f"xstest_{label}"] = {"prompts": len(texts), "flagged": flagged,
                                  "rate": round(flagged / len(texts), 3)}  # fmt: skip
    return out


def evaluate_semantic_latency(embedder: Embedder, prompt: str, calls: int) -> dict[str, Any]:
    """Topic scoring, the similarity signal, the whole input policy (without NER, with NER
    gated and ungated, each with the classifier on a precomputed embedding), and MiniLM for
    scale."""
    profile = PolicyProfile(
        pii={"*": "redact", "credentials": "block"},
        jailbreak={"action": "block"},  # type: ignore[arg-type]
        topics={"compensation": "block", "*": "monitor"},
    )
    shared = PhraseVectors()
    engine = PolicyEngine(PolicyConfig(profiles={"default": profile}), vectors=shared)

    async def embed(texts: list[str]) -> np.ndarray:
        return embedder.embed(texts)

    asyncio.run(engine.prepare(embed))
    topics = TopicIndex(engine.topics, embedder.embed(engine.topics.phrases()))
    entries = [e.text for e in engine.corpus.entries()]
    signal = SimilaritySignal(engine.corpus, embedder.embed(entries))
    vector = embedder.embed([prompt])[0]

    def whole() -> None:
        verdict = engine.check([prompt], None)
        engine.judge(verdict, vector, text=prompt)

    names = {"PERSON": "redact", "ORGANIZATION": "redact", "LOCATION": "redact"}
    variants = {
        "input_policy_with_ner_names_gated": (names, "capitalized"),
        "input_policy_with_ner_all_entities_gated": ({"entities": "redact"}, "capitalized"),
        "input_policy_with_ner_names_ungated": (names, "none"),
    }
    timed_ner = {}
    for name, (rules, gate) in variants.items():
        with_ner = profile.model_copy(update={"pii": {**profile.pii, **rules}})
        config = PolicyConfig(ner=NerConfig(gate=gate), profiles={"default": with_ner})  # type: ignore[arg-type]
        ner_engine = PolicyEngine(config, vectors=shared)

        def whole_ner(e: PolicyEngine = ner_engine) -> None:
            verdict = e.check([prompt], None)
            e.judge(verdict, vector, text=prompt)

        timed_ner[name] = _time(whole_ner, max(50, calls // 10))

    return {
        **timed_ner,
        "topic_phrases": len(engine.topics.phrases()),
        "corpus_entries": len(engine.corpus.entries()),
        "topic_scoring": _time(lambda: topics.score(vector, prompt), calls),
        "similarity_signal": _time(lambda: signal(prompt, vector), calls),
        "input_policy_both_stages": _time(whole, calls),
        "minilm_embed_prompt_cpu": _time(lambda: embedder.embed([prompt]), max(20, calls // 50)),
    }
