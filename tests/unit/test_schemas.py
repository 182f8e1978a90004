from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from pydicom.data import get_testdata_file

from src.ingestion.dicom_parser import DICOMParser
from src.ingestion.metadata_extractor import MetadataExtractor
from src.validation.schemas import (
    AcquisitionModel,
    DICOMMetadataModel,
    ImageModel,
    PatientModel,
    SeriesModel,
    StudyModel,
)


def _metadata() -> dict:
    ds = DICOMParser().parse_file(get_testdata_file("CT_small.dcm"))
    return MetadataExtractor().extract_metadata(ds)


def test_extracted_metadata_validates():
    model = DICOMMetadataModel(**_metadata())
    assert model.series.modality == "CT"
    assert model.image.pixel_spacing == [0.661468, 0.661468]
    assert isinstance(model.acquisition, AcquisitionModel)


def _field_of(exc: ValidationError) -> set[str]:
    return {".".join(map(str, e["loc"])) for e in exc.errors()}


@pytest.mark.parametrize(
    ("section", "field", "value"),
    [
        ("study", "study_instance_uid", "1.02.3"),
        ("study", "study_instance_uid", "1.2.abc"),
        ("study", "study_instance_uid", "1." + "2" * 70),
        ("study", "study_date", "20230230"),
        ("study", "study_date", "2023-01-01"),
        ("study", "study_time", "256000"),
        ("patient", "patient_sex", "X"),
        ("patient", "patient_age", "12Y"),
        ("patient", "patient_birth_date", "19991301"),
        ("image", "rows", -1),
    ],
)
def test_invalid_values_name_the_field(section, field, value):
    md = _metadata()
    md[section][field] = value
    with pytest.raises(ValidationError) as info:
        DICOMMetadataModel(**md)
    assert f"{section}.{field}" in _field_of(info.value)


@pytest.mark.parametrize("age", ["000D", "012W", "006M", "089Y"])
def test_valid_age_strings(age):
    assert PatientModel(patient_id="x", patient_age=age).patient_age == age


@pytest.mark.parametrize("tm", ["07", "0727", "072730", "072730.123456", "235960"])
def test_valid_times(tm):
    assert StudyModel(study_instance_uid="1.2", study_time=tm).study_time == tm


def test_required_fields_and_empty_strings():
    with pytest.raises(ValidationError) as info:
        SeriesModel()  # type: ignore[call-arg]
    assert "series_instance_uid" in _field_of(info.value)
    assert PatientModel(patient_id="", patient_sex="").patient_sex is None
    assert ImageModel(sop_instance_uid="0.1").sop_instance_uid == "0.1"


_component = st.one_of(st.just("0"), st.from_regex(r"[1-9][0-9]{0,8}", fullmatch=True))


@given(st.lists(_component, min_size=2, max_size=6))
def test_generated_uids_are_accepted(parts):
    uid = ".".join(parts)
    assert StudyModel(study_instance_uid=uid).study_instance_uid == uid


@given(st.text(alphabet="0123456789.", min_size=1, max_size=70))
def test_uid_validation_agrees_with_the_grammar(text):
    import re

    ok = len(text) <= 64 and re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", text)
    try:
        StudyModel(study_instance_uid=text)
        accepted = True
    except ValidationError:
        accepted = False
    assert accepted == bool(ok)
