"""Table E.1-1 as shipped: its size pinned, and the rows pydicom's dictionary does not
name (newer attributes, no keyword) applied by both engines like every other row.

``test_deidentifier.py`` checks every row that has a keyword, option by option. The 26
rows here have a tag but no keyword in pydicom 3.0's dictionary, so a test that builds
its dataset by keyword never met them; a file from a newer modality carries them all
the same, in explicit VR.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from src.ingestion.annex_e.profile import ConfidentialityProfile, load_table_e1_1
from src.ingestion.deidentifier import Deidentifier
from tests.conftest import TEST_KEY

#: PS3.15 2026d Table E.1-1, counted by hand from the standard's table (not from code):
#: 657 rows, and how many carry each Basic Profile code.
ROWS_2026D = 657
BASIC_CODES_2026D = {
    "X": 417, "D": 93, "U": 55, "Z": 42, "X/D": 23, "X/Z": 11, "X/Z/D": 8, "Z/D": 6, "X/Z/U*": 2,
}  # fmt: skip
#: The rows of a single tag that pydicom 3.0's dictionary does not name.
UNNAMED_TAGS_2026D = 26


def _unnamed_rows():  # type: ignore[no-untyped-def]
    return [r for r in load_table_e1_1() if r.tag is not None and not r.keyword]


def test_the_shipped_table_is_the_2026d_table() -> None:
    rows = load_table_e1_1()
    assert len(rows) == ROWS_2026D
    assert collections.Counter(r.basic for r in rows) == BASIC_CODES_2026D
    masks = [r for r in rows if r.tag is None]
    assert {r.tag_text for r in masks} >= {"(50xx,xxxx)", "(gggg,eeee)"}
    assert len(_unnamed_rows()) == UNNAMED_TAGS_2026D


def _vr_for(name: str) -> str:
    """A VR of the right kind for an attribute pydicom cannot look up. Each of these rows is X
    in the Basic Profile and X or C under Modified Dates, for any VR, so the VR only has
    to be one a file could carry."""
    if name.endswith("Sequence"):
        return "SQ"
    if name.endswith("DateTime"):
        return "DT"
    if name.endswith("URI"):
        return "UR"
    return "LO"


def _value(vr: str) -> object:
    if vr == "SQ":
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator = "Whitfield", "99LOCAL"
        item.CodeMeaning = "Jane Whitfield"
        return Sequence([item])
    return {"DT": "20190304101112", "UR": "http://example.org/Whitfield"}.get(vr, "Whitfield")


def _file(path: Path, nested: bool) -> list[int]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitfield^Jane", "MRN77", "OT"
    holder = ds
    if nested:  # inside a sequence Table E.1-1 does not list
        holder = Dataset()
        ds.ReferencedSeriesSequence = Sequence([holder])
    tags = []
    for row in _unnamed_rows():
        vr = _vr_for(row.name)
        holder.add_new(row.tag, vr, _value(vr))
        tags.append(row.tag)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return tags


def _expected(row, modified_dates: bool) -> str:  # type: ignore[no-untyped-def]
    """The row's code from the table's own columns: the Modified Dates column where that
    option is on and the column has a code, else the Basic Profile code."""
    column = row.options.get("retain_longitudinal_modified_dates")
    return column if modified_dates and column else row.basic


@pytest.mark.parametrize("engine", ["bytes", "pydicom"])
@pytest.mark.parametrize("nested", [False, True], ids=["top-level", "nested"])
@pytest.mark.parametrize("modified_dates", [False, True], ids=["basic", "modified-dates"])
def test_rows_without_a_keyword_follow_the_table(
    tmp_path: Path, engine: str, nested: bool, modified_dates: bool
) -> None:
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    tags = _file(source, nested)
    assert len(tags) == UNNAMED_TAGS_2026D
    kwargs = {"engine": "pydicom"} if engine == "pydicom" else {}
    profile = ConfidentialityProfile(retain_longitudinal_modified_dates=modified_dates)
    Deidentifier(key=TEST_KEY, profile=profile, **kwargs).deidentify_file_with_report(source, out)
    result = pydicom.dcmread(out)
    holder = result.ReferencedSeriesSequence[0] if nested else result
    codes = collections.Counter()
    for row in _unnamed_rows():
        code = _expected(row, modified_dates)
        codes[code] += 1
        where = f"{row.tag_text} {row.name} ({code})"
        if code == "X":
            assert row.tag not in holder, where
        else:  # C on a DT: kept, shifted like every other date of the patient
            assert code == "C" and row.tag in holder, where
            value = str(holder[row.tag].value)
            assert value != "20190304101112" and len(value) >= 8, where
    assert codes["C"] == (4 if modified_dates else 0)
    assert b"Whitfield" not in out.read_bytes()
