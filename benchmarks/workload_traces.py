"""Request traces with realistic repetition for the cache workload benchmark.

Built from ../shared/data/paraphrase (read from there, never copied):

- question families: QQP duplicate clusters (connected components of label-1 pairs, sizes 2 to
  `MAX_FAMILY`: longer transitive chains drift off their first question), or GPTCache's mock
  paraphrase pairs (components of origin/similar pairs; not Quora text, the out-of-domain
  set). Families are split into dev and test by a seeded hash of their first text; nothing is
  shared between the splits.
- popularity: a Zipf-like skew (p ~ 1/rank^`ZIPF`) over one split's families in a seeded
  random order; a request picks a family by popularity, then one of its texts uniformly (so
  popular families repeat exact texts as well as paraphrases).
- near misses (`NEAR_MISS` of requests, a kind drawn uniformly among those the family has):
  a question like a popular family's but asking
  something else, each its own family with its own answer: a QQP text labelled NOT a
  duplicate of a family member (label-0 pairs: Quora's hard negatives), or a family text with
  one fact changed by `paraphrase_sets.PERTURBATIONS` (number +1, next year/month/weekday,
  next entity of a fixed list, first auxiliary negated) or by `swap_arguments` below (the two
  sides of "from X to Y", "X than Y", "X to Y" exchanged).
- conversations (`FOLLOW_UP` of single questions): the question, the upstream's answer, then a
  generic follow-up (`FOLLOW_UPS`: eight written here, three phrasings each). Each family
  prefers two follow-ups (0.6 / 0.3, the rest spread), so what follows what can be learned.
  The right answer to a follow-up depends on the family of the first question and on the
  follow-up: a follow-up "after an equivalent exchange" is one whose (family, follow-up) pair
  was asked before.

Answers: every family gets its own answer, built from real paraphrase pairs of the OTHER
data set (GPTCache's mock statements for the QQP trace, QQP duplicate pairs for the mock
trace): two pairs chosen by a seeded hash of the family; each request text gets one of three
phrasings (both originals, both paraphrases, or one of each), so answers to paraphrases agree
in meaning but not in wording, as an upstream's would. A near miss's answer keeps its
parent's first statement and replaces the second, as the answer to a changed question would
(MiniLM cosine of two phrasings of one answer: median 0.92, 5th percentile 0.87; of two
families' answers: median 0.26, 99th percentile 0.56; measured on dev material).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.paraphrase_sets import PERTURBATIONS

MAX_FAMILY = 12
ZIPF = 0.9
NEAR_MISS = 0.12
FOLLOW_UP = 0.2
FOLLOW_UPS: tuple[tuple[str, ...], ...] = (
    ("And what about contractors?", "What about for contractors?",
     "Does that also apply to contractors?"),
    ("Can you give me an example?", "Could you give an example?", "Give me an example, please."),
    ("How long does that take?", "How much time does that take?", "How long will it take?"),
    ("What are the risks?", "Are there any risks?", "What could go wrong?"),
    ("Can you explain that more simply?", "Could you explain it in simpler terms?",
     "Explain that like I'm five."),
    ("Is there a cheaper option?", "Is there a less expensive way?",
     "What's a cheaper alternative?"),
    ("What should I do first?", "Where should I start?", "What's the first step?"),
    ("Why is that?", "What's the reason for that?", "Why is it like that?"),
)  # fmt: skip


@dataclass(frozen=True)
class Family:
    """Texts that ask the same thing (paraphrases), answered alike."""

    key: str
    texts: tuple[str, ...]
    parent: str | None = None  # a near miss's family it resembles
    kind: str = "family"  # family, label0, number, date, entity, negation, swap


@dataclass(frozen=True)
class Request:
    """One request of a trace: its messages, its family (what a right answer answers), and
    which conversation position it holds."""

    messages: tuple[tuple[str, str], ...]  # (role, text)
    family: str
    kind: str  # family, near-miss kind, or follow_up
    first_family: str | None = None  # a follow-up's first question's family

    @property
    def text(self) -> str:
        return self.messages[-1][1]

    @property
    def user_turns(self) -> list[str]:
        return [text for role, text in self.messages if role == "user"]


@dataclass
class Trace:
    """A split's requests, and the answer for every (user turns) the trace can ask."""

    name: str
    requests: list[Request]
    answers: dict[tuple[str, ...], str] = field(default_factory=dict)
    # Answers to follow-ups the trace never asks, for pre-caching to generate (not embedded
    # up front).
    extra_answers: dict[tuple[str, ...], str] = field(default_factory=dict)
    families: int = 0
    near_miss_families: int = 0
    answer_family: dict[str, str] = field(default_factory=dict)  # answer text -> its family

    def texts(self) -> list[str]:
        """Every distinct text to embed: questions, contexts, answers."""
        out: dict[str, None] = {}
        for r in self.requests:
            out[r.text] = None
            turns = r.user_turns
            if len(turns) > 1:
                out["\n".join(reversed(turns[:-1]))] = None
        for answer in self.answers.values():
            out[answer[:2000]] = None
        return list(out)


def _seed(*parts: str) -> int:
    return int.from_bytes(hashlib.blake2b("\0".join(parts).encode(), digest_size=8).digest(), "big")


def qqp_families(data: Path) -> tuple[list[Family], dict[str, list[str]]]:
    """QQP duplicate clusters, and for each text the texts labelled NOT its duplicate."""
    with gzip.open(data / "gptcache_qqp_full.json.gz", "rt") as f:
        rows = json.load(f)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    negatives: dict[str, list[str]] = {}
    for r in rows:
        a, b = r["text_a"].strip(), r["text_b"].strip()
        if a == b:
            continue
        if r["label"] == 1:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
        else:
            negatives.setdefault(a, []).append(b)
            negatives.setdefault(b, []).append(a)
    groups: dict[str, list[str]] = {}
    for text in parent:
        groups.setdefault(find(text), []).append(text)
    families = [
        Family(sorted(texts)[0], tuple(sorted(texts)))
        for texts in groups.values()
        if 2 <= len(texts) <= MAX_FAMILY
    ]
    return families, negatives


def mock_families(data: Path) -> list[Family]:
    """GPTCache's mock paraphrase set as families (components of origin/similar pairs)."""
    pairs = json.loads((data / "gptcache_mock_data.json").read_text())
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for p in pairs:
        a, b = p["origin"].strip(), p["similar"].strip()
        if a != b:
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[ra] = rb
    groups: dict[str, list[str]] = {}
    for text in parent:
        groups.setdefault(find(text), []).append(text)
    return [
        Family(sorted(t)[0], tuple(sorted(t))) for t in groups.values() if 2 <= len(t) <= MAX_FAMILY
    ]


def split_of(family: Family, seed: int) -> str:
    """dev or test, by a seeded hash of the family's first text."""
    return "dev" if _seed(str(seed), family.key) % 2 == 0 else "test"


_SWAPS = (
    re.compile(r"\bfrom (\w+) to (\w+)\b", re.IGNORECASE),
    re.compile(
        r"\b(\w+) (?:better|worse|bigger|smaller|faster|slower|richer|older|stronger) than (\w+)\b"
    ),
    re.compile(r"\bconvert (\w+) to (\w+)\b", re.IGNORECASE),
)


def swap_arguments(text: str) -> str | None:
    """Exchange the two sides of "from X to Y", "X <comparative> than Y" or "convert X to Y"."""
    for pattern in _SWAPS:
        match = pattern.search(text)
        if match and match.group(1).lower() != match.group(2).lower():
            a, b = match.span(1), match.span(2)
            x, y = text[a[0] : a[1]], text[b[0] : b[1]]
            return text[: a[0]] + y + text[a[1] : b[0]] + x + text[b[1] :]
    return None


def near_misses(family: Family, negatives: dict[str, list[str]], taken: set[str]) -> list[Family]:
    """Questions that resemble `family` but ask something else (see the module docstring)."""
    found: list[Family] = []
    for text in family.texts:
        for other in negatives.get(text, []):
            if other not in taken:
                found.append(Family(other, (other,), family.key, "label0"))
                taken.add(other)
    changes = {**PERTURBATIONS, "swap": swap_arguments}
    for kind, change in changes.items():
        for text in family.texts:
            changed = change(text)
            if changed and changed not in taken:
                found.append(Family(changed, (changed,), family.key, kind))
                taken.add(changed)
                break
    return found


def build_trace(
    name: str,
    families: list[Family],
    negatives: dict[str, list[str]],
    material: list[tuple[str, str]],
    *,
    requests: int,
    seed: int,
) -> Trace:
    """A trace of about `requests` single questions plus their follow-ups (module docstring);
    `material` holds the paraphrase pairs answers are made of."""
    rng = random.Random(seed)
    order = families[:]
    rng.shuffle(order)
    weights = [1.0 / (rank + 1) ** ZIPF for rank in range(len(order))]
    taken = {t for f in order for t in f.texts}
    misses_of = {f.key: near_misses(f, negatives, taken) for f in order}
    trace = Trace(name, [], families=len(order))
    trace.near_miss_families = sum(len(v) for v in misses_of.values())

    def statements(key: str, parent: str | None = None) -> tuple[int, int]:
        first = _seed("first", parent or key) % len(material)
        second = _seed("second", key) % len(material)
        if second == first:
            second = (second + 1) % len(material)
        return first, second

    def answer(key: str, text: str, parent: str | None = None) -> str:
        first, second = statements(key, parent)
        phrasing = _seed("phrasing", text) % 3
        a = material[first][0 if phrasing == 0 else 1]
        b = material[second][0 if phrasing in (0, 2) else 1]
        trace.answer_family[f"{a} {b}"] = key
        return f"{a} {b}"

    preferred = {f.key: rng.sample(range(len(FOLLOW_UPS)), 2) for f in order}
    while len(trace.requests) < requests:
        family = rng.choices(order, weights)[0]
        near = misses_of[family.key]
        if near and rng.random() < NEAR_MISS:
            # A kind first, then one of its questions: label-0 partners are many for some
            # families, and a negated auxiliary exists for nearly every question.
            kind = rng.choice(sorted({m.kind for m in near}))
            miss = rng.choice([m for m in near if m.kind == kind])
            text = miss.texts[0]
            trace.requests.append(Request((("user", text),), miss.key, miss.kind))
            trace.answers[(text,)] = answer(miss.key, text, family.key)
            continue
        text = rng.choice(family.texts)
        first = answer(family.key, text)
        trace.answers[(text,)] = first
        trace.requests.append(Request((("user", text),), family.key, "family"))
        if rng.random() < FOLLOW_UP:
            pick = rng.random()
            a, b = preferred[family.key]
            g = a if pick < 0.6 else b if pick < 0.9 else rng.randrange(len(FOLLOW_UPS))
            follow = rng.choice(FOLLOW_UPS[g])
            pair = follow_up_family(family.key, g)
            messages = (("user", text), ("assistant", first), ("user", follow))
            trace.requests.append(Request(messages, pair, "follow_up", family.key))
            trace.answers[(text, follow)] = answer(pair, follow)
    for r in trace.requests:
        if r.kind == "family":
            for g, phrasings in enumerate(FOLLOW_UPS):
                for follow in phrasings:
                    key = (r.text, follow)
                    if key not in trace.answers:
                        trace.extra_answers[key] = answer(follow_up_family(r.family, g), follow)
    return trace


def follow_up_family(family: str, follow_up: int) -> str:
    """The family of follow-up number `follow_up` (in `FOLLOW_UPS`) after `family`."""
    return f"{family}\0follow-up {follow_up}"


FOLLOW_UP_OF = {text: g for g, phrasings in enumerate(FOLLOW_UPS) for text in phrasings}


def answer_material(data: Path, source: str) -> list[tuple[str, str]]:
    """Paraphrase pairs that answers are built from: the other data set's (see above)."""
    if source == "qqp":
        pairs = json.loads((data / "gptcache_mock_data.json").read_text())
        return [(p["origin"], p["similar"]) for p in pairs if p["origin"] != p["similar"]]
    pairs = json.loads((data / "gptcache_similar_qqp.json").read_text())
    return [(p["origin"], p["similar"]) for p in pairs if p["origin"] != p["similar"]]
