from __future__ import annotations

import pydicom
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset

from src.errors import InvalidDICOMError
from src.ingestion.dicom_parser import DICOMParser
from src.ingestion.metadata_extractor import MetadataExtractor, convert_value
from tests.conftest import pydicom_files

SECTIONS = {"patient", "study", "series", "image", "acquisition"}


def test_every_pydicom_file_extracts_without_error():
    extracted = 0
    for path in pydicom_files():
        try:
            ds = DICOMParser().parse_file(path)
        except InvalidDICOMError:
            continue
        metadata = MetadataExtractor().extract_metadata(ds)
        assert set(metadata) == SECTIONS
        extracted += 1
    assert extracted > 140


def test_ct_small_values_are_typed():
    ds = DICOMParser().parse_file(get_testdata_file("CT_small.dcm"))
    md = MetadataExtractor().extract_metadata(ds)
    assert md["patient"]["patient_name"] == "CompressedSamples^CT1"
    assert md["patient"]["patient_id"] == "1CT1"
    assert md["patient"]["patient_sex"] == "O"
    assert md["study"]["study_date"] == "20040119"
    assert md["study"]["study_time"] == "072730"
    assert md["series"]["series_number"] == 1
    assert isinstance(md["series"]["series_number"], int)
    assert md["series"]["modality"] == "CT"
    assert md["image"]["rows"] == 128 and md["image"]["columns"] == 128
    assert md["image"]["pixel_spacing"] == [0.661468, 0.661468]
    assert all(isinstance(v, float) for v in md["image"]["pixel_spacing"])
    assert md["acquisition"]["kvp"] == 120.0
    assert md["image"]["transfer_syntax_uid"] == "1.2.840.10008.1.2.1"


def test_mr_values():
    ds = DICOMParser().parse_file(get_testdata_file("MR_small.dcm"))
    md = MetadataExtractor().extract_metadata(ds)
    assert md["series"]["modality"] == "MR"
    assert md["image"]["bits_allocated"] == 16
    assert isinstance(md["acquisition"]["echo_time"], float)


def test_person_names_are_decoded_per_character_set():
    ds = pydicom.dcmread(get_charset_files("chrRuss.dcm")[0])
    assert MetadataExtractor().extract_metadata(ds)["patient"]["patient_name"] == "Люкceмбypг"
    ds = pydicom.dcmread(get_charset_files("chrGerm.dcm")[0])
    assert MetadataExtractor().extract_metadata(ds)["patient"]["patient_name"] == "Äneas^Rüdiger"


def test_multivalued_and_acr_nema_dates():
    ds = Dataset()
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.StudyDate = "2004.01.19"
    ds.StudyTime = "07:27:30"
    ds.SeriesNumber = "7"
    assert convert_value(ds, "ImageType") == ["ORIGINAL", "PRIMARY"]
    md = MetadataExtractor().extract_metadata(ds)
    assert md["study"]["study_date"] == "20040119"
    assert md["study"]["study_time"] == "072730"
    assert md["series"]["series_number"] == 7


def test_absent_and_empty_values():
    ds = Dataset()
    ds.PatientName = ""
    md = MetadataExtractor().extract_metadata(ds)
    assert md["patient"]["patient_name"] is None
    assert md["patient"]["patient_id"] == ""  # Type 2: absent reads as empty
    assert md["study"]["study_instance_uid"] is None


def test_raw_values_decoded_directly_match_pydicoms_decoding(monkeypatch) -> None:
    """The extractor's direct decoding of plain raw values (ASCII, Latin-1, UTF-8) against
    pydicom's own, over every file pydicom ships that it can read."""
    import pydicom
    from pydicom.data import get_testdata_files

    from src.ingestion import metadata_extractor

    extractor = MetadataExtractor()
    compared = 0
    for path in get_testdata_files():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM: nothing to compare
            continue
        direct = extractor.extract_metadata(ds)
        with monkeypatch.context() as m:
            m.setattr(metadata_extractor, "_codec", lambda _ds: None)  # pydicom decodes all
            reference = extractor.extract_metadata(ds)
        assert direct == reference, path
        compared += 1
    assert compared > 150
