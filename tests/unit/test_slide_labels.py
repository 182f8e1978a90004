"""Whole-slide images (#32): a slide's LABEL and OVERVIEW images, and any image whose
header says the specimen label is in it, are at risk of burned-in text whatever Burned In
Annotation says; and such an image in which the detector finds no text is never marked
clean (it keeps Patient Identity Removed NO)."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline
from tests.conftest import TEST_KEY

WSI = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _slide(image_type: list[str], label_in_image: str | None, syntax: str) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = WSI, generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitfield^Ada", "MRN-SLIDE-3", "SM"
    ds.ImageType = image_type
    ds.BurnedInAnnotation = "NO"  # what many scanners write, label or not
    if label_in_image is not None:
        ds.SpecimenLabelInImage = label_in_image
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((64, 64, 3), 240, dtype=np.uint8).tobytes()  # a blank label
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


CASES = [
    (["ORIGINAL", "PRIMARY", "LABEL", "NONE"], None, "NO"),
    (["DERIVED", "PRIMARY", "OVERVIEW", "NONE"], None, "NO"),
    (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "YES", "NO"),
    (["ORIGINAL", "PRIMARY", "VOLUME", "NONE"], "NO", "YES"),  # the control
]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize(("image_type", "label", "removed"), CASES)
def test_labels_are_at_risk_whatever_burned_in_annotation_says(
    tmp_path, syntax, image_type, label, removed
):
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    _slide(image_type, label, syntax).save_as(source, enforce_file_format=True)
    Deidentifier(key=TEST_KEY).deidentify_file(source, out)
    assert pydicom.dcmread(out).PatientIdentityRemoved == removed


def test_a_label_without_text_found_is_never_marked_clean(tmp_path):
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds = _slide(["ORIGINAL", "PRIMARY", "LABEL", "NONE"], "YES", ExplicitVRLittleEndian)
    ds.save_as(source, enforce_file_format=True)
    profile = ConfidentialityProfile(clean_pixels=True)
    result = InstancePipeline(Deidentifier(profile=profile, key=TEST_KEY)).process(source, out)
    assert result.pixels is not None and result.pixels.examined and not result.pixels.boxes
    assert not result.pixels.verified and result.pixels.contradicted
    written = pydicom.dcmread(out)
    assert written.PatientIdentityRemoved == "NO"
    assert result.index["clean_pixel_data"] is False
