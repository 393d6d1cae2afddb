"""Query sets for the semantic cache benchmarks, built from ../shared/data/paraphrase.

One `Split` is one cache's content plus the lookups made against it. `build_splits` draws two
disjoint splits (dev, test) from a seeded shuffle of the data, so that a threshold chosen on
dev can be checked on test. Per split:

- inserted: `origin` of P QQP duplicate pairs, `text_a` of H QQP label-0 pairs, and `origin`
  of M pairs of GPTCache's mock paraphrase set (not Quora text).
- positive lookups: each inserted pair's `similar` (QQP and mock): it should hit its origin.
- negative lookups, each of which should miss:
  unseen: `similar` of QQP pairs whose origin was not inserted (nor equals an inserted text);
  qqp_label0: `text_b` of the label-0 pairs (Quora moderators said: not the same question);
  number / date / entity / negation: an inserted QQP origin with one fact changed, built by
  the rules below (the same rules as the first cache benchmark, not tuned to any result):
    number: the first number (digits, or a written one..twenty, "one" as a pronoun excepted)
      is increased by 1;
    date: the first year is increased by 1, else the first month or weekday becomes the next;
    entity: the first word from a fixed list of countries, cities, companies, people and
      languages is swapped for the next one of the same kind in that list;
    negation: the first auxiliary (is, are, can, do, ...) is made negative ("is" -> "isn't").

`Query.accepts(cached)` says whether serving the cached text would answer the query: its own
origin, the very same text, or a text that QQP labels a duplicate of it (Quora holds many
copies of one question, so a hit on another copy is a right answer, not a false hit).
`Query.accepts_strict` accepts only the query's own origin.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "paraphrase"
if not DEFAULT_DATA.exists():
    DEFAULT_DATA = Path("/work/shared/data/paraphrase")

POSITIVE_KINDS = ("qqp", "mock")
NEGATIVE_KINDS = ("unseen", "qqp_label0", "number", "date", "entity", "negation")

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
    "is": "isn't", "are": "aren't", "can": "can't", "do": "don't", "does": "doesn't",
    "should": "shouldn't", "will": "won't", "would": "wouldn't", "was": "wasn't",
    "were": "weren't", "did": "didn't", "could": "couldn't", "has": "hasn't", "have": "haven't",
}  # fmt: skip


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
        lowered = [n.lower() for n in names]
        pattern = r"\b(" + "|".join(n for n in names if n != "May") + r")\b"
        new = _sub_first(
            pattern,
            text,
            lambda m, names=names, lowered=lowered: names[
                (lowered.index(m.group().lower()) + 1) % len(names)
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


@dataclass(frozen=True)
class Query:
    """One lookup and what a right answer to it would be."""

    text: str
    kind: str
    origin: str | None  # the inserted text it should hit; None for a negative
    duplicates: frozenset[str] = frozenset()  # inserted texts QQP labels a duplicate of it

    @property
    def positive(self) -> bool:
        return self.origin is not None

    def accepts(self, cached: str) -> bool:
        """Whether serving `cached` answers this query (origin, same text, QQP duplicate)."""
        return cached == self.origin or cached == self.text or cached in self.duplicates

    def accepts_strict(self, cached: str) -> bool:
        """Whether `cached` is this query's own origin."""
        return cached == self.origin


@dataclass
class Split:
    """One cache's entries and the lookups made against it."""

    name: str
    inserted: list[str]
    queries: list[Query] = field(default_factory=list)

    def texts(self) -> list[str]:
        """Every distinct text to embed for this split, entries first."""
        return list(dict.fromkeys([*self.inserted, *(q.text for q in self.queries)]))

    def sizes(self) -> dict[str, int]:
        counts = {"inserted": len(self.inserted)}
        for q in self.queries:
            counts[q.kind] = counts.get(q.kind, 0) + 1
        return counts


def _labelled_duplicates(full: list[dict[str, Any]]) -> dict[str, set[str]]:
    dups: dict[str, set[str]] = {}
    for r in full:
        if r["label"] == 1:
            dups.setdefault(r["text_a"], set()).add(r["text_b"])
            dups.setdefault(r["text_b"], set()).add(r["text_a"])
    return dups


def build_splits(
    data: Path, *, pairs: int, unseen: int, label0: int, mock: int, perturbed: int, seed: int
) -> list[Split]:
    """Two disjoint splits ("dev", "test") of the paraphrase data; see the module docstring."""
    rng = random.Random(seed)
    qqp = json.loads((data / "gptcache_similar_qqp.json").read_text())
    qqp = [p for p in qqp if p["origin"] != p["similar"]]
    rng.shuffle(qqp)
    with gzip.open(data / "gptcache_qqp_full.json.gz", "rt") as f:
        full = json.load(f)
    dup_of = _labelled_duplicates(full)
    label0_pairs = [r for r in full if r["label"] == 0 and r["text_a"] != r["text_b"]]
    rng.shuffle(label0_pairs)
    mock_pairs = json.loads((data / "gptcache_mock_data.json").read_text())
    mock_pairs = [p for p in mock_pairs if p["origin"] != p["similar"]]
    rng.shuffle(mock_pairs)

    splits = []
    halves = {
        "dev": (qqp[: len(qqp) // 2], label0_pairs[::2], mock_pairs[: len(mock_pairs) // 2]),
        "test": (qqp[len(qqp) // 2 :], label0_pairs[1::2], mock_pairs[len(mock_pairs) // 2 :]),
    }
    for name, (qqp_pool, label0_pool, mock_pool) in halves.items():
        own: list[dict[str, str]] = []
        taken: set[str] = set()
        for p in qqp_pool:
            if len(own) == pairs:
                break
            if p["origin"] not in taken and p["similar"] not in taken:
                own.append(p)
                taken.update((p["origin"], p["similar"]))
        negatives: list[dict[str, Any]] = []
        for r in label0_pool:
            if len(negatives) == label0:
                break
            if r["text_a"] not in taken and r["text_b"] not in taken:
                negatives.append(r)
                taken.update((r["text_a"], r["text_b"]))
        mocks: list[dict[str, str]] = []
        for p in mock_pool:
            if len(mocks) == mock:
                break
            if p["origin"] not in taken and p["similar"] not in taken:
                mocks.append(p)
                taken.update((p["origin"], p["similar"]))
        inserted = [p["origin"] for p in own] + [r["text_a"] for r in negatives]
        inserted += [p["origin"] for p in mocks]
        stored = set(inserted)

        def dups(text: str, stored: set[str] = stored) -> frozenset[str]:
            return frozenset(dup_of.get(text, set()) & stored)

        queries = [Query(p["similar"], "qqp", p["origin"], dups(p["similar"])) for p in own]
        queries += [Query(p["similar"], "mock", p["origin"]) for p in mocks]
        # Own pairs' texts are all in `taken`, so these pairs are further ones.
        unseen_pairs = [
            p for p in qqp_pool if p["origin"] not in taken and p["similar"] not in taken
        ][:unseen]
        queries += [Query(p["similar"], "unseen", None, dups(p["similar"])) for p in unseen_pairs]
        queries += [Query(r["text_b"], "qqp_label0", None, dups(r["text_b"])) for r in negatives]
        for kind, change in PERTURBATIONS.items():
            changed = [q for p in own if (q := change(p["origin"])) is not None]
            # A changed fact is a different question: no stored text answers it.
            queries += [Query(q, kind, None) for q in changed[:perturbed]]
        splits.append(Split(name, inserted, queries))
    return splits
