"""Text normalisation in front of every detector, with offsets back to the raw text.

Invisible and look-alike characters hide values and attacks from pattern detectors: a
zero-width space inside an e-mail, a soft hyphen inside a card number, fullwidth digits in an
SSN, a Cyrillic "а" in an ``sk-`` key prefix, "ign\u200bore previous instructions". Detectors
therefore read a *normalised* copy of the text:

1. format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphen, BOM,
   bidirectional controls, tag characters) and variation selectors are dropped;
2. each grapheme cluster (a character and the combining marks after it) is NFKC-normalised
   (fullwidth and mathematical letters and digits, ligatures, non-breaking spaces), decimal
   digits of any script become ASCII digits, dashes become ``-``, and combining marks left on
   an ASCII letter after NFKC (strike-through, underline overlays) are dropped;
3. Cyrillic and Greek letters that look like Latin ones are mapped to them inside words that
   are disguises: a word mixing them with Latin letters or digits (``ехаmрlе.com``), or a word
   of look-alikes only in a text without real words of their script. A real Russian or Greek
   word keeps its letters (it has letters with no Latin twin, or its neighbours do).

Every character of the normalised text remembers the raw range it came from, so a span found
in the normalised text maps back to the raw characters (`Normalized.to_raw`): redaction then
replaces the original characters, the invisible ones inside the value included.
"""

from __future__ import annotations

import unicodedata
from array import array
from dataclasses import dataclass

# Latin look-alikes: Cyrillic and Greek letters whose usual glyph is a Latin letter's (the
# subset of Unicode's confusables.txt that maps one letter to one ASCII letter).
_CONFUSABLES: dict[str, str] = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k", "м": "m", "н": "h",
    "о": "o", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "ԁ": "d", "ԛ": "q",
    "ԝ": "w", "ѵ": "v", "ӏ": "l", "ɡ": "g",
    # Cyrillic upper case
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C",
    "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J", "Ԁ": "D", "Ԛ": "Q", "Ԝ": "W",
    "Ү": "Y", "Ӏ": "I",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "ο": "o", "ν": "v", "ι": "i", "κ": "k",
    "α": "a", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ϲ": "c", "ϳ": "j",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Normalized:
    """`text` normalised from `raw`; character i of `text` came from ``raw[starts[i]:ends[i]]``.

    When nothing needed normalising (`changed` is False), `text` is `raw` and offsets are the
    identity.
    """

    raw: str
    text: str
    starts: array[int] | None = None
    ends: array[int] | None = None

    @property
    def changed(self) -> bool:
        """Whether `text` differs from `raw` (offsets are not the identity)."""
        return self.starts is not None

    def to_raw(self, start: int, end: int) -> tuple[int, int]:
        """The raw range that the normalised range ``[start, end)`` came from (for an empty
        range, the raw position before which it sits)."""
        if self.starts is None or self.ends is None:
            return start, end
        if end <= start:
            position = self.starts[start] if start < len(self.starts) else len(self.raw)
            return position, position
        return self.starts[start], self.ends[end - 1]


def normalize(raw: str) -> Normalized:
    """The detectors' view of `raw` (see the module docstring); cheap for ASCII text, which
    is returned as it is."""
    if raw.isascii():
        return Normalized(raw, raw)
    out: list[str] = []
    starts: array[int] = array("l")
    ends: array[int] = array("l")
    i, n = 0, len(raw)
    while i < n:
        ch = raw[i]
        if _invisible(ch):
            i += 1
            continue
        j = i + 1
        while j < n and unicodedata.combining(raw[j]):  # the cluster's combining marks
            j += 1
        for piece in _cluster(raw[i:j]):
            out.append(piece)
            starts.append(i)
            ends.append(j)
        i = j
    text = "".join(out)
    text = _unmask_lookalikes(text)
    if text == raw:
        return Normalized(raw, raw)
    return Normalized(raw, text, starts, ends)


def _invisible(ch: str) -> bool:
    if ch.isascii():
        return False
    if unicodedata.category(ch) == "Cf":  # ZWSP, ZWJ, soft hyphen, BOM, bidi and tag chars
        return True
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF  # variation selectors


def _cluster(cluster: str) -> str:
    """One grapheme cluster, normalised; always one output character per input one except
    for NFKC expansions (ligatures, ``½``), which all map back to the same cluster."""
    if cluster.isascii():
        return cluster
    folded = unicodedata.normalize("NFKC", cluster)
    pieces = []
    for ch in folded:
        if ch.isascii():
            pieces.append(ch)
            continue
        category = unicodedata.category(ch)
        if category == "Nd":
            pieces.append(str(unicodedata.decimal(ch)))
        elif category == "Pd" or ch == "\u2212":  # hyphens, dashes, the minus sign
            pieces.append("-")
        elif category in ("Mn", "Me") and pieces and pieces[-1].isascii():
            continue  # an overlay left on an ASCII letter (strike-through, underline)
        elif category == "Zs":
            pieces.append(" ")
        else:
            pieces.append(ch)
    return "".join(pieces)


def _unmask_lookalikes(text: str) -> str:
    """Map look-alike letters to Latin in words that are disguises: a word mixing them with
    Latin letters or digits ("ѕk-proj-..."), or a word of look-alikes only in a text with
    no real word of their script. Length-preserving, so the offsets built before stay valid."""
    if not any(ch in _CONFUSABLES for ch in text):
        return text
    real_scripts = {_script(ch) for ch in text if _is_foreign_letter(ch) and ch not in _CONFUSABLES}
    chars = list(text)
    n = len(chars)
    i = 0
    while i < n:
        if chars[i].isspace():
            i += 1
            continue
        j = i
        lookalikes: set[str] = set()
        latin = genuine = False
        while j < n and not chars[j].isspace():
            ch = chars[j]
            if ch in _CONFUSABLES:
                lookalikes.add(_script(ch))
            elif _is_foreign_letter(ch):
                genuine = True  # a letter with no Latin twin: a real word of that script
            elif ch.isascii() and ch.isalnum():
                latin = True
            j += 1
        if lookalikes and not genuine and (latin or not lookalikes & real_scripts):
            for k in range(i, j):
                chars[k] = _CONFUSABLES.get(chars[k], chars[k])
        i = j
    return "".join(chars)


def _is_foreign_letter(ch: str) -> bool:
    return not ch.isascii() and ch.isalpha()


def _script(ch: str) -> str:
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
