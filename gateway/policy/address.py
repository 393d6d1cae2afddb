"""Street address detection by pattern: house number, capitalised street name and a street
suffix, optionally followed by a unit, city, state and ZIP code.

A pattern finds the well-formed English, continental, central and eastern European forms; a
street corner ("the corner of King and Queen") is found from its words; other addresses
without a house number or suffix need a model and are not attempted. A postal code on its own
is reported (`POSTAL_CODE`) only after a label that names it ("ZIP:", "postcode").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.policy.spans import Span

_SUFFIX = (
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Place|Pl"
    r"|Square|Sq|Terrace|Ter|Way|Parkway|Pkwy|Highway|Hwy|Circle|Cir|Trail|Trl|Route|Rte"
    r"|Alley|Crescent|Close|Row|Plaza|Expressway|Freeway|Loop|Path|Pike|Ridge|Crossing"
    r"|Gardens|Grove|Hill|Mews|Park|Point|Walk|View|Vista|Heights|Estates?|Junction"
    r"|Landing|Meadows?|Mill|Port|Springs?|Station|Turnpike|Valley|Village)"
)
_CAP_WORD = r"[A-ZÀ-ÖØ-ÞΑ-ΩА-Я][^\W_]*(?:['.-][^\W_]+)*"
_UNIT_LINE = r"(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Floor|Fl\.?|#)\s*[A-Za-z0-9-]+"
_UNIT = rf"(?:,?\s+{_UNIT_LINE})"
# One line of the locality part: "Springfield, IL 62704", "HARSTAD", "Norway 95441".
_LOCALITY = rf"{_CAP_WORD}(?:[ \t-]+{_CAP_WORD}){{0,3}}(?:,?[ \t]+[A-Z]{{2}})?(?:[ \t]+\d{{4,6}})?"
# The part after the street: further lines of an address block, or comma-separated
# localities that end in a postal code (without the code, ", Bob said" would be taken too).
_TAIL = (
    rf"(?:(?:[ \t]*,?[ \t]*\n[ \t]*,?[ \t]*(?:{_LOCALITY}|{_UNIT_LINE}|\d{{4,6}}\b)){{1,4}}"
    rf"|(?:,[ \t]*{_LOCALITY}){{1,3}}(?<=\d))"
)

# "3744 Retreat Avenue", "12 Timms Drive Suite 215", "1600 Pennsylvania Ave NW, Washington,
# DC 20500".
_NUMBER_FIRST = re.compile(
    rf"(?<![\w.,-])\d{{1,6}}[A-Za-z]?\s+(?:{_CAP_WORD}\s+){{1,4}}?{_SUFFIX}\b\.?"
    rf"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?{_UNIT}*(?P<tail>{_TAIL})?"
)
# Continental European: street name with its generic part fused, then the number
# ("Vesterskovvej 79", "Hauptstraße 5a", "Koskikatu 25").
_NAME_FIRST = re.compile(
    r"\b[A-ZÀ-ÖØ-Þ][^\W\d_]*(?:vej|gade|straße|strasse|str\.|weg|katu|tie|laan|straat"
    r"|gatan|vägen|allee|gasse|platz|plein|gracht|veien|gata)\s+\d{1,4}[a-zA-Z]?\b"
    rf"{_UNIT}*{_TAIL}?"
)
# A street name between a building number and a house number, then a unit or a locality:
# "20789 Allika 46\n Suite 501\n Riisa", "450 Præstevænget 15, København V". Two numbers
# around a capitalised name, with an address tail, are rarely anything else.
_NUMBERED_NAME = re.compile(
    rf"(?<![\w.,-])\d{{1,6}}\s+{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}}\s+\d{{1,4}}[a-zA-Z]?\b\.?"
    rf"(?:{_UNIT}+{_TAIL}?|{_TAIL}"
    rf"|,[ \t]*{_CAP_WORD}(?:[ \t]+{_CAP_WORD}){{0,2}}(?=[ \t]*(?:$|[.;\n])))"
)
# Romance-language forms with the street type first: "Piazza Rezzonico 35",
# "Calle de Alcalá 50", "26 rue des Lilas".
_PARTICLES = r"(?:(?:de|del|della|dei|des|du|la|le|da|do|dos|das|di|l')\s*)*"
_TYPE_FIRST = re.compile(
    rf"\b(?:Rue|Via|Viale|Piazza|Corso|Calle|Avenida|Rua|Carrer|Paseo|Praça|Largo|Strada"
    rf"|Chemin|Allée|Impasse)\s+{_PARTICLES}{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,3}},?\s+\d{{1,4}}"
    rf"[a-zA-Z]?\b{_UNIT}*{_TAIL}?"
    rf"|(?<![\w.,-])\d{{1,4}}(?:\s*(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|place|chemin|allée"
    rf"|impasse|quai|via|calle)\s+{_PARTICLES}[^\W\d_]+(?:\s+{_CAP_WORD}){{0,3}}{_TAIL}?"
)
# Central and eastern European forms, with the street type as a word of its own after the
# name ("Erzsébet tér 19.", "Kálmán Imre u. 12.", Hungarian) or before it ("ul. Chrzanowska
# 61", Polish; "Λεωφόρος Συγγρού 119", Greek).
_TYPE_AFTER = re.compile(
    rf"\b{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}}\s+(?:u\.|utca|út|útja|tér|tere|körút|krt\.|köz"
    rf"|fasor|rakpart|rkp\.|sétány)\s+\d{{1,4}}[a-zA-Z]?\b\.?{_UNIT}*{_TAIL}?"
    rf"|(?<![\w.])(?:ul\.|ulica|al\.|aleja|pl\.|plac|os\.|osiedle|Λεωφόρος|Λεωφ\.|Οδός|οδός)"
    rf"\s+{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,2}}\s+\d{{1,4}}[a-zA-Z]?\b{_UNIT}*{_TAIL}?"
)
_TYPE_AFTER_HINTS = (
    "u.", "utca", "út", "tér", "tere", "körút", "krt.", "köz", "fasor", "rakpart", "rkp.",
    "sétány", "ul.", "ulica", "al.", "aleja", "pl.", "plac", "os.", "osiedle", "λεωφ", "οδός",
)  # fmt: skip
_TYPE_FIRST_HINTS = (
    "rue", "via", "piazza", "corso", "calle", "avenida", "rua", "carrer", "paseo", "praça",
    "largo", "strada", "chemin", "allée", "impasse", "avenue", "boulevard", "place", "quai",
)  # fmt: skip
_BOX_HINTS = ("box", "apo ", "fpo ", "dpo ")
# Post-office boxes and US military addresses (APO/FPO/DPO with AA/AE/AP).
_BOX = re.compile(
    rf"\b(?:P\.?\s?O\.?\s?Box|Post\s+Office\s+Box)\s+\d{{1,6}}{_TAIL}?"
    r"|(?i:\b(?:(?:Unit|PSC)\s+\d{3,5},?\s+Box\s+\d{3,5}|USN?[SV]\s+[^\W\d_]+|USCGC\s+[^\W\d_]+)"
    r"\s+(?:APO|FPO|DPO)\s+(?:AA|AE|AP)\s+\d{5}\b)"
)


# A street corner: "the corner of King Street and Queen", "the corner of 25 Dili Gianni Street
# and King Forges". Two capitalised names joined by "and" after "corner of" are a place.
_CORNER = re.compile(
    rf"\b(?:the\s+)?corner\s+of\s+(?:\d{{1,5}}\s+)?(?:(?:ul\.|u\.|C/)\s+)?{_CAP_WORD}"
    rf"(?:\s+(?:\d{{1,5}}\b\.?|{_CAP_WORD}|[a-zà-ÿ]{{1,5}}\b\.?)){{0,4}}?\s+(?:and|&)\s+"
    rf"(?:\d{{1,5}}\s+)?{_CAP_WORD}(?:\s+{_CAP_WORD}){{0,3}}"
)


def detect_street_addresses(text: str) -> Iterator[Span]:
    """Street addresses that a pattern can find (see the module docstring for the forms)."""
    for m in _NUMBER_FIRST.finditer(text):
        # A locality tail makes it near certain; a bare "12 Main St" less so.
        confidence = 0.85 if m.group("tail") else 0.7
        yield Span(m.start(), m.end(), "STREET_ADDRESS", m.group(), confidence, "street_address")
    lowered = text.lower()
    for pattern, confidence, hints in (
        (_NAME_FIRST, 0.6, None),
        (_NUMBERED_NAME, 0.6, None),
        (_TYPE_FIRST, 0.6, _TYPE_FIRST_HINTS),
        (_TYPE_AFTER, 0.6, _TYPE_AFTER_HINTS),
        (_BOX, 0.8, _BOX_HINTS),
        (_CORNER, 0.6, ("corner",)),
    ):
        # The rarer forms are only tried when one of their words occurs: a substring test
        # is far cheaper than a regex scan over a long prompt that has no address.
        if hints is not None and not any(h in lowered for h in hints):
            continue
        for m in pattern.finditer(text):
            yield Span(
                m.start(), m.end(), "STREET_ADDRESS", m.group(), confidence, "street_address"
            )


# A postal code that a label names ("ZIP: 394 13", "my zip code is 2371", "postcode SW1A 1AA").
# On its own a code matches too many numbers to report; labelled, it is the one part of an
# address a form asks for alone (HIPAA's Safe Harbor lists it among the identifiers).
_POSTAL_CODE = re.compile(
    r"\b(?:(?i:zip(?:[ \t-]?code)?|postal[ \t-]?code|post[ \t-]?code|postleitzahl)|PLZ|CAP|CEP)"
    r"\b[ \t]*(?:(?i:is)[ \t]+|[:=#][ \t]*)?"
    # the code: a digit in its first group; a second group with a digit or two letters
    r"(?P<code>(?=[A-Z]{0,4}\d)[A-Z0-9]{2,5}(?:[ -](?=[A-Z]{0,3}\d|[A-Z]{2}\b)[A-Z0-9]{2,4})?)"
    r"(?![\w-])"
)
_POSTAL_HINTS = ("zip", "postal", "post", "plz", "cap", "cep")


def detect_postal_codes(text: str) -> Iterator[Span]:
    """Postal codes after a label that names them."""
    lowered = text.lower()
    if not any(h in lowered for h in _POSTAL_HINTS):
        return
    for m in _POSTAL_CODE.finditer(text):
        code = m.group("code")
        yield Span(m.start("code"), m.end("code"), "POSTAL_CODE", code, 0.8, "postal_code")
