"""Part 10 files out: the byte-copying writer, the pixel data span and the file meta.

Kept top-level elements and unchanged sequences are copied as the bytes they were read
as; edited elements are encoded by pydicom; pixel data is located without decoding and
copied in large blocks. The preamble (which can hold anything) is always written as
zeros, and the file meta is rebuilt for the de-identified SOP Instance.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import IO, Any

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info

from src.atomic import open_output as _output
from src.errors import DeidentificationError, InvalidDICOMError
from src.ingestion.annex_e.embedded_overlays import copy_masked, masked_chunks
from src.ingestion.annex_e.markers import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from src.ingestion.encoding.elements import element_header
from src.ingestion.encoding.item_order import items_well_ordered

_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
# Patient Identity Removed, De-identification Method (+ Code Sequence), Longitudinal
# Temporal Information Modified: constant for a profile, so encoded once.
_MARKER_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})


def save_whole(
    dataset: Dataset,
    output_path: str | os.PathLike[str],
    atomic: bool,
    fsync: bool,
    transfer_syntax: str,
    pixel_mask: int | None = None,
    digest: Any = None,
) -> None:
    """Write a whole (headerless or inflated) dataset with pydicom, preamble zeroed
    (``digest``, a :func:`src.atomic.new_digest`, is fed every byte written)."""
    dataset.preamble = b"\x00" * 128  # never copied: it may hold anything
    if pixel_mask is not None and "PixelData" in dataset:
        little = dataset.original_encoding[1] is not False
        dataset.PixelData = masked_chunks(dataset.PixelData, pixel_mask, little)
    try:
        _ensure_file_meta(dataset, transfer_syntax)
        with _output(output_path, atomic, fsync, digest) as out:
            dataset.save_as(out, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, OSError, struct.error) as exc:
        raise DeidentificationError(
            f"cannot encode the de-identified dataset ({type(exc).__name__})"
        ) from exc


def save_streamed(
    header: Dataset,
    output_path: str | os.PathLike[str],
    source: IO[bytes],
    span: _PixelSpan | None,
    implicit: bool,
    little: bool,
    spans: dict[int, tuple[RawDataElement | None, int, int]],
    unchanged: set[int],
    atomic: bool,
    fsync: bool,
    marker_bytes: Callable[[Dataset, int, bool, bool], bytes],
    pixel_mask: int | None = None,
    digest: Any = None,
    pixel_value: bytes | None = None,
) -> None:
    """Write the header (kept elements copied as bytes), then the pixel data (or
    ``pixel_value``, its new value), then the elements that followed it."""
    _ensure_file_meta(header, _ts_for(implicit, little))
    meta = header.file_meta
    out_ts = pydicom.uid.UID(meta.TransferSyntaxUID)
    out_implicit = out_ts.is_implicit_VR if out_ts.is_transfer_syntax else implicit
    out_little = out_ts.is_little_endian if out_ts.is_transfer_syntax else little
    if (out_implicit, out_little) != (implicit, little):
        spans = {}  # encoded differently from what the meta says: re-encode everything
        for elem in header:
            _ = elem.value
    charset = header.get("SpecificCharacterSet")
    body = DicomBytesIO()
    body.is_little_endian = out_little
    body.is_implicit_VR = out_implicit
    tail = Dataset()
    try:
        source.seek(0)
        original = source.read(max((end for _, _, end in spans.values()), default=0))
        for tag in sorted(header.keys()):
            if tag >= 0x7FE00008:
                tail.add(header.get_item(tag))
                continue
            item: Any = header.get_item(tag)
            known = spans.get(tag)
            if tag in _MARKER_TAGS:  # ours, whatever the input held there
                body.write(marker_bytes(header, tag, out_implicit, out_little))
            elif (
                known is not None
                and (item is known[0] or tag in unchanged)
                and (
                    tag not in unchanged
                    or items_well_ordered(
                        original, known[1], known[2], implicit=implicit, little=little
                    )
                )
            ):
                body.write(original[known[1] : known[2]])
            else:
                write_data_element(body, header[tag], charset)
        with _output(output_path, atomic, fsync, digest) as out:
            # The preamble may hold anything (a TIFF header, text): never copied.
            out.write(b"\x00" * 128)
            out.write(b"DICM")
            meta_io = DicomBytesIO()
            meta_io.is_little_endian = True
            meta_io.is_implicit_VR = False
            write_file_meta_info(meta_io, meta, enforce_standard=True)
            out.write(meta_io.getvalue())
            out.write(body.getvalue())
            if span is not None:
                _write_pixel_header(out, span, header, out_implicit, out_little)
                source.seek(span.value_start)
                if pixel_value is not None:
                    out.write(pixel_value)
                elif pixel_mask is not None and not span.undefined_length:
                    # Embedded overlay bits zeroed as the native samples are copied.
                    copy_masked(source, out, span.value_end - span.value_start, pixel_mask, little)
                else:
                    _copy_exact(source, out, span.value_end - span.value_start)
            if len(tail):
                writer = DicomFileLike(out)
                writer.is_little_endian = out_little
                writer.is_implicit_VR = out_implicit
                write_dataset(writer, tail, charset)
    except (ValueError, TypeError, AttributeError, OSError, struct.error) as exc:
        raise DeidentificationError(
            f"cannot encode the de-identified dataset ({type(exc).__name__})"
        ) from exc


def _raw_spans(
    ds: Dataset, ranges: dict[int, tuple[int, int]], implicit: bool, little: bool
) -> dict[int, tuple[RawDataElement | None, int, int]]:
    """Byte ranges of the top-level elements, with the raw element still in ``ds``.

    The ranges come from the parser's structure walk. An element is listed only when it
    is encoded like the dataset; when any raw element is not (a file whose meta says
    Explicit VR but whose data is implicit), sequences are not listed at all.
    """
    spans: dict[int, tuple[RawDataElement | None, int, int]] = {}
    mixed = False
    for tag, (first, last) in ranges.items():
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            if raw.is_implicit_VR != implicit or raw.is_little_endian != little:
                mixed = True
                continue
            spans[tag] = (raw, first, last)
        elif raw is not None:
            spans[tag] = (None, first, last)
    if mixed:
        spans = {tag: item for tag, item in spans.items() if item[0] is not None}
    return spans


def _encoding(ds: Dataset) -> tuple[bool, bool]:
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return True, True
    return bool(implicit), bool(little)


def _ts_for(implicit: bool, little: bool) -> str:
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _ensure_file_meta(ds: Dataset, transfer_syntax: str) -> None:
    """Give ``ds`` complete File Meta Information, matching its SOP Class and Instance."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or not isinstance(meta, FileMetaDataset):
        new = FileMetaDataset()
        if meta is not None:
            for elem in meta:
                new.add(elem)
        ds.file_meta = new
        meta = new
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.UID(transfer_syntax)
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    elif not meta.get("MediaStorageSOPClassUID"):
        raise DeidentificationError(
            "SOP Class UID (0008,0016) is missing: cannot write a conformant DICOM file"
        )
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = pydicom.uid.UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


@dataclass(frozen=True)
class _PixelSpan:
    """Where the pixel data element's value lies in the input file."""

    tag: int
    value_start: int
    value_end: int
    undefined_length: bool


def _pixel_span(fp: IO[bytes], start: int, size: int, little: bool, source: str) -> _PixelSpan:
    """Locate the value of the pixel data element that starts at ``start``.

    The element's own encoding is detected (some files say Explicit VR in their meta
    but encode the dataset implicitly, which pydicom also tolerates).
    """
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(12)
    header = element_header(head, 0, len(head), False, little)
    if header is None:
        raise InvalidDICOMError(source, "truncated: inside the pixel data element header")
    tag, _, length, value_offset = header
    value_start = start + value_offset
    if length != 0xFFFFFFFF:
        end = value_start + length
        if end > size:
            raise InvalidDICOMError(source, "truncated: mid pixel data")
        return _PixelSpan(tag, value_start, end, False)
    pos = value_start
    while True:
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise InvalidDICOMError(source, "truncated: encapsulated pixel data without delimiter")
        group, element, item_length = struct.unpack(endian + "HHL", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return _PixelSpan(tag, value_start, pos + 8, True)
        if (group, element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            raise InvalidDICOMError(source, "malformed encapsulated pixel data")
        pos += 8 + item_length
        if pos > size:
            raise InvalidDICOMError(source, "truncated: mid pixel data fragment")


def _write_pixel_header(
    out: IO[bytes], span: _PixelSpan, header: Dataset, implicit: bool, little: bool
) -> None:
    """Write the pixel data element's tag and length in the output encoding."""
    endian = "<" if little else ">"
    length = 0xFFFFFFFF if span.undefined_length else span.value_end - span.value_start
    out.write(struct.pack(endian + "HH", span.tag >> 16, span.tag & 0xFFFF))
    if implicit:
        out.write(struct.pack(endian + "L", length))
        return
    if span.tag == 0x7FE00008:
        vr = b"OF"
    elif span.tag == 0x7FE00009:
        vr = b"OD"
    elif span.undefined_length or int(header.get("BitsAllocated", 16) or 16) <= 8:
        vr = b"OB"
    else:
        vr = b"OW"
    out.write(vr + b"\x00\x00" + struct.pack(endian + "L", length))


_MAX_TAIL_BYTES = 64 * 1024 * 1024


def _read_tail(
    fp: IO[bytes], start: int, size: int, implicit: bool, little: bool, source: str
) -> Dataset:
    """Parse the (small) elements that follow the pixel data, such as trailing padding."""
    if size - start > _MAX_TAIL_BYTES:
        raise InvalidDICOMError(source, "more than 64 MiB of elements after the pixel data")
    fp.seek(start)
    data = fp.read(size - start)
    try:
        tail = read_dataset(BytesIO(data), implicit, little)
        for elem in tail:
            _ = elem.value
    except (EOFError, ValueError, TypeError, KeyError, NotImplementedError, struct.error) as exc:
        raise InvalidDICOMError(source, "malformed elements after the pixel data") from exc
    return tail


def _copy_exact(src: IO[bytes], dst: IO[bytes], length: int, chunk: int = 1 << 20) -> None:
    remaining = length
    while remaining > 0:
        data = src.read(min(chunk, remaining))
        if not data:
            raise DeidentificationError("input changed while it was being copied")
        dst.write(data)
        remaining -= len(data)
