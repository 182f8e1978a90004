"""Metadata inside JPEG streams of encapsulated pixel data, removed losslessly.

A JPEG (ISO/IEC 10918-1: PS3.5 A.4.1 baseline, extended, lossless) or JPEG-LS (ISO/IEC
14495-1: A.4.3) stream is a sequence of marker segments before its entropy-coded data.
Application segments (APP0 to APP15, ``FFE0``-``FFEF``) and comments (COM, ``FFFE``)
carry what a camera or a workstation wrote: EXIF (APP1: owner, descriptions, dates, GPS),
XMP (APP1), vendors' APPn, free-text comments. A decoder needs none of them except JFIF
(APP0), an ICC profile (APP2 ``ICC_PROFILE``), Adobe's colour transform (APP14
``Adobe``) and APP8 (JPEG-LS: the SPIFF header and HP's colour transform ``mrfx``, which
decoders read); the others are dropped, and everything from the first Start of Scan on (the
entropy-coded data) is copied untouched, so the pixels decode to the same values.

:func:`strip_encapsulated` works on the whole encapsulated value (PS3.5 A.4: the Basic
Offset Table item, the fragments, the sequence delimiter) and recomputes the Basic Offset
Table when fragments shrink.
"""

from __future__ import annotations

import struct

#: The JPEG and JPEG-LS transfer syntaxes (baseline, extended, lossless, lossless SV1,
#: JPEG-LS lossless and near-lossless).
JPEG_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
    }
)
#: MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265 (PS3.5 A.4.5 to A.4.7): streams whose headers
#: and SEI messages may carry text that is not cleaned here.
VIDEO_SYNTAXES = frozenset(f"1.2.840.10008.1.2.4.{n}" for n in range(100, 109))
_KEPT_APP = {0xE0: (b"JFIF\x00", b"JFXX\x00"), 0xE2: (b"ICC_PROFILE\x00",), 0xEE: (b"Adobe",)}
_ITEM = struct.Struct("<HHL")
_SOI, _SOS = 0xD8, 0xDA


def strip_stream(stream: bytes) -> bytes | None:
    """``stream`` without its metadata segments, or None when it has none (or is not a
    stream this can read: it is then left as it is)."""
    if stream[:2] != b"\xff\xd8":
        return None
    out = [stream[:2]]
    pos, dropped = 2, False
    while pos + 4 <= len(stream):
        if stream[pos] != 0xFF:
            return None
        marker = stream[pos + 1]
        if marker == 0xFF:  # a fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            out.append(stream[pos : pos + 2])
            pos += 2
            continue
        if marker == _SOS:
            out.append(stream[pos:])  # the scans: copied untouched
            return b"".join(out) if dropped else None
        (length,) = struct.unpack_from(">H", stream, pos + 2)
        end = pos + 2 + length
        if length < 2 or end > len(stream):
            return None
        body = stream[pos + 4 : end]
        if (
            0xE0 <= marker <= 0xEF
            and marker != 0xE8
            and not body.startswith(_KEPT_APP.get(marker, (b"\x00",)))
        ) or (marker == 0xFE):
            dropped = True
        else:
            out.append(stream[pos:end])
        pos = end
    return None


def strip_encapsulated(value: bytes) -> bytes | None:
    """The encapsulated pixel data ``value`` (items and delimiter) with every fragment's
    metadata segments removed, or None when no fragment holds any."""
    items: list[bytes] = []
    pos = 0
    while pos + 8 <= len(value):
        group, element, length = _ITEM.unpack_from(value, pos)
        if (group, element) == (0xFFFE, 0xE0DD):
            break
        if (group, element) != (0xFFFE, 0xE000) or pos + 8 + length > len(value):
            return None
        items.append(value[pos + 8 : pos + 8 + length])
        pos += 8 + length
    if not items:
        return None
    table, fragments = items[0], items[1:]
    changed = [strip_stream(f) if f[:2] == b"\xff\xd8" else None for f in fragments]
    if not any(c is not None for c in changed):
        return None
    # Items are of even length: a stream that lost an odd number of bytes gets a trailing
    # NUL after its End of Image, as PS3.5 A.4 allows.
    new = [
        (c + b"\x00" * (len(c) & 1)) if c is not None else f
        for c, f in zip(changed, fragments, strict=True)
    ]
    if table:  # the frames' offsets move with the fragments before them
        old_starts, new_starts, o, n = [], [], 0, 0
        for f, g in zip(fragments, new, strict=True):
            old_starts.append(o)
            new_starts.append(n)
            o += 8 + len(f)
            n += 8 + len(g)
        moved = dict(zip(old_starts, new_starts, strict=True))
        offsets = struct.unpack(f"<{len(table) // 4}L", table)
        if any(x not in moved for x in offsets):
            return None  # offsets that do not point at fragments: left as they are
        table = struct.pack(f"<{len(offsets)}L", *(moved[x] for x in offsets))
    parts = [_ITEM.pack(0xFFFE, 0xE000, len(table)), table]
    for g in new:
        parts += [_ITEM.pack(0xFFFE, 0xE000, len(g)), g]
    parts.append(_ITEM.pack(0xFFFE, 0xE0DD, 0))
    return b"".join(parts)


__all__ = ["JPEG_SYNTAXES", "VIDEO_SYNTAXES", "strip_encapsulated", "strip_stream"]
