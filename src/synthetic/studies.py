"""Studies built from the invented patients: CT, MR, US images and SR documents, with PHI
planted where de-identifiers tend to miss it."""

from __future__ import annotations

import random
from datetime import date, timedelta
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from src.synthetic.people import (
    _CITIES,
    _DOCTORS,
    _HOSPITALS,
    _TECHS,
    BASIC_TEXT_SR_STORAGE,
    CT_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    US_IMAGE_STORAGE,
    Corpus,
    FakePatient,
    _uid,
    make_patient,
)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _patient_module(ds: Dataset, p: FakePatient, study_date: date) -> None:
    ds.SpecificCharacterSet = p.charset
    ds.PatientName = p.name
    ds.PatientID = p.patient_id
    ds.IssuerOfPatientID = "RIVERTON-MPI"
    ds.PatientBirthDate = p.birth_date
    ds.PatientSex = p.sex
    age = (
        study_date - date(int(p.birth_date[:4]), int(p.birth_date[4:6]), int(p.birth_date[6:]))
    ).days // 365
    ds.PatientAge = f"{age:03d}Y"
    ds.PatientAddress = p.address
    ds.PatientTelephoneNumbers = p.phone
    ds.PatientWeight = "72.5"
    other = Dataset()
    other.PatientID = p.other_id
    other.IssuerOfPatientID = "NHS"
    ds.OtherPatientIDsSequence = Sequence([other])


def _plant_private(ds: Dataset, p: FakePatient) -> None:
    acme = ds.private_block(0x0009, "ACME PHI STORE", create=True)
    acme.add_new(0x01, "LO", p.name.replace("^", " "))
    acme.add_new(0x02, "LO", p.patient_id)
    gems = ds.private_block(0x0019, "GEMS_ACQU_01", create=True)
    gems.add_new(0x23, "DS", "39.375")  # Table Speed: safe under Retain Safe Private
    gems.add_new(0x9E, "LO", "FIESTA")  # Internal Pulse Sequence Name: safe
    gems.add_new(0x30, "LO", p.other_id)  # not in E.3.10-1: must go
    inner = Dataset()
    inner.PatientName = p.name
    inner.PatientBirthDate = p.birth_date
    seq = ds.private_block(0x0011, "ACME NESTED", create=True)
    seq.add_new(0x01, "SQ", Sequence([inner]))


def _plant_graphics(ds: Dataset, p: FakePatient, rows: int, cols: int) -> None:
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", cols)
    ds.add_new(0x60000022, "LO", f"Overlay for {p.name}")
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    bitmap = bytearray(rows * cols // 8)
    text = f"{p.name} {p.patient_id}".encode("latin-1", "replace")
    bitmap[: len(text)] = text
    ds.add_new(0x60003000, "OW", bytes(bitmap))
    ds.add_new(0x60004000, "LT", f"Drawn by {p.name} on {p.birth_date}")
    ds.add_new(0x50000005, "US", 1)
    ds.add_new(0x50002500, "LO", f"Curve of {p.patient_id}")
    ds.add_new(0x50003000, "OW", b"\x01\x00\x02\x00")


def _common(
    ds: Dataset,
    p: FakePatient,
    seed: int,
    study_key: tuple[object, ...],
    study_date: date,
    rng: random.Random,
    accession: str,
) -> None:
    _patient_module(ds, p, study_date)
    rng = random.Random(f"{seed}:{study_key!r}")  # study-level: the same in every instance
    ds.StudyInstanceUID = _uid(seed, *study_key)
    ds.StudyDate = study_date.strftime("%Y%m%d")
    ds.StudyTime = f"{rng.randrange(7, 19):02d}{rng.randrange(60):02d}{rng.randrange(60):02d}"
    ds.AccessionNumber = accession
    ds.StudyID = f"S{rng.randrange(10**4, 10**5)}"
    ds.ReferringPhysicianName = rng.choice(_DOCTORS)
    ds.StudyDescription = f"CT CHEST for {p.name.split('^')[0]}"
    ds.InstitutionName = rng.choice(_HOSPITALS)
    ds.InstitutionAddress = f"{rng.randrange(1, 99)} Infirmary Road, {rng.choice(_CITIES)}"
    ds.Manufacturer = "ACME Imaging"
    ds.ManufacturerModelName = "Tomograph 9000"
    ds.StationName = f"CT{rng.randrange(10, 99)}-{p.patient_id[-3:]}"
    ds.DeviceSerialNumber = f"SN{rng.randrange(10**6, 10**7)}"
    ds.OperatorsName = rng.choice(_TECHS)
    ds.PerformingPhysicianName = rng.choice(_DOCTORS)
    request = Dataset()
    request.RequestedProcedureID = f"RP-{p.patient_id}"
    request.ScheduledProcedureStepID = f"SPS{rng.randrange(10**5, 10**6)}"
    request.RequestedProcedureDescription = f"Chest CT for {p.name}"
    ds.RequestAttributesSequence = Sequence([request])


def _later(hhmmss: str, minutes: int) -> str:
    total = (int(hhmmss[:2]) * 60 + int(hhmmss[2:4]) + minutes) % (24 * 60)
    return f"{total // 60:02d}{total % 60:02d}{hhmmss[4:6]}"


def _image(
    p: FakePatient,
    seed: int,
    study_key: tuple[object, ...],
    series: int,
    instance: int,
    modality: str,
    study_date: date,
    rng: random.Random,
    rows: int,
    cols: int,
    accession: str,
    first_sop: str | None,
) -> Dataset:
    ds = Dataset()
    sop_class = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE, "US": US_IMAGE_STORAGE}[modality]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = _uid(seed, *study_key, series, instance)
    ds.InstanceCreationDate = study_date.strftime("%Y%m%d")
    ds.InstanceCreationTime = "101500"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    _common(ds, p, seed, study_key, study_date, rng, accession)
    ds.Modality = modality
    ds.SeriesInstanceUID = _uid(seed, *study_key, series)
    ds.SeriesNumber = series + 1
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = _later(ds.StudyTime, minutes=5 * (series + 1))
    ds.SeriesDescription = f"{modality} series {series + 1}"
    ds.ProtocolName = f"Protocol {p.patient_id}"
    ds.BodyPartExamined = "CHEST"
    ds.FrameOfReferenceUID = _uid(seed, *study_key, series, "for")
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionDate = ds.StudyDate
    ds.AcquisitionTime = ds.SeriesTime
    ds.AcquisitionDateTime = ds.StudyDate + ds.SeriesTime
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.SeriesTime
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance + 1
    ds.ImageComments = f"Patient {p.name} MRN {p.patient_id} DOB {p.birth_date}"
    ds.PatientOrientation = ["L", "P"]
    if modality in ("CT", "MR"):
        ds.ImagePositionPatient = [0.0, 0.0, float(instance) * 2.5]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceThickness = "2.5"
        ds.PixelSpacing = [0.7, 0.7]
    if modality == "CT":
        ds.KVP = "120"
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
    if modality == "MR":
        ds.RepetitionTime = "500"
        ds.EchoTime = "15"
        ds.MagneticFieldStrength = "1.5"
    if first_sop is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = first_sop
        ds.ReferencedImageSequence = Sequence([ref])
        derivation = Dataset()
        derivation.ReferencedSOPClassUID = sop_class
        derivation.ReferencedSOPInstanceUID = first_sop
        deriv = Dataset()
        deriv.SourceImageSequence = Sequence([derivation])
        deriv.DerivationDescription = f"Derived for {p.name}"
        ds.DerivationImageSequence = Sequence([deriv])
    samples = 3 if modality == "US" else 1
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows = rows
    ds.Columns = cols
    bits = 8 if samples == 3 else 16
    ds.BitsAllocated = bits
    ds.BitsStored = bits if bits == 8 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    _plant_private(ds, p)
    if modality != "US":
        _plant_graphics(ds, p, rows, cols)
    ds.PixelData = rng.randbytes(rows * cols * samples * bits // 8)
    return ds


def _sr(
    p: FakePatient,
    seed: int,
    study_key: tuple[object, ...],
    study_date: date,
    rng: random.Random,
    accession: str,
    referenced_sop: str,
) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = BASIC_TEXT_SR_STORAGE
    ds.SOPInstanceUID = _uid(seed, *study_key, "sr")
    _common(ds, p, seed, study_key, study_date, rng, accession)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = _uid(seed, *study_key, "sr-series")
    ds.SeriesNumber = 99
    ds.InstanceNumber = 1
    ds.ContentDate = study_date.strftime("%Y%m%d")
    ds.ContentTime = "120000"
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic Imaging Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "VERIFIED"
    observer = Dataset()
    observer.VerifyingObserverName = rng.choice(_DOCTORS)
    observer.VerifyingOrganization = rng.choice(_HOSPITALS)
    observer.VerificationDateTime = ds.ContentDate + "130000"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence(
        [_code(f"DR{rng.randrange(1000, 9999)}", "99LOCAL", "Reporting radiologist")]
    )
    ds.VerifyingObserverSequence = Sequence([observer])
    text = Dataset()
    text.RelationshipType = "CONTAINS"
    text.ValueType = "TEXT"
    text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    text.TextValue = (
        f"Patient {p.name} (MRN {p.patient_id}, born {p.birth_date}) "
        f"lives at {p.address}. No acute findings."
    )
    person = Dataset()
    person.RelationshipType = "HAS OBS CONTEXT"
    person.ValueType = "PNAME"
    person.ConceptNameCodeSequence = Sequence([_code("121008", "DCM", "Person Observer Name")])
    person.PersonName = p.name
    when = Dataset()
    when.RelationshipType = "CONTAINS"
    when.ValueType = "DATETIME"
    when.ConceptNameCodeSequence = Sequence([_code("111060", "DCM", "Study Date")])
    when.DateTime = p.birth_date + "083000"
    uidref = Dataset()
    uidref.RelationshipType = "CONTAINS"
    uidref.ValueType = "UIDREF"
    uidref.ConceptNameCodeSequence = Sequence([_code("121232", "DCM", "Source image")])
    uidref.UID = referenced_sop
    image = Dataset()
    image.RelationshipType = "CONTAINS"
    image.ValueType = "IMAGE"
    image.ConceptNameCodeSequence = Sequence([_code("121200", "DCM", "Illustration")])
    ref = Dataset()
    ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
    ref.ReferencedSOPInstanceUID = referenced_sop
    image.ReferencedSOPSequence = Sequence([ref])
    nested = Dataset()
    nested.RelationshipType = "CONTAINS"
    nested.ValueType = "CONTAINER"
    nested.ContinuityOfContent = "SEPARATE"
    nested.ConceptNameCodeSequence = Sequence([_code("121070", "DCM", "Findings")])
    deep_text = Dataset()
    deep_text.RelationshipType = "CONTAINS"
    deep_text.ValueType = "TEXT"
    deep_text.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    deep_text.TextValue = f"Compared with prior of {p.other_id} at {p.phone}."
    nested.ContentSequence = Sequence([deep_text])
    ds.ContentSequence = Sequence([text, person, when, uidref, image, nested])
    _plant_private(ds, p)
    return ds


def _to_file(ds: Dataset, path: Path, implicit: bool) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    meta.SourceApplicationEntityTitle = "RIVERTON_CT"
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def write_corpus(
    root: str | Path,
    *,
    seed: int = 20261128,
    patients: int = 3,
    studies_per_patient: int = 1,
    series_per_study: int = 2,
    instances_per_series: int = 3,
    rows: int = 64,
    columns: int = 64,
    include_sr: bool = True,
    include_us: bool = True,
) -> Corpus:
    """Write a seeded multi-patient corpus of CT/MR (and US, SR) files under ``root``.

    Parameters
    ----------
    root : path
        Folder to write into (``<root>/<patient n>/<study n>/<series n>/<n>.dcm``; the
        names hold no PHI).
    seed : int
        The same seed gives byte-identical files.
    patients, studies_per_patient, series_per_study, instances_per_series : int
        Corpus shape.
    rows, columns : int
        Image size; pixels are 16-bit (8-bit RGB for US).
    include_sr, include_us : bool
        Add one Basic Text SR per study and one US image per study (burned-in risk).

    Returns
    -------
    Corpus
        Paths written, the patients, and every planted identifying value.
    """
    rng = random.Random(seed)
    out = Corpus(root=Path(root))
    for pi in range(patients):
        patient = make_patient(rng, pi)
        out.patients.append(patient)
        for si in range(studies_per_patient):
            study_key: tuple[object, ...] = ("study", pi, si)
            study_date = date(2019, 1, 1) + timedelta(days=rng.randrange(0, 365 * 6))
            accession = f"{patient.accession_base}{si}"
            first_sop: str | None = None
            study_dir = out.root / f"patient{pi:03d}" / f"study{si:02d}"
            for series in range(series_per_study):
                modality = "CT" if series % 2 == 0 else "MR"
                series_first: str | None = None
                for inst in range(instances_per_series):
                    ds = _image(
                        patient,
                        seed,
                        study_key,
                        series,
                        inst,
                        modality,
                        study_date,
                        rng,
                        rows,
                        columns,
                        accession,
                        series_first,
                    )
                    series_first = series_first or str(ds.SOPInstanceUID)
                    first_sop = first_sop or str(ds.SOPInstanceUID)
                    path = study_dir / f"series{series:02d}" / f"{inst:04d}.dcm"
                    _to_file(ds, path, implicit=(inst % 2 == 1))
                    out.files.append(path)
            if include_us:
                ds = _image(
                    patient,
                    seed,
                    study_key,
                    90,
                    0,
                    "US",
                    study_date,
                    rng,
                    rows,
                    columns,
                    accession,
                    None,
                )
                path = study_dir / "us" / "0000.dcm"
                _to_file(ds, path, implicit=False)
                out.files.append(path)
            if include_sr and first_sop is not None:
                ds = _sr(patient, seed, study_key, study_date, rng, accession, first_sop)
                path = study_dir / "sr" / "0000.dcm"
                _to_file(ds, path, implicit=False)
                out.files.append(path)
        out.planted.update(patient.identifiers())
    return out
