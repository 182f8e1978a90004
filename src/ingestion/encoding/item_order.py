"""Whether the items of a sequence list their elements once each, in ascending order.

A repeated tag is read by pydicom as its last copy but shown by dcmtk as its first: such a
sequence must not be copied as bytes, only re-encoded from what was decided element by
element. The walk reads tags and lengths only, through the structural walker.
"""

from __future__ import annotations

import struct

from src.errors import InvalidDICOMError
from src.ingestion.encoding.elements import MAX_DEPTH
from src.ingestion.encoding.structure import StructureWalker, dictionary_sequence


def items_well_ordered(
    buf: bytes | memoryview, start: int, end: int, *, implicit: bool, little: bool
) -> bool:
    """Whether every item inside the sequence element at ``buf[start:end]`` lists its
    elements once each, in ascending tag order, at every depth.

    A repeated tag is read by pydicom as its last copy but shown by dcmtk as its first:
    such a sequence must not be copied as bytes, only re-encoded from what was decided
    element by element.
    """
    walker = StructureWalker(buf, end, "<sequence>", implicit, little)
    try:
        _, _, length, value = walker.header(start)
        stop = end if length == 0xFFFFFFFF else value + length
        return _items_ordered(walker, value, stop, length == 0xFFFFFFFF, 0)
    except (InvalidDICOMError, struct.error):
        return False


def _items_ordered(w: StructureWalker, pos: int, stop: int, undefined: bool, depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    while pos < stop:
        group, element, length = struct.unpack_from(w.e + "HHL", w.buf, pos)
        if (group, element) == (0xFFFE, 0xE0DD):
            return undefined
        if (group, element) != (0xFFFE, 0xE000):
            return False
        item_end = stop if length == 0xFFFFFFFF else pos + 8 + length
        pos, ok = _elements_ordered(w, pos + 8, item_end, length == 0xFFFFFFFF, depth)
        if not ok:
            return False
    return True


def _elements_ordered(
    w: StructureWalker, pos: int, stop: int, undefined: bool, depth: int
) -> tuple[int, bool]:
    previous = -1
    while pos < stop:
        group, element, length, value = w.header(pos)
        if group == 0xFFFE and element == 0xE00D:
            return value, undefined
        tag = (group << 16) | element
        if tag <= previous:
            return pos, False
        previous = tag
        is_sequence = length == 0xFFFFFFFF or (
            bytes(w.buf[pos + 4 : pos + 6]) == b"SQ" if not w.implicit else dictionary_sequence(tag)
        )
        if is_sequence and (group, element) != (0x7FE0, 0x0010):
            inner_stop = stop if length == 0xFFFFFFFF else value + length
            if length == 0xFFFFFFFF:
                end = w.undefined(value, depth + 1)
                if not _items_ordered(w, value, end, True, depth + 1):
                    return pos, False
                pos = end
                continue
            if not _items_ordered(w, value, inner_stop, False, depth + 1):
                return pos, False
        pos = value + length
    return pos, True


__all__ = ["items_well_ordered"]
