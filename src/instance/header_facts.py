"""What the instance pipeline reads of a header, from the byte engine's raw values or
from a pydicom Dataset: the metadata, whether it is an image, whether it is a DICOMDIR,
and the output's place in the layout. The raw route builds no Dataset at all; a header
it cannot decode alone (another character set, an ambiguous VR) takes the Dataset route,
and a differential test holds both routes equal on every corpus file."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from src.errors import DeidentificationError
from src.ingestion.annex_e.iod_types import sop_class_name
from src.ingestion.engines.raw_header import RawHeader

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Media Storage Directory Storage (PS3.10 8.6, PS3.4 Annex F): a DICOMDIR.
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_DIRECTORY_RECORDS = 0x00041220
_ROWS, _COLUMNS, _SOP_CLASS = 0x00280010, 0x00280011, 0x00080016


def is_media_directory(original: Dataset | RawHeader) -> bool:
    """A DICOMDIR: its meta says so, or it holds a Directory Record Sequence."""
    if isinstance(original, RawHeader):
        declared = original.meta_text(0x00020002)
    else:
        meta = getattr(original, "file_meta", None)
        declared = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    return declared == MEDIA_STORAGE_DIRECTORY or _DIRECTORY_RECORDS in original


def is_image_header(header: RawHeader) -> bool:
    """As :func:`src.ingestion.dicom_parser.is_image`, from raw values: Rows and Columns
    present, or a SOP Class whose name ends in "Image Storage"."""
    if _ROWS in header and _COLUMNS in header:
        return True
    entry = header.get(_SOP_CLASS)
    if entry is None:
        return False
    uid = entry[1].decode("latin-1").rstrip(" \x00")
    name = sop_class_name(uid)
    if name is None:  # a retired class: pydicom's UID dictionary
        from pydicom.uid import UID

        name = UID(uid).name
    return isinstance(name, str) and name.endswith("Image Storage")


def layout_key(metadata: dict[str, Any], pseudonym: str) -> str | None:
    """``<pseudonym>/<study>/<series>/<sop>.dcm`` from extracted metadata, or None when
    a UID is not a single text value (the Dataset route then decides).

    Raises
    ------
    DeidentificationError
        As :func:`~src.instance.output_layout.output_key`.
    """
    parts = [
        pseudonym,
        metadata["study"].get("study_instance_uid"),
        metadata["series"].get("series_instance_uid"),
        metadata["image"].get("sop_instance_uid"),
    ]
    if any(p is not None and not isinstance(p, str) for p in parts):
        return None
    for part in parts:
        if not part or "/" in part or part in (".", "..") or "\x00" in part:
            raise DeidentificationError("de-identified dataset lacks a usable UID for its path")
    return "/".join(str(p) for p in parts[:3]) + f"/{parts[3]}.dcm"


__all__ = ["MEDIA_STORAGE_DIRECTORY", "is_image_header", "is_media_directory", "layout_key"]
