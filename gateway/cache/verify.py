"""Phase 4: reject semantic candidates that are close in embedding space but ask otherwise.

Sentence embeddings place "flights to Paris in May" and "flights to Rome in June" close
together; the answer to one is wrong for the other. These checks are cheap lexical proxies for
the facts an embedding blurs: numbers, dates, names, polarity, who does what to whom
(`roles.py`) and direction words.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from gateway.cache.roles import arguments_swapped

_WRITTEN_NUMBERS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WRITTEN_NUMBERS.update(
    {
        "thirty": "30",
        "forty": "40",
        "fifty": "50",
        "sixty": "60",
        "seventy": "70",
        "eighty": "80",
        "ninety": "90",
        "hundred": "100",
        "thousand": "1000",
        "million": "1000000",
        "billion": "1000000000",
        "dozen": "12",
        "half": "0.5",
        "once": "1x",
        "twice": "2x",
    }
)
_CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "₹": "inr"}
_CURRENCY_WORDS = {
    "dollar": "usd",
    "dollars": "usd",
    "usd": "usd",
    "euro": "eur",
    "euros": "eur",
    "eur": "eur",
    "pound": "gbp",
    "pounds": "gbp",
    "rupees": "inr",
    "rs": "inr",
    "yen": "jpy",
}
_PERCENT_WORDS = frozenset({"percent", "per cent", "percentage"})
_NUMBER = re.compile(r"([$€£¥₹])?\s?(\d+(?:,\d{3})*(?:\.\d+)?)(\s?%|(?:st|nd|rd|th)\b)?")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\u2019\-]*")

_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11,
    "december": 12, "dec": 12,
}  # fmt: skip
# "may" and "march" are common verbs: count them as months only when capitalised mid-sentence.
_AMBIGUOUS_MONTHS = frozenset({"may", "march"})
_WEEKDAYS = {
    "monday": 1, "mon": 1, "tuesday": 2, "tue": 2, "tues": 2, "wednesday": 3, "wed": 3,
    "thursday": 4, "thu": 4, "thurs": 4, "friday": 5, "fri": 5, "saturday": 6, "sat": 6,
    "sunday": 7, "sun": 7,
}  # fmt: skip
_RELATIVE_DAYS = frozenset(
    {"today", "tomorrow", "yesterday", "tonight", "weekend", "weekday", "morning", "evening"}
)
_NEGATIONS = frozenset(
    {"not", "no", "never", "without", "none", "nobody", "nothing", "neither", "nor", "cannot"}
)
# Each group maps a word to a direction; a request asking the opposite direction, or asking
# a direction the other does not, is a different question.
_DIRECTION_GROUPS: tuple[dict[str, int], ...] = (
    {"more": 1, "less": -1, "fewer": -1},
    {"most": 1, "least": -1},
    {"before": 1, "after": -1, "prior": 1},
    {"increase": 1, "increases": 1, "increasing": 1, "raise": 1, "decrease": -1,
     "decreases": -1, "decreasing": -1, "reduce": -1, "lower": -1},
    {"min": -1, "minimum": -1, "max": 1, "maximum": 1},
    {"first": 1, "last": -1},
    {"higher": 1, "highest": 1, "lowest": -1},
    {"above": 1, "below": -1},
    {"larger": 1, "largest": 1, "bigger": 1, "biggest": 1, "smaller": -1, "smallest": -1},
    {"earliest": 1, "latest": -1},
    {"oldest": 1, "newest": -1},
    # Evaluative groups: so common in paraphrases ("best way to" vs "how to", "fastest way"
    # vs "quickly") that only opposite directions on both sides reject, not a one-sided word.
    {"faster": 1, "fastest": 1, "slower": -1, "slowest": -1},
    {"cheapest": -1, "cheaper": -1, "expensive": 1},
    {"best": 1, "better": 1, "worst": -1, "worse": -1},
)  # fmt: skip
_LENIENT_GROUPS = frozenset(range(len(_DIRECTION_GROUPS) - 3, len(_DIRECTION_GROUPS)))
_NOT_ENTITIES = frozenset(
    {"i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "tv", "hi", "hey", "hello", "pc"}
)


class Verdict(NamedTuple):
    """Outcome of checking a semantic candidate: accepted, or the reason it was refused."""

    accepted: bool
    reason: str


class _Facts(NamedTuple):
    numbers: frozenset[str]
    dates: frozenset[str]
    entities: frozenset[str]
    words: frozenset[str]
    negations: int
    directions: tuple[frozenset[int], ...]


def _numbers(text: str, lowered_words: list[str]) -> set[str]:
    found: set[str] = set()
    for match in _NUMBER.finditer(text):
        symbol, digits, suffix = match.groups()
        value = digits.replace(",", "")
        tail = text[match.end() : match.end() + 12].lower().lstrip()
        if (suffix and "%" in suffix) or any(tail.startswith(w) for w in _PERCENT_WORDS):
            value += "%"
        elif suffix:
            value += suffix.strip().lower()
        currency = _CURRENCY_SYMBOLS.get(symbol or "")
        if currency is None:
            following = tail.split(" ", 1)[0].strip(".,?!") if tail else ""
            currency = _CURRENCY_WORDS.get(following)
        found.add(f"{currency}:{value}" if currency else value)
    for i, word in enumerate(lowered_words):
        if word in _WRITTEN_NUMBERS:
            value = _WRITTEN_NUMBERS[word]
            nxt = lowered_words[i + 1] if i + 1 < len(lowered_words) else ""
            if nxt in _PERCENT_WORDS:
                value += "%"
            found.add(value)
    return found


def _facts(text: str) -> _Facts:
    raw_words = _WORD.findall(text)
    lowered = [w.lower().replace("\u2019", "'") for w in raw_words]
    sentence_starts = {0}
    for m in re.finditer(r"[.!?:;]\s+|\n", text):
        # Index of the first word after a sentence break.
        sentence_starts.add(len(_WORD.findall(text[: m.end()])))
    dates: set[str] = set()
    entities: set[str] = set()
    for i, (raw, low) in enumerate(zip(raw_words, lowered, strict=True)):
        capitalised_mid = raw[0].isupper() and i not in sentence_starts
        if low in _MONTHS and (low not in _AMBIGUOUS_MONTHS or capitalised_mid):
            dates.add(f"month:{_MONTHS[low]}")
            continue
        if low in _WEEKDAYS and (len(low) > 3 or raw[0].isupper()):
            dates.add(f"weekday:{_WEEKDAYS[low]}")
            continue
        if low in _RELATIVE_DAYS:
            dates.add(low)
            continue
        is_acronym = len(raw) >= 2 and raw.isupper()
        if (capitalised_mid or is_acronym) and low not in _NOT_ENTITIES:
            entities.add(low.removesuffix("'s"))  # "Australia's" names Australia
    for year in re.findall(r"\b(1[5-9]\d\d|20\d\d)s?\b", text):
        dates.add(f"year:{year}")
    # A count, not a flag: "why is no one answering" and "why isn't no one answering" both
    # hold a negation, yet the second has flipped its polarity again.
    negations = sum(w in _NEGATIONS or w in _CONTRACTIONS or w.endswith("n't") for w in lowered)
    directions = tuple(
        frozenset(group[w] for w in lowered if w in group) for group in _DIRECTION_GROUPS
    )
    return _Facts(
        numbers=frozenset(_numbers(text, lowered)),
        dates=frozenset(dates),
        entities=frozenset(entities),
        words=frozenset(lowered) | {w.removesuffix("'s") for w in lowered},
        negations=negations,
        directions=directions,
    )


_CONTRACTIONS = frozenset(
    {
        "don't", "doesn't", "didn't", "isn't", "aren't", "wasn't", "weren't", "won't",
        "wouldn't", "can't", "couldn't", "shouldn't", "haven't", "hasn't", "hadn't", "mustn't",
        "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "wont", "wouldnt",
        "cant", "couldnt", "shouldnt", "havent", "hasnt", "hadnt",
    }
)  # fmt: skip


def verify_candidate(query: str, candidate: str) -> Verdict:
    """Accept `candidate`'s answer for `query` unless a fact-bearing detail differs.

    Rules, in order: the sets of numbers (digits, written one..twenty and tens, percentages,
    currency amounts) must be equal; the sets of dates (years, months, weekdays, relative days)
    must be equal; names (capitalised mid-sentence, or acronyms) must not be replaced, nor
    added where no name is shared (matched as words of the other side, in any case); negation
    words must be as many on both sides; two arguments must not swap roles ("man bites dog"
    vs "dog bites man", `roles.arguments_swapped`); and direction words (more/less,
    before/after, ...) must agree.
    """
    a, b = _facts(query), _facts(candidate)
    if a.numbers != b.numbers:
        return Verdict(False, "numbers differ")
    if a.dates != b.dates:
        return Verdict(False, "dates differ")
    # Set difference against the other side's words, not its names: Quora-style text is
    # carelessly cased, and "trump" should still match "Trump". A name may be dropped when
    # another name still anchors the request ("Donald Trump" vs "trump"), but not replaced
    # (names unmatched on both sides) and not added to a request that shares no name.
    missing_in_b, missing_in_a = a.entities - b.words, b.entities - a.words
    if (
        (missing_in_b and missing_in_a)
        or (missing_in_b and not (a.entities & b.words))
        or (missing_in_a and not (b.entities & a.words))
    ):
        return Verdict(False, "named entities differ")
    if a.negations != b.negations:
        return Verdict(False, "negation differs")
    if arguments_swapped(query, candidate):
        return Verdict(False, "argument order differs")
    for index, (da, db) in enumerate(zip(a.directions, b.directions, strict=True)):
        if da == db:
            continue
        if index in _LENIENT_GROUPS and not (da and db):
            continue
        return Verdict(False, "comparison words differ")
    return Verdict(True, "accepted")


def facts_replaced(a: str, b: str) -> str | None:
    """Why two answers state different facts, or None: a number or a date that each side has
    and the other lacks (one replaced by another). Answers phrase things freely, so a fact
    only one side mentions, and names, are left to the embedding comparison."""
    fa, fb = _facts(a), _facts(b)
    if (fa.numbers - fb.numbers) and (fb.numbers - fa.numbers):
        return "numbers differ"
    if (fa.dates - fb.dates) and (fb.dates - fa.dates):
        return "dates differ"
    return None
