"""A dataset without the Part 10 header (no preamble, no ``DICM``), read by pydicom.

Such files exist (PS3.10 7.1 predecessors, exports of old systems, pydicom's own
``no_meta.dcm``), so they are read; but only once their first bytes could begin a
dataset. A file of zeros, text or an image format is refused after reading a dozen
bytes instead of costing a pydicom pass over all of it for each resynchronisation.
"""

from __future__ import annotations

import io
import struct
from typing import IO, TYPE_CHECKING

from src.errors import InvalidDICOMError

if TYPE_CHECKING:  # pydicom reads a headerless file, imported when one comes
    from pydicom.dataset import Dataset

FLAG_NO_PREAMBLE = "no_preamble"
FLAG_NO_FILE_META = "no_file_meta"
FLAG_LEADING_BYTES_SKIPPED = "leading_bytes_skipped"
#: Stray leading bytes skipped before a dataset (pydicom's no_meta.dcm has one).
MAX_RESYNC_BYTES = 3
_NOT_DICOM = "not DICOM: no DICM preamble and no recognisable dataset"


def dataset_can_start(head: bytes) -> bool:
    """Whether a headerless dataset can begin with ``head``: its first tag is in the
    group of the file meta (0002) or of the first attributes a dataset holds (0008 to
    0020, even), in either byte order."""
    if len(head) < 4:
        return False
    for order in ("<", ">"):
        group = struct.unpack_from(f"{order}H", head)[0]
        if group == 0x0002 or (0x0008 <= group <= 0x0020 and group % 2 == 0):
            return True
    return False


def plausible_headerless(dataset: Dataset) -> bool:
    """Whether a force-read dataset looks like DICOM rather than arbitrary bytes."""
    import pydicom.datadict

    tags = list(dataset.keys())
    if not tags:
        return False
    known = [t for t in tags if t.is_private or pydicom.datadict.dictionary_has_tag(t)]
    # A real dataset starts with public attributes, in ascending order, mostly known.
    return (
        tags == sorted(tags)
        and known[:1] == tags[:1]
        and 0x0008 <= tags[0].group <= 0x0020
        and len(known) * 2 >= len(tags)
    )


def read_headerless(
    fp: IO[bytes], source: str, stop_before_pixels: bool, flags: list[str]
) -> Dataset:
    """Read a dataset without a preamble from ``fp`` (at its start).

    Raises
    ------
    InvalidDICOMError
        When no dataset begins in the first bytes, or none reads cleanly.
    """
    import pydicom
    from pydicom.dataset import FileDataset

    flags.append(FLAG_NO_PREAMBLE)
    start = fp.tell()
    head = fp.read(MAX_RESYNC_BYTES + 8)
    if len(head) < 8:
        raise InvalidDICOMError(source, "too short to be DICOM")
    skips = [s for s in range(MAX_RESYNC_BYTES + 1) if dataset_can_start(head[s:])]
    if not skips:
        raise InvalidDICOMError(source, _NOT_DICOM)
    fp.seek(start)
    data = fp.read()
    for skip in skips:
        buffer = io.BytesIO(data[skip:])
        try:
            dataset = pydicom.dcmread(buffer, force=True, stop_before_pixels=stop_before_pixels)
        except Exception:
            if skip == 0:
                raise
            continue
        meta = getattr(dataset, "file_meta", None) if isinstance(dataset, FileDataset) else None
        if skip == 0 and meta is not None and "TransferSyntaxUID" in meta:
            return dataset
        if plausible_headerless(dataset):
            flags.append(FLAG_NO_FILE_META)
            if skip:
                flags.append(FLAG_LEADING_BYTES_SKIPPED)
            return dataset
    raise InvalidDICOMError(source, _NOT_DICOM)


__all__ = [
    "FLAG_LEADING_BYTES_SKIPPED",
    "FLAG_NO_FILE_META",
    "FLAG_NO_PREAMBLE",
    "MAX_RESYNC_BYTES",
    "dataset_can_start",
    "plausible_headerless",
    "read_headerless",
]
