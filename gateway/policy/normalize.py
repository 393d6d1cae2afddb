"""Text normalisation in front of every detector, with offsets back to the raw text.

Invisible and look-alike characters hide values and attacks from pattern detectors: a
zero-width space inside an e-mail, a soft hyphen inside a card number, fullwidth digits in an
SSN, a Cyrillic "а" in an ``sk-`` key prefix, "ign\u200bore previous instructions". Detectors
therefore read a *normalised* copy of the text:

0. JSON's ``\\uXXXX`` escapes are decoded (values in tool-call arguments and schemas);
1. format characters (Unicode category Cf: zero-width spaces and joiners, soft hyphen, BOM,
   bidirectional controls) and variation selectors are dropped, except tag characters, which
   read as the ASCII they mirror (a model reads text spelled in them);
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

import re
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
    is returned as it is, and for mostly-ASCII text, whose ASCII stretches are copied whole."""
    if "\\u" in raw:  # JSON's \uXXXX escapes: decoded first, then normalised
        unescaped = _unescape(raw)
        if unescaped.changed:
            return _composed(unescaped, _normalized(unescaped.text))
    return _normalized(raw)


def _normalized(raw: str) -> Normalized:
    if raw.isascii():
        return Normalized(raw, raw)
    out: list[str] = []
    starts: array[int] = array("l")
    ends: array[int] = array("l")
    position = 0
    for run in _NON_ASCII.finditer(raw):
        first = run.start()
        # A combining mark opening the run belongs to the ASCII letter before it.
        if first > position and unicodedata.combining(raw[first]):
            first -= 1
        if first > position:
            out.append(raw[position:first])
            starts.extend(range(position, first))
            ends.extend(range(position + 1, first + 1))
        _normalize_run(raw, first, run.end(), out, starts, ends)
        position = run.end()
    if position < len(raw):
        out.append(raw[position:])
        starts.extend(range(position, len(raw)))
        ends.extend(range(position + 1, len(raw) + 1))
    text = _unmask_lookalikes("".join(out))
    if text == raw:
        return Normalized(raw, raw)
    return Normalized(raw, text, starts, ends)


_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_ESCAPE = re.compile(
    r"\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\u([0-9a-fA-F]{4})"
)


def _unescape(raw: str) -> Normalized:
    """`raw` with JSON's `\\uXXXX` escapes (surrogate pairs included) decoded: a value written
    `ana\\u0040example.org` in a tool call's JSON arguments is an e-mail to the detectors."""
    out: list[str] = []
    starts: array[int] = array("l")
    ends: array[int] = array("l")
    position = 0
    for escape in _ESCAPE.finditer(raw):
        high, low, single = escape.groups()
        if single is not None:
            char = chr(int(single, 16))
        else:
            char = chr(0x10000 + ((int(high, 16) - 0xD800) << 10) + int(low, 16) - 0xDC00)
        if 0xD800 <= ord(char) <= 0xDFFF:
            continue  # a lone surrogate stays as written
        out.append(raw[position : escape.start()])
        starts.extend(range(position, escape.start()))
        ends.extend(range(position + 1, escape.start() + 1))
        out.append(char)
        starts.append(escape.start())
        ends.append(escape.end())
        position = escape.end()
    if position == 0:
        return Normalized(raw, raw)
    out.append(raw[position:])
    starts.extend(range(position, len(raw)))
    ends.extend(range(position + 1, len(raw) + 1))
    return Normalized(raw, "".join(out), starts, ends)


def _composed(first: Normalized, then: Normalized) -> Normalized:
    """`then` (a normalisation of `first.text`) with its offsets into `first.raw`."""
    if not then.changed:
        return Normalized(first.raw, then.text, first.starts, first.ends)
    assert first.starts is not None and first.ends is not None
    assert then.starts is not None and then.ends is not None
    starts = array("l", (first.starts[i] for i in then.starts))
    ends = array("l", (first.ends[i - 1] for i in then.ends))
    return Normalized(first.raw, then.text, starts, ends)


def _normalize_run(
    raw: str, i: int, end: int, out: list[str], starts: array[int], ends: array[int]
) -> None:
    """Normalise raw[i:end] cluster by cluster, appending to out and the offset arrays."""
    while i < end:
        code = ord(raw[i])
        if _TAG_FIRST <= code <= _TAG_LAST:  # "ASCII smuggling": tag characters spell text
            out.append(chr(code - _TAG_OFFSET))
            starts.append(i)
            ends.append(i + 1)
            i += 1
            continue
        if invisible(raw[i]):
            i += 1
            continue
        j = i + 1
        while j < end and unicodedata.combining(raw[j]):  # the cluster's combining marks
            j += 1
        for piece in _cluster(raw[i:j]):
            out.append(piece)
            starts.append(i)
            ends.append(j)
        i = j


# Unicode's tag characters mirror printable ASCII (U+E0020 is a tag space): invisible, yet a
# model reads them. The detectors read them as the ASCII they spell.
_TAG_OFFSET = 0xE0000
_TAG_FIRST, _TAG_LAST = 0xE0020, 0xE007E


def invisible(ch: str) -> bool:
    """Whether `ch` shows nothing (a format character or a variation selector)."""
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
    Latin letters or digits ("\u0455k-proj-..."), or a word of look-alikes only in a text with
    no real word of their script. Length-preserving, so the offsets built before stay valid."""
    if _LOOKALIKE.search(text) is None:
        return text
    real_scripts = {
        _script(ch)
        for run in _NON_ASCII.finditer(text)
        for ch in run.group()
        if ch.isalpha() and ch not in _CONFUSABLES
    }
    pieces: list[str] = []
    position = 0
    for word in _WORD_WITH_LOOKALIKE.finditer(text):
        value = word.group()
        lookalikes = {_script(ch) for ch in value if ch in _CONFUSABLES}
        genuine = any(_is_foreign_letter(ch) and ch not in _CONFUSABLES for ch in value)
        latin = any(ch.isascii() and ch.isalnum() for ch in value)
        if not genuine and (latin or not lookalikes & real_scripts):
            pieces.append(text[position : word.start()])
            pieces.append("".join(_CONFUSABLES.get(ch, ch) for ch in value))
            position = word.end()
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


_LOOKALIKE = re.compile("[" + "".join(_CONFUSABLES) + "]")
_WORD_WITH_LOOKALIKE = re.compile(r"\S*" + _LOOKALIKE.pattern + r"\S*")


def _is_foreign_letter(ch: str) -> bool:
    return not ch.isascii() and ch.isalpha()


def _script(ch: str) -> str:
    return unicodedata.name(ch, "UNKNOWN").split(" ", 1)[0]
