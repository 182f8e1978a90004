"""Clean Pixel Data examines what pydicom decodes (#29 item 7): 1-bit and 32-bit images
and big-endian data are cleaned and written back as they came (same Bits Allocated, same
byte order), instead of being left unexamined."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline

KEY = b"pixel depth key 0123456789abcdef"


def _ink() -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("L", (320, 240), 0)
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 22)
    ImageDraw.Draw(canvas).text((20, 100), "WHITFIELD ADA 1956", fill=255, font=font)
    return np.asarray(canvas) > 127


def _image(bits: int, syntax: str) -> tuple[Dataset, np.ndarray]:
    ink = _ink()
    rng = np.random.default_rng(bits)
    if bits == 1:
        values = ink.astype(np.uint8)  # a scanned form: black paper, white print
    else:
        top = 2**bits - 1 if bits < 32 else 2**20
        values = rng.integers(0, top // 8, ink.shape).astype(np.uint32 if bits == 32 else np.uint16)
        values[ink] = top
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitfield^Ada", "MRN-DEPTH-1", "OT"
    ds.Rows, ds.Columns = ink.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = bits if bits != 32 else 32
    ds.HighBit, ds.PixelRepresentation = ds.BitsStored - 1, 0
    little = syntax == ExplicitVRLittleEndian
    if bits == 1:
        from pydicom.pixels.utils import pack_bits

        ds.PixelData = pack_bits(values.ravel())
    else:
        ds.PixelData = values.astype(f"{'<' if little else '>'}u{bits // 8}").tobytes()
    ds["PixelData"].VR = "OB" if bits == 1 else "OW"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds, ink


@pytest.mark.parametrize(
    ("bits", "syntax"),
    [
        (1, ExplicitVRLittleEndian),
        (32, ExplicitVRLittleEndian),
        (16, ExplicitVRBigEndian),
        (32, ExplicitVRBigEndian),
    ],
)
def test_these_depths_and_byte_orders_are_cleaned_and_written_back(tmp_path, bits, syntax):
    ds, ink = _image(bits, syntax)
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)
    profile = ConfidentialityProfile(clean_pixels=True)
    result = InstancePipeline(Deidentifier(profile=profile, key=KEY)).process(source, out)
    assert result.pixels is not None and result.pixels.examined and result.pixels.verified
    written = pydicom.dcmread(out)
    assert int(written.BitsAllocated) == bits
    assert written.file_meta.TransferSyntaxUID == syntax
    assert written.PatientIdentityRemoved == "YES"
    before, after = pixel_array(pydicom.dcmread(source)), pixel_array(written)
    covered = np.zeros(ink.shape, dtype=bool)
    for b in result.index["pixel_boxes"]:
        covered[b["y"] : b["y"] + b["height"], b["x"] : b["x"] + b["width"]] = True
    assert covered[ink].all()  # every stroke inside a filled box
    assert np.array_equal(before[~covered], after[~covered])  # nothing else changed
    assert (after[covered] == after[covered].min()).all()
