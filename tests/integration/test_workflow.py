"""The real state machine definitions, executed by moto, running the real Lambda code."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from src.orchestration import lambda_handlers as lh
from src.orchestration.step_functions import StepFunctionsHandler
from src.synthetic import write_corpus
from tests.integration.lambda_seam import MOTO_CONFIG, route_lambdas

DEFINITIONS = Path(lh.__file__).parent / "definitions"
REGION = "us-east-1"
ACCOUNT = "123456789012"
FUNCTIONS = {
    "IngestionFunctionArn": ("medpipe-ingest", lh.ingestion_handler),
    "ValidationFunctionArn": ("medpipe-validate", lh.validation_handler),
    "DeidentificationFunctionArn": ("medpipe-deidentify", lh.deidentification_handler),
    "QuarantineFunctionArn": ("medpipe-quarantine", lh.quarantine_handler),
}


@pytest.fixture()
def stack(monkeypatch):  # type: ignore[no-untyped-def]
    """Buckets, the key in Secrets Manager, the four functions and both state machines."""
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        s3 = boto3.client("s3", region_name=REGION)
        for bucket in ("raw", "processed", "quarantine", "results"):
            s3.create_bucket(Bucket=bucket)
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="medpipe/key", SecretString="workflow-test-key-0123456789"
        )
        monkeypatch.setenv("MEDPIPE_KEY_SECRET_ID", secret["ARN"])
        monkeypatch.delenv("MEDPIPE_DEID_KEY")
        monkeypatch.setenv("MEDPIPE_PROCESSED_BUCKET", "processed")
        monkeypatch.setenv("MEDPIPE_QUARANTINE_BUCKET", "quarantine")
        monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MedicalImaging/Pipeline")
        lh._STATE.clear()
        role = boto3.client("iam", region_name=REGION).create_role(
            RoleName="medpipe", AssumeRolePolicyDocument="{}"
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as archive:
            archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
        arns = {}
        for variable, (name, _) in FUNCTIONS.items():
            arns[variable] = lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler="handler.handler",
                Code={"ZipFile": buf.getvalue()},
            )["FunctionArn"]
        sfn = StepFunctionsHandler()
        machines = {}
        for kind in ("pipeline", "backfill"):
            definition = sfn.load_state_machine_definition(str(DEFINITIONS / f"{kind}.asl.json"))
            filled = sfn.substitute_variables(definition, {**arns, "ResultsBucket": "results"})
            machines[kind] = sfn.create_state_machine(f"medpipe-{kind}", filled, role)[
                "state_machine_arn"
            ]
        yield {"s3": s3, "sfn": sfn, "machines": machines}


def _routes() -> dict:  # type: ignore[type-arg]
    return {name: fn for name, fn in FUNCTIONS.values()}


def _run(stack, kind: str, payload: dict, name: str, timeout: float = 120) -> dict:  # type: ignore[no-untyped-def, type-arg]
    sfn: StepFunctionsHandler = stack["sfn"]
    arn = sfn.start_execution(stack["machines"][kind], payload, execution_name=name)[
        "execution_arn"
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        details = sfn.describe_execution(arn)
        if details["status"] != "RUNNING":
            return details
        time.sleep(0.1)
    raise AssertionError("execution did not finish")


def _event(bucket: str, key: str) -> dict:  # type: ignore[type-arg]
    """An EventBridge 'Object Created' event as S3 sends it (key URL-encoded)."""
    from urllib.parse import quote_plus

    return json.loads(
        (Path(__file__).parents[1] / "events" / "eventbridge_object_created.json")
        .read_text()
        .replace("RAW_BUCKET", bucket)
        .replace("OBJECT_KEY", quote_plus(key))
    )


def _keys(s3, bucket: str) -> list[str]:  # type: ignore[no-untyped-def]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_clean_ct_upload_succeeds_with_no_phi_in_the_output(stack, corpus):
    s3 = stack["s3"]
    key = "incoming/scan one ü.dcm"
    s3.upload_file(str(corpus.files[0]), "raw", key)
    with route_lambdas(_routes()) as calls:
        details = _run(stack, "pipeline", _event("raw", key), "clean-ct")
    assert details["status"] == "SUCCEEDED", details
    assert calls["medpipe-deidentify"] == 1 and calls["medpipe-quarantine"] == 0
    out = _keys(s3, "processed")
    assert len(out) == 1 and out[0].startswith("ANON-") and out[0].endswith(".dcm")
    body = s3.get_object(Bucket="processed", Key=out[0])["Body"].read()
    for value in corpus.planted:
        assert value.encode("latin-1", "ignore") not in body
    history = json.dumps(details, default=str)
    for value in corpus.planted:
        assert value not in history  # execution history is a log: no PHI
    assert details["output"]["deid"]["response"]["body"]["output_key"] == out[0]


def test_non_dicom_upload_ends_in_quarantine(stack):
    s3 = stack["s3"]
    s3.put_object(Bucket="raw", Key="incoming/notes.dcm", Body=b"this is not DICOM")
    with route_lambdas(_routes()) as calls:
        details = _run(stack, "pipeline", _event("raw", "incoming/notes.dcm"), "not-dicom")
    assert details["status"] == "SUCCEEDED"
    assert calls["medpipe-deidentify"] == 0 and calls["medpipe-quarantine"] == 1
    assert _keys(s3, "processed") == []
    keys = _keys(s3, "quarantine")
    assert "objects/incoming/notes.dcm" in keys
    reason = json.loads(
        s3.get_object(Bucket="quarantine", Key="reasons/incoming/notes.dcm.json")["Body"].read()
    )
    assert reason["stage"] == "ingest" and reason["error"] == "InvalidDICOMError"


def test_missing_object_is_quarantined_with_a_404(stack):
    with route_lambdas(_routes()):
        details = _run(stack, "pipeline", {"bucket": "raw", "key": "gone.dcm"}, "missing")
    assert details["status"] == "SUCCEEDED"
    assert details["output"]["ingest"]["statusCode"] == 404
    reason = json.loads(
        stack["s3"].get_object(Bucket="quarantine", Key="reasons/gone.dcm.json")["Body"].read()
    )
    assert reason["copied"] is False


def test_transient_error_is_retried(stack, corpus):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[1]), "raw", "incoming/retry.dcm")
    failures = {"left": 2}

    def flaky(event, context):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise lh.TransientError("SlowDown")
        return lh.deidentification_handler(event, context)

    routes = _routes()
    routes["medpipe-deidentify"] = flaky
    with route_lambdas(routes) as calls:
        details = _run(stack, "pipeline", {"bucket": "raw", "key": "incoming/retry.dcm"}, "retry")
    assert details["status"] == "SUCCEEDED", details
    assert calls["medpipe-deidentify"] == 3
    assert len(_keys(s3, "processed")) == 1


def test_backfill_processes_every_object(stack, tmp_path):
    s3 = stack["s3"]
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
    for i, path in enumerate(corpus.files):
        s3.upload_file(str(path), "raw", f"backfill/{i:03d}.dcm")
    with route_lambdas(_routes()) as calls:
        details = _run(
            stack, "backfill", {"bucket": "raw", "prefix": "backfill/"}, "backfill-50", timeout=300
        )
    assert details["status"] == "SUCCEEDED", details
    assert calls["medpipe-deidentify"] == 50
    assert len([k for k in _keys(s3, "processed") if k.endswith(".dcm")]) == 50
    assert _keys(s3, "quarantine") == []


def test_handler_responses_have_the_documented_shapes(stack, corpus):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[0]), "raw", "a b.dcm")
    record = json.loads((Path(__file__).parents[1] / "events" / "s3_put.json").read_text())
    record["Records"][0]["s3"]["bucket"]["name"] = "raw"
    record["Records"][0]["s3"]["object"]["key"] = "a+b.dcm"
    ingest = lh.ingestion_handler(record, None)
    assert ingest["statusCode"] == 200
    assert set(ingest["body"]) >= {"bucket", "key", "metadata"}
    assert ingest["body"]["key"] == "a b.dcm"
    assert set(ingest["body"]["metadata"]) == {"patient", "study", "series", "image", "acquisition"}
    valid = lh.validation_handler({"metadata": ingest["body"]["metadata"]}, None)
    assert valid["statusCode"] == 200 and valid["body"]["valid"] is True
    bad = lh.validation_handler({"metadata": {"patient": {}}}, None)
    assert bad["statusCode"] == 400 and bad["error"] == "MetadataValidationError"
    assert "patient.patient_id" in bad["details"]["fields"]
    deid = lh.deidentification_handler(record, None)
    assert set(deid["body"]) >= {"input_key", "output_key", "removed_tags"}
    assert deid["body"]["input_key"] == "a b.dcm" and "PatientName" in deid["body"]["removed_tags"]
    os.environ["MEDPIPE_PROCESSED_BUCKET"] = ""
    try:
        broken = lh.deidentification_handler(record, None)
    finally:
        os.environ["MEDPIPE_PROCESSED_BUCKET"] = "processed"
    assert broken["statusCode"] == 400 and broken["error"] == "ConfigurationError"


def test_lambda_metrics_are_embedded_metric_format(stack, corpus, capsys):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[2]), "raw", "emf.dcm")
    capsys.readouterr()
    lh.deidentification_handler({"bucket": "raw", "key": "emf.dcm"}, None)
    lines = [
        json.loads(line)
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("{") and '"_aws"' in line
    ]
    assert len(lines) == 1
    emf = lines[0]
    metrics = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert metrics == {"FilesProcessed", "BytesProcessed", "DeidentifyLatency"}
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "MedicalImaging/Pipeline"
    assert emf["FilesProcessed"] == [1.0] or emf["FilesProcessed"] == 1.0
    for value in corpus.planted:
        assert value not in json.dumps(emf)
