from __future__ import annotations

import io
import os
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, generate_uid

from src.errors import InvalidDICOMError
from src.ingestion.dicom_parser import DICOMParser

CT = get_testdata_file("CT_small.dcm")


def test_parse_file_reads_the_dataset():
    parsed = DICOMParser().read_file(CT)
    ds = parsed.dataset
    assert ds.Modality == "CT"
    assert ds.StudyInstanceUID == "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
    assert parsed.flags == []
    assert parsed.transfer_syntax == "1.2.840.10008.1.2.1"
    assert not hasattr(ds, "medpipe_flags") and not hasattr(ds, "medpipe_spans")


def test_parse_bytes_matches_parse_file():
    data = Path(CT).read_bytes()
    a = DICOMParser().parse_bytes(data)
    b = DICOMParser().parse_file(CT)
    assert a.SOPInstanceUID == b.SOPInstanceUID
    assert a.PixelData == b.PixelData


def test_empty_file_is_refused(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser().parse_file(empty)
    assert info.value.reason == "empty file"
    assert "empty.dcm" in str(info.value)


def test_text_file_named_dcm_is_refused(tmp_path):
    fake = tmp_path / "report.dcm"
    fake.write_text("Patient: Jane Doe\nThis is not DICOM at all.\n" * 20)
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser().parse_file(fake)
    assert "not" in info.value.reason
    assert "Jane" not in str(info.value)


def test_random_bytes_are_refused(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(InvalidDICOMError):
        DICOMParser().parse_file(junk)


@pytest.mark.parametrize("cut", [140, 300, 1500, 1501, 1530, 5000, 7000, 20000, 39000])
def test_truncated_file_is_refused_as_truncated(tmp_path, cut):
    data = Path(CT).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:cut])
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser().parse_file(path)
    assert info.value.reason.startswith("truncated"), info.value.reason


def test_missing_file_is_invalid_dicom_error(tmp_path):
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser().parse_file(tmp_path / "nope.dcm")
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_no_meta_file_is_read_and_flagged():
    parsed = DICOMParser().read_file(get_testdata_file("no_meta.dcm"))
    assert parsed.dataset.Modality == "CT"
    assert "no_file_meta" in parsed.flags
    assert "no_preamble" in parsed.flags
    assert parsed.read_whole
    assert len(parsed.dataset.PixelData) == 128 * 128 * 2


def test_transfer_syntax_from_meta_and_from_encoding():
    parser = DICOMParser()
    assert parser.get_transfer_syntax(parser.parse_file(CT)) == "1.2.840.10008.1.2.1"
    big = parser.parse_file(get_testdata_file("MR_small_bigendian.dcm"))
    assert parser.get_transfer_syntax(big) == ExplicitVRBigEndian
    implicit = parser.parse_file(get_testdata_file("rtplan.dcm"))
    assert parser.get_transfer_syntax(implicit) == "1.2.840.10008.1.2"


def _deflated_bomb(path: Path, payload: int) -> None:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.add_new(0x00091010, "OB", b"\x00" * payload)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def test_deflate_bomb_is_refused_without_inflating(tmp_path):
    bomb = tmp_path / "bomb.dcm"
    _deflated_bomb(bomb, 8 * 1024 * 1024)
    assert bomb.stat().st_size < 100_000
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser(max_inflated_bytes=1024 * 1024).parse_file(bomb)
    assert "inflates beyond" in info.value.reason


def test_small_deflated_file_is_read():
    parsed = DICOMParser().read_file(get_testdata_file("image_dfl.dcm"))
    assert "deflated" in parsed.flags
    assert parsed.dataset.Rows > 0


def test_every_pydicom_file_parses_or_raises_the_project_error():
    from tests.conftest import pydicom_files

    parsed = refused = 0
    for path in pydicom_files():
        try:
            DICOMParser().parse_file(path)
            parsed += 1
        except InvalidDICOMError:
            refused += 1
    assert parsed > 140
    assert refused >= 5  # the .txt, .json and .gz files pydicom also ships


def test_parse_header_stops_at_pixel_data():
    with open(CT, "rb") as fh:
        ds = DICOMParser().parse_header(fh, "CT_small.dcm")
        assert "PixelData" not in ds
        assert fh.read(4) == b"\xe0\x7f\x10\x00"


def test_bytes_io_label_is_used_in_errors():
    with pytest.raises(InvalidDICOMError) as info:
        DICOMParser().parse_bytes(b"garbage" * 30, source="s3://bucket/key.dcm")
    assert "s3://bucket/key.dcm" in str(info.value)
    assert pydicom is not None and io is not None
