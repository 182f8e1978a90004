"""Faults on the AWS path: each is retried, dead-lettered once or routed, never quarantined.

The workflow runs the real definitions on moto with the real handler (``workflow_stack``);
store faults are injected where botocore raises them (``Stubber``, or an event hook on the
client), so the code under test sees the exact ``ClientError`` S3 would send.
"""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber
from moto import mock_aws

from src.errors import AccessDeniedError, ConflictError, StorageError, ThrottlingError
from src.orchestration import lambda_handlers as lh
from src.orchestration import one_pass
from src.storage.s3_store import S3Store
from src.storage.store import DuplicateInstanceError, commit_instance
from src.synthetic import write_corpus
from tests.integration import workflow_stack as ws
from tests.integration.lambda_seam import MOTO_CONFIG, route_lambdas

ROUTES = {ws.FUNCTION: lh.instance_handler, ws.LARGE_FUNCTION: lh.instance_handler}


@pytest.fixture()
def stack(monkeypatch):  # type: ignore[no-untyped-def]
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        built = ws.build(monkeypatch)
        sqs = boto3.client("sqs", region_name=ws.REGION)
        built["dlq"] = sqs.create_queue(QueueName="medpipe-dlq")["QueueUrl"]
        built["sqs"] = sqs
        monkeypatch.setenv("MEDPIPE_DEAD_LETTER_QUEUE_URL", built["dlq"])
        yield built


def _dead_letters(stack):  # type: ignore[no-untyped-def]
    return (
        stack["sqs"]
        .receive_message(
            QueueUrl=stack["dlq"], MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        .get("Messages", [])
    )


def _fail_for(monkeypatch, key: str, exc: Exception) -> None:  # type: ignore[no-untyped-def]
    real = one_pass.process_object

    def failing(ref):  # type: ignore[no-untyped-def]
        if ref.key == key:
            raise exc
        return real(ref)

    monkeypatch.setattr(one_pass, "process_object", failing)


# -- the store: an owner check that cannot be read is never a duplicate -------------------


def _store_with(*errors: tuple[str, str, int]) -> tuple[S3Store, Stubber]:
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    for operation, code, status in errors:
        stub.add_client_error(operation, service_error_code=code, http_status_code=status)
    stub.activate()
    return S3Store("processed", s3_client=client), stub


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("SlowDown", 503, ThrottlingError),
        ("InternalError", 500, StorageError),
        ("ServiceUnavailable", 503, ThrottlingError),
        ("AccessDenied", 403, AccessDeniedError),
        ("NoSuchKey", 404, ConflictError),  # gone between the refused put and the check
    ],
)
def test_an_unreadable_owner_is_raised_not_taken_for_a_duplicate(tmp_path, code, status, expected):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    store, stub = _store_with(
        ("put_object", "PreconditionFailed", 412), ("head_object", code, status)
    )
    with pytest.raises(expected) as caught:
        commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False)
    assert not isinstance(caught.value, DuplicateInstanceError)
    stub.assert_no_pending_responses()


def test_a_409_conditional_conflict_is_retried_not_read_as_an_existing_object(tmp_path):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    store, _ = _store_with(("put_object", "ConditionalRequestConflict", 409))
    with pytest.raises(ConflictError):
        commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False)
    assert lh.fault_kind(ConflictError("x")) == lh.TRANSIENT


def test_a_timeout_during_the_owner_check_is_transient(tmp_path):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    store = S3Store("processed", s3_client=client)
    refused = {"Error": {"Code": "PreconditionFailed"}, "ResponseMetadata": {"HTTPStatusCode": 412}}

    def put_object(**_):  # type: ignore[no-untyped-def]
        raise ClientError(refused, "PutObject")  # type: ignore[arg-type]

    def head_object(**_):  # type: ignore[no-untyped-def]
        raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")

    client.put_object = put_object  # type: ignore[method-assign]
    client.head_object = head_object  # type: ignore[method-assign]
    with pytest.raises(ThrottlingError) as caught:
        commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False)
    assert lh.fault_kind(caught.value) == lh.TRANSIENT


def test_the_owner_recorded_by_the_same_input_is_still_a_harmless_repeat(tmp_path):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    stub.add_client_error(
        "put_object", service_error_code="PreconditionFailed", http_status_code=412
    )
    stub.add_response("head_object", {"Metadata": {"medpipe-owner": "owner-1"}})
    stub.add_client_error(
        "put_object", service_error_code="PreconditionFailed", http_status_code=412
    )
    stub.add_response("head_object", {"Metadata": {"medpipe-owner": "owner-2"}})
    stub.activate()
    store = S3Store("processed", s3_client=client)
    assert commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False) is False
    with pytest.raises(DuplicateInstanceError):
        commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False)


# -- the handler: what is retried, what is dead-lettered ----------------------------------


def test_fault_kinds():
    assert lh.fault_kind(ThrottlingError("x", aws_error_code="SlowDown")) == lh.TRANSIENT
    assert lh.fault_kind(StorageError("x", aws_error_code="InternalError")) == lh.TRANSIENT
    assert lh.fault_kind(AccessDeniedError("x", aws_error_code="AccessDenied")) == lh.PERMANENT
    assert lh.fault_kind(RuntimeError("a defect")) is None


def test_a_poison_message_is_the_only_one_redelivered(stack, corpus, monkeypatch):
    s3 = stack["s3"]
    for i in range(3):
        s3.upload_file(str(corpus.files[i]), "raw", f"in/{i}.dcm")
    _fail_for(monkeypatch, "in/1.dcm", RuntimeError("a defect of ours"))
    response = lh.instance_handler(
        {"Records": ws.pipe_batch("raw", ["in/0.dcm", "in/1.dcm", "in/2.dcm"])}, None
    )
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-001"}]
    assert response["body"]["processed"] == 2
    assert ws.keys(s3, "quarantine") == [] and _dead_letters(stack) == []


def test_access_denied_goes_to_the_dead_letter_queue_once_with_its_code(
    stack, corpus, monkeypatch, capsys
):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[0]), "raw", "in/Doe^Jane 1970.dcm")
    s3.upload_file(str(corpus.files[1]), "raw", "in/ok.dcm")
    _fail_for(
        monkeypatch,
        "in/Doe^Jane 1970.dcm",
        AccessDeniedError(
            "put failed for s3://processed: AccessDenied", aws_error_code="AccessDenied"
        ),
    )
    batch = ws.pipe_batch("raw", ["in/Doe^Jane 1970.dcm", "in/ok.dcm"])
    with route_lambdas(ROUTES) as calls:
        details = ws.run(stack, "pipeline", batch, "denied")
    assert details["status"] == "SUCCEEDED", details
    assert calls[ws.FUNCTION] == 1  # not retried by the state machine
    assert details["output"]["batchItemFailures"] == []  # not redelivered five times either
    letters = _dead_letters(stack)
    assert len(letters) == 1
    attributes = {k: v["StringValue"] for k, v in letters[0]["MessageAttributes"].items()}
    assert attributes["medpipe-reason"] == "AccessDenied"
    assert "Doe" not in json.dumps(attributes)
    assert ws.keys(s3, "quarantine") == [] and len(ws.keys(s3, "processed")) == 1
    out = capsys.readouterr().out
    assert '"PermanentFailures"' in out and "Doe" not in out


def test_access_denied_in_a_map_batch_is_one_failed_result(stack, corpus, monkeypatch):
    s3 = stack["s3"]
    for i in range(2):
        s3.upload_file(str(corpus.files[i]), "raw", f"b/{i}.dcm")
    _fail_for(monkeypatch, "b/0.dcm", AccessDeniedError("denied", aws_error_code="AccessDenied"))
    response = lh.instance_handler(
        {"Items": [{"bucket": "raw", "key": "b/0.dcm"}, {"bucket": "raw", "key": "b/1.dcm"}]}, None
    )
    statuses = [(r["status"], r.get("reason")) for r in response["body"]["results"]]
    assert statuses == [("failed", "AccessDenied"), ("processed", None)]


def test_throttling_in_a_map_batch_retries_the_batch(stack, corpus, monkeypatch):
    stack["s3"].upload_file(str(corpus.files[0]), "raw", "b/0.dcm")
    _fail_for(monkeypatch, "b/0.dcm", ThrottlingError("slow", aws_error_code="SlowDown"))
    with pytest.raises(lh.TransientError):
        lh.InstanceHandler().handle({"Items": [{"bucket": "raw", "key": "b/0.dcm"}]}, None)


def test_a_conflict_in_the_pipe_batch_is_redelivered_not_quarantined(stack, corpus, monkeypatch):
    s3 = stack["s3"]
    s3.upload_file(str(corpus.files[0]), "raw", "in/a.dcm")
    real_put = S3Store.put

    def conflicting(self, key, source, **kw):  # type: ignore[no-untyped-def]
        if self.bucket == "processed":
            error = {
                "Error": {"Code": "ConditionalRequestConflict"},
                "ResponseMetadata": {"HTTPStatusCode": 409},
            }
            raise ConflictError(
                "conflict", aws_error_code="ConditionalRequestConflict"
            ) from ClientError(error, "PutObject")
        return real_put(self, key, source, **kw)

    monkeypatch.setattr(S3Store, "put", conflicting)
    response = lh.instance_handler({"Records": ws.pipe_batch("raw", ["in/a.dcm"])}, None)
    assert response["batchItemFailures"] == [{"itemIdentifier": "msg-000"}]
    assert ws.keys(s3, "quarantine") == []


# -- the backfill: large objects take the large function -----------------------------------


def test_backfill_routes_objects_above_the_size_parameter_to_the_large_function(
    monkeypatch, tmp_path
):
    small = write_corpus(
        tmp_path / "s",
        seed=3,
        patients=1,
        series_per_study=1,
        instances_per_series=2,
        rows=16,
        columns=16,
        include_sr=False,
        include_us=False,
    )
    large = write_corpus(
        tmp_path / "l",
        seed=4,
        patients=1,
        series_per_study=1,
        instances_per_series=1,
        rows=768,
        columns=768,
        include_sr=False,
        include_us=False,
    )
    assert large.files[0].stat().st_size >= ws.LARGE_OBJECT_BYTES
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        stack = ws.build(monkeypatch)
        s3 = stack["s3"]
        for i, path in enumerate(small.files[:2]):
            s3.upload_file(str(path), "raw", f"bf/small-{i}.dcm")
        s3.upload_file(str(large.files[0]), "raw", "bf/large.dcm")
        with route_lambdas(ROUTES) as calls:
            details = ws.run(
                stack, "backfill", {"bucket": "raw", "prefix": "bf/"}, "bf", timeout=300
            )
        assert details["status"] == "SUCCEEDED", details
        assert calls[ws.LARGE_FUNCTION] == 1
        assert len([k for k in ws.keys(s3, "processed") if k.endswith(".dcm")]) == 3


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("ConditionalRequestConflict", 409),
    ],
)
def test_a_fault_of_the_put_itself_is_transient_never_a_duplicate(tmp_path, code, status):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    store, stub = _store_with(("put_object", code, status))
    with pytest.raises(StorageError) as caught:
        commit_instance(store, "a/b.dcm", str(staged), "owner-1", claimed=False)
    assert not isinstance(caught.value, DuplicateInstanceError)
    assert lh.fault_kind(caught.value) == lh.TRANSIENT
    stub.assert_no_pending_responses()


def test_a_timeout_of_the_put_is_transient(tmp_path):
    staged = tmp_path / "x.dcm"
    staged.write_bytes(b"DICM")
    client = boto3.client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )

    def put_object(**_):  # type: ignore[no-untyped-def]
        raise ReadTimeoutError(endpoint_url="https://s3.amazonaws.com")

    client.put_object = put_object  # type: ignore[method-assign]
    with pytest.raises(ThrottlingError) as caught:
        commit_instance(
            S3Store("processed", s3_client=client), "a/b.dcm", str(staged), "o", claimed=False
        )
    assert lh.fault_kind(caught.value) == lh.TRANSIENT
