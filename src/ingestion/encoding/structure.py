"""A byte-level walk over a DICOM file's element structure, to refuse malformed input.

pydicom stops quietly at a cut element and reads short values without complaint; this
walk reads only tags and lengths (no values), so it is cheap, and it raises
:class:`InvalidDICOMError` when the encoding breaks PS3.5:

- ``truncated: ...`` when an element, an item or a sequence runs past the end of the data,
  or an undefined-length sequence or item has no delimiter;
- ``malformed: ...`` when an element or item runs past its parent item or sequence
  (7.5), a sequence holds something other than items, a binary value's length is not a
  multiple of its VR's size (7.1.1, 6.2), pixel data is native in an encapsulated
  transfer syntax or encapsulated in a native one (A.4), or nesting is deeper than
  :data:`MAX_DEPTH`.

Reasons name the element's tag and byte offset, never a value.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Sequence

from src.errors import InvalidDICOMError
from src.ingestion.encoding.elements import MAX_DEPTH, VR_CODES, element_header

PIXEL_DATA = (0x7FE0, 0x0010)
#: The size of one value of the fixed-size binary VRs (a length must be a multiple).
_FIXED_SIZE = {
    b"US": 2,
    b"SS": 2,
    b"UL": 4,
    b"SL": 4,
    b"FL": 4,
    b"AT": 4,
    b"FD": 8,
    b"SV": 8,
    b"UV": 8,
    b"OW": 2,
    b"OF": 4,
    b"OL": 4,
    b"OD": 8,
    b"OV": 8,
}


class StructureWalker:
    """Reads tags and lengths over a buffer and checks them against PS3.5 (no values)."""

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
        self.little = little
        self.e = "<" if little else ">"

    def fail(self, reason: str) -> InvalidDICOMError:
        return InvalidDICOMError(self.source, reason)

    def explicit_vr(self, pos: int, group: int) -> bytes | None:
        """The VR written at ``pos`` (explicit encodings), ``None`` where there is none."""
        if group == 0xFFFE or self.implicit:
            return None
        vr = bytes(self.buf[pos + 4 : pos + 6])
        return vr if vr in VR_CODES else None

    def is_sequence(self, pos: int, group: int, element: int) -> bool:
        vr = self.explicit_vr(pos, group)
        if vr is not None:
            return vr == b"SQ"
        return self.implicit and dictionary_sequence((group << 16) | element)

    def header(self, pos: int) -> tuple[int, int, int, int]:
        """Return (group, element, length, value start) of the element at ``pos``."""
        header = element_header(self.buf, pos, self.end, self.implicit, self.little)
        if header is None:
            raise self.fail("truncated: inside an element header")
        tag, _, length, value_start = header
        return tag >> 16, tag & 0xFFFF, length, value_start

    def elements(
        self,
        pos: int,
        depth: int,
        in_item: bool,
        stop_group: int | None = None,
        record: list[tuple[int, int, int]] | None = None,
        stop: int | None = None,
        encapsulated: bool | None = None,
    ) -> int:
        """Walk a data set from ``pos`` to ``stop`` (the end of a defined-length item or of
        the data); an undefined-length item ends at its delimiter instead."""
        end = self.end if stop is None else stop
        while pos < end:
            element_start = pos
            group, element, length, start = self.header(pos)
            if start > end:
                raise self._overrun(group, element, element_start, stop)
            if stop_group is not None and group != stop_group:
                return pos
            if group == 0xFFFE:
                if in_item and element == 0xE00D:
                    return start
                raise self.fail(
                    f"malformed: unexpected item or delimiter tag at offset {element_start}"
                )
            if (
                (group, element) == PIXEL_DATA
                and record is not None
                and encapsulated is not None
                and encapsulated != (length == 0xFFFFFFFF)
            ):
                raise self.fail(
                    "malformed: (7FE0,0010) "
                    + (
                        "native pixel data in an encapsulated"
                        if encapsulated
                        else "encapsulated pixel data in a native"
                    )
                    + f" transfer syntax, at offset {element_start}"
                )
            vr = self.explicit_vr(element_start, group)
            if vr is None and self.implicit and length & 7 and length != 0xFFFFFFFF:
                vr = _implicit_vr((group << 16) | element)  # the dictionary's, as pydicom reads it
            size = _FIXED_SIZE.get(vr) if vr is not None else None
            if size is not None and length != 0xFFFFFFFF and length % size:
                raise self.fail(
                    f"malformed: ({group:04X},{element:04X}) {(vr or b'').decode()} value length "
                    f"{length} is not a multiple of {size}, at offset {element_start}"
                )
            sequence = (group, element) != PIXEL_DATA and self.is_sequence(
                element_start, group, element
            )
            if length == 0xFFFFFFFF:
                walk = (group, element) != PIXEL_DATA and (sequence or vr is None)
                pos = self.undefined(start, depth + 1, walk_items=walk)
                if pos > end:
                    raise self._overrun(group, element, element_start, stop)
            else:
                pos = start + length
                if pos > end:
                    raise self._overrun(group, element, element_start, stop)
                if sequence:
                    self.defined(start, pos, depth + 1, group, element)
            if record is not None:
                record.append(((group << 16) | element, element_start, pos))
        if in_item:
            if stop is not None:  # a defined-length item ends at its length
                return pos
            raise self.fail("truncated: item without delimiter")
        return pos

    def _overrun(
        self, group: int, element: int, at: int, parent_end: int | None
    ) -> InvalidDICOMError:
        if parent_end is None or parent_end >= self.end:
            what = "mid pixel data" if (group, element) == PIXEL_DATA else "mid element value"
            return self.fail(f"truncated: {what}")
        return self.fail(
            f"malformed: ({group:04X},{element:04X}) at offset {at} runs past the end of "
            f"its item (offset {parent_end})"
        )

    def defined(self, pos: int, stop: int, depth: int, group: int, element: int) -> None:
        """The items of a defined-length sequence must fill it exactly (PS3.5 7.5.1)."""
        if depth > MAX_DEPTH:
            raise self.fail(f"malformed: sequence nesting deeper than {MAX_DEPTH}")
        while pos < stop:
            if pos + 8 > stop:
                raise self.fail(
                    f"malformed: ({group:04X},{element:04X}) item header at offset {pos} "
                    "runs past the end of its sequence"
                )
            tag_group, tag_element, length = struct.unpack_from(self.e + "HHL", self.buf, pos)
            if (tag_group, tag_element) != (0xFFFE, 0xE000):
                raise self.fail(
                    f"malformed: ({group:04X},{element:04X}) holds something other than an "
                    f"item at offset {pos}"
                )
            if length == 0xFFFFFFFF:
                pos = self.elements(pos + 8, depth, in_item=True)
                if pos > stop:
                    raise self.fail(
                        f"malformed: an item of ({group:04X},{element:04X}) runs past the end "
                        f"of its sequence (offset {stop})"
                    )
                continue
            item_end = pos + 8 + length
            if item_end > self.end:
                raise self.fail("truncated: mid sequence item")
            if item_end > stop:
                raise self.fail(
                    f"malformed: an item of ({group:04X},{element:04X}) at offset {pos} runs "
                    f"past the end of its sequence (offset {stop})"
                )
            self.elements(pos + 8, depth, in_item=True, stop=item_end)
            pos = item_end

    def undefined(self, pos: int, depth: int, walk_items: bool = True) -> int:
        """The end of an undefined-length value's delimiter; its items are walked when the
        value is a sequence (fragments and implicit-VR UN contents are skipped)."""
        if depth > MAX_DEPTH:
            raise self.fail(f"malformed: sequence nesting deeper than {MAX_DEPTH}")
        while True:
            if pos + 8 > self.end:
                raise self.fail("truncated: sequence without delimiter")
            group, element, length = struct.unpack_from(self.e + "HHL", self.buf, pos)
            if (group, element) == (0xFFFE, 0xE0DD):
                return pos + 8
            if (group, element) != (0xFFFE, 0xE000):
                raise self.fail(f"malformed: sequence item expected at offset {pos}")
            if length == 0xFFFFFFFF:
                pos = self.elements(pos + 8, depth, in_item=True)
            else:
                item_end = pos + 8 + length
                if item_end > self.end:
                    raise self.fail("truncated: mid sequence item")
                if walk_items:
                    self.elements(pos + 8, depth, in_item=True, stop=item_end)
                pos = item_end


def check_structure(
    buf: bytes | memoryview | mmap.mmap,
    source: str,
    *,
    start: int,
    implicit: bool,
    little: bool,
    has_meta: bool,
    encapsulated: bool | None = None,
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
    encapsulated : bool, optional
        Whether the transfer syntax encapsulates pixel data (``None``: not checked).

    Returns
    -------
    dict
        ``{tag: (start, end)}``, the byte range of every top-level dataset element.
    """
    end = len(buf)
    pos = start
    if has_meta:
        meta = StructureWalker(buf, end, source, implicit=False, little=True)
        pos = meta.elements(pos, 0, in_item=False, stop_group=0x0002)
    record: list[tuple[int, int, int]] = []
    StructureWalker(buf, end, source, implicit, little).elements(
        pos, 0, in_item=False, record=record, encapsulated=encapsulated
    )
    return {tag: (first, last) for tag, first, last in record}


def check_contents(
    buf: bytes | memoryview | mmap.mmap,
    source: str,
    top: Sequence[tuple[int, bytes, int, int, int, bool]],
    *,
    implicit: bool,
    encapsulated: bool | None,
) -> None:
    """The checks of :func:`check_structure` on a data set whose top level a caller has
    already walked (``top``: tag, VR, start, value start, value end, undefined length),
    so only what lies inside its sequences is walked again.

    Raises
    ------
    InvalidDICOMError
        As :func:`check_structure`.
    """
    walker = StructureWalker(buf, len(buf), source, implicit, True)
    for tag, vr, start, value_start, value_end, undefined in top:
        group, element = tag >> 16, tag & 0xFFFF
        if tag == 0x7FE00010:
            if encapsulated is not None and encapsulated != undefined:
                raise walker.fail(
                    "malformed: (7FE0,0010) "
                    + (
                        "native pixel data in an encapsulated"
                        if encapsulated
                        else "encapsulated pixel data in a native"
                    )
                    + f" transfer syntax, at offset {start}"
                )
            continue
        size = _FIXED_SIZE.get(vr)
        if size is not None and not undefined and (value_end - value_start) % size:
            raise walker.fail(
                f"malformed: ({group:04X},{element:04X}) {vr.decode()} value length "
                f"{value_end - value_start} is not a multiple of {size}, at offset {start}"
            )
        sequence = vr == b"SQ" or (implicit and dictionary_sequence(tag))
        if undefined and (sequence or implicit):
            walker.undefined(value_start, 1, walk_items=True)
        elif sequence:
            walker.defined(value_start, value_end, 1, group, element)


#: The transfer syntaxes whose pixel data is native (PS3.5 A.1-A.3, A.5); every other
#: standard one encapsulates it (A.4).
NATIVE_SYNTAXES = frozenset(
    {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
)


def encapsulates(transfer_syntax: str) -> bool | None:
    """Whether a transfer syntax encapsulates pixel data (``None`` for a private one)."""
    if transfer_syntax in NATIVE_SYNTAXES:
        return False
    if transfer_syntax.startswith("1.2.840.10008.1.2."):
        return True
    return None


def _implicit_vr(tag: int) -> bytes | None:
    from src.ingestion.encoding.dictionary import dictionary_vr

    text = dictionary_vr(tag)
    return text.split(" or ")[0].encode() if text else None


def dictionary_sequence(tag: int) -> bool:
    # pydicom's own dictionary, loaded without importing pydicom (the byte path's rule).
    from src.ingestion.encoding.dictionary import dictionary_vr

    return dictionary_vr(tag) == "SQ"
