"""A header as raw top-level values, read straight from the buffer (no pydicom Dataset).

What the instance pipeline needs of a header on the byte path (its metadata for the
index and the schema, the SOP Class, whether it is a DICOMDIR) is a few dozen top-level
values. :class:`RawHeader` gives them as ``(VR, value bytes)`` (VR ``None`` for Implicit
VR: the dictionary's), decoding nothing until asked, from the element positions the walk
found (the original) or the values it wrote (the output).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from src.ingestion.encoding.elements import Element

PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})


class RawHeader(Mapping[int, tuple[str | None, bytes]]):
    """Top-level elements by tag: ``(VR or None, value bytes)``, pixel data left out.

    Parameters
    ----------
    buf : bytes-like
        The input's buffer (values of kept elements are slices of it).
    values : dict
        ``tag -> Element`` (a position in ``buf``) or ``tag -> (VR, bytes or Element)``.
    implicit : bool
        Implicit VR: the VR is the dictionary's (given as ``None``).
    meta : dict, optional
        File meta values ``tag -> bytes`` (the Transfer Syntax, Media Storage SOP Class).
    """

    def __init__(
        self,
        buf: Any,
        values: Mapping[int, Any],
        implicit: bool,
        meta: Mapping[int, bytes] | None = None,
    ) -> None:
        self._buf = buf
        self._values = values
        self._implicit = implicit
        self.meta = dict(meta or {})

    def __getitem__(self, tag: int) -> tuple[str | None, bytes]:
        if tag in PIXEL_TAGS:
            raise KeyError(tag)
        entry = self._values[tag]
        vr: str | None
        value: Any
        if type(entry) is Element:
            vr, value = entry.vr.decode(), entry
        else:
            vr, value = entry
        if type(value) is Element:  # kept as it was: its VR is the element's own
            vr = value.vr.decode()
            end = value.value_end - 8 if value.undefined else value.value_end
            value = self._buf[value.value_start : end]
        return (None if self._implicit else vr), bytes(value)

    def get(self, tag: int, default: Any = None) -> Any:  # no KeyError raised and caught
        if tag in PIXEL_TAGS or tag not in self._values:
            return default
        return self[tag]

    def __iter__(self) -> Iterator[int]:
        return (t for t in self._values if t not in PIXEL_TAGS)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, tag: object) -> bool:
        return tag in self._values and tag not in PIXEL_TAGS

    def meta_text(self, tag: int) -> str:
        """A file meta value as text (trailing padding removed), ``""`` when absent."""
        return self.meta.get(tag, b"").decode("latin-1").rstrip(" \x00")


def top_index(elems: list[Element]) -> dict[int, Element]:
    """The walk's top-level elements by tag."""
    return {el.tag: el for el in elems}


__all__ = ["PIXEL_TAGS", "RawHeader", "top_index"]
