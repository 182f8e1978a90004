"""Where in a DICOM output an audit hit stands, and the rule that put it there.

A hit names the input's tag path of the identifying value; this says, for an output
that is a DICOM file, which element of the output holds it and which rule of
:func:`src.ingestion.annex_e.element_rules.decide` kept that element, so that a false
hit (a coded term equal to a name part, say) can be checked without showing the value.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from src.ingestion.annex_e.element_rules import _tag_text, decide
from src.ingestion.annex_e.iod_types import types_for_sop_class
from src.ingestion.annex_e.profile import ConfidentialityProfile, compile_rules
from src.ingestion.encoding.dictionary import keyword_for_tag

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


def _elements(
    ds: Dataset, prefix: str, seq: tuple[int, ...]
) -> Iterator[tuple[str, Any, tuple[int, ...]]]:
    for elem in ds:
        tag = int(elem.tag)
        path = prefix + (keyword_for_tag(tag) or _tag_text(tag))
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _elements(item, f"{path}[{i}].", (*seq, tag))
        elif tag != 0x7FE00010:
            yield path, elem, seq


def _holds(elem: Any, needle: bytes) -> bool:
    value = elem.value
    items = (
        value
        if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"
        else [value]
    )
    for item in items:
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8", "ignore")
        if needle in raw or needle in str(item).encode("latin-1", "ignore"):
            return True
    return False


def locate(path: Path, needle: bytes, profile: ConfidentialityProfile | None) -> str:
    """``"<tag path> <tag> <VR>, its rule <action> (<reason>)"`` for the first element of
    the DICOM file ``path`` that holds ``needle``; ``""`` when ``path`` is no DICOM file
    or no element holds it (the value is elsewhere: the preamble, pixel data)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path)
    except Exception:
        return ""
    profile = profile or ConfidentialityProfile()  # the profile OUTPUT was written with
    rules = compile_rules(profile)
    iod = types_for_sop_class(str(ds.get("SOPClassUID", "")))
    for where, elem, seq in _elements(ds, "", ()):
        if _holds(elem, needle):
            tag, vr = int(elem.tag), str(elem.VR)
            rule = decide(tag, vr, seq, iod, rules, profile, frozenset())
            return f"{where} {_tag_text(tag)} {vr}, its rule {rule.action} ({rule.reason})"
    return ""


__all__ = ["locate"]
