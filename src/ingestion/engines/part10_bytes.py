"""The byte-level engine's Part 10 output: file meta, markers, pixel data, and the write.

The preamble is written as zeros (it may hold anything), the File Meta Information is
rebuilt with only what PS3.10 defines (as :func:`src.ingestion.annex_e.markers.rebuild_file_meta`
does on the pydicom path), and the pixel data is copied from the input in large blocks:
``copy_file_range`` where the kernel can, else plain reads (it fails with ``EXDEV``
across filesystems on older kernels). Also here: the headers handed to the pipeline, as
pydicom datasets of raw elements that decode only what is asked of them.
"""

from __future__ import annotations

import functools
import os
import struct
from typing import IO, TYPE_CHECKING, Any, cast

from src.atomic import new_digest, open_output
from src.ingestion.annex_e.markers import (
    IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
    marker_values,
)
from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.encoding.elements import (
    PIXEL_TAGS,
    Element,
    NotHandled,
    Part10,
    elements_of,
    encode_header,
    items,
)
from src.ingestion.engines.value_actions import join, pad, split

if TYPE_CHECKING:  # pydicom is imported only to describe a header to the pipeline
    from pydicom.dataset import Dataset, FileMetaDataset

_CHUNK = 1 << 20
_new = tuple.__new__  # a RawDataElement without NamedTuple's Python-level __new__
_META_KEPT = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013)
_UL = struct.Struct("<HH2sHL")
_SHORT = struct.Struct("<HH2sH")


def _meta_element(tag: int, value: bytes) -> bytes:
    if tag == 0x00020001:
        return _UL.pack(0x0002, 0x0001, b"OB", 0, len(value)) + value
    vr = b"SH" if tag == 0x00020013 else b"UI"
    return _SHORT.pack(0x0002, tag & 0xFFFF, vr, len(value)) + value


def rebuilt_meta(
    part: Part10, top: dict[int, tuple[str, Any]], pseudo: Pseudonymizer, retain_uids: bool
) -> dict[int, bytes]:
    """The File Meta Information of the output: ``{tag: value bytes}``."""
    meta = {t: part.meta[t] for t in _META_KEPT if t in part.meta}
    meta.setdefault(0x00020001, b"\x00\x01")
    sop_class = top.get(0x00080016)
    if sop_class is not None:
        meta[0x00020002] = pad(bytes(sop_class[1]).rstrip(b" \x00"), "UI")
    elif not split(meta.get(0x00020002, b""), "UI")[0]:
        raise NotHandled  # no SOP Class: the pydicom path refuses it with its reason
    sop_instance = top.get(0x00080018)
    if sop_instance is not None:
        meta[0x00020003] = pad(bytes(sop_instance[1]).rstrip(b" \x00"), "UI")
    elif 0x00020003 in meta and not retain_uids:
        meta[0x00020003] = join([pseudo.uid(split(meta[0x00020003], "UI")[0])], "UI")
    meta[0x00020012] = pad(IMPLEMENTATION_CLASS_UID.encode(), "UI")
    meta[0x00020013] = pad(IMPLEMENTATION_VERSION_NAME.encode(), "SH")
    return meta


def file_meta_bytes(meta: dict[int, bytes]) -> bytes:
    """The File Meta Information group encoded, with its group length."""
    body = b"".join(_meta_element(t, meta[t]) for t in sorted(meta))
    return _SHORT.pack(0x0002, 0x0000, b"UL", 4) + struct.pack("<L", len(body)) + body


def marker_elements(
    profile: ConfidentialityProfile,
    implicit: bool,
    at_risk: bool,
    earlier: list[str] | None = None,
    kept_items: list[bytes] | None = None,
    codec: str = "latin-1",
) -> list[tuple[int, str, bytes, bytes]]:
    """The de-identification markers of ``profile``: ``(tag, VR, value, encoded element)``.

    The values are :func:`src.ingestion.annex_e.markers.marker_values`, the pydicom path's; an
    earlier de-identification's methods and Code Sequence items (``earlier``,
    ``kept_items``, from :func:`earlier_history`) come first, as :func:`mark` keeps them.
    The differential test holds the two encodings to the same decoded elements.
    """
    removed, methods, codes, longitudinal = marker_values(profile, at_risk)
    items = [struct.pack("<HHL", 0xFFFE, 0xE000, len(item)) + item for item in kept_items or ()]
    for code in codes:
        body = (
            _element(0x00080100, b"SH", code.value, implicit)
            + _element(0x00080102, b"SH", code.scheme, implicit)
            + _element(0x00080104, b"LO", code.meaning, implicit)
        )
        items.append(struct.pack("<HHL", 0xFFFE, 0xE000, len(body)) + body)
    sequence = b"".join(items)
    values = [
        (0x00120062, "CS", join([removed], "CS")),
        (0x00120063, "LO", join([*(earlier or ()), *methods], "LO", codec)),
        (0x00120064, "SQ", sequence),
        (0x00280303, "CS", join([longitudinal], "CS")),
    ]
    return [
        (tag, vr, value, encode_header(tag, vr.encode(), len(value), implicit) + value)
        for tag, vr, value in values
    ]


#: Patient's Name and Patient ID: Type 2 in the Patient Module, so an input without them
#: gets the pseudonym in both, as its folder, index row and crosswalk row have it.
PATIENT_IDENTITY_TAGS = ((0x00100010, "PN"), (0x00100020, "LO"))


def patient_identity_elements(
    present: set[int] | dict[int, Any], pseudonym: str, implicit: bool, codec: str
) -> list[tuple[int, str, bytes, bytes]]:
    """Patient's Name and Patient ID holding ``pseudonym``, for those not ``present``
    (as :func:`marker_elements` gives its elements)."""
    out = []
    for tag, vr in PATIENT_IDENTITY_TAGS:
        if tag not in present:
            value = join([pseudonym[:64]], vr, codec)
            out.append(
                (tag, vr, value, encode_header(tag, vr.encode(), len(value), implicit) + value)
            )
    return out


def earlier_history(
    data: bytes, implicit: bool, codec: str, profile: ConfidentialityProfile
) -> tuple[list[str], list[bytes]]:
    """An earlier de-identification's methods and Code Sequence items, as walked.

    ``data`` holds the de-identified (0012,0063) and (0012,0064) of the input, if any.
    Ours are left out (they are written again), as :func:`mark` does.

    Raises
    ------
    NotHandled
        For a Code Sequence that is not a sequence.
    """
    _, ours, codes, _ = marker_values(profile, False)
    known = {(c.scheme, c.value) for c in codes}
    earlier: list[str] = []
    kept: list[bytes] = []
    for el in elements_of(data, 0, len(data), implicit):
        if el.tag == 0x00120063:
            values = split(bytes(data[el.value_start : el.value_end]), "LO", codec)
            if values != [""]:
                earlier = [v for v in values if v not in ours]
        elif el.tag == 0x00120064:
            if el.vr != b"SQ":
                raise NotHandled
            for start, end in items(data, el, implicit):
                found = {e.tag: e for e in elements_of(data, start, end, implicit)}
                pair = (_single(data, found.get(0x00080102), codec),
                        _single(data, found.get(0x00080100), codec))  # fmt: skip
                if pair not in known:
                    kept.append(bytes(data[start:end]))
    return earlier, kept


def _single(data: bytes, el: Element | None, codec: str) -> str | tuple[str, ...] | None:
    """An SH value as pydicom gives it: None when absent, a tuple when multi-valued."""
    if el is None:
        return None
    values = split(bytes(data[el.value_start : el.value_end]), "SH", codec)
    return values[0] if len(values) == 1 else tuple(values)


def _element(tag: int, vr: bytes, text: str, implicit: bool) -> bytes:
    value = join([text], vr.decode())
    return encode_header(tag, vr, len(value), implicit) + value


def pixel_header(pixel: Element | None, implicit: bool, bits_allocated: bytes) -> bytes:
    """The pixel data element's header, as :func:`.part10._write_pixel_header` writes it."""
    if pixel is None:
        return b""
    length = 0xFFFFFFFF if pixel.undefined else pixel.value_end - pixel.value_start
    group, element = pixel.tag >> 16, pixel.tag & 0xFFFF
    if implicit:
        return struct.pack("<HHL", group, element, length)
    bits = int.from_bytes(bits_allocated[:2], "little") if len(bits_allocated) >= 2 else 16
    if pixel.tag == 0x7FE00008:
        vr = b"OF"
    elif pixel.tag == 0x7FE00009:
        vr = b"OD"
    elif pixel.undefined or (bits or 16) <= 8:
        vr = b"OB"
    else:
        vr = b"OW"
    return _UL.pack(group, element, vr, 0, length)


def write_output(
    path: Any,
    buf: Any,
    fp: IO[bytes],
    meta: bytes,
    pieces: list[Any],
    pixel_head: bytes,
    pixel: Element | None,
    *,
    atomic: bool,
    fsync: bool,
    checksum: bool = False,
    pixel_value: bytes | None = None,
) -> str | None:
    """Write preamble, meta, the data set's pieces, and the pixel data where it was
    (``pixel_value``: its new value instead, the JPEG metadata removed).

    Returns
    -------
    str or None
        With ``checksum``, the BLAKE3 of what was written (:data:`src.atomic.DIGEST_ALGORITHM`),
        computed from the bytes in hand as they are written; for a mapped input, whose
        pixel data the kernel copies, from the mapped pages of the same range.
    """
    mapped = not isinstance(buf, bytes | bytearray)
    digest = new_digest() if checksum else None
    with open_output(path, atomic, fsync) as out:
        head = [b"\x00" * 128, b"DICM", meta]
        for piece in pieces:
            if piece is not None:
                head.append(piece)
                continue
            assert pixel is not None
            head.append(pixel_head)
            _write(out, b"".join(head), digest)
            head = []
            if pixel_value is not None:
                _write(out, pixel_value, digest)
            elif mapped:
                _copy_range(fp, out, pixel.value_start, pixel.value_end - pixel.value_start)
                if digest is not None:
                    digest.update(memoryview(buf)[pixel.value_start : pixel.value_end])
            else:
                _write(out, memoryview(buf)[pixel.value_start : pixel.value_end], digest)
        _write(out, b"".join(head), digest)
    return digest.hexdigest() if digest is not None else None


def _write(out: IO[bytes], data: Any, digest: Any) -> None:
    out.write(data)
    if digest is not None:
        digest.update(data)


def _copy_range(src: IO[bytes], dst: IO[bytes], offset: int, length: int) -> None:
    """Copy ``length`` bytes from ``offset`` of ``src`` to the end of ``dst``, in the kernel
    where it can (``copy_file_range``), else in 1 MiB reads that never map the file."""
    dst.flush()
    in_fd, out_fd = src.fileno(), dst.fileno()
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(in_fd, out_fd, length - done, offset + done)
            if n <= 0:
                break
            done += n
    except OSError:
        pass  # EXDEV, EINVAL, ENOSYS: copied below
    os.lseek(out_fd, 0, os.SEEK_END)
    while done < length:
        data = os.pread(in_fd, min(_CHUNK, length - done), offset + done)
        if not data:
            raise OSError("input changed while it was being copied")
        os.write(out_fd, data)
        done += len(data)
    dst.seek(0, os.SEEK_END)


@functools.cache
def _pydicom() -> tuple[Any, Any, Any, Any]:
    """pydicom's dataset and element types, imported when a header is first described."""
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.tag import BaseTag

    return RawDataElement, BaseTag, Dataset, FileMetaDataset


def _raw(tag: int, vr: str | None, value: bytes, implicit: bool) -> Any:
    raw_type, base_tag = _pydicom()[:2]
    return _new(raw_type, (base_tag(tag), vr, len(value), value, 0, implicit, True, True, False))


def _meta_dataset(values: dict[int, bytes]) -> FileMetaDataset:
    _, base_tag, _, meta_type = _pydicom()
    meta = meta_type()
    for tag, value in values.items():
        vr = {0x00020000: "UL", 0x00020001: "OB"}.get(tag, "UI" if tag < 0x00020013 else "SH")
        meta._dict[base_tag(tag)] = _raw(tag, vr, value, False)
    return cast("FileMetaDataset", meta)


def dataset_of(buf: Any, elems: list[Element], part: Part10, implicit: bool) -> Dataset:
    """The original header (everything but the top-level pixel data), as raw elements."""
    raw_type, base_tag, dataset_type, _ = _pydicom()
    ds = dataset_type()
    store = ds._dict
    for el in elems:
        tag = el[0]
        if tag in PIXEL_TAGS:
            continue
        end = el[4] - 8 if el[5] else el[4]
        value = bytes(buf[el[3] : end])
        vr = None if implicit else el[1].decode()
        store[base_tag(tag)] = _new(
            raw_type, (base_tag(tag), vr, len(value), value, 0, implicit, True, True, False)
        )
    ds.file_meta = _meta_dataset(part.meta)
    ds.set_original_encoding(implicit, True)
    return cast("Dataset", ds)


def raw_dataset(
    top: dict[int, tuple[str, Any]],
    meta: dict[int, bytes],
    implicit: bool,
    buf: Any,
    original: Dataset | None = None,
) -> Dataset:
    """The de-identified header, from the engine's top-level output values.

    A value the walk kept as it was (an :class:`Element` in ``top``) is the very raw
    element of ``original``, so that whoever decodes both decodes it once.
    """
    _, base_tag, dataset_type, _ = _pydicom()
    ds = dataset_type()
    store = ds._dict
    raw_type = _pydicom()[0]
    shared: Any = original._dict if original is not None else {}
    for tag in sorted(top):
        vr, value = top[tag]
        if type(value) is Element:
            same = shared.get(tag)
            if type(same) is raw_type:  # still raw: nobody decoded (or changed) it
                store[base_tag(tag)] = same
                continue
            vr = value[1].decode()
            end = value[4] - 8 if value[5] else value[4]
            value = buf[value[3] : end]
        store[base_tag(tag)] = _raw(tag, None if implicit else vr, bytes(value), implicit)
    ds.file_meta = _meta_dataset(meta)
    ds.set_original_encoding(implicit, True)
    return cast("Dataset", ds)


__all__ = [
    "dataset_of",
    "earlier_history",
    "file_meta_bytes",
    "marker_elements",
    "pixel_header",
    "raw_dataset",
    "rebuilt_meta",
    "write_output",
]
