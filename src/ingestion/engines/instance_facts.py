"""What the byte-level engine learns from a file's top level before it walks it.

The Specific Character Set (only those whose bytes can be searched as they are: ASCII,
Latin-1, UTF-8), the patient's key for the pseudonym and the date offset, the
identifiers the safety net looks for, the SOP Class (its IOD resolves combined codes)
and whether the pixels may hold burned-in text. The values are decoded exactly as the
pydicom path decodes them, so both key a patient the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from src.ingestion.annex_e.burned_in import burned_in_risk_of
from src.ingestion.annex_e.safety_net import (
    _BYTE_SEARCHABLE,
    _IDENTIFIER_TAGS,
    _INSTITUTION_TAGS,
    patient_key_of,
)
from src.ingestion.encoding.elements import Element, NotHandled, elements_of, items, text_of
from src.ingestion.engines.value_actions import split

_PATIENT_KEY_TAGS = (0x00100020, 0x00100021, 0x00100010, 0x00100030, 0x0020000D)


@dataclass(frozen=True)
class Facts:
    """The facts of one file (PHI: never logged)."""

    charset: str
    codec: str
    patient_key: str
    sop_class_uid: str
    at_risk: bool
    identifiers: list[tuple[int, Any]]


def read_facts(buf: Any, by_tag: dict[int, Element]) -> Facts:
    """Read the facts from the top-level elements of ``buf``, by tag.

    Raises
    ------
    NotHandled
        For a character set whose bytes cannot be searched as they are, a multi-valued
        patient key, or an overlay held in the pixels' high bits.
    """
    if any(
        g << 16 | 0x0102 in by_tag and g << 16 | 0x3000 not in by_tag
        for g in range(0x6000, 0x6020, 2)
    ):
        raise NotHandled  # an overlay in the pixels' high bits: masked by the pydicom path
    charset = text_of(buf, by_tag.get(0x00080005), "latin-1")
    if charset not in _BYTE_SEARCHABLE:
        raise NotHandled
    codec = "utf-8" if charset == "ISO_IR 192" else "latin-1"
    text = {t: text_of(buf, by_tag.get(t), codec) for t in _PATIENT_KEY_TAGS}
    if any("\\" in v for v in text.values()):
        raise NotHandled  # a multi-valued key: the pydicom path keys it as it always has
    sop_class = text_of(buf, by_tag.get(0x00080016), codec)
    at_risk = burned_in_risk_of(
        sop_class,
        text_of(buf, by_tag.get(0x00280301), codec),
        text_of(buf, by_tag.get(0x00080060), codec),
        text_of(buf, by_tag.get(0x00080008), codec),
        text_of(buf, by_tag.get(0x00480010), codec),
    )
    key = patient_key_of(
        text[0x00100020], text[0x00100021], text[0x00100010], text[0x00100030], text[0x0020000D]
    )
    return Facts(charset, codec, key, sop_class, at_risk, _identifier_values(buf, by_tag, codec))


def _identifier_values(buf: Any, by_tag: dict[int, Element], codec: str) -> list[tuple[int, Any]]:
    """The identifying values, as pydicom decodes them (a str, or a list for several)."""
    out: list[tuple[int, Any]] = []
    for tag in _IDENTIFIER_TAGS:
        el = by_tag.get(tag)
        if el is None or el.vr == b"SQ" or el.undefined:
            continue
        try:
            values = split(bytes(buf[el.value_start : el.value_end]), el.vr.decode(), codec)
        except UnicodeDecodeError:
            continue
        out.append((tag, values if len(values) > 1 else values[0]))
    return out


_NAME = 0x00100010
_MAX_DEPTH = 32


def names_anywhere(
    buf: Any, top: list[Element], implicit: bool, codec: str
) -> list[tuple[int, Any]]:
    """Every person name (PN) and institution, station or department value at any depth,
    as ``(tag, value)`` for :meth:`~src.ingestion.annex_e.safety_net._Identifiers.of_values`
    (a person's name under Patient's Name: its two-letter parts count as words)."""
    out: list[tuple[int, Any]] = []
    stack = [(top, 0)]
    while stack:
        elems, depth = stack.pop()
        for el in elems:
            if el.vr == b"SQ":
                if depth < _MAX_DEPTH:
                    for start, end in items(buf, el, implicit):
                        stack.append((elements_of(buf, start, end, implicit), depth + 1))
                continue
            if el.undefined or (el.vr != b"PN" and el.tag not in _INSTITUTION_TAGS):
                continue
            try:
                values = split(bytes(buf[el.value_start : el.value_end]), el.vr.decode(), codec)
            except UnicodeDecodeError:
                continue
            values = [v for v in values if v]
            if values:
                out.append((_NAME if el.vr == b"PN" else el.tag, values))
    return out


__all__ = ["Facts", "names_anywhere", "read_facts"]
