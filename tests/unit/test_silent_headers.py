"""A silent or wrong header is not trusted (#29 item 3): an image of a modality whose
devices burn text in (here CR, DX, MG and US) saying Burned In Annotation NO, or nothing,
is examined with Clean Pixel Data, and without it is not written as identity-removed."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline
from src.synthetic.burned_text import generate

KEY = b"silent header key 0123456789abcd"
CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
}


@pytest.mark.parametrize("modality", sorted(CLASSES))
@pytest.mark.parametrize("burned", ["NO", None])
def test_a_silent_header_is_examined_and_never_trusted(tmp_path, modality, burned):
    sample = next(
        s for s in generate(31, 6, text_free_every=0) if s.boxes and s.dataset.SamplesPerPixel == 1
    )
    ds = sample.dataset
    ds.Modality = modality
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CLASSES[modality]
    if burned is None:
        del ds.BurnedInAnnotation
    else:
        ds.BurnedInAnnotation = burned
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    plain = Deidentifier(key=KEY)
    plain.deidentify_file(source, tmp_path / "plain.dcm")
    assert pydicom.dcmread(tmp_path / "plain.dcm").PatientIdentityRemoved == "NO"
    profile = ConfidentialityProfile(clean_pixels=True)
    result = InstancePipeline(Deidentifier(profile=profile, key=KEY)).process(
        source, tmp_path / "clean.dcm"
    )
    assert result.pixels is not None and result.pixels.verified
    covered = np.zeros((ds.Rows, ds.Columns), dtype=bool)
    for b in result.index["pixel_boxes"]:
        covered[b["y"] : b["y"] + b["height"], b["x"] : b["x"] + b["width"]] = True
    for (_, x, y, w, h), ink in zip(sample.boxes, sample.ink, strict=True):
        mask = np.zeros_like(covered)
        mask[y : y + h, x : x + w] = ink
        assert covered[mask].all()
    assert pydicom.dcmread(tmp_path / "clean.dcm").PatientIdentityRemoved == "YES"


def test_ct_still_follows_its_header(tmp_path):
    sample = next(s for s in generate(31, 6, text_free_every=0) if s.dataset.SamplesPerPixel == 1)
    ds = sample.dataset
    ds.Modality, ds.BurnedInAnnotation = "CT", "NO"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    Deidentifier(key=KEY).deidentify_file(source, tmp_path / "out.dcm")
    assert pydicom.dcmread(tmp_path / "out.dcm").PatientIdentityRemoved == "YES"
