"""References to source images survive de-identification (#32): where Table E.1-1 allows
``U*`` the sequence is kept and every UID inside it gets the same keyed mapping as the
referenced file's own UIDs, so a derived image still points to its sources in OUTPUT.

The rows are read from the shipped table (every row whose basic code holds ``U*``), not
listed here; both engines are held to the same result.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from src.ingestion.annex_e.profile import ConfidentialityProfile, load_table_e1_1
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.encoding.dictionary import keyword_for_tag
from tests.conftest import TEST_KEY

CT = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
#: The reference sequences whose code allows U*, from the shipped Table E.1-1.
U_STAR = [
    keyword_for_tag(row.tag)
    for row in load_table_e1_1()
    if row.tag is not None and "U*" in row.basic.split("/")
]


def test_the_table_gives_the_reference_sequences():
    assert {"ReferencedImageSequence", "SourceImageSequence"} <= set(U_STAR)


def _image(sop_class: str, name: str, **extra: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = extra.pop("study", generate_uid())
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = name, "MRN-REF-1", "CT"
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = b"\x00" * 8
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def _reference(target: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = target.SOPClassUID
    item.ReferencedSOPInstanceUID = target.SOPInstanceUID
    return item


def _save(ds: Dataset, path: Path, syntax: str = ExplicitVRLittleEndian) -> Path:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_references_resolve_to_the_referenced_images_new_uids(tmp_path, syntax):
    # Big endian goes to the pydicom engine: both engines keep the links.
    source = _image(CT, "Whitfield^Ada")
    derived = _image(CT, "Whitfield^Ada", study=source.StudyInstanceUID)
    for keyword in U_STAR:
        setattr(derived, keyword, Sequence([_reference(source)]))
    # And inside a functional group: Derivation Image Sequence > Source Image Sequence.
    enhanced = _image(ENHANCED_CT, "Whitfield^Ada", study=source.StudyInstanceUID)
    derivation = Dataset()
    derivation.SourceImageSequence = Sequence([_reference(source)])
    group = Dataset()
    group.DerivationImageSequence = Sequence([derivation])
    enhanced.PerFrameFunctionalGroupsSequence = Sequence([group])
    enhanced.NumberOfFrames = 1

    deid = Deidentifier(key=TEST_KEY)
    out = {}
    for name, ds in (("source", source), ("derived", derived), ("enhanced", enhanced)):
        path = _save(ds, tmp_path / f"{name}.dcm", syntax)
        deid.deidentify_file(path, tmp_path / f"{name}-out.dcm")
        out[name] = pydicom.dcmread(tmp_path / f"{name}-out.dcm")
    new_uid = out["source"].SOPInstanceUID
    assert new_uid != source.SOPInstanceUID
    for keyword in U_STAR:
        (item,) = out["derived"][keyword].value
        assert item.ReferencedSOPInstanceUID == new_uid, keyword
        assert item.ReferencedSOPClassUID == CT  # a standard UID: kept
    frame = out["enhanced"].PerFrameFunctionalGroupsSequence[0]
    (inner,) = frame.DerivationImageSequence[0].SourceImageSequence
    assert inner.ReferencedSOPInstanceUID == new_uid
    for ds in out.values():  # nothing of the original survives inside the references
        assert source.SOPInstanceUID not in str(ds)


def test_the_option_off_removes_them_as_the_iod_type_says(tmp_path):
    source = _image(CT, "Whitfield^Ada")
    derived = _image(CT, "Whitfield^Ada", ReferencedImageSequence=Sequence([_reference(source)]))
    path = _save(derived, tmp_path / "derived.dcm")
    profile = ConfidentialityProfile(keep_image_references=False)
    result = Deidentifier(profile=profile, key=TEST_KEY).deidentify_file(path, tmp_path / "out.dcm")
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert "ReferencedImageSequence" not in out  # Type 3 in the CT Image IOD: X
    assert "ReferencedImageSequence" in result  # the paths changed


def test_explain_says_why(tmp_path):
    from click.testing import CliRunner

    from src.cli import main

    shown = CliRunner().invoke(main, ["explain", "SourceImageSequence"]).output
    assert "U*" in shown and "K (kept)" in shown
    off = (
        CliRunner()
        .invoke(main, ["explain", "SourceImageSequence", "--no-keep-image-references"])
        .output
    )
    assert "X (removed)" in off
