"""Metadata inside compressed pixel streams (#32): JPEG APP and COM segments (EXIF, XMP,
comments) are removed losslessly, and a video stream is never claimed clean.

The JPEG streams are Pillow's, with EXIF and a comment holding a name; the oracle for
"losslessly" is Pillow decoding the stream before and after, and the entropy-coded bytes
from the first Start of Scan on compared as they are.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, generate_uid

from src.ingestion.deidentifier import Deidentifier
from src.ingestion.encoding.jpeg_segments import strip_encapsulated, strip_stream
from tests.conftest import TEST_KEY

NAME = b"Whitfield Ada"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x013B] = NAME.decode()  # Artist
    exif[0x010E] = "Wound photo of " + NAME.decode()  # ImageDescription
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes(), comment=b"patient " + NAME)
    return out.getvalue()


def _scans(stream: bytes) -> bytes:
    return stream[stream.index(b"\xff\xda") :]


def test_strip_stream_keeps_the_scans_and_what_decoding_needs():
    stream = _jpeg(1)
    assert NAME in stream
    stripped = strip_stream(stream)
    assert stripped is not None and NAME not in stripped
    assert _scans(stripped) == _scans(stream)
    assert stripped.startswith(b"\xff\xd8\xff\xe0")  # JFIF kept
    before = np.asarray(Image.open(io.BytesIO(stream)))
    after = np.asarray(Image.open(io.BytesIO(stripped)))
    assert np.array_equal(before, after)
    assert strip_stream(stripped) is None  # nothing left to remove


def _photo(frames: list[bytes], *, offsets: bool) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.77.1.4"  # VL Photographic Image
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitfield^Ada", "MRN-JPEG-1", "XC"
    ds.BurnedInAnnotation = "NO"
    ds.Rows, ds.Columns, ds.SamplesPerPixel = 48, 64, 3
    ds.PhotometricInterpretation, ds.PlanarConfiguration = "YBR_FULL_422", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = len(frames)
    ds.PixelData = encapsulate(frames, has_bot=offsets)
    ds["PixelData"].VR = "OB"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.mark.parametrize("engine", ["auto", "pydicom"])
@pytest.mark.parametrize("offsets", [True, False], ids=["offset-table", "no-offset-table"])
def test_jpeg_metadata_is_removed_from_every_frame_and_the_frames_decode_the_same(
    tmp_path, engine, offsets
):
    frames = [_jpeg(1), _jpeg(2), _jpeg(3)]
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    _photo(frames, offsets=offsets).save_as(source, enforce_file_format=True)
    assert NAME in source.read_bytes()
    Deidentifier(key=TEST_KEY, engine=engine).deidentify_file(source, out)
    data = out.read_bytes()
    assert NAME not in data and b"Whitfield" not in data
    before, after = pydicom.dcmread(source), pydicom.dcmread(out)
    assert after.PatientIdentityRemoved == "NO"  # a photograph: at risk until examined
    for n in range(len(frames)):
        assert np.array_equal(before.pixel_array[n], after.pixel_array[n])
    from pydicom.encaps import generate_frames

    for old, new in zip(
        generate_frames(before.PixelData, number_of_frames=3),
        generate_frames(after.PixelData, number_of_frames=3),
        strict=True,
    ):
        assert _scans(new.rstrip(b"\x00")) == _scans(old.rstrip(b"\x00"))


def test_a_value_without_metadata_is_left_as_it_is():
    clean = strip_stream(_jpeg(4))
    assert clean is not None
    assert strip_encapsulated(encapsulate([clean], has_bot=True)) is None


def test_a_video_stream_is_never_claimed_identity_removed(tmp_path):
    ds = _photo([b"\x00\x00\x01\xb3" + b"\x00" * 60], offsets=False)
    # Ultrasound Multi-frame, Burned In Annotation NO: the header alone would clear it.
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.3.1"
    ds.Modality = "US"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.102"  # MPEG-4 AVC/H.264
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)
    for engine in ("auto", "pydicom"):
        Deidentifier(key=TEST_KEY, engine=engine).deidentify_file(source, out)
        assert pydicom.dcmread(out, stop_before_pixels=True).PatientIdentityRemoved == "NO"
