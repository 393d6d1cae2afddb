"""Who did what to whom: refuse a candidate whose arguments swapped places.

"Does the man bite the dog?" and "Does the dog bite the man?" hold the same words; sentence
embeddings score them 0.98 alike. What differs is the order of two arguments around a word
that relates them (a verb, or a directional preposition such as "to", "from" or "than"). The
check: for two content words that occur once in each text, with a relating word between them
in both texts, the two texts must put them in the same order. A passive ("is the dog bitten
by the man") flips the order it reads, so "Did the man bite the dog?" and "Was the dog bitten
by the man?" still agree. Symmetric connectives ("and", "or", "vs", "between", "with") never
relate: "the difference between A and B" is the difference between B and A.

Lexical, like the other vetoes: it misses swaps with no shared relating word ("A employs B"
vs "B works for A") and may refuse a symmetric relation spelt with a verb ("is A married to
B"), which costs a miss, never a wrong answer.
"""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9'\u2019\-]*|[$€£%]|[.,;:?!()]")
_BARRIERS = frozenset(".,;:?!()")
_FUNCTION = frozenset(
    """a an the this that these those some any each every all both either neither
    is are was were be been being am do does did done doing have has had having will would
    shall should can could may might must get gets got gotten i me my mine we us our you your
    he him his she her it its they them their there here what which who whom whose when where
    why how whether if so as of in on at about up down out off into not no very just too also
    really much many more most such than then else please can't don't isn't it's""".split()
)
# Connectives whose two sides can be exchanged without changing the question.
_SYMMETRIC = frozenset({"and", "or", "nor", "vs", "versus", "between", "with", "plus", "&"})
# Directional prepositions relate their neighbours although they are function words.
_RELATING = frozenset(
    {"to", "from", "into", "onto", "than", "against", "over", "under", "toward", "towards",
     "for", "by", "via", "after", "before", "above", "below", "beat", "beats"}
)  # fmt: skip
_BE = frozenset({"is", "are", "was", "were", "be", "been", "being", "get", "gets", "got"})
_MAX_TOKENS = 80  # long texts: pasted documents, where word order says little about roles
_REACH = 4  # an argument sits this close to the word relating it, within one clause


def _stem(word: str) -> str:
    """A crude stem so that bite/bites/bitten and chase/chased/chasing meet."""
    w = word.lower().replace("\u2019", "'").removesuffix("'s").strip("'")
    for suffix in ("ing", "ed", "en", "es", "s", "e"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix) and not w.endswith("ss"):
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2] and w[-1] not in "aeiou":
        w = w[:-1]
    return w


class _Text:
    def __init__(self, text: str) -> None:
        tokens = _TOKEN.findall(text)[:_MAX_TOKENS]
        # A capital letter standing alone past the first word names something ("account A").
        raw = [
            f"<{t}>" if len(t) == 1 and t.isupper() and i else t.lower().replace("\u2019", "'")
            for i, t in enumerate(tokens)
        ]
        self.raw = raw
        self.stems = [_stem(t) for t in raw]
        positions: dict[str, list[int]] = {}
        for i, stem in enumerate(self.stems):
            positions.setdefault(stem, []).append(i)
        self.once = {stem: p[0] for stem, p in positions.items() if len(p) == 1}

    def relation(self, pivot: str, arguments: set[str]) -> tuple[str, str] | None:
        """The nearest argument on each side of `pivot` (within one clause), first argument
        first: a passive ("the dog is bitten by the man") reads from the right."""
        at = self.once[pivot]
        left = self._nearest(range(at - 1, max(-1, at - 1 - _REACH), -1), arguments)
        right = self._nearest(range(at + 1, min(len(self.raw), at + 1 + _REACH)), arguments)
        if left is None or right is None:
            return None
        a, b = self.stems[left], self.stems[right]
        passive = (
            pivot not in _RELATING
            and any(w in _BE for w in self.raw[:at])
            and "by" in self.raw[at + 1 : right]
        )
        return (b, a) if passive else (a, b)

    def role(self, argument: str, arguments: set[str]) -> str | None:
        """The directional preposition governing `argument` ("to" in "to Texas"), if any."""
        at = self.once[argument]
        for i in range(at - 1, max(-1, at - 1 - _REACH), -1):
            word = self.raw[i]
            if word in _BARRIERS or self.stems[i] in arguments:
                return None
            if word in _RELATING:
                return word
        return None

    def _nearest(self, span: range, arguments: set[str]) -> int | None:
        for i in span:
            if self.raw[i] in _BARRIERS:
                return None
            if self.stems[i] in arguments:
                return i
        return None


def _argument(word: str) -> bool:
    return not (word in _FUNCTION or word in _SYMMETRIC or word in _RELATING or word in _BARRIERS)


def _pivot(word: str) -> bool:
    return (
        word not in _SYMMETRIC
        and word not in _BARRIERS
        and (word in _RELATING or word not in _FUNCTION)
    )


def arguments_swapped(query: str, candidate: str) -> bool:
    """Whether a word relating the same two arguments in both texts relates them in
    opposite order ("man bites dog" / "dog bites man", "from A to B" / "from B to A")."""
    q, c = _Text(query), _Text(candidate)
    shared = set(q.once) & set(c.once)
    words = {stem: q.raw[i] for stem, i in q.once.items()}
    arguments = {stem for stem in shared if _argument(words[stem])}
    for pivot in sorted(shared):
        if not _pivot(words[pivot]):
            continue
        ours, theirs = (
            q.relation(pivot, arguments - {pivot}),
            c.relation(pivot, arguments - {pivot}),
        )
        if ours and theirs and ours != theirs and set(ours) == set(theirs):
            return True
    # Prepositional roles exchanged: "from Texas to California" / "from California to Texas".
    roles = {a: (q.role(a, arguments), c.role(a, arguments)) for a in sorted(arguments)}
    governed = [(a, r) for a, r in roles.items() if r[0] and r[1] and r[0] != r[1]]
    return any(ra == rb[::-1] for i, (_, ra) in enumerate(governed) for _, rb in governed[i + 1 :])
