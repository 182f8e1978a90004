"""The VR an element really has: what it says, else what the dictionary says.

A value that arrived under a VR its dictionary entry does not allow (a date stored as LT,
a name as OW) is not trusted to be cleaned by its VR's rule.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from src.ingestion.encoding.dictionary import dictionary_has_tag, dictionary_vr

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement, RawDataElement


@functools.lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> frozenset[str]:
    if not dictionary_has_tag(tag):
        return frozenset()
    return frozenset(str(dictionary_vr(tag)).split(" or "))


def _foreign_vr(tag: int, vr: str) -> bool:
    """Whether a known attribute arrived with a VR its dictionary entry does not allow."""
    allowed = _dictionary_vrs(tag)
    return bool(allowed) and vr not in allowed and vr != "UN"


def _vr_of(elem: DataElement | RawDataElement, tag: int) -> str:
    """The element's VR, from the element when it says, else from the dictionary."""
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    if dictionary_has_tag(tag):
        return str(dictionary_vr(tag)).split(" or ")[0]
    return str(vr or "UN")


#: VRs whose values are decided as text (names, text, dates, UIDs): an element of one of
#: these attributes that arrived as OB or UN is decoded by its dictionary VR first.
_DECODED_VRS = frozenset(
    {
        "AE",
        "AS",
        "CS",
        "DA",
        "DS",
        "DT",
        "IS",
        "LO",
        "LT",
        "PN",
        "SH",
        "ST",
        "TM",
        "UC",
        "UI",
        "UR",
        "UT",
    }
)


def _text_dictionary_vr(tag: int) -> str | None:
    """The dictionary VR of ``tag`` when it is a text-like VR (else ``None``)."""
    allowed = _dictionary_vrs(tag)
    if len(allowed) == 1:
        (vr,) = allowed
        if vr in _DECODED_VRS:
            return vr
    return None


def _decode_opaque(value: object, encoding: str) -> str:
    """Bytes that an OB/UN element held, read as the text its attribute should be."""
    data = bytes(value) if isinstance(value, bytes | bytearray | memoryview) else b""
    try:
        text = data.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        text = data.decode("latin-1")
    return text.rstrip("\x00 ")
