"""The per-instance core: one call, a named reason for every refusal, and an index row."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from src.errors import MetadataValidationError
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import (
    InstancePipeline,
    InstanceRefusedError,
    Reason,
    output_key,
    schema_validation,
)

CT = get_testdata_file("CT_small.dcm")


@pytest.fixture()
def pipeline() -> InstancePipeline:
    return InstancePipeline(Deidentifier(key=b"instance-test-key-0123456789"))


def _refusal(pipeline: InstancePipeline, source, out: Path) -> InstanceRefusedError:  # type: ignore[no-untyped-def]
    with pytest.raises(InstanceRefusedError) as info:
        pipeline.process(source, out)
    assert not out.exists(), "a refused instance leaves no output"
    return info.value


def test_path_bytes_and_file_give_the_same_output(pipeline, tmp_path):
    data = Path(CT).read_bytes()
    a = pipeline.process(CT, tmp_path / "a.dcm")
    b = pipeline.process(data, tmp_path / "b.dcm")
    c = pipeline.process(io.BytesIO(data), tmp_path / "c.dcm")
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "b.dcm").read_bytes()
    assert (tmp_path / "a.dcm").read_bytes() == (tmp_path / "c.dcm").read_bytes()
    assert a.output_key == b.output_key == c.output_key
    ds = pydicom.dcmread(tmp_path / "a.dcm")
    assert a.output_key == (
        f"{ds.PatientID}/{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}.dcm"
    )
    assert a.index["output"] == a.output_key
    assert a.index["patient"]["patient_id"] == ds.PatientID
    assert a.bytes_out == (tmp_path / "a.dcm").stat().st_size


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: b"", Reason.EMPTY),
        (lambda d: b"not DICOM at all" * 20, Reason.NOT_DICOM),
        (lambda d: d[: len(d) - 300], Reason.TRUNCATED),
    ],
)
def test_refusals_are_named(pipeline, tmp_path, make, reason):
    data = Path(CT).read_bytes()
    refused = _refusal(pipeline, make(data), tmp_path / "o.dcm")
    assert refused.reason is reason
    assert refused.stage == "parse"


def test_an_image_without_pixel_data_is_refused(pipeline, tmp_path):
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    src = tmp_path / "nopix.dcm"
    ds.save_as(src)
    assert _refusal(pipeline, src, tmp_path / "o.dcm").reason is Reason.IMAGE_WITHOUT_PIXEL_DATA


def test_the_validation_hook_sees_the_original_and_may_veto(tmp_path):
    seen = []

    def hook(metadata):  # type: ignore[no-untyped-def]
        seen.append(metadata["patient"]["patient_id"])
        raise MetadataValidationError("fields patient.patient_id")

    pipe = InstancePipeline(Deidentifier(key=b"instance-test-key-0123456789"), hook)
    refused = _refusal(pipe, CT, tmp_path / "o.dcm")
    assert refused.reason is Reason.FAILED_VALIDATION and refused.stage == "validate"
    assert seen == [pydicom.dcmread(CT).PatientID]  # the original, before de-identification
    assert "fields patient.patient_id" in refused.detail


def test_no_hook_skips_validation(tmp_path):
    ds = pydicom.dcmread(CT)
    ds.StudyDate = "notadate"
    src = tmp_path / "bad-date.dcm"
    ds.save_as(src)
    strict = InstancePipeline(Deidentifier(key=b"instance-test-key-0123456789"))
    assert _refusal(strict, src, tmp_path / "o.dcm").reason is Reason.FAILED_VALIDATION
    lenient = InstancePipeline(Deidentifier(key=b"instance-test-key-0123456789"), None)
    assert lenient.process(src, tmp_path / "o.dcm").output_key


def test_schema_validation_names_fields_not_values():
    with pytest.raises(MetadataValidationError) as info:
        schema_validation({"patient": {"patient_id": "X", "patient_birth_date": "Whitfield"}})
    assert "Whitfield" not in info.value.message


def test_output_key_refuses_parts_that_escape_the_layout():
    ds = pydicom.Dataset()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = "1.2", "1.3", "1.4"
    assert output_key(ds, "ANON-X") == "ANON-X/1.2/1.3/1.4.dcm"
    for bad in ("..", "a/b", ""):
        with pytest.raises(Exception, match="usable UID"):
            output_key(ds, bad)


#: Explicit VR Big Endian: the byte engine declines it in its plan, the pydicom engine takes it.
BIG_ENDIAN = get_testdata_file("MR_small_bigendian.dcm")


@pytest.mark.parametrize("engine", ["bytes", "pydicom"])
def test_a_plan_reads_the_original_and_writes_nothing_until_asked(tmp_path, engine):
    source = Path(CT if engine == "bytes" else BIG_ENDIAN)
    deid = Deidentifier(key=b"instance-test-key-0123456789")
    out = tmp_path / "out.dcm"
    with deid.plan_file(source) as plan:
        assert plan.engine == engine
        assert plan.original is not None
        assert plan.original.PatientID == pydicom.dcmread(source).PatientID  # as it was
        assert list(tmp_path.iterdir()) == []
        result = plan.write(out)
        with pytest.raises(RuntimeError):
            plan.write(tmp_path / "again.dcm")
    assert (
        pydicom.dcmread(out).PatientID == result.patient_pseudonym != pydicom.dcmread(CT).PatientID
    )
    assert not (tmp_path / "again.dcm").exists()


def test_a_plan_dropped_after_a_veto_leaves_nothing(tmp_path):
    deid = Deidentifier(key=b"instance-test-key-0123456789")
    with pytest.raises(MetadataValidationError), deid.plan_file(CT) as plan:
        raise MetadataValidationError("fields patient.patient_id")
    assert plan.original is None  # released
    with pytest.raises(RuntimeError):
        plan.write(tmp_path / "o.dcm")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("engine", ["bytes", "pydicom"])
def test_validation_runs_once_per_instance_whichever_engine_writes_it(tmp_path, engine):
    source = Path(CT if engine == "bytes" else BIG_ENDIAN)
    calls = []

    def hook(metadata):  # type: ignore[no-untyped-def]
        calls.append(metadata["patient"]["patient_id"])

    pipe = InstancePipeline(Deidentifier(key=b"instance-test-key-0123456789"), hook)
    pipe.process(source, tmp_path / "o.dcm")
    assert calls == [pydicom.dcmread(source).PatientID]
