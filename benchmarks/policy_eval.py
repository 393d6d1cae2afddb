"""Evaluation of the policy engine: PII/secret detection, jailbreak scoring (patterns, and
patterns + embedding similarity), topic rules, and their latency.

PII: ``presidio_synth_v2.json`` (1,500 synthetic texts). It has no dev/test split, so the
detectors were shaped by entity formats in general (error categories), never by individual
samples; treat the figures as in-sample for the formats, not for the values. Two matching
rules are reported:

* span level (primary): a prediction is a true positive when it has the gold span's
  (mapped) type and covers at least 50% of the gold span's characters; each gold span and
  each prediction is matched at most once. Half the characters is enough for redaction to
  hide the value, and it does not punish a detector for leaving out the "Uruguay 64677"
  tail of an address or taking a trailing extension into a phone number.
* token level: every word/punctuation token gets the gold and the predicted type, and each
  type is scored over tokens. This is how presidio-research's evaluator scores, so it is the
  figure to set beside Presidio's published baseline (F2 0.618, P 0.685, R 0.603).

Jailbreak: tuned on ``llm_warden_train.csv`` only; reported on ``llm_warden_test.csv``,
plus the flag rate on XSTest's safe prompts (false positives) and unsafe prompts.

The embedding-based half (similarity signal, topics, their latency) is in
``policy_semantic.py``: it embeds ~1,750 prompts with the in-process MiniLM (a few minutes on
2 CPU cores; ``--vectors-cache FILE.npz`` keeps them between runs; ``--no-embeddings`` skips it).

Latency: ``detect()`` and jailbreak ``score()`` on a ~1k-token (~4 KB) prompt, timed call by
call after a warm-up. Prints a markdown table and writes ``benchmarks/results/policy_eval.json``.

    .venv/bin/python benchmarks/policy_eval.py [--data ../shared/data] [--calls 2000]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.policy import detect  # noqa: E402
from gateway.policy.jailbreak import JailbreakScorer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "policy_eval.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data"

# Dataset label -> our span type. DATE_TIME is only partly covered: we report dates of
# birth (a date with a birth cue), not dates in general.
LABEL_TO_TYPE: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
}
PARTIAL: dict[str, str] = {"DATE_TIME": "DATE_OF_BIRTH"}
TYPE_TO_LABEL = {v: k for k, v in {**LABEL_TO_TYPE, **PARTIAL}.items()}

_TOKEN = re.compile(r"\w+|[^\w\s]")

NOTES: dict[str, str] = {
    "pii_split": "presidio_synth_v2 has no dev/test split; detectors were shaped by entity "
    "formats (error categories), not individual samples, so figures are in-sample for formats",
    "span_rule": "TP when same mapped type and the prediction covers >= 50% of the gold "
    "span's characters; one-to-one greedy matching",
    "token_rule": "tokens \\w+|[^\\w\\s]; a token takes the type of the span holding its "
    "first character; the scheme of presidio-research's evaluator, the closest to the "
    "published baseline (F2 0.618, P 0.685, R 0.603), though which entity set that baseline "
    "counts was not re-derived here: compare with care",
    "over_supported_types": "CREDIT_CARD, EMAIL_ADDRESS, IBAN_CODE, IP_ADDRESS, PHONE_NUMBER, "
    "STREET_ADDRESS, US_SSN; DATE_TIME (dates of birth only) is excluded",
    "over_all_types": "every gold span counts, so PERSON, ORGANIZATION, GPE, ... are misses",
    "xstest_unsafe": "XSTest unsafe prompts are plainly harmful requests, not jailbreaks; the "
    "scorer is meant not to flag them (a content policy should), so a low rate is by design",
    "similarity_controls": "control rows: the pattern threshold alone, then threshold and the "
    "similarity curve together, each tuned on dev under no benign false positive on dev; the "
    "signal is credited only with what they could not do",
    "minilm_embed_prompt_cpu": "the embedding itself is the embedder deployment's (shared with "
    "the cache, GPU where there is one), timed here in-process on CPU for scale only",
    "latency_prompt": "~4 KB business e-mail, mostly prose with a PII block per ~1 KB; "
    "single-threaded, timed call by call after warm-up on a shared 2-core machine",
}

Gold = tuple[int, int, str]  # start, end, dataset label


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0

    def f(beta: float) -> float:
        b2 = beta * beta
        return (1 + b2) * p * r / (b2 * p + r) if p + r else 0.0

    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(f(1), 3),
        "f2": round(f(2), 3),
    }


def _span_counts(samples: list[tuple[str, list[Gold]]]) -> tuple[Counter[str], ...]:
    """Per dataset label: TP, FP, FN under the span rule (predictions mapped to labels)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for text, gold in samples:
        preds = [(s.start, s.end, TYPE_TO_LABEL.get(s.type, s.type)) for s in detect(text)]
        used: set[int] = set()
        for gs, ge, glabel in gold:
            hit = None
            for i, (ps, pe, plabel) in enumerate(preds):
                if i in used or plabel != glabel:
                    continue
                if min(ge, pe) - max(gs, ps) >= 0.5 * (ge - gs):
                    hit = i
                    break
            if hit is None:
                fn[glabel] += 1
            else:
                used.add(hit)
                tp[glabel] += 1
        for i, (_, _, plabel) in enumerate(preds):
            if i not in used:
                fp[plabel] += 1
    return tp, fp, fn


def _token_counts(samples: list[tuple[str, list[Gold]]]) -> tuple[Counter[str], ...]:
    """Per dataset label: TP, FP, FN over tokens (a token's type is that of the span that
    contains its first character, or none)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()

    def label_at(spans: Iterable[Gold], pos: int) -> str | None:
        for s, e, label in spans:
            if s <= pos < e:
                return label
        return None

    for text, gold in samples:
        preds = [(s.start, s.end, TYPE_TO_LABEL.get(s.type, s.type)) for s in detect(text)]
        for tok in _TOKEN.finditer(text):
            g = label_at(gold, tok.start())
            p = label_at(preds, tok.start())
            if g is not None and g == p:
                tp[g] += 1
            else:
                if g is not None:
                    fn[g] += 1
                if p is not None:
                    fp[p] += 1
    return tp, fp, fn


def _aggregate(
    counts: tuple[Counter[str], ...], labels: Iterable[str], fp_labels: Iterable[str]
) -> dict[str, float | int]:
    tp, fp, fn = counts
    labels = list(labels)
    return _prf(
        sum(tp[lbl] for lbl in labels),
        sum(fp[lbl] for lbl in fp_labels),
        sum(fn[lbl] for lbl in labels),
    )


def evaluate_pii(path: Path) -> dict[str, Any]:
    """Per-type and overall precision/recall/F1/F2 on the Presidio synthetic set."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    samples = [
        (
            item["full_text"],
            [(s["start_position"], s["end_position"], s["entity_type"]) for s in item["spans"]],
        )
        for item in raw
    ]
    gold_labels = Counter(label for _, gold in samples for _, _, label in gold)
    supported = sorted(LABEL_TO_TYPE)
    result: dict[str, Any] = {
        "dataset": path.name,
        "texts": len(samples),
        "gold_spans": dict(gold_labels),
        "label_mapping": {**LABEL_TO_TYPE, **{k: f"{v} (partial)" for k, v in PARTIAL.items()}},
        "not_detected_labels": sorted(set(gold_labels) - set(LABEL_TO_TYPE) - set(PARTIAL)),
    }
    for rule, fn in (("span", _span_counts), ("token", _token_counts)):
        counts = fn(samples)
        tp, fp, fn_ = counts
        predicted = set(fp) | set(tp)
        per_type = {
            label: _prf(tp[label], fp[label], fn_[label]) for label in [*supported, *PARTIAL]
        }
        extra = sorted(predicted - set(supported) - set(PARTIAL))
        result[rule] = {
            "per_type": per_type,
            "over_supported_types": _aggregate(counts, supported, supported),
            # Every gold entity counts (PERSON, ORGANIZATION, ... are misses) and every
            # prediction counts (credential spans the dataset does not label are false hits).
            "over_all_types": _aggregate(counts, gold_labels, predicted | set(gold_labels)),
            "predictions_of_unlabelled_types": {lbl: fp[lbl] for lbl in extra},
        }
    return result


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def evaluate_jailbreak(data: Path) -> dict[str, Any]:
    """Precision/recall/F1 on llm-warden train and test; flag rates on XSTest."""
    scorer = JailbreakScorer()
    out: dict[str, Any] = {"threshold": scorer.threshold, "rules": len(scorer.rules)}
    for split in ("train", "test"):
        rows = _read_csv(data / "jailbreak" / f"llm_warden_{split}.csv")
        tp = fp = fn = tn = 0
        for row in rows:
            flagged = scorer.score(row["prompt"]).flagged
            positive = row["type"] == "jailbreak"
            tp += flagged and positive
            fp += flagged and not positive
            fn += (not flagged) and positive
            tn += (not flagged) and not positive
        stats = _prf(tp, fp, fn)
        stats["tn"] = tn
        stats["fpr"] = round(fp / (fp + tn), 3) if fp + tn else 0.0
        out[f"llm_warden_{split}"] = stats
    xs = _read_csv(data / "jailbreak" / "xstest_prompts.csv")
    for label in ("safe", "unsafe"):
        prompts = [r["prompt"] for r in xs if r["label"] == label]
        flagged = sum(scorer.score(p).flagged for p in prompts)
        out[f"xstest_{label}"] = {
            "prompts": len(prompts),
            "flagged": flagged,
            "rate": round(flagged / len(prompts), 3),
        }
    return out


_PROSE = (
    "Hi team, following up on yesterday's call about the quarterly migration plan. We moved "
    "the billing service to the new cluster and saw latency drop by about 12 percent, though "
    "the batch jobs still run long on Mondays. Please review the attached notes before the "
    "meeting on 03/14/2025 and add your comments in the usual document. "
)
_PII = (
    "Contact Jane at jane.doe@example.com or +44 20 7946 0958; her card 4111 1111 1111 1111 "
    "was charged twice. The server at 10.20.30.40 logged the request. "
)


def latency_prompt(target_chars: int = 4096) -> str:
    """A ~1k-token business e-mail: mostly prose, with one block of PII every ~1 KB."""
    parts: list[str] = []
    while sum(map(len, parts)) < target_chars:
        parts.extend([_PROSE, _PROSE, _PROSE, _PII])
    return "".join(parts)[:target_chars]


def _time(call: Callable[[], object], calls: int) -> dict[str, float]:
    for _ in range(min(200, calls)):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "calls": calls,
        "p50_ms": round(samples[len(samples) // 2], 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
    }


def evaluate_latency(calls: int) -> dict[str, Any]:
    """p50/p99 of detect(), score() and both, on the ~4 KB prompt."""
    text = latency_prompt()
    scorer = JailbreakScorer()
    return {
        "prompt_chars": len(text),
        "prompt_words": len(text.split()),
        "detect": _time(lambda: detect(text), calls),
        "jailbreak_score": _time(lambda: scorer.score(text), calls),
        "detect_plus_score": _time(lambda: (detect(text), scorer.score(text)), calls),
    }


def _fmt(stats: dict[str, Any]) -> str:
    return (
        f"{stats['precision']:.3f} | {stats['recall']:.3f} | {stats['f1']:.3f} | "
        f"{stats['f2']:.3f} | {stats['tp']} | {stats['fp']} | {stats['fn']}"
    )


def print_tables(report: dict[str, Any]) -> None:
    """Markdown tables of every figure in ``report``."""
    pii = report["pii"]
    for rule in ("span", "token"):
        print(f"\n### PII, {rule}-level matching ({pii['texts']} texts)\n")
        print("| dataset label | precision | recall | F1 | F2 | TP | FP | FN |")
        print("|---|---|---|---|---|---|---|---|")
        for label, stats in pii[rule]["per_type"].items():
            name = f"{label} (DOB only)" if label in PARTIAL else label
            print(f"| {name} | {_fmt(stats)} |")
        print(f"| **over supported types** | {_fmt(pii[rule]['over_supported_types'])} |")
        print(f"| **over all types** | {_fmt(pii[rule]['over_all_types'])} |")
    print(f"\nNot detected: {', '.join(pii['not_detected_labels'])}")
    jb = report["jailbreak"]
    print(f"\n### Jailbreak scorer (threshold {jb['threshold']}, {jb['rules']} rules)\n")
    print("| set | precision | recall | F1 | FPR |")
    print("|---|---|---|---|---|")
    for split in ("train", "test"):
        s = jb[f"llm_warden_{split}"]
        print(
            f"| llm-warden {split} | {s['precision']:.3f} | {s['recall']:.3f} | "
            f"{s['f1']:.3f} | {s['fpr']:.3f} |"
        )
    for label in ("safe", "unsafe"):
        s = jb[f"xstest_{label}"]
        print(f"| XSTest {label}: flagged | {s['flagged']}/{s['prompts']} ({s['rate']:.3f}) |")
    lat = report["latency"]
    print(f"\n### Latency ({lat['prompt_chars']} chars, {lat['prompt_words']} words)\n")
    print("| call | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name in ("detect", "jailbreak_score", "detect_plus_score"):
        print(f"| {name} | {lat[name]['p50_ms']} | {lat[name]['p99_ms']} |")


def evaluate_semantic(data: Path, calls: int, cache: Path | None) -> dict[str, Any]:
    """The embedding-based evaluations (see ``policy_semantic.py``)."""
    from benchmarks.policy_semantic import (
        Vectors,
        evaluate_jailbreak_similarity,
        evaluate_semantic_latency,
        evaluate_topics,
    )
    from gateway.cache.embedder import Embedder

    embedder = Embedder(device="cpu")
    vectors = Vectors(embedder, cache)
    splits = {
        "dev": _read_csv(data / "jailbreak" / "llm_warden_train.csv"),
        "test": _read_csv(data / "jailbreak" / "llm_warden_test.csv"),
    }
    xs = _read_csv(data / "jailbreak" / "xstest_prompts.csv")
    safe = [r["prompt"] for r in xs if r["label"] == "safe"]
    return {
        "jailbreak_similarity": evaluate_jailbreak_similarity(splits, safe, vectors),
        "topics": evaluate_topics(vectors),
        "latency": evaluate_semantic_latency(embedder, latency_prompt(), calls),
    }


def print_semantic(report: dict[str, Any]) -> None:
    """Markdown tables of the embedding-based figures."""
    jb = report["jailbreak_similarity"]
    print(f"\n### Jailbreak: patterns vs. patterns + similarity ({jb['corpus_entries']} entries)\n")
    print("| setting | threshold | dev P / R / F1 / FPR | test P / R / F1 / FPR | XSTest safe |")
    print("|---|---|---|---|---|")
    for name in (
        "patterns_only_shipped",
        "patterns_plus_similarity_shipped",
        "control_patterns_threshold_tuned_on_dev",
        "control_joint_tuned_on_dev",
    ):
        row = jb[name]
        cells = [
            f"{row[s]['precision']:.3f} / {row[s]['recall']:.3f} / {row[s]['f1']:.3f} / "
            f"{row[s]['fpr']:.3f}"
            for s in ("dev", "test")
        ]
        xs = row["xstest_safe_flagged"]
        print(f"| {name} | {row['threshold']} | {cells[0]} | {cells[1]} | {xs} |")
    topics = report["topics"]
    print(f"\n### Topics (threshold {topics['shipped_threshold']})\n")
    print("| split | precision | recall | F1 | off-topic flagged |")
    print("|---|---|---|---|---|")
    for split in ("dev", "test"):
        t = topics[split]
        print(
            f"| {split} | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} | "
            f"{t['off_topic_requests_flagged']} |"
        )
    lat = report["latency"]
    print("\n### Embedding-based latency (1k-token prompt)\n")
    print("| call | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name in (
        "topic_scoring",
        "similarity_signal",
        "input_policy_both_stages",
        "minilm_embed_prompt_cpu",
    ):
        print(f"| {name} | {lat[name]['p50_ms']} | {lat[name]['p99_ms']} |")


def main() -> None:
    """Run the evaluations, print the tables and write the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--vectors-cache", type=Path, default=None)
    parser.add_argument("--no-embeddings", action="store_true")
    args = parser.parse_args()
    report = {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            # The dev machine is shared: latency figures are only as quiet as this.
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "notes": NOTES,
        "pii": evaluate_pii(args.data / "pii" / "presidio_synth_v2.json"),
        "jailbreak": evaluate_jailbreak(args.data),
        "latency": evaluate_latency(args.calls),
    }
    if not args.no_embeddings:
        report["semantic"] = evaluate_semantic(args.data, args.calls, args.vectors_cache)
    print_tables(report)
    if "semantic" in report:
        print_semantic(report["semantic"])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
