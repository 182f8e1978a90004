"""Where a de-identified instance goes in OUTPUT, and the identifiers a crosswalk joins on."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


from src.errors import DeidentificationError


def output_key(ds: Dataset, pseudonym: str) -> str:
    """``<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm`` of a de-identified dataset.

    Raises
    ------
    DeidentificationError
        If a part is missing or could escape the layout (``/``, ``..``, NUL).
    """
    parts = [
        pseudonym,
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("SeriesInstanceUID", "") or ""),
        str(ds.get("SOPInstanceUID", "") or ""),
    ]
    for part in parts:
        if not part or "/" in part or part in (".", "..") or "\x00" in part:
            raise DeidentificationError("de-identified dataset lacks a usable UID for its path")
    return "/".join(parts[:3]) + f"/{parts[3]}.dcm"


_IDENTITY = (
    ("patient_id", 0x00100020),
    ("issuer_of_patient_id", 0x00100021),
    ("accession_number", 0x00080050),
    ("study_instance_uid", 0x0020000D),
    ("series_instance_uid", 0x0020000E),
    ("sop_instance_uid", 0x00080018),
)


def original_identity(ds: Dataset) -> dict[str, str]:
    """The identifiers a crosswalk joins on, read from the original dataset."""
    out = {}
    for name, tag in _IDENTITY:
        elem = ds.get(tag)
        value = "" if elem is None or elem.value is None else str(elem.value)
        out[name] = value.strip()
    return out


__all__ = ["original_identity", "output_key"]
