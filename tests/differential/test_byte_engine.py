"""The byte-level engine against its oracle, the pydicom path, element by element.

Both engines de-identify the same file with the same key and profile; the outputs are
read back with pydicom (without force) and compared decoded, at every depth, file meta
included, and so are the paths each engine reports removed or replaced.

Intended differences (not compared):

- ``actions`` of kept elements: the byte-level engine records only what changed and
  counts the rest (``result.kept``); ``removed_tags`` is compared instead.
- Lengths: the byte-level engine writes rewritten sequences and items with defined
  lengths; pydicom writes them undefined. Both decode the same.

A file the byte-level engine does not handle (``NotHandled``) is not compared; the test
asserts how many it handles, so that a regression to "handles nothing" fails.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from src.errors import InvalidDICOMError
from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.encoding.elements import NotHandled

KEY = b"differential test key 0123456789"
PROFILES = {
    "basic-modified-dates": ConfidentialityProfile(),
    "options": ConfidentialityProfile(
        retain_safe_private=True,
        retain_device_identity=True,
        retain_patient_characteristics=True,
        clean_descriptors=True,
        retain_longitudinal_modified_dates=False,
        keep_image_references=False,
    ),
    # The three Clean options together: the branches of both walks that clean content
    # (SR text, graphic annotations, descriptors) are compared too.
    "clean-content": ConfidentialityProfile(
        clean_structured_content=True,
        clean_graphics=True,
        clean_descriptors=True,
    ),
    "full-dates-uids": ConfidentialityProfile(
        retain_uids=True,
        retain_longitudinal_full_dates=True,
        retain_longitudinal_modified_dates=False,
        retain_institution_identity=True,
    ),
}


#: Options that do not reach the header walk (Clean Pixel Data is the pixel cleaner's).
NOT_HEADER_OPTIONS = {"clean_pixels"}


def test_the_profiles_move_every_header_option_from_its_default() -> None:
    """Each boolean option of the profile is compared in its non-default setting."""
    default = ConfidentialityProfile()
    options = {
        f.name
        for f in dataclasses.fields(ConfidentialityProfile)
        if isinstance(getattr(default, f.name), bool) and f.name not in NOT_HEADER_OPTIONS
    }
    # PS3.15 Table E.1-1's ten option columns (without Clean Pixel Data) and the choice of
    # the U* branch for references.
    assert len(options) == 11
    moved = {
        name
        for name in options
        for profile in PROFILES.values()
        if getattr(profile, name) != getattr(default, name)
    }
    assert moved == options, sorted(options - moved)


def _flat(ds: Dataset, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for elem in ds:
        key = f"{prefix}{int(elem.tag):08X}"
        if elem.VR == "SQ":
            out[key] = ("SQ", len(elem.value))
            for index, item in enumerate(elem.value):
                out.update(_flat(item, f"{key}[{index}]."))
            continue
        value = elem.value
        out[key] = (elem.VR, value.rstrip(b"\0") if isinstance(value, bytes) else str(value))
    return out


def compare(
    source: Path, tmp: Path, profile: ConfidentialityProfile, *, dcmdump: str | None = None
) -> bool:
    """Run both engines on ``source``; assert identical decoded output. False: not handled.

    With ``dcmdump`` (its path), dcmtk must also read the byte engine's output cleanly.
    """
    fast = Deidentifier(key=KEY, profile=profile)
    oracle = Deidentifier(key=KEY, profile=profile, engine="pydicom")
    assert fast._bytes is not None
    a, b = tmp / "bytes.dcm", tmp / "pydicom.dcm"
    a.unlink(missing_ok=True)
    with open(source, "rb") as fp:
        try:
            with fast._bytes.plan(
                fp, os.path.getsize(source), None, original=False, fsync=False, describe=True
            ) as plan:
                fast_result = plan.write(a)
        except NotHandled:
            assert not a.exists()
            return False
        except InvalidDICOMError as refused:
            # A structural refusal: the pydicom path refuses it too, for the same reason.
            assert not a.exists()
            with pytest.raises(InvalidDICOMError) as also:
                oracle.deidentify_file_with_report(source, b)
            assert also.value.reason.split(":")[0] == refused.reason.split(":")[0], source.name
            return False
    oracle_result = oracle.deidentify_file_with_report(source, b)
    ours, theirs = pydicom.dcmread(a), pydicom.dcmread(b)  # without force: valid Part 10
    if dcmdump is not None:
        proc = subprocess.run([dcmdump, "-E", str(a)], capture_output=True, text=True)
        assert proc.returncode == 0, (source.name, proc.stderr[:300])
    assert _flat(ours.file_meta) == _flat(theirs.file_meta)
    mine, reference = _flat(ours), _flat(theirs)
    differing = sorted(k for k in mine.keys() | reference.keys() if mine.get(k) != reference.get(k))
    assert not differing, [(k, mine.get(k), reference.get(k)) for k in differing[:5]]
    assert sorted(fast_result.removed_tags) == sorted(oracle_result.removed_tags)
    assert fast_result.patient_pseudonym == oracle_result.patient_pseudonym
    assert fast_result.burned_in_annotation_risk == oracle_result.burned_in_annotation_risk
    assert fast_result.has_pixel_data == oracle_result.has_pixel_data
    # The header handed to the pipeline describes the same output.
    described = _flat(fast_result.dataset)
    assert {k: v for k, v in described.items() if "[" not in k} == {
        k: v for k, v in reference.items() if "[" not in k and not k.startswith("7FE0")
    }
    return True


def _dcmdump() -> str | None:
    found = shutil.which("dcmdump")
    if found is None and os.environ.get("CI"):
        pytest.fail("dcmdump must be installed in CI (make test installs dcmtk)")
    return found


def _pydicom_files() -> list[Path]:
    return sorted(Path(p) for p in get_testdata_files() if not p.endswith((".py", ".txt")))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_file_pydicom_ships(profile: str, tmp_path: Path) -> None:
    handled = 0
    files = _pydicom_files()
    dcmdump = _dcmdump() if profile == "basic-modified-dates" else None
    for source in files:
        try:
            pydicom.dcmread(source, stop_before_pixels=True)
        except Exception:  # not DICOM at all: the parser's tests cover those
            continue
        handled += compare(source, tmp_path, PROFILES[profile], dcmdump=dcmdump)
    # Most of pydicom's files are Little Endian Part 10 files the byte engine handles (137
    # of the 163 it can read; the rest: Big Endian, Deflated, headerless, DICOMDIR, text
    # stored as OB, malformed).
    assert handled >= 130, f"the byte-level engine handled only {handled} of {len(files)}"


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from src.synthetic import write_corpus

    root = tmp_path_factory.mktemp("samples")
    write_corpus(root, seed=7, patients=3, series_per_study=2, instances_per_series=2)
    return sorted(root.rglob("*.dcm"))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_generated_samples(samples: list[Path], profile: str, tmp_path: Path) -> None:
    dcmdump = _dcmdump() if profile == "basic-modified-dates" else None
    handled = sum(compare(s, tmp_path, PROFILES[profile], dcmdump=dcmdump) for s in samples)
    # Under Clean Graphics the byte engine hands images that carry curves (group 50xx) to
    # the pydicom engine (NotHandled): the 12 generated CT and MR images; the SR and
    # ultrasound instances (6 of the 18) are compared.
    floor = 6 if profile == "clean-content" else len(samples) // 2
    assert handled >= floor, f"handled {handled} of {len(samples)}"


# -- hypothesis: random trees of elements -----------------------------------------------

_TEXT = st.text(alphabet="ABCDEFGHIJ klmnop0123456789^-.", min_size=0, max_size=24)
_NAMES = st.sampled_from(["Doe^Jane", "Okonkwo^Ada^B", "", "Lindqvist^Per", "SMITH"])
_PATIENT_IDS = st.sampled_from(["MRN1234567", "P-00042", "", "X9"])
_DATES = st.sampled_from(["20200131", "19470101", "", "2020", "20201301", "19000101\\20210705"])
_DATETIMES = st.sampled_from(
    ["2020+0100", "1947", "20200131101112.123456-0500", "202001", "", "bad"]
)
_UIDS = st.sampled_from(
    ["1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5.6", "1.2.826.0.1.3680043.2.1125.1", ""]
)
# (keyword, VR, strategy): listed in E.1-1, unlisted, dated, coded, numeric.
_LEAVES: list[tuple[str, Any]] = [
    ("StudyDescription", _TEXT),
    ("SeriesDescription", _TEXT),
    ("ProtocolName", _TEXT),
    ("BodyPartExamined", st.sampled_from(["CHEST", "HEAD", "MRN1234567"])),
    ("Manufacturer", _TEXT),
    ("InstitutionName", _TEXT),
    ("OperatorsName", _NAMES),
    ("ReferringPhysicianName", _NAMES),
    ("StudyDate", _DATES),
    ("ContentDate", _DATES),
    ("AcquisitionDateTime", _DATETIMES),
    ("FrameReferenceDateTime", _DATETIMES),
    ("StudyTime", st.sampled_from(["101112", "", "1011"])),
    ("ReferencedSOPInstanceUID", _UIDS),
    ("ReferencedSOPClassUID", _UIDS),
    ("FrameOfReferenceUID", _UIDS),
    ("ImageComments", _TEXT),
    ("AccessionNumber", _TEXT),
    ("Rows", st.integers(0, 1024)),
    ("SliceThickness", st.sampled_from(["1.5", "0", ""])),
    ("ImageType", st.sampled_from(["ORIGINAL\\PRIMARY", "DERIVED"])),
    ("CodeValue", st.sampled_from(["113100", "T-D3000"])),
    ("CodeMeaning", _TEXT),
    ("TimezoneOffsetFromUTC", st.sampled_from(["+0100", "-0500"])),
    ("DeidentificationMethod", st.sampled_from(["Earlier tool", "", "MRN1234567\\Earlier"])),
]
_SEQUENCES = [
    "ReferencedImageSequence",
    "RequestAttributesSequence",
    "ProcedureCodeSequence",
    "SourceImageSequence",
    "OtherPatientIDsSequence",
]


@st.composite
def _item(draw: st.DrawFn, depth: int) -> Dataset:
    ds = Dataset()
    for keyword, values in draw(st.lists(st.sampled_from(_LEAVES), max_size=8)):
        setattr(ds, keyword, draw(values))
    if depth < 3:
        for keyword in draw(st.lists(st.sampled_from(_SEQUENCES), max_size=2, unique=True)):
            children = draw(st.lists(_item(depth + 1), max_size=2))
            for child in children:  # undefined item lengths (delimited) as often as not
                child.is_undefined_length_sequence_item = draw(st.booleans())
            setattr(ds, keyword, Sequence(children))
            ds[keyword].is_undefined_length = draw(st.booleans())
    if draw(st.booleans()):
        block = ds.private_block(0x0009, draw(st.sampled_from(["ACME", "GEMS_PARM_01"])), True)
        block.add_new(0x01, "LO", draw(_TEXT))
    if draw(st.booleans()):  # a Table E.3.10-1 attribute under its own creator
        block = ds.private_block(0x0019, "GEMS_ACQU_01", True)
        block.add_new(0x9E, "SH", draw(st.sampled_from(["FIESTA", "MRN1234567"])))
    return ds


@st.composite
def datasets(draw: st.DrawFn) -> tuple[Dataset, bool]:
    ds = draw(_item(0))
    ds.PatientName = draw(_NAMES)
    ds.PatientID = draw(_PATIENT_IDS)
    # A multi-valued patient key is keyed by the pydicom path (as it always was): single here.
    ds.PatientBirthDate = draw(_DATES.filter(lambda d: "\\" not in d))
    charset = draw(st.sampled_from([None, "ISO_IR 100", "ISO_IR 192"]))
    if charset:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = draw(
        st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.7"])
    )
    ds.SOPInstanceUID = "1.2.3.4." + str(draw(st.integers(1, 10**6)))
    ds.StudyInstanceUID = "1.2.3.5.1"
    ds.SeriesInstanceUID = "1.2.3.6.1"
    ds.Modality = draw(st.sampled_from(["CT", "OT", "MR"]))
    if draw(st.booleans()):
        ds.BitsAllocated = 8
        ds.PixelData = b"\x01\x02" * 8
    return ds, draw(st.booleans())


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=datasets(), profile=st.sampled_from(sorted(PROFILES)))
def test_random_datasets(case: tuple[Dataset, bool], profile: str, tmp_path_factory: Any) -> None:
    ds, implicit = case
    tmp = tmp_path_factory.mktemp("h")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds.file_meta = meta
    source = tmp / "in.dcm"
    ds.save_as(source, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    # Every generated dataset is one the byte engine handles: the comparison always runs.
    assert compare(source, tmp, PROFILES[profile])


def test_a_mapped_file_declined_mid_walk_goes_to_the_pydicom_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large (mapped) file the byte engine declines after it has started walking (a
    curve under Clean Graphics) is de-identified by the pydicom path: the mapping is not
    in the way."""
    from src.ingestion.engines import byte_engine

    monkeypatch.setattr(byte_engine, "_MAPPED_ABOVE", 1024)  # map even a small file
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", "1.2.3.4.5"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = "1.2.3", "1.2.3.1", "OT"
    ds.PatientName, ds.PatientID = "Mapped^Curve", "MRN77"
    ds.add_new(0x50000010, "US", 1)
    ds.BitsAllocated = 8
    ds.PixelData = b"\x00" * 4096
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    source = tmp_path / "in.dcm"
    ds.save_as(source, enforce_file_format=True)
    deid = Deidentifier(key=KEY, profile=ConfidentialityProfile(clean_graphics=True))
    result = deid.deidentify_file_with_report(source, tmp_path / "out.dcm")
    assert result.kept == 0  # the pydicom path lists every element; the byte engine counts
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.PatientName != "Mapped^Curve" and out.PatientIdentityRemoved == "NO"
