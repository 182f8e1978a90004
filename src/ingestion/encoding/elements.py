"""Data elements read straight from the bytes of a Part 10 file (PS3.5 section 7).

The byte-level engine walks element headers with :func:`struct.unpack_from` over one
buffer and never builds a ``Dataset``. Anything this reader does not fully understand
raises :class:`NotHandled`; the caller then gives the file to the pydicom path, which
either reads it or refuses it with the parser's own reason. So this module never
decides that an input is bad, only that it is not for the fast path.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from src.ingestion.encoding.dictionary import EXPLICIT_VR_LENGTH_32, VRS, dictionary_vr

#: Transfer syntaxes whose data set is Implicit VR Little Endian.
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
#: Explicit VR Big Endian and Deflated go through the pydicom path.
_NOT_HANDLED_SYNTAXES = frozenset({"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"})

#: Sequence nesting deeper than this is refused, by the structure check and both engines
#: (the one depth limit; :data:`src.ingestion.annex_e.element_rules.MAX_SEQUENCE_DEPTH`).
#: In the element walk, deeper undefined lengths are left to the pydicom path.
MAX_DEPTH = 64
ITEM = 0xFFFEE000
ITEM_DELIMITER = 0xFFFEE00D
SEQUENCE_DELIMITER = 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

#: The VRs whose explicit header holds a 32-bit length.
LONG_VRS = frozenset(v.encode() for v in EXPLICIT_VR_LENGTH_32)
#: Every VR code a well-formed explicit header can hold.
VR_CODES = frozenset(v.encode() for v in VRS)

_TAG = struct.Struct("<HH")
_SHORT = struct.Struct("<HH2sH")
_SHORT_LENGTH = struct.Struct("<H")
_LONG_LENGTH = struct.Struct("<L")
_IMPLICIT = struct.Struct("<HHL")
_SHORT_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2sHL")


class NotHandled(Exception):  # noqa: N818 - a signal to the caller, not an error
    """This input is not for the byte-level engine (the pydicom path takes it)."""


@functools.lru_cache(maxsize=8192)
def implicit_vr(tag: int) -> bytes:
    """The VR an implicitly encoded element has: its dictionary VR, else ``UN``.

    An attribute with a choice of VRs (``US or SS``) gets the first, as pydicom's path
    decides it.
    """
    text = dictionary_vr(tag)
    if text is None:
        return b"UN"
    return text.split(" or ")[0].encode()


class Element(NamedTuple):
    """Where one element lies in the buffer."""

    tag: int
    vr: bytes
    start: int  # the first byte of its header
    value_start: int
    value_end: int  # for an undefined length: the end of its delimiter
    undefined: bool


_new = tuple.__new__  # builds an Element without NamedTuple's Python-level __new__


_BIG_TAG = struct.Struct(">HH")
_BIG_SHORT_LENGTH = struct.Struct(">H")
_BIG_LONG_LENGTH = struct.Struct(">L")


def element_header(
    buf: Any, pos: int, end: int, implicit: bool, little: bool = True
) -> tuple[int, bytes | None, int, int] | None:
    """The header of the element at ``pos``: ``(tag, VR, length, value start)``.

    The one reader of element headers (PS3.5 7.1): the structure check, the pixel data
    span and :func:`element_at` all read through it (the byte engine's inner loop
    inlines its common case). The VR is ``None`` where none is written: item and
    delimiter tags, implicit encodings, and an explicit header whose two VR bytes are no
    VR (read then as implicit, as pydicom reads a data set whose encoding differs from
    what its meta says). ``None`` when the header runs past ``end``.
    """
    if pos + 8 > end:
        return None
    tag_s, short_s, long_s = (
        (_TAG, _SHORT_LENGTH, _LONG_LENGTH)
        if little
        else (_BIG_TAG, _BIG_SHORT_LENGTH, _BIG_LONG_LENGTH)
    )
    group, elem = tag_s.unpack_from(buf, pos)
    tag = group << 16 | elem
    vr = bytes(buf[pos + 4 : pos + 6])
    if group == 0xFFFE or implicit or vr not in VR_CODES:
        return tag, None, long_s.unpack_from(buf, pos + 4)[0], pos + 8
    if vr in LONG_VRS:
        if pos + 12 > end:
            return None
        return tag, vr, long_s.unpack_from(buf, pos + 8)[0], pos + 12
    return tag, vr, short_s.unpack_from(buf, pos + 6)[0], pos + 8


def element_at(buf: bytes, pos: int, end: int, implicit: bool, depth: int = 0) -> Element:
    """Read the element header at ``pos`` and find where the element ends.

    Raises
    ------
    NotHandled
        On anything out of bounds or not well formed.
    """
    header = element_header(buf, pos, end, implicit)
    if header is None:
        raise NotHandled
    tag, written, length, value_start = header
    if implicit:
        vr = implicit_vr(tag)
    elif written is None:
        raise NotHandled  # explicit encoding without a VR: for the pydicom path
    else:
        vr = written
    if length != UNDEFINED:
        value_end = value_start + length
        if value_end > end:
            raise NotHandled
        return _new(Element, (tag, vr, pos, value_start, value_end, False))
    if vr == b"SQ":
        if depth > MAX_DEPTH:
            raise NotHandled  # the pydicom path refuses it with its reason
        value_end = sequence_end(buf, value_start, end, implicit, depth)
        return _new(Element, (tag, vr, pos, value_start, value_end, True))
    if tag in PIXEL_TAGS:
        value_end = fragments_end(buf, value_start, end)
        return _new(Element, (tag, vr, pos, value_start, value_end, True))
    raise NotHandled


def items(buf: bytes, elem: Element, implicit: bool) -> list[tuple[int, int]]:
    """The ``[start, end)`` of each item's data set in a sequence element."""
    out = []
    pos = elem.value_start
    stop = elem.value_end
    while pos < stop:
        if pos + 8 > stop:
            raise NotHandled
        group, element, length = _IMPLICIT.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER and elem.undefined:
            break
        if tag != ITEM:
            raise NotHandled
        if length == UNDEFINED:
            end = dataset_end(buf, pos + 8, stop, implicit)
            out.append((pos + 8, end - 8))
            pos = end
        else:
            if pos + 8 + length > stop:
                raise NotHandled
            out.append((pos + 8, pos + 8 + length))
            pos += 8 + length
    return out


def sequence_end(buf: bytes, pos: int, end: int, implicit: bool, depth: int = 0) -> int:
    """The end of an undefined-length sequence's delimiter, its value starting at ``pos``."""
    while True:
        if pos + 8 > end:
            raise NotHandled
        group, element, length = _IMPLICIT.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER:
            return pos + 8
        if tag != ITEM:
            raise NotHandled
        if length == UNDEFINED:
            pos = dataset_end(buf, pos + 8, end, implicit, depth + 1)
        else:
            pos += 8 + length
            if pos > end:
                raise NotHandled


def dataset_end(buf: bytes, pos: int, end: int, implicit: bool, depth: int = 0) -> int:
    """The end of an undefined-length item's delimiter, its data set starting at ``pos``."""
    while True:
        if pos + 8 > end:
            raise NotHandled
        group, element = _TAG.unpack_from(buf, pos)
        if group == 0xFFFE:
            if element == 0xE00D:
                return pos + 8
            raise NotHandled
        pos = element_at(buf, pos, end, implicit, depth).value_end


def fragments_end(buf: bytes, pos: int, end: int) -> int:
    """The end of encapsulated pixel data's sequence delimiter (PS3.5 A.4)."""
    while True:
        if pos + 8 > end:
            raise NotHandled
        group, element, length = _IMPLICIT.unpack_from(buf, pos)
        tag = group << 16 | element
        if tag == SEQUENCE_DELIMITER:
            return pos + 8
        if tag != ITEM or length == UNDEFINED:
            raise NotHandled
        pos += 8 + length
        if pos > end:
            raise NotHandled


@dataclass(frozen=True)
class Part10:
    """The parts of a Part 10 file the engine needs: its meta and where the data starts."""

    meta: dict[int, bytes]  # tag: value bytes, group 0002
    transfer_syntax: str
    implicit: bool
    dataset_start: int


def read_part10(buf: bytes) -> Part10:
    """Read the preamble, ``DICM`` and the File Meta Information of ``buf``.

    Raises
    ------
    NotHandled
        For anything but a complete meta group in front of a data set this engine reads.
    """
    if len(buf) < 144 or buf[128:132] != b"DICM":
        raise NotHandled
    pos = 132
    meta: dict[int, bytes] = {}
    end = len(buf)
    while pos + 8 <= end:
        group, _ = _TAG.unpack_from(buf, pos)
        if group != 0x0002:
            break
        elem = element_at(buf, pos, end, False)
        if elem.undefined:
            raise NotHandled
        meta[elem.tag] = bytes(buf[elem.value_start : elem.value_end])
        pos = elem.value_end
    raw_ts = meta.get(0x00020010)
    if raw_ts is None:
        raise NotHandled
    ts = raw_ts.decode("ascii", "replace").strip(" \x00")
    if ts in _NOT_HANDLED_SYNTAXES or not ts.startswith("1.2.840.10008.1.2"):
        raise NotHandled
    implicit = ts == IMPLICIT_LITTLE
    if pos + 6 <= end and not implicit and buf[pos + 4 : pos + 6] not in VR_CODES:
        raise NotHandled  # the meta says explicit, the data set is not
    return Part10(meta, ts, implicit, pos)


def elements_of(buf: Any, pos: int, end: int, implicit: bool) -> list[Element]:
    """The elements of one data set, in ascending tag order (else: not handled).

    The common explicit header with a defined length is read inline (this loop runs for
    every element of every file); everything else goes through :func:`element_at`.
    """
    out: list[Element] = []
    append = out.append
    last = -1
    short = _SHORT.unpack_from
    long_length = _LONG_LENGTH.unpack_from
    long_vrs, vr_codes = LONG_VRS, VR_CODES
    implicit_header = _IMPLICIT.unpack_from
    while pos < end:
        if implicit and pos + 8 <= end:
            group, elem, length = implicit_header(buf, pos)
            value_end = pos + 8 + length
            tag = group << 16 | elem
            if length == UNDEFINED or value_end > end:
                el = element_at(buf, pos, end, implicit)
            else:
                el = _new(Element, (tag, implicit_vr(tag), pos, pos + 8, value_end, False))
        elif implicit or pos + 12 > end:
            el = element_at(buf, pos, end, implicit)
        else:
            group, elem, vr, length = short(buf, pos)
            if vr in long_vrs:
                (length,) = long_length(buf, pos + 8)
                value_start = pos + 12
            elif vr in vr_codes:
                value_start = pos + 8
            else:
                raise NotHandled
            value_end = value_start + length
            if length == UNDEFINED or value_end > end:
                el = element_at(buf, pos, end, implicit)
            else:
                el = _new(Element, (group << 16 | elem, vr, pos, value_start, value_end, False))
        tag = el[0]
        if tag <= last or tag >> 16 == 0xFFFE:
            raise NotHandled
        last = tag
        append(el)
        pos = el[4]
    return out


def encode_header(tag: int, vr: bytes, length: int, implicit: bool) -> bytes:
    if implicit:
        return _IMPLICIT.pack(tag >> 16, tag & 0xFFFF, length)
    if vr in LONG_VRS:
        return _LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, 0, length)
    if length > 0xFFFF:
        raise NotHandled
    return _SHORT_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, length)


def decode_value(buf: Any, el: Element, codec: str) -> str:
    try:
        return bytes(buf[el.value_start : el.value_end]).decode(codec).strip(" \x00")
    except UnicodeDecodeError as exc:
        raise NotHandled from exc


def text_of(buf: Any, el: Element | None, codec: str) -> str:
    if el is None or el.vr == b"SQ" or el.undefined:
        return ""
    return decode_value(buf, el, codec)


def value_of(buf: Any, el: Element) -> bytes:
    """An element's value bytes (an undefined-length sequence without its delimiter)."""
    end = el.value_end - 8 if el.undefined else el.value_end
    return bytes(buf[el.value_start : end])


__all__ = [
    "IMPLICIT_LITTLE",
    "LONG_VRS",
    "PIXEL_TAGS",
    "VR_CODES",
    "Element",
    "NotHandled",
    "Part10",
    "dataset_end",
    "decode_value",
    "element_at",
    "element_header",
    "elements_of",
    "encode_header",
    "fragments_end",
    "implicit_vr",
    "items",
    "read_part10",
    "sequence_end",
    "text_of",
    "value_of",
]
