"""Names that a form or a sentence labels as names: "Name: Åsa Laine", "my name is vitoria",
"Directed by: Johannes Varvio".

The NER model reads names from how a sentence runs, and misses them where nothing runs: a
field in a form, a signature, a name written in lower case. A label says what the value is,
so these need no model; they are reported as ``PERSON`` (an entity type, so only for
profiles that ask for names).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.policy.spans import Span

_NAME_WORD = r"[^\W\d_][\w'-]*\.?"
# A field label, then one to four words up to the end of the line.
_FIELD = re.compile(
    r"(?im)^[ \t>]*(?:(?:full|first|last|patient|customer|contact|employee|client)[ \t]*)?"
    r"(?:name|patient|attn|attention|directed[ \t]+by|signed|from)[ \t]*:[ \t]*"
    rf"(?P<name>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,3}})[ \t]*$"
)
# "my name is X", "I am called X", "call me X": the words after, up to punctuation.
_SAID = re.compile(
    r"(?i)\b(?:my[ \t]+name[ \t]+is|i[ \t]+am[ \t]+called|call[ \t]+me|name's)[ \t]+"
    rf"(?P<name>{_NAME_WORD}(?:[ \t]+{_NAME_WORD}){{0,2}}?)(?=[ \t]*(?:$|[.,;:!?\n]|and\b))"
)


def detect_labelled_names(text: str) -> Iterator[Span]:
    """Names written after a label that says they are names (see the module docstring)."""
    if ":" not in text and "name" not in text.lower() and "call" not in text.lower():
        return
    for pattern, confidence in ((_FIELD, 0.8), (_SAID, 0.75)):
        for m in pattern.finditer(text):
            start, end = m.span("name")
            value = text[start:end].rstrip(".")
            yield Span(start, start + len(value), "PERSON", value, confidence, "labelled_name")
