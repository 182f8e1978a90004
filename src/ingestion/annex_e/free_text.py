"""Free text cleaned of identifying information: the C action on text (PS3.15 E.3.5,
E.3.6) and the safety net's cleaning of kept text.

What goes: this dataset's identifying values (its patient's names, IDs, birth date; with
a Clean option, every person's and institution's name the instance holds: see
:func:`src.ingestion.annex_e.safety_net.other_names`), matched as whole words with case,
accents and compatibility forms folded, so that an identifier never cuts a word apart
("ST" is not taken out of "CHEST"); persons named with a title or a role ("Dr Miller",
"nurse K. Osei"); dates, long numbers, telephone numbers, e-mail addresses, street
addresses, and identifiers introduced as such ("MRN: A1234"). What stays is the rest
of the text, so that a description remains a description.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

#: Field length limits by VR (PS3.5 6.2), for a cleaned value written back.
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "PN": 64, "UC": 0, "LT": 10240}
_DATE_PATTERN = re.compile(
    r"\b(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|(19|20)\d{6})\b"
)
_LONG_NUMBER = re.compile(r"\d[\d\s-]{4,}\d")
_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_NAME_WORD = rf"[{_UPPER}][\w'’-]*"
#: A person named with a title, a role or a relation: the name goes (one to three
#: capitalised words, initials allowed); the title stays, the rest of the text too.
_TITLED_NAME = re.compile(
    r"(?<!\w)(?i:dr|doctor|mr|mrs|ms|miss|mx|prof|professor|nurse|sister|brother|rev|"
    r"father|mother|technologist|radiographer|sonographer|resident|fellow|attending|"
    r"surgeon|wife|husband|son|daughter|partner|friend|guardian|carer|caregiver|"
    r"neighbou?r|relative|aunt|uncle|cousin)\.?,?\s+"
    rf"((?:[{_UPPER}]\.\s*){{0,2}}{_NAME_WORD}(?:\s+{_NAME_WORD}){{0,2}})"
)
_PHONE = re.compile(r"(?<!\w)\+?\(?\d{2,4}\)?[\s./-]?\d{2,4}[\s./-]?\d{3,4}(?!\w)")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_STREET = re.compile(
    r"(?<!\w)\d{1,5}\s+(?:[^\W\d_][\w'-]*\s+){1,3}(?:street|st|road|rd|avenue|ave|lane|ln|"
    r"drive|boulevard|blvd|way|court|ct|place|pl|square|sq|strasse|straße|weg|rue|via)\b\.?",
    re.IGNORECASE,
)
#: An identifier introduced as one: "MRN 12345", "ID: A-99812", "Acc# 7781".
_INTRODUCED_ID = re.compile(
    r"(?<!\w)(?:mrn|id|acc(?:ession)?|case|patient|pt|record|chart)\s*(?:no\.?|number|#)?"
    r"\s*[:#]?\s*([A-Z0-9][A-Z0-9-]*\d[A-Z0-9-]*)",
    re.IGNORECASE,
)
_PATTERNS = (_EMAIL, _STREET, _DATE_PATTERN, _PHONE, _LONG_NUMBER)


@functools.lru_cache(maxsize=65536)
def _fold(text: str) -> tuple[str, tuple[int, ...]]:
    """``text`` casefolded without accents (NFKD, combining marks dropped), and for each
    folded character the position in ``text`` it came from (one more entry: the end)."""
    out: list[str] = []
    where: list[int] = []
    for i, char in enumerate(text):
        for piece in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(piece):
                continue
            for folded in piece.casefold():
                out.append(folded)
                where.append(i)
    where.append(len(text))
    return "".join(out), tuple(where)


def _word_spans(text: str, identifiers: Iterable[str]) -> list[tuple[int, int]]:
    """Where an identifier occurs in ``text`` as whole words (not flanked by letters or
    digits; ideographs anywhere), compared folded; positions in ``text``."""
    folded, where = _fold(text)
    spans = []
    for ident in identifiers:
        needle = _fold(ident)[0].strip()
        # Scripts that write names in one or two characters, without spaces between
        # words (CJK): the characters themselves, wherever they are.
        ideographic = bool(needle) and all(ord(c) >= 0x2E80 for c in needle)
        if len(needle) < 2 and not ideographic:
            continue
        start = folded.find(needle)
        while start != -1:
            end = start + len(needle)
            if ideographic or (
                (start == 0 or not folded[start - 1].isalnum())
                and (end == len(folded) or not folded[end].isalnum())
            ):
                spans.append((where[start], where[end]))
            start = folded.find(needle, start + 1)
    return spans


def _cut(text: str, spans: list[tuple[int, int]]) -> str:
    pieces, last = [], 0
    for a, b in sorted(spans):
        a = max(a, last)
        if b > a:
            pieces.append(text[last:a])
            last = b
    pieces.append(text[last:])
    return "".join(pieces)


def _clean_text(text: str, identifiers: Iterable[str], vr: str) -> str:
    """Remove identifying information from free text (see the module docstring)."""
    spans = _word_spans(text, identifiers)
    for pattern in (_TITLED_NAME, _INTRODUCED_ID):
        spans += [m.span(1) for m in pattern.finditer(text)]
    out = _cut(text, spans) if spans else text
    for pattern in _PATTERNS:
        out = pattern.sub("", out)
    if out == text:
        return text  # nothing identifying: the value stays true (a "-0500" keeps its sign)
    out = re.sub(r"\s{2,}", " ", out).strip(" ,;:-^")
    limit = _MAX_LEN.get(vr)
    if limit:
        out = out[:limit]
    if vr == "CS":
        out = re.sub(r"[^A-Z0-9 _]", "", out.upper())
    return out


__all__ = ["_MAX_LEN", "_clean_text"]
