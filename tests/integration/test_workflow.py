"""The real state machine definitions, executed by moto, running the real Lambda code.

moto cannot run an EventBridge Pipe, so the Express machine is started with exactly what a
Pipe hands it (a list of SQS messages, built from ``tests/events``).
"""

from __future__ import annotations

import io
import json
import logging

import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from src.errors import ThrottlingError
from src.orchestration import lambda_handlers as lh
from src.orchestration import lambda_runtime
from src.storage.s3_store import S3Store
from src.synthetic import write_corpus
from tests.integration import workflow_stack as ws
from tests.integration.lambda_seam import MOTO_CONFIG, route_lambdas

ROUTES = {ws.FUNCTION: lh.instance_handler, ws.LARGE_FUNCTION: lh.instance_handler}


@pytest.fixture()
def stack(monkeypatch):  # type: ignore[no-untyped-def]
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        yield ws.build(monkeypatch)


def _history_text(details) -> str:  # type: ignore[no-untyped-def]
    return json.dumps(details, default=str)


def test_a_pipe_batch_is_one_lambda_call_with_one_outcome_per_object(stack, corpus):
    s3 = stack["s3"]
    ct = corpus.files[0]
    data = ct.read_bytes()
    s3.upload_file(str(ct), "raw", "in/good.dcm")
    s3.put_object(Bucket="raw", Key="in/notes.dcm", Body=b"this is not DICOM")
    s3.put_object(Bucket="raw", Key="in/cut.dcm", Body=data[: len(data) // 2])
    s3.upload_file(str(ct), "raw", "in/copy-of-good.dcm")  # the same SOP Instance UID
    batch = ws.pipe_batch(
        "raw", ["in/good.dcm", "in/notes.dcm", "in/cut.dcm", "in/copy-of-good.dcm"]
    )
    with route_lambdas(ROUTES) as calls:
        details = ws.run(stack, "pipeline", batch, "batch")
    assert details["status"] == "SUCCEEDED", details
    assert calls[ws.FUNCTION] == 1
    assert details["output"] == {"batchItemFailures": [], "processed": 1, "quarantined": 3}
    processed = [k for k in ws.keys(s3, "processed")]
    assert len(processed) == 1 and processed[0].endswith(".dcm")
    quarantined = ws.keys(s3, "quarantine")
    reasons = sorted(
        json.loads(s3.get_object(Bucket="quarantine", Key=k)["Body"].read())["reason"]
        for k in quarantined
        if k.endswith(".reason.json")
    )
    assert reasons == ["duplicate-sop-instance", "not-dicom", "truncated"]
    # The quarantine holds the original bytes, unchanged.
    bins = [k for k in quarantined if k.endswith(".bin")]
    originals = {s3.get_object(Bucket="quarantine", Key=k)["Body"].read() for k in bins}
    assert data in originals and b"this is not DICOM" in originals
    pending = [k for k in ws.keys(s3, "operations") if k.startswith("index-rows/date=")]
    assert len(pending) == 1 and pending[0].endswith(".json")
    # EventBridge hands the index function that object's creation; it writes the Parquet.
    lh.index_handler(ws.object_created("operations", pending[0]), None)
    index = [k for k in ws.keys(s3, "processed") if k.startswith("index/date=")]
    assert index == [pending[0].replace("index-rows/", "index/").replace(".json", ".parquet")]
    table = pq.read_table(
        io.BytesIO(s3.get_object(Bucket="processed", Key=index[0])["Body"].read())
    )
    assert table.num_rows == 1 and table.column("series_modality").to_pylist() == ["CT"]


def test_no_original_key_or_phi_reaches_the_workflow_data(stack, corpus, caplog, capsys):
    s3 = stack["s3"]
    key = "Whitfield^Agatha/MRN-88412093/ct.dcm"
    s3.upload_file(str(corpus.files[0]), "raw", key)
    s3.put_object(Bucket="raw", Key="Whitfield^Agatha/MRN-88412093/notes.txt", Body=b"x" * 200)
    batch = ws.pipe_batch("raw", [key, "Whitfield^Agatha/MRN-88412093/notes.txt"])
    caplog.set_level(logging.DEBUG, logger="src")
    with route_lambdas(ROUTES):
        details = ws.run(stack, "pipeline", batch, "phi-key")
    assert details["status"] == "SUCCEEDED", details
    # Past the first state's input, nothing names the object.
    first_state_input = {"ExecutionStarted", "TaskStateEntered", "TaskScheduled"}
    later = [e for e in details["history"] if e["type"] not in first_state_input]
    later_text = json.dumps(later, default=str) + json.dumps(details["output"])
    ours = [r for r in caplog.records if r.name.startswith("src")]
    assert ours, "the pipeline logged nothing"
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in ours) + capsys.readouterr().out
    for needle in ("Whitfield", "Agatha", "88412093", "notes.txt", "s3://"):
        assert needle not in later_text, needle
        assert needle not in logs, needle
        for bucket in ("processed", "operations"):
            assert all(needle not in k for k in ws.keys(s3, bucket)), (needle, bucket)
    for value in corpus.planted:
        assert value not in later_text


def test_a_duplicate_event_is_harmless(stack, corpus):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[1]), "raw", "in/twice.dcm")
    with route_lambdas(ROUTES):
        first = ws.run(stack, "pipeline", ws.pipe_batch("raw", ["in/twice.dcm"]), "first")
    assert first["output"]["processed"] == 1
    # SQS delivers at least once: the same message again (moto's interpreter cannot run a
    # second execution of one machine in-process, so the function takes it directly).
    again = lh.instance_handler({"Records": ws.pipe_batch("raw", ["in/twice.dcm"])}, None)
    assert again["body"]["processed"] == 1 and again["body"]["quarantined"] == 0
    assert ws.keys(s3, "quarantine") == []
    assert len(ws.keys(s3, "processed")) == 1


def test_throttling_in_a_pipe_batch_is_redelivered_not_quarantined(stack, corpus, monkeypatch):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[2]), "raw", "in/a.dcm")
    s3.upload_file(str(corpus.files[3]), "raw", "in/b.dcm")
    real_fetch = S3Store.fetch

    def throttled(self, key, path):  # type: ignore[no-untyped-def]
        if key == "in/b.dcm":
            raise ThrottlingError("throttled", aws_error_code="SlowDown")
        return real_fetch(self, key, path)

    monkeypatch.setattr(S3Store, "fetch", throttled)
    with route_lambdas(ROUTES):
        details = ws.run(stack, "pipeline", ws.pipe_batch("raw", ["in/a.dcm", "in/b.dcm"]), "slow")
    assert details["status"] == "SUCCEEDED", details
    assert details["output"]["batchItemFailures"] == [{"itemIdentifier": "msg-001"}]
    assert details["output"]["processed"] == 1
    assert ws.keys(s3, "quarantine") == []


def test_a_throttled_single_object_is_retried_by_the_state_machine(stack, corpus, monkeypatch):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[4]), "raw", "big/large.dcm")
    left = {"n": 2}
    real_fetch = S3Store.fetch

    def flaky(self, key, path):  # type: ignore[no-untyped-def]
        if left["n"]:
            left["n"] -= 1
            raise ThrottlingError("throttled", aws_error_code="SlowDown")
        return real_fetch(self, key, path)

    monkeypatch.setattr(S3Store, "fetch", flaky)
    with route_lambdas(ROUTES) as calls:
        details = ws.run(stack, "pipeline", ws.object_created("raw", "big/large.dcm"), "retry")
    assert details["status"] == "SUCCEEDED", details
    assert calls[ws.FUNCTION] == 3
    assert len(ws.keys(s3, "processed")) == 1 and ws.keys(s3, "quarantine") == []


def test_a_failed_quarantine_fails_the_execution(stack, monkeypatch):
    s3 = stack["s3"]
    s3.put_object(Bucket="raw", Key="in/junk.dcm", Body=b"junk" * 100)
    monkeypatch.setenv("MEDPIPE_QUARANTINE_BUCKET", "no-such-bucket")
    lh._STATE.pop("stores", None)
    with route_lambdas(ROUTES):
        details = ws.run(stack, "pipeline", ws.object_created("raw", "in/junk.dcm"), "q-fails")
    assert details["status"] == "FAILED", details
    assert ws.keys(s3, "processed") == []


def test_backfill_processes_every_object(monkeypatch, tmp_path):
    # moto's interpreter does not know ItemBatcher: the machine runs without it, and the
    # function, which takes both shapes, gets one {"bucket", "key"} item per child.
    corpus = write_corpus(
        tmp_path,
        seed=11,
        patients=5,
        series_per_study=2,
        instances_per_series=5,
        rows=16,
        columns=16,
        include_sr=False,
        include_us=False,
    )
    assert len(corpus.files) == 50
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        stack = ws.build(monkeypatch)
        s3 = stack["s3"]
        for i, path in enumerate(corpus.files):
            s3.upload_file(str(path), "raw", f"backfill/{i:03d}.dcm")
        # A warm container (key provider, core and S3 client built): moto starts every
        # child at once, and a dozen cold starts racing for one GIL would only lengthen
        # the suite.
        lambda_runtime.pipeline()
        lambda_runtime.store("raw")
        with route_lambdas(ROUTES) as calls:
            details = ws.run(
                stack, "backfill", {"bucket": "raw", "prefix": "backfill/"}, "bf", timeout=300
            )
        assert details["status"] == "SUCCEEDED", details
        assert calls[ws.FUNCTION] == 50
        assert len([k for k in ws.keys(s3, "processed") if k.endswith(".dcm")]) == 50
        assert ws.keys(s3, "quarantine") == []
        assert all(not k.startswith("backfill") for k in ws.keys(s3, "processed"))


def test_an_itembatcher_batch_returns_a_result_per_item(stack, corpus):
    s3 = stack["s3"]
    for i in range(3):
        s3.upload_file(str(corpus.files[i]), "raw", f"b/{i}.dcm")
    s3.put_object(Bucket="raw", Key="b/x.dcm", Body=b"nope" * 50)
    batch = {
        "Items": [{"bucket": "raw", "key": k} for k in ("b/0.dcm", "b/1.dcm", "b/2.dcm", "b/x.dcm")]
    }
    response = lh.instance_handler(batch, None)
    assert response["statusCode"] == 200
    statuses = [r["status"] for r in response["body"]["results"]]
    assert statuses == ["processed", "processed", "processed", "quarantined"]
    assert all(
        set(r) <= {"object_id", "status", "reason", "stage"} for r in response["body"]["results"]
    )


def test_handler_responses_have_the_documented_shapes(stack, corpus):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[0]), "raw", "a b.dcm")
    record = json.loads((ws.EVENTS / "s3_put.json").read_text())
    record["Records"][0]["s3"]["bucket"]["name"] = "raw"
    record["Records"][0]["s3"]["object"]["key"] = "a+b.dcm"
    ingest = lh.ingestion_handler(record, None)
    assert ingest["statusCode"] == 200
    assert set(ingest["body"]) >= {"bucket", "key", "metadata"}
    assert ingest["body"]["key"] == "a b.dcm"
    assert set(ingest["body"]["metadata"]) >= {"patient", "study", "series", "image", "acquisition"}
    valid = lh.validation_handler({"metadata": ingest["body"]["metadata"]}, None)
    assert valid["statusCode"] == 200 and valid["body"]["valid"] is True
    bad = lh.validation_handler({"metadata": {"patient": {}}}, None)
    assert bad["statusCode"] == 400 and bad["error"] == "MetadataValidationError"
    assert "patient.patient_id" in bad["details"]["fields"]
    deid = lh.deidentification_handler(record, None)
    assert set(deid["body"]) >= {"input_key", "output_key", "removed_tags"}
    assert deid["body"]["input_key"] == "a b.dcm" and "PatientName" in deid["body"]["removed_tags"]
    assert ws.keys(s3, "processed") == [deid["body"]["output_key"]]


def test_lambda_metrics_are_embedded_metric_format(stack, corpus, capsys):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[2]), "raw", "emf.dcm")
    capsys.readouterr()
    lh.instance_handler({"bucket": "raw", "key": "emf.dcm"}, None)
    lines = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert len(lines) == 1
    emf = lines[0]
    metrics = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert metrics == {"FilesProcessed", "BytesProcessed", "InstanceLatency"}
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MedicalImaging/Pipeline"
    for value in corpus.planted:
        assert value not in json.dumps(emf)


def test_the_lambda_pass_cleans_pixels_when_the_profile_asks(stack, monkeypatch, tmp_path):
    import pydicom

    from src.synthetic.burned_text import generate

    monkeypatch.setenv("MEDPIPE_PROFILE", json.dumps({"clean_pixels": True}))
    lh._STATE.clear()
    s3 = stack["s3"]
    sample = next(s for s in generate(31, 45) if s.boxes and s.background == "examples_jpeg2k.dcm")
    path = tmp_path / "us.dcm"
    sample.dataset.save_as(path, enforce_file_format=True)
    s3.upload_file(str(path), "raw", "in/us.dcm")
    with route_lambdas(ROUTES):
        details = ws.run(stack, "pipeline", ws.pipe_batch("raw", ["in/us.dcm"]), "pixels")
    assert details["status"] == "SUCCEEDED", details
    assert details["output"]["processed"] == 1
    (key,) = ws.keys(s3, "processed")
    out = pydicom.dcmread(io.BytesIO(s3.get_object(Bucket="processed", Key=key)["Body"].read()))
    assert out.BurnedInAnnotation == "NO" and out.PatientIdentityRemoved == "YES"
    assert "113101" in {i.CodeValue for i in out.DeidentificationMethodCodeSequence}
    (pending,) = [k for k in ws.keys(s3, "operations") if k.startswith("index-rows/")]
    rows = json.loads(s3.get_object(Bucket="operations", Key=pending)["Body"].read())["rows"]
    assert rows[0]["clean_pixel_data"] is True and len(rows[0]["pixel_boxes"]) >= len(sample.boxes)
    family = sample.patient.name.split("^")[0]
    assert family not in _history_text(details) and family not in json.dumps(rows)
