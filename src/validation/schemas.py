"""Pydantic v2 models of the metadata that :class:`MetadataExtractor` produces.

The fields are those of the API document; a few optional fields are added where the
extractor has more to say. Values are checked against DICOM PS3.5 value representations:
DA ``YYYYMMDD`` (a real calendar date), TM ``HH[MM[SS[.F{1,6}]]]``, Patient's Sex
``M``/``F``/``O``, Age String ``nnnD|W|M|Y``, and UIDs (digits and dots, no leading zeros
in a component, at most 64 characters). Empty strings read as absent.

Examples
--------
>>> from src.validation.schemas import StudyModel
>>> StudyModel(study_instance_uid="1.2.3", study_date="20240131").study_date
'20240131'
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_TM_RE = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9]([0-5][0-9]|60)?)?(\.[0-9]{1,6})?$")
_AS_RE = re.compile(r"^[0-9]{3}[DWMY]$")
_DA_RE = re.compile(r"^[0-9]{8}$")


def _empty_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def validate_uid(value: str) -> str:
    """Check a DICOM UID (PS3.5 9.1); return it unchanged or raise ``ValueError``."""
    if len(value) > 64:
        raise ValueError("UID longer than 64 characters")
    if not _UID_RE.match(value):
        raise ValueError("UID must be digits and dots with no leading zeros in a component")
    return value


def validate_da(value: str) -> str:
    """Check a DA value ``YYYYMMDD`` that names a real date."""
    if not _DA_RE.match(value):
        raise ValueError("date must be YYYYMMDD")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError as exc:
        raise ValueError("date must be a real calendar date") from exc
    return value


def validate_tm(value: str) -> str:
    """Check a TM value ``HH[MM[SS[.FFFFFF]]]``."""
    if not _TM_RE.match(value):
        raise ValueError("time must be HH, HHMM, HHMMSS or HHMMSS.FFFFFF")
    return value


def validate_sex(value: str) -> str:
    """Check Patient's Sex: ``M``, ``F`` or ``O``."""
    if value not in {"M", "F", "O"}:
        raise ValueError("sex must be M, F or O")
    return value


def validate_age(value: str) -> str:
    """Check an Age String ``nnnD``, ``nnnW``, ``nnnM`` or ``nnnY``."""
    if not _AS_RE.match(value):
        raise ValueError("age must be three digits and one of D, W, M, Y")
    return value


UID = Annotated[str, AfterValidator(validate_uid)]
OptionalStr = Annotated[str | None, BeforeValidator(_empty_to_none)]
DA = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(lambda v: None if v is None else validate_da(v)),
]
TM = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(lambda v: None if v is None else validate_tm(v)),
]
Sex = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(lambda v: None if v is None else validate_sex(v)),
]
Age = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(lambda v: None if v is None else validate_age(v)),
]
OptionalUID = Annotated[
    str | None,
    BeforeValidator(_empty_to_none),
    AfterValidator(lambda v: None if v is None else validate_uid(v)),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PatientModel(_Model):
    """Patient module facts. ``patient_id`` is Type 2: present, possibly empty."""

    patient_id: str = Field(..., description="Patient identifier")
    patient_name: OptionalStr = Field(None, description="Patient name")
    patient_birth_date: DA = Field(None, description="YYYYMMDD")
    patient_sex: Sex = Field(None, description="M, F, O")
    patient_age: Age = Field(None, description="Age string")


class StudyModel(_Model):
    """General Study module facts."""

    study_instance_uid: UID = Field(..., description="Study UID")
    study_date: DA = Field(None, description="YYYYMMDD")
    study_time: TM = Field(None, description="HHMMSS")
    study_description: OptionalStr = None
    accession_number: OptionalStr = None


class SeriesModel(_Model):
    """General Series module facts."""

    series_instance_uid: UID = Field(..., description="Series UID")
    series_number: int | None = None
    modality: OptionalStr = Field(None, description="CT, MR, etc.")
    series_description: OptionalStr = None
    body_part_examined: OptionalStr = None


class ImageModel(_Model):
    """Image facts: SOP instance and pixel geometry."""

    sop_instance_uid: UID = Field(..., description="Image UID")
    sop_class_uid: OptionalUID = None
    instance_number: int | None = None
    rows: int | None = Field(None, ge=0)
    columns: int | None = Field(None, ge=0)
    bits_allocated: int | None = Field(None, ge=1)
    number_of_frames: int | None = Field(None, ge=1)
    pixel_spacing: list[float] | None = None
    photometric_interpretation: OptionalStr = None
    transfer_syntax_uid: OptionalUID = None


class AcquisitionModel(_Model):
    """Acquisition facts: when and with what equipment settings."""

    acquisition_date: DA = Field(None, description="YYYYMMDD")
    acquisition_time: TM = Field(None, description="HHMMSS")
    acquisition_number: int | None = None
    manufacturer: OptionalStr = None
    manufacturer_model_name: OptionalStr = None
    slice_thickness: float | None = None
    kvp: float | None = None
    exposure_time: float | None = None
    repetition_time: float | None = None
    echo_time: float | None = None
    magnetic_field_strength: float | None = None


class DICOMMetadataModel(_Model):
    """All the metadata of one instance, as ``MetadataExtractor.extract_metadata`` returns it.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from src.ingestion.dicom_parser import DICOMParser
    >>> from src.ingestion.metadata_extractor import MetadataExtractor
    >>> ds = DICOMParser().parse_file(get_testdata_file("CT_small.dcm"))
    >>> DICOMMetadataModel(**MetadataExtractor().extract_metadata(ds)).series.modality
    'CT'
    """

    patient: PatientModel
    study: StudyModel
    series: SeriesModel
    image: ImageModel
    acquisition: AcquisitionModel | None = None
