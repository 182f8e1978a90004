"""A byte-level walk over a DICOM file's element structure, to refuse truncated input.

pydicom stops quietly at a cut element and reads short values without complaint; this
walk reads only tags and lengths (no values), so it is cheap, and it raises
:class:`InvalidDICOMError` when an element, an item or a sequence runs past the end of
the data, when an undefined-length sequence has no delimiter, or when nesting is deeper
than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

import mmap
import struct

from src.errors import InvalidDICOMError

MAX_DEPTH = 64
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_VRS = frozenset(
    v.encode()
    for v in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC "
        "UI UL UN UR US UT UV"
    ).split()
)


class _Walker:
    def __init__(
        self,
        buf: bytes | memoryview | mmap.mmap,
        end: int,
        source: str,
        implicit: bool,
        little: bool,
    ) -> None:
        self.buf = buf
        self.end = end
        self.source = source
        self.implicit = implicit
        self.e = "<" if little else ">"

    def fail(self, reason: str) -> InvalidDICOMError:
        return InvalidDICOMError(self.source, reason)

    def header(self, pos: int) -> tuple[int, int, int, int]:
        """Return (group, element, length, value start) of the element at ``pos``."""
        if pos + 8 > self.end:
            raise self.fail("truncated: inside an element header")
        group, element = struct.unpack_from(self.e + "HH", self.buf, pos)
        vr = bytes(self.buf[pos + 4 : pos + 6])
        if group == 0xFFFE or self.implicit or vr not in _VRS:
            (length,) = struct.unpack_from(self.e + "L", self.buf, pos + 4)
            return group, element, length, pos + 8
        if vr in _LONG_VRS:
            if pos + 12 > self.end:
                raise self.fail("truncated: inside an element header")
            (length,) = struct.unpack_from(self.e + "L", self.buf, pos + 8)
            return group, element, length, pos + 12
        (length,) = struct.unpack_from(self.e + "H", self.buf, pos + 6)
        return group, element, length, pos + 8

    def elements(
        self,
        pos: int,
        depth: int,
        in_item: bool,
        stop_group: int | None = None,
        record: list[tuple[int, int, int]] | None = None,
    ) -> int:
        while pos < self.end:
            element_start = pos
            group, element, length, start = self.header(pos)
            if stop_group is not None and group != stop_group:
                return pos
            if group == 0xFFFE:
                if in_item and element == 0xE00D:
                    return start
                raise self.fail("malformed: unexpected item or delimiter tag")
            if length == 0xFFFFFFFF:
                pos = self.undefined(start, depth + 1)
            else:
                pos = start + length
                if pos > self.end:
                    what = (
                        "mid pixel data"
                        if (group, element) == (0x7FE0, 0x0010)
                        else ("mid element value")
                    )
                    raise self.fail(f"truncated: {what}")
            if record is not None:
                record.append(((group << 16) | element, element_start, pos))
        if in_item:
            raise self.fail("truncated: item without delimiter")
        return pos

    def undefined(self, pos: int, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise self.fail(f"sequence nesting deeper than {MAX_DEPTH}")
        while True:
            if pos + 8 > self.end:
                raise self.fail("truncated: sequence without delimiter")
            group, element, length = struct.unpack_from(self.e + "HHL", self.buf, pos)
            if (group, element) == (0xFFFE, 0xE0DD):
                return pos + 8
            if (group, element) != (0xFFFE, 0xE000):
                raise self.fail("malformed: sequence item expected")
            if length == 0xFFFFFFFF:
                pos = self.elements(pos + 8, depth, in_item=True)
            else:
                pos += 8 + length
                if pos > self.end:
                    raise self.fail("truncated: mid sequence item")


def check_structure(
    buf: bytes | memoryview | mmap.mmap,
    source: str,
    *,
    start: int,
    implicit: bool,
    little: bool,
    has_meta: bool,
) -> dict[int, tuple[int, int]]:
    """Walk the whole buffer; raise ``InvalidDICOMError`` if it is cut or malformed.

    Parameters
    ----------
    buf : bytes or memoryview
        The file's bytes (an mmap works).
    source : str
        Label for errors.
    start : int
        Offset of the file meta (132 after a preamble) or of the dataset.
    implicit, little : bool
        The dataset's encoding (the meta is always explicit little endian).
    has_meta : bool
        Whether group 0002 begins at ``start``.

    Returns
    -------
    dict
        ``{tag: (start, end)}``, the byte range of every top-level dataset element.
    """
    end = len(buf)
    pos = start
    if has_meta:
        meta = _Walker(buf, end, source, implicit=False, little=True)
        pos = meta.elements(pos, 0, in_item=False, stop_group=0x0002)
    record: list[tuple[int, int, int]] = []
    _Walker(buf, end, source, implicit, little).elements(pos, 0, in_item=False, record=record)
    return {tag: (first, last) for tag, first, last in record}


def items_well_ordered(
    buf: bytes | memoryview, start: int, end: int, *, implicit: bool, little: bool
) -> bool:
    """Whether every item inside the sequence element at ``buf[start:end]`` lists its
    elements once each, in ascending tag order, at every depth.

    A repeated tag is read by pydicom as its last copy but shown by dcmtk as its first:
    such a sequence must not be copied as bytes, only re-encoded from what was decided
    element by element.
    """
    walker = _Walker(buf, end, "<sequence>", implicit, little)
    try:
        _, _, length, value = walker.header(start)
        stop = end if length == 0xFFFFFFFF else value + length
        return _items_ordered(walker, value, stop, length == 0xFFFFFFFF, 0)
    except (InvalidDICOMError, struct.error):
        return False


def _items_ordered(w: _Walker, pos: int, stop: int, undefined: bool, depth: int) -> bool:
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
    w: _Walker, pos: int, stop: int, undefined: bool, depth: int
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
            bytes(w.buf[pos + 4 : pos + 6]) == b"SQ"
            if not w.implicit
            else _dictionary_sequence(tag)
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


def _dictionary_sequence(tag: int) -> bool:
    from pydicom.datadict import dictionary_has_tag, dictionary_VR

    return bool(dictionary_has_tag(tag)) and dictionary_VR(tag) == "SQ"
