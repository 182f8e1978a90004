"""The VR an element really has: what it says, else what the dictionary says.

A value that arrived under a VR its dictionary entry does not allow (a date stored as LT,
a name as OW) is not trusted to be cleaned by its VR's rule.
"""

from __future__ import annotations

import functools

from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement


@functools.lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> frozenset[str]:
    if not dictionary_has_tag(tag):
        return frozenset()
    return frozenset(str(dictionary_VR(tag)).split(" or "))


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
        return str(dictionary_VR(tag)).split(" or ")[0]
    return str(vr or "UN")
