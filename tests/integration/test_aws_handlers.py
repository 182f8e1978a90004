"""The four documented AWS handlers against moto, in-process and over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
import requests
from botocore.awsrequest import AWSResponse
from botocore.stub import Stubber
from moto import mock_aws

from src.delivery.presigned_url_handler import PresignedUrlHandler, content_disposition
from src.errors import (
    AccessDeniedError,
    ConfigurationError,
    ObjectNotFoundError,
    ThrottlingError,
)
from src.monitoring.cloudwatch_handler import CloudWatchHandler
from src.orchestration.step_functions import StepFunctionsHandler
from src.storage.s3_handler import S3Handler

BUCKET = "test-bucket"
ROLE = "arn:aws:iam::123456789012:role/StepFunctionsRole"


@pytest.fixture()
def aws():  # type: ignore[no-untyped-def]
    with mock_aws():
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield


@pytest.fixture()
def dcm(tmp_path, corpus):  # type: ignore[no-untyped-def]
    return str(corpus.files[0])


# -- S3Handler --------------------------------------------------------------------------


def test_documented_example_upload(aws, dcm):
    handler = S3Handler(bucket_name=BUCKET)
    result = handler.upload_file(file_path=dcm, object_key="test.dcm")
    assert result["bucket"] == BUCKET
    assert result["key"] == "test.dcm"
    assert len(result["etag"]) == 32
    assert set(result) == {"bucket", "key", "etag"}


def test_metadata_content_type_and_sse_pass_through(aws, dcm):
    handler = S3Handler(BUCKET, sse="AES256")
    handler.upload_file(dcm, "a/b c/ünï cödé.dcm", metadata={"patient_id": "anon123"})
    head = handler.get_object_metadata("a/b c/ünï cödé.dcm")
    assert head["Metadata"] == {"patient_id": "anon123"}
    assert head["ContentType"] == "application/dicom"
    assert head["ContentLength"] == os.path.getsize(dcm)
    assert head["ServerSideEncryption"] == "AES256"
    keys = [o["Key"] for o in handler.list_objects(prefix="a/")]
    assert keys == ["a/b c/ünï cödé.dcm"]


def test_no_encryption_header_unless_asked_so_the_buckets_default_applies(aws, dcm):
    sent = []
    handler = S3Handler(BUCKET)
    handler.s3_client.meta.events.register(
        "before-call.s3.*", lambda params, **_: sent.append(params.get("headers", {}))
    )
    handler.upload_file(dcm, "default.dcm")
    assert sent and not any(
        h.lower().startswith("x-amz-server-side-encryption") for headers in sent for h in headers
    )


def test_sse_kms_with_key_id(aws, dcm):
    key_id = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    handler = S3Handler(BUCKET, sse="aws:kms", kms_key_id=key_id)
    handler.upload_file(dcm, "kms.dcm")
    head = handler.get_object_metadata("kms.dcm")
    assert head["ServerSideEncryption"] == "aws:kms"
    assert key_id in head["SSEKMSKeyId"]
    with pytest.raises(ValueError):
        S3Handler(BUCKET, sse="AES256", kms_key_id=key_id)


def test_download_roundtrip_and_missing_key(aws, dcm, tmp_path):
    handler = S3Handler(BUCKET)
    handler.upload_file(dcm, "x.dcm")
    result = handler.download_file("x.dcm", str(tmp_path / "x.dcm"))
    assert (tmp_path / "x.dcm").read_bytes() == open(dcm, "rb").read()
    assert result["key"] == "x.dcm" and result["bucket"] == BUCKET
    with pytest.raises(ObjectNotFoundError) as info:
        handler.download_file("missing.dcm", str(tmp_path / "m.dcm"))
    assert info.value.status_code == 404 and info.value.aws_error_code in ("404", "NoSuchKey")
    assert not (tmp_path / "m.dcm").exists()
    with pytest.raises(ObjectNotFoundError):
        handler.get_object_metadata("missing.dcm")


def test_list_objects_pages_past_1000_and_respects_max_keys(aws):
    client = boto3.client("s3", region_name="us-east-1")
    for i in range(1500):
        client.put_object(Bucket=BUCKET, Key=f"p/{i:05d}.dcm", Body=b"x")
    handler = S3Handler(BUCKET)
    assert len(handler.list_objects(prefix="p/")) == 1000  # documented default
    everything = handler.list_objects(prefix="p/", max_keys=5000)
    assert len(everything) == 1500
    assert everything[-1]["Key"] == "p/01499.dcm"
    assert all(set(o) >= {"Key", "Size"} and o["Size"] == 1 for o in everything)
    assert len(handler.list_objects(prefix="p/", max_keys=1200)) == 1200
    assert len(handler.list_objects(prefix="p/", max_keys=7)) == 7


def test_delete_object(aws, dcm):
    handler = S3Handler(BUCKET)
    handler.upload_file(dcm, "d.dcm")
    assert handler.delete_object("d.dcm") is True
    assert handler.list_objects() == []


def test_multipart_upload_over_20_mb(aws, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(21 * 1024 * 1024))
    handler = S3Handler(BUCKET)
    result = handler.upload_file(str(big), "big.bin", content_type="application/octet-stream")
    assert result["etag"].endswith("-3")  # three 8 MiB parts
    handler.download_file("big.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: object):  # type: ignore[no-untyped-def]
        yield self.data


def _inject(client, event: str, failures: int, status: int, code: str):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def handler(request, **_):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= failures:
            body = (f"<Error><Code>{code}</Code><Message>injected</Message></Error>").encode()
            return AWSResponse(request.url, status, {}, _Body(body))
        return None

    client.meta.events.register(event, handler)
    return calls


def test_throttling_is_retried_with_backoff(aws, dcm):
    handler = S3Handler(BUCKET)
    calls = _inject(handler.s3_client, "before-send.s3.PutObject", 3, 503, "SlowDown")
    handler.upload_file(dcm, "retried.dcm")
    assert calls["n"] == 4
    assert handler.list_objects()[0]["Key"] == "retried.dcm"


def test_throttling_past_the_retry_budget_is_a_503(aws, dcm):
    from botocore.config import Config

    client = boto3.client(
        "s3",
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )
    handler = S3Handler(BUCKET, s3_client=client)
    _inject(client, "before-send.s3.HeadObject", 10, 503, "SlowDown")
    with pytest.raises(ThrottlingError) as info:
        handler.get_object_metadata("x")
    assert info.value.status_code == 503


def test_access_denied_is_distinguished(aws):
    client = boto3.client("s3", region_name="us-east-1")
    handler = S3Handler(BUCKET, s3_client=client)
    with Stubber(client) as stub:
        stub.add_client_error("delete_object", "AccessDenied", http_status_code=403)
        with pytest.raises(AccessDeniedError) as info:
            handler.delete_object("x")
    assert info.value.aws_error_code == "AccessDenied" and info.value.status_code == 403


def test_endpoint_url_from_the_environment(moto_reset, dcm):
    os.environ["AWS_ENDPOINT_URL"] = moto_reset
    try:
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="env-bucket")
        handler = S3Handler("env-bucket")
        assert handler.s3_client.meta.endpoint_url == moto_reset
        handler.upload_file(dcm, "e.dcm")
        assert [o["Key"] for o in handler.list_objects()] == ["e.dcm"]
    finally:
        del os.environ["AWS_ENDPOINT_URL"]


# -- PresignedUrlHandler ----------------------------------------------------------------


def test_presigned_download_fetched_over_http(moto_reset, dcm):
    s3 = S3Handler("dl-bucket", endpoint_url=moto_reset)
    s3.s3_client.create_bucket(Bucket="dl-bucket")
    s3.upload_file(dcm, "patient/study/image.dcm")
    handler = PresignedUrlHandler("dl-bucket", endpoint_url=moto_reset)
    info = handler.generate_download_url(
        "patient/study/image.dcm",
        expiration_seconds=3600,
        response_content_type="application/dicom",
        response_content_disposition='attachment; filename="image.dcm"',
    )
    assert info["expires_in"] == 3600
    query = parse_qs(urlparse(info["url"]).query)
    assert query["X-Amz-Expires"] == ["3600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    response = requests.get(info["url"], timeout=10)
    assert response.status_code == 200
    assert response.content == open(dcm, "rb").read()
    assert response.headers["Content-Type"] == "application/dicom"
    secure = handler.generate_secure_download_url("patient/study/image.dcm", 60)
    assert secure is not None
    assert requests.get(secure["url"], timeout=10).status_code == 200
    assert handler.generate_secure_download_url("patient/missing.dcm") is None
    assert handler.validate_object_exists("patient/study/image.dcm")
    assert not handler.validate_object_exists("nope")


def test_presigned_upload_over_http(moto_reset):
    s3 = S3Handler("up-bucket", endpoint_url=moto_reset)
    s3.s3_client.create_bucket(Bucket="up-bucket")
    handler = PresignedUrlHandler("up-bucket", endpoint_url=moto_reset)
    info = handler.generate_upload_url(
        "in/new.dcm", 300, content_type="application/dicom", metadata={"source": "scanner"}
    )
    response = requests.put(info["url"], data=b"DICM-bytes", headers=info["headers"], timeout=10)
    assert response.status_code == 200
    head = s3.get_object_metadata("in/new.dcm")
    assert head["ContentLength"] == 10 and head["Metadata"] == {"source": "scanner"}


@pytest.mark.parametrize("seconds", [0, -5, 604801, 10**9])
def test_expiry_outside_sigv4_limits_is_refused(aws, seconds):
    handler = PresignedUrlHandler(BUCKET)
    with pytest.raises(ValueError, match="between 1 and 604800"):
        handler.generate_download_url("k", seconds)
    with pytest.raises(ValueError):
        handler.generate_upload_url("k", seconds)
    with pytest.raises(ValueError):
        handler.generate_batch_download_urls(["k"], seconds)


def test_expiry_limits_are_accepted(aws):
    handler = PresignedUrlHandler(BUCKET)
    for seconds in (1, 604800):
        url = handler.generate_download_url("k", seconds)["url"]
        assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == [str(seconds)]


def test_hostile_key_cannot_inject_headers(aws):
    hostile = 'x/evil"\r\nX-Injected: yes\r\n;name=".dcm'
    disposition = content_disposition(hostile)
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.count('"') == 2
    boto3.client("s3", region_name="us-east-1").put_object(Bucket=BUCKET, Key=hostile, Body=b"1")
    info = PresignedUrlHandler(BUCKET).generate_secure_download_url(hostile)
    assert info is not None
    value = parse_qs(urlparse(info["url"]).query)["response-content-disposition"][0]
    assert "\r" not in value and "\n" not in value
    with pytest.raises(ValueError):
        PresignedUrlHandler(BUCKET).generate_download_url(
            "k", response_content_disposition="attachment\r\nX-Evil: 1"
        )


def test_batch_urls(aws):
    handler = PresignedUrlHandler(BUCKET)
    keys = ["file1.dcm", "file2.dcm", "file3.dcm"]
    results = handler.generate_batch_download_urls(keys, expiration_seconds=1800)
    assert list(results) == keys
    assert all(
        r["expires_in"] == 1800 and r["url"].startswith("https://") for r in results.values()
    )


# -- CloudWatchHandler ------------------------------------------------------------------


def test_put_metric_data_with_dimensions_and_timestamp(aws):
    handler = CloudWatchHandler()
    when = datetime.now(UTC) - timedelta(minutes=5)
    result = handler.put_metric_data(
        namespace="MedicalImaging/Pipeline",
        metric_name="FilesProcessed",
        value=1,
        unit="Count",
        dimensions=[{"Name": "Environment", "Value": "Production"}],
        timestamp=when,
    )
    assert result["metric_name"] == "FilesProcessed" and result["value"] == 1.0
    metrics = handler.cloudwatch_client.list_metrics(Namespace="MedicalImaging/Pipeline")
    assert metrics["Metrics"][0]["Dimensions"] == [{"Name": "Environment", "Value": "Production"}]


def test_log_group_and_stream_creation_is_idempotent(aws):
    handler = CloudWatchHandler()
    assert handler.create_log_group("/aws/lambda/f", retention_days=14)["status"] == "created"
    assert handler.create_log_group("/aws/lambda/f", retention_days=30)["status"] == "exists"
    group = handler.logs_client.describe_log_groups(logGroupNamePrefix="/aws/lambda/f")
    assert group["logGroups"][0]["retentionInDays"] == 30
    assert handler.create_log_stream("/aws/lambda/f", "s")["status"] == "created"
    assert handler.create_log_stream("/aws/lambda/f", "s")["status"] == "exists"
    with pytest.raises(ValueError):
        handler.create_log_group("/x", retention_days=8)


def test_put_log_events_sorts_and_splits(aws):
    handler = CloudWatchHandler()
    handler.create_log_group("/g")
    handler.create_log_stream("/g", "s")
    base = int(datetime.now(UTC).timestamp() * 1000) - 60_000
    events = [
        {"timestamp": base + (i * 7919) % 25_000, "message": json.dumps({"i": i})}
        for i in range(25_000)
    ]
    result = handler.put_log_events("/g", "s", events)
    assert result["events_sent"] == 25_000 and result["batches"] == 3
    big = [{"timestamp": base + i, "message": "x" * 200_000} for i in range(12)]
    assert handler.put_log_events("/g", "s", big)["batches"] == 3  # 5 per MB
    got = handler.logs_client.get_log_events(
        logGroupName="/g", logStreamName="s", startFromHead=True, limit=50
    )["events"]
    stamps = [e["timestamp"] for e in got]
    assert stamps == sorted(stamps)


# -- StepFunctionsHandler ---------------------------------------------------------------

PASS = {"Comment": "test", "StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def test_state_machine_lifecycle(aws):
    handler = StepFunctionsHandler()
    created = handler.create_state_machine(
        name="my-workflow",
        definition=PASS,
        role_arn=ROLE,
        tags=[{"key": "team", "value": "imaging"}],
    )
    arn = created["state_machine_arn"]
    assert arn.startswith("arn:aws:states:")
    started = handler.start_execution(arn, {"Records": []}, execution_name="run-1")
    assert started["execution_arn"].endswith(":run-1")
    details = handler.describe_execution(started["execution_arn"])
    assert set(details) >= {"status", "input", "output", "error", "cause"}
    assert details["input"] == {"Records": []}
    assert details["status"] in ("RUNNING", "SUCCEEDED")
    for i in range(120):
        handler.start_execution(arn, {}, execution_name=f"bulk-{i}")
    listed = handler.list_executions(arn, max_results=500)
    assert len(listed) == 121
    assert len(handler.list_executions(arn)) == 100
    running = handler.list_executions(arn, status_filter=details["status"], max_results=500)
    assert all(e["status"] == details["status"] for e in running) and running
    with pytest.raises(ValueError):
        handler.list_executions(arn, status_filter="DONE")
    with pytest.raises(ObjectNotFoundError):
        handler.describe_execution(arn.replace("stateMachine", "execution") + ":nope")


def test_substitute_variables_everywhere_and_unknown_is_an_error(tmp_path):
    handler = StepFunctionsHandler(sfn_client=object())
    definition = {
        "StartAt": "A",
        "States": {
            "A": {
                "Type": "Task",
                "Resource": "${LambdaArn}",
                "Parameters": {"Bucket": "${S3Bucket}", "List": ["${S3Bucket}/x"]},
                "End": True,
            }
        },
    }
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(definition))
    loaded = handler.load_state_machine_definition(str(path))
    filled = handler.substitute_variables(loaded, {"LambdaArn": "arn:l", "S3Bucket": "b"})
    state = filled["States"]["A"]
    assert state["Resource"] == "arn:l" and state["Parameters"]["List"] == ["b/x"]
    with pytest.raises(ConfigurationError, match="S3Bucket"):
        handler.substitute_variables(loaded, {"LambdaArn": "arn:l"})
    with pytest.raises(ConfigurationError):
        StepFunctionsHandler(sfn_client=object()).create_state_machine("x", loaded, ROLE)


def test_presigned_urls_are_refused_for_phi_buckets(aws, monkeypatch):
    from src.delivery.presigned_url_handler import PresignedUrlHandler
    from src.errors import AccessDeniedError

    monkeypatch.setenv("MEDPIPE_RAW_BUCKET", "raw-phi")
    monkeypatch.setenv("MEDPIPE_QUARANTINE_BUCKET", "quarantine-phi")
    for bucket in ("raw-phi", "quarantine-phi"):
        handler = PresignedUrlHandler(bucket)
        with pytest.raises(AccessDeniedError, match="holds PHI"):
            handler.generate_download_url("a/b.dcm")
        with pytest.raises(AccessDeniedError):
            handler.generate_upload_url("a/b.dcm")
    shared = PresignedUrlHandler("processed", phi_buckets=frozenset({"raw-phi"}))
    assert shared.generate_download_url("a/b.dcm", 60)["url"].startswith("http")
