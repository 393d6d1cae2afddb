"""Evaluation of the policy engine: PII/PHI detection (raygate beside Presidio's default
analyzer, in the same run), jailbreak scoring (patterns; the learned classifier; patterns +
similarity), topic rules, and their latency. One run writes
``benchmarks/results/policy_eval.json`` and ``policy_eval.png`` (precision/recall curves per
detector, operating points marked).

PII (``policy_pii.py``): ``presidio_synth_v2.json`` (1,500 synthetic texts). It has no
dev/test split: the detectors were written from entity formats in general, never from its
samples, and the NER is an off-the-shelf model; read the figures as in-sample for the formats.
PHI: a generated set (``policy_pii.phi_samples``): it checks the rules, not clinical text.

Jailbreak: the classifier's held-out-source figures come from its training run
(``benchmarks/results/jailbreak_training.json``, ``python -m gateway.policy.training``) and
are printed first; then the shipped model on llm-warden test (never trained on) and XSTest.

The embedding-based half (classifier, similarity signal, topics, latency with NER) embeds
~1,750 prompts with the in-process MiniLM (a few minutes on 2 CPU cores;
``--vectors-cache FILE.npz`` keeps them between runs; ``--no-embeddings`` skips it).

    .venv/bin/python -m benchmarks.policy_eval [--data ../shared/data] [--calls 2000]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.policy_pii import evaluate_phi, evaluate_pii
from benchmarks.report import RESULTS as RESULTS_DIR
from benchmarks.report import ROOT, Report, percentile
from gateway.policy.config import PolicyConfig, PolicyProfile
from gateway.policy.detection import ALL_TYPES, PATTERN_TYPES, detect
from gateway.policy.engine import PolicyEngine
from gateway.policy.entities import EntityRecognizer
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.normalize import normalize

RESULTS = RESULTS_DIR / "policy_eval.json"
TRAINING = ROOT / "benchmarks" / "results" / "jailbreak_training.json"
DEFAULT_DATA = ROOT.parent / "shared" / "data"

NOTES: dict[str, str] = {
    "pii_split": "presidio_synth_v2 has no dev/test split. Until 2026-12-02 the detectors were "
    "written from entity formats, not its samples. On 2026-12-03 the misses of the even-indexed "
    "texts (the 'dev' half) were read to write the span-growing rules (gateway/policy/grow.py, "
    "names.py, the date and phone changes); the odd-indexed half was not looked at: its "
    "figures ('halves') are the held-out ones. The NER model is off the shelf",
    "token_rule": "presidio-research TokenEvaluator scheme: tokens \\w+|[^\\w\\s], IO tags; "
    "pii = type-agnostic (gold PII token predicted as any PII), F-beta 2; no skip words, every "
    "gold type counts, for every system alike",
    "span_rule": "TP when same label and the prediction covers >= 50% of the gold span",
    "presidio": "same texts, same run, same spaCy pipeline (en_core_web_lg is not on PyPI)",
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


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 3), "recall": round(r, 3),
            "f1": round(f1, 3)}  # fmt: skip


def operating_points() -> dict[str, float]:
    """Per span type, the packaged confidence floor (what a profile gets by default)."""
    engine = PolicyEngine(PolicyConfig())
    return engine.confidence_floors(PolicyProfile(), set(ALL_TYPES))


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
            flagged = scorer.score(normalize(row["prompt"]).text).flagged
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
        flagged = sum(scorer.score(normalize(p).text).flagged for p in prompts)
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
    return {
        "calls": calls,
        "p50_ms": round(percentile(samples, 50) or 0.0, 3),
        "p99_ms": round(percentile(samples, 99) or 0.0, 3),
    }


def evaluate_latency(calls: int, entities: EntityRecognizer) -> dict[str, Any]:
    """p50/p99 of detect() (without and with NER), score(), and Presidio's analyze(), on the
    ~4 KB prompt."""
    text = latency_prompt()
    scorer = JailbreakScorer()
    names = {"PERSON", "ORGANIZATION", "LOCATION"}
    ungated = EntityRecognizer(entities.model, gate=False)
    short = " ".join(text.split()[:35])
    disguised = text.replace("team", "t\u0435am").replace(" the ", " the\u00a0")
    out: dict[str, Any] = {
        "prompt_chars": len(text),
        "prompt_words": len(text.split()),
        "normalize": _time(lambda: normalize(text), calls),
        # the same prompt with look-alike letters and non-breaking spaces: the slow path
        "normalize_non_ascii": _time(lambda: normalize(disguised), calls),
        "detect": _time(lambda: detect(text), calls),
        "detect_with_ner_names_gated": _time(
            lambda: detect(text, types=PATTERN_TYPES | names, entities=entities),
            max(50, calls // 10),
        ),
        # a short prompt (35 words) is read whole: the cost of not gating where it is cheap
        "detect_with_ner_names_short_prompt": _time(
            lambda: detect(short, types=PATTERN_TYPES | names, entities=entities),
            max(50, calls // 10),
        ),
        "detect_with_ner_all_entities_gated": _time(
            lambda: detect(text, types=ALL_TYPES, entities=entities), max(50, calls // 10)
        ),
        "ner_only_gated_names": _time(lambda: entities.find(text, names), max(50, calls // 10)),
        "ner_only_ungated_names": _time(lambda: ungated.find(text, names), max(20, calls // 50)),
        "jailbreak_score": _time(lambda: scorer.score(text), calls),
    }
    try:
        from benchmarks.policy_pii import presidio_predictor

        presidio, _ = presidio_predictor(entities.model)
        out["presidio_analyze"] = _time(lambda: presidio(text), max(20, calls // 50))
    except ImportError:
        pass
    return out


def print_tables(report: dict[str, Any]) -> None:
    """Markdown tables of the PII, PHI, pattern-jailbreak and latency figures."""
    pii = report["pii"]
    print(f"\n### PII, Presidio synthetic set ({pii['texts']} texts), one run\n")
    print("| system | token PII P / R / F2 | token type-strict P / R / F2 | span P / R / F1 |")
    print("|---|---|---|---|")
    for name, sys_ in pii["systems"].items():
        t, st, sp = sys_["token"]["pii"], sys_["token"]["type_strict"], sys_["span"]["overall"]
        print(
            f"| {name} | {t['precision']} / {t['recall']} / **{t['f2']}** | "
            f"{st['precision']} / {st['recall']} / {st['f2']} | "
            f"{sp['precision']} / {sp['recall']} / {sp['f1']} |"
        )
    print("\nToken PII F2 by half (even texts were read to write rules; odd were not):\n")
    print("| system | dev half (read) | held-out half |")
    print("|---|---|---|")
    for name, sys_ in pii["systems"].items():
        halves = sys_["halves"]
        print(f"| {name} | {halves['dev']['f2']} | **{halves['held_out']['f2']}** |")
    print("\nPer label, token recall (raygate_ner vs presidio_default):\n")
    ours = pii["systems"]["raygate_ner"]["token"]["per_label"]
    theirs = pii["systems"].get("presidio_default", {}).get("token", {}).get("per_label", {})
    print("| label | gold tokens | raygate recall / precision | presidio recall / precision |")
    print("|---|---|---|---|")
    for label, row in sorted(ours.items(), key=lambda kv: -kv[1]["tokens"]):
        if not row["tokens"]:
            continue
        other = theirs.get(label, {})
        print(
            f"| {label} | {row['tokens']} | {row['recall']} / {row['precision']} | "
            f"{other.get('recall')} / {other.get('precision')} |"
        )
    phi = report["phi"]["span"]
    print(f"\n### PHI, generated set ({report['phi']['texts']} texts)\n")
    print("| type | precision | recall | F1 | TP | FP | FN |")
    print("|---|---|---|---|---|---|---|")
    for label, s in phi["per_label"].items():
        print(f"| {label} | {s['precision']} | {s['recall']} | {s['f1']} | {s['tp']} | "
              f"{s['fp']} | {s['fn']} |")  # fmt: skip
    jb = report["jailbreak"]
    print(f"\n### Jailbreak patterns alone (threshold {jb['threshold']}, {jb['rules']} rules)\n")
    print("| set | precision | recall | F1 | FPR |")
    print("|---|---|---|---|---|")
    for split in ("train", "test"):
        s = jb[f"llm_warden_{split}"]
        print(f"| llm-warden {split} | {s['precision']:.3f} | {s['recall']:.3f} | "
              f"{s['f1']:.3f} | {s['fpr']:.3f} |")  # fmt: skip
    for label in ("safe", "unsafe"):
        s = jb[f"xstest_{label}"]
        print(f"| XSTest {label}: flagged | {s['flagged']}/{s['prompts']} ({s['rate']:.3f}) |")
    lat = report["latency"]
    print(f"\n### Latency ({lat['prompt_chars']} chars, {lat['prompt_words']} words)\n")
    print("| call | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, row in lat.items():
        if isinstance(row, dict):
            print(f"| {name} | {row['p50_ms']} | {row['p99_ms']} |")


def evaluate_semantic(data: Path, calls: int, cache: Path | None) -> dict[str, Any]:
    """The embedding-based evaluations (see ``policy_semantic.py``)."""
    from benchmarks.policy_semantic import (
        Vectors,
        evaluate_classifier,
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
    training = json.loads(TRAINING.read_text("utf-8")) if TRAINING.exists() else None
    return {
        "classifier_held_out_sources": training["held_out_sources"] if training else None,
        "classifier": evaluate_classifier(splits, xs, vectors),
        "jailbreak_similarity": evaluate_jailbreak_similarity(splits, safe, vectors),
        "topics": evaluate_topics(vectors),
        "latency": evaluate_semantic_latency(embedder, latency_prompt(), calls),
    }


def print_semantic(report: dict[str, Any]) -> None:
    """Markdown tables of the embedding-based figures, held-out sources first."""
    held = report["classifier_held_out_sources"]
    if held:
        print("\n### Jailbreak classifier, held-out sources (each row: trained without it)\n")
        print("| held-out source | on it | llm-warden test F1 / FPR | XSTest safe flagged |")
        print("|---|---|---|---|")
        for source, row in held.items():
            own = row[source]
            on_it = f"recall {own['recall']}" if own["tp"] + own["fn"] else f"FPR {own['fpr']}"
            test = row["llm_warden_test"]
            print(f"| {source} | {on_it} | {test['f1']} / {test['fpr']} | "
                  f"{row['xstest_safe']['fpr']} |")  # fmt: skip
    clf = report["classifier"]
    test = clf["llm_warden_test"]
    print(f"\n### Shipped classifier (threshold {clf['threshold']}) + patterns "
          f"(>= {clf['pattern_threshold']})\n")  # fmt: skip
    print("| set | precision | recall | F1 | FPR |")
    print("|---|---|---|---|---|")
    for name in ("llm_warden_test", "llm_warden_test_classifier_only"):
        s = clf[name]
        print(f"| {name} | {s['precision']} | {s['recall']} | {s['f1']} | {s['fpr']} |")
    for label in ("safe", "unsafe"):
        s = clf[f"xstest_{label}"]
        print(f"| XSTest {label}: flagged | {s['flagged']}/{s['prompts']} ({s['rate']}) |")
    del test
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
        print(f"| {name} | {row['threshold']} | {cells[0]} | {cells[1]} | "
              f"{row['xstest_safe_flagged']} |")  # fmt: skip
    topics = report["topics"]
    print(f"\n### Topics (threshold {topics['shipped_threshold']})\n")
    print("| split | precision | recall | F1 | off-topic flagged |")
    print("|---|---|---|---|---|")
    for split in ("dev", "test"):
        t = topics[split]
        print(f"| {split} | {t['precision']:.3f} | {t['recall']:.3f} | {t['f1']:.3f} | "
              f"{t['off_topic_requests_flagged']} |")  # fmt: skip
    lat = report["latency"]
    print("\n### Embedding-based latency and the whole input policy (1k-token prompt)\n")
    print("| call | p50 ms | p99 ms |")
    print("|---|---|---|")
    for name, row in lat.items():
        if isinstance(row, dict):
            print(f"| {name} | {row['p50_ms']} | {row['p99_ms']} |")


def plot(report: dict[str, Any], points: dict[str, float], path: Path) -> None:
    """Precision/recall curves per detector (PII labels, PHI types, the classifier), each
    with its operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("PII (Presidio synthetic), span P/R", report["pii"]["curves"]),
              ("PHI (generated), span P/R", report["phi"]["curves"])]  # fmt: skip
    classifier = report.get("semantic", {}).get("classifier")
    fig, axes = plt.subplots(1, 3 if classifier else 2, figsize=(17 if classifier else 12, 5.2))
    label_to_type = {"EMAIL_ADDRESS": "EMAIL", "IBAN_CODE": "IBAN", "GPE": "LOCATION"}
    colours = plt.get_cmap("tab20").colors
    for ax, (title, curves) in zip(axes, panels, strict=False):
        for i, (label, pts) in enumerate(curves.items()):
            if not pts:
                continue
            recall = [p["recall"] for p in pts]
            precision = [p["precision"] for p in pts]
            (line,) = ax.plot(
                recall, precision, marker=".", label=label, alpha=0.8, color=colours[i % 20]
            )
            floor = points.get(label_to_type.get(label, label), 0.0)
            chosen = [p for p in pts if p["threshold"] >= floor] or pts[-1:]
            ax.scatter([chosen[0]["recall"]], [chosen[0]["precision"]], s=90,
                       facecolors="none", edgecolors=line.get_color(), linewidths=2)  # fmt: skip
        ax.set_title(title + " (circle: operating point)")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    if classifier:
        ax = axes[2]
        pts = classifier["llm_warden_test_curve"]
        ax.plot([p["fpr"] for p in pts], [p["recall"] for p in pts], marker=".",
                label="classifier OR patterns")  # fmt: skip
        op = classifier["llm_warden_test"]
        ax.scatter([op["fpr"]], [op["recall"]], s=120, facecolors="none", edgecolors="red",
                   linewidths=2, label=f"shipped threshold {classifier['threshold']}")  # fmt: skip
        ax.axvline(0.01, color="grey", linestyle="--", linewidth=1, label="1% FPR")
        ax.set_title("Jailbreak, llm-warden test: recall vs FPR")
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("recall")
        ax.set_xlim(0, 0.2)
        ax.set_ylim(0.5, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run the evaluations, print the tables and write the JSON report and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--vectors-cache", type=Path, default=None)
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON report (PNG beside)")
    args = parser.parse_args()
    points = operating_points()
    entities = EntityRecognizer()
    entities.load()
    ungated = EntityRecognizer(entities.model, gate=False)
    run = Report("policy_eval", parameters=vars(args))
    report: dict[str, Any] = {
        "notes": NOTES,
        "operating_points": points,
        "pii": evaluate_pii(
            args.data / "pii" / "presidio_synth_v2.json", points, entities, ungated
        ),
        "phi": evaluate_phi(points),
        "jailbreak": evaluate_jailbreak(args.data),
        "latency": evaluate_latency(args.calls, entities),
    }
    if not args.no_embeddings:
        report["semantic"] = evaluate_semantic(args.data, args.calls, args.vectors_cache)
    if "semantic" in report:
        print_semantic(report["semantic"])
    print_tables(report)
    run.write(report, path=args.out)
    plot(report, points, args.out.with_suffix(".png"))


if __name__ == "__main__":
    main()
