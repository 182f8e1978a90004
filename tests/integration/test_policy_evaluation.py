"""Every request the deployed stack makes, evaluated as AWS evaluates it.

moto cannot show whether the stack works once deployed: it treats bucket-policy conditions
as true, never consults a KMS key policy and ignores identity-policy conditions. Here the
template is rendered by the SAM translator and resolved for one stack; every AWS request
our code sends while its entry points run on moto is recorded (the Pipe's SQS batch, the
large-object EventBridge event, a Distributed Map child batch, a permanent fault sent to
the dead-letter queue, the IndexFunction), what AWS services do for the stack is derived
from the template's wiring, and the people in the parameters act; each request is then
evaluated with its role's identity policy, the resource policy and the KMS key policy by
``@cloud-copilot/iam-simulate``. Every pipeline request must be allowed, and each negative
control denied.

Known gap of the evaluator: it ignores ``kms:EncryptionContext:*`` condition keys (it only
knows variable keys of the ``prefix/name`` form), so the one statement that depends on
one, CloudWatch Logs' use of the PHI key, is checked by matching its ARN pattern instead.
"""

from __future__ import annotations

import fnmatch
import os
import shutil

import boto3
import pytest
from moto import mock_aws

from src.errors import AccessDeniedError
from src.orchestration import lambda_handlers as lh
from src.orchestration import one_pass
from tests.integration import workflow_stack as ws
from tests.integration.aws_requests import (
    ALLOWED,
    Recorder,
    Request,
    Translator,
    evaluate,
    s3_context,
)
from tests.integration.rendered_stack import ACCOUNT, REGION, SAM_PYTHON, Stack
from tests.integration.service_requests import every_service_request

ROLE = f"arn:aws:iam::{ACCOUNT}:role"
UPLOADER, OPERATOR, ANALYST = f"{ROLE}/uploader", f"{ROLE}/operator", f"{ROLE}/analyst"
OUTSIDER = f"{ROLE}/someone-else"
PARAMETERS = {
    "PhiUserArns": f"{UPLOADER},{OPERATOR}",
    "OutputReaderArns": ANALYST,
    "AlarmEmail": "imaging-ops@example.org",
}
DENIED = "Denied"


def _tools_or_skip() -> None:
    missing = [
        what
        for what, ok in (
            ("tools/sam", SAM_PYTHON.exists()),
            ("node", shutil.which("node") is not None),
            (
                "iam-simulate",
                (SAM_PYTHON.parents[2] / "node_modules/@cloud-copilot/iam-simulate").exists(),
            ),
        )
        if not ok
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing: make test installs them")
        pytest.skip(f"{', '.join(missing)} not installed (make test installs them)")


@pytest.fixture(scope="module")
def stack() -> Stack:
    _tools_or_skip()
    return Stack(PARAMETERS)


def _moto_stack(stack: Stack, monkeypatch) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The stack's buckets, secret and queue on moto, and the function's own environment."""
    s3 = boto3.client("s3", region_name=REGION)
    for logical in stack.of_type("AWS::S3::Bucket"):
        s3.create_bucket(Bucket=stack.ref(logical))
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="medpipe-key", SecretString="policy-evaluation-key-0123456789"
    )
    for logical in stack.of_type("AWS::SQS::Queue"):
        boto3.client("sqs", region_name=REGION).create_queue(
            QueueName=stack.att(logical, "QueueName")
        )
    environment = stack.props("InstanceFunction")["Environment"]["Variables"]
    assert environment["MEDPIPE_KEY_SECRET_ID"] == stack.ref("DeidentificationKey")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEDPIPE_KEY_SECRET_ID", "medpipe-key")  # moto names its own ARN
    monkeypatch.delenv("MEDPIPE_DEID_KEY", raising=False)
    monkeypatch.delenv("MEDPIPE_KMS_KEY_ID", raising=False)
    lh._STATE.clear()
    return {k: stack.ref(k) for k in ("RawBucket", "ProcessedBucket", "OperationsBucket")}


@pytest.fixture(scope="module")
def code_requests(stack, corpus) -> list[Request]:  # type: ignore[no-untyped-def]
    """Every request our code makes while each Lambda entry point runs on moto."""
    monkeypatch = pytest.MonkeyPatch()
    recorder = Recorder()
    instance = stack.role_of_function("InstanceFunction")
    index = stack.role_of_function("IndexFunction")
    try:
        with mock_aws(), recorder.installed():
            names = _moto_stack(stack, monkeypatch)
            raw, s3 = names["RawBucket"], boto3.client("s3", region_name=REGION)
            data = corpus.files[0].read_bytes()
            for i, path in enumerate(corpus.files[:4]):
                s3.upload_file(str(path), raw, f"in/{i}.dcm")
            s3.put_object(Bucket=raw, Key="in/cut.dcm", Body=data[: len(data) // 2])
            with recorder.as_role(instance):
                # The Pipe's SQS batch (a good file and a truncated one: quarantined).
                lh.instance_handler(
                    {"Records": ws.pipe_batch(raw, ["in/0.dcm", "in/cut.dcm"])}, None
                )
                # The large-object machine's EventBridge event.
                lh.instance_handler({"Records": ws.object_created(raw, "in/1.dcm")}, None)
                # A Distributed Map child batch, with a repeat: the owner check reads the head.
                items = [{"bucket": raw, "key": k} for k in ("in/2.dcm", "in/0.dcm")]
                lh.instance_handler({"Items": items}, None)
                # A permanent fault goes to the dead-letter queue with the role's own rights.
                real = one_pass.process_object

                def denied(ref):  # type: ignore[no-untyped-def]
                    if ref.key == "in/3.dcm":
                        raise AccessDeniedError("denied", aws_error_code="AccessDenied")
                    return real(ref)

                monkeypatch.setattr(one_pass, "process_object", denied)
                lh.instance_handler({"Records": ws.pipe_batch(raw, ["in/3.dcm"])}, None)
                monkeypatch.setattr(one_pass, "process_object", real)
            operations = names["OperationsBucket"]
            pending = [k for k in ws.keys(s3, operations) if k.startswith("index-rows/")]
            assert pending, "the instance pass wrote no index rows"
            lh._STATE.clear()
            with recorder.as_role(index):
                response = lh.index_handler(ws.object_created(operations, pending[0]), None)
            assert response["statusCode"] == 200, response
            assert response["body"]["series"], "the index function wrote no series row"
    finally:
        monkeypatch.undo()
        lh._STATE.clear()
    operations_seen = {(service, op) for _, service, op, _ in recorder.calls}
    assert {
        ("s3", "GetObject"),
        ("s3", "PutObject"),
        ("s3", "HeadObject"),
        ("s3", "ListObjectsV2"),  # the index function lists a series' members
        ("secretsmanager", "GetSecretValue"),
        ("sqs", "SendMessage"),
    } <= operations_seen
    translator = Translator(stack)
    return [r for call in recorder.calls for r in translator.for_call(*call)]


def _people(stack: Stack) -> list[Request]:
    """Uploaders, operators and consumers of the parameters, and the negative controls."""
    raw, processed = stack.ref("RawBucket"), stack.ref("ProcessedBucket")
    quarantine = stack.ref("QuarantineBucket")
    phi, output = stack.att("PhiKey", "Arn"), stack.att("OutputKey", "Arn")
    t = Translator(stack)

    def person(arn: str, **context: str) -> tuple[str, dict[str, str]]:
        return arn, {
            "aws:PrincipalArn": arn,
            "aws:PrincipalAccount": ACCOUNT,
            "aws:SecureTransport": "true",
            **context,
        }

    def s3(who, action, bucket, key, expect=ALLOWED, identity=(), **extra):  # type: ignore[no-untyped-def]
        principal, base = person(who)
        logical = stack.bucket_by_name(bucket)
        resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")
        return Request(
            f"{who.rsplit('/', 1)[-1]} {action} {logical}",
            principal,
            action,
            resource,
            {**base, **s3_context(), **extra},
            list(identity),
            stack.bucket_policy(logical),
            expect,
        )

    def kms(who, action, key, service="s3", expect=ALLOWED, identity=()):  # type: ignore[no-untyped-def]
        principal, base = person(who)
        request = t._kms_via(
            who.rsplit("/", 1)[-1], principal, base, list(identity), action, key, service
        )
        request.expect = expect
        return request

    anything = [
        {
            "name": "admin",
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": ["s3:*", "kms:*", "states:*"], "Resource": "*"}
                ],
            },
        }
    ]
    start_backfill = [
        {
            "name": "operator",
            "policy": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "states:StartExecution",
                        "Resource": stack.ref("BackfillStateMachine"),
                    }
                ],
            },
        }
    ]
    operator, operator_base = person(OPERATOR)
    out = [
        # Uploaders put without an encryption header: the bucket's default applies.
        s3(UPLOADER, "s3:PutObject", raw, "study/1.dcm"),
        kms(UPLOADER, "kms:GenerateDataKey", phi),
        # Operators read the quarantine and start a backfill.
        s3(OPERATOR, "s3:GetObject", quarantine, "quarantine/x.bin"),
        s3(OPERATOR, "s3:ListBucket", quarantine, None),
        kms(OPERATOR, "kms:Decrypt", phi),
        Request(
            "operator states:StartExecution backfill",
            operator,
            "states:StartExecution",
            stack.ref("BackfillStateMachine"),
            operator_base,
            start_backfill,
        ),
        kms(OPERATOR, "kms:GenerateDataKey", phi, service="states"),
        # Consumers read the outputs and the index, and sign presigned URLs for them.
        s3(ANALYST, "s3:GetObject", processed, "ab12/cd34/ef56/0001.dcm"),
        s3(ANALYST, "s3:GetObject", processed, "index/date=2026-12-07/x.parquet"),
        s3(ANALYST, "s3:ListBucket", processed, None),
        s3(
            ANALYST,
            "s3:GetObject",
            processed,
            "ab12/cd34/ef56/0001.dcm",
            **{"s3:authType": "REST-QUERY-STRING"},
        ),
        kms(ANALYST, "kms:Decrypt", output),
        # -- negative controls ------------------------------------------------------------
        s3(
            UPLOADER,
            "s3:PutObject",
            raw,
            "study/2.dcm",
            DENIED,
            **{"s3:x-amz-server-side-encryption": "AES256"},
        ),
        s3(
            UPLOADER,
            "s3:PutObject",
            raw,
            "study/3.dcm",
            DENIED,
            **{"s3:x-amz-server-side-encryption": "aws:kms"},
        ),
        s3(
            UPLOADER,
            "s3:PutObject",
            raw,
            "study/4.dcm",
            DENIED,
            **{
                "s3:x-amz-server-side-encryption": "aws:kms",
                "s3:x-amz-server-side-encryption-aws-kms-key-id": output,
            },
        ),
        s3(ANALYST, "s3:GetObject", processed, "a.dcm", DENIED, **{"aws:SecureTransport": "false"}),
        s3(ANALYST, "s3:GetObject", processed, "a.dcm", DENIED, **{"s3:TlsVersion": "1.1"}),
        s3(
            OPERATOR,
            "s3:GetObject",
            raw,
            "study/1.dcm",
            DENIED,
            **{"s3:authType": "REST-QUERY-STRING"},
        ),
        s3(
            OPERATOR,
            "s3:GetObject",
            quarantine,
            "quarantine/x.bin",
            DENIED,
            **{"s3:authType": "REST-QUERY-STRING"},
        ),
        s3(ANALYST, "s3:GetObject", raw, "study/1.dcm", DENIED),
        kms(ANALYST, "kms:Decrypt", phi, expect=DENIED),
        kms(OUTSIDER, "kms:Decrypt", output, expect=DENIED, identity=anything),
        kms(OUTSIDER, "kms:Decrypt", phi, expect=DENIED, identity=anything),
    ]
    index_role = stack.role_of_function("IndexFunction")
    instance_role = stack.role_of_function("InstanceFunction")
    denied_to_roles = [
        t.for_call(index_role, "s3", "GetObject", {"Bucket": raw, "Key": "study/1.dcm"})[0],
        t.for_call(
            instance_role,
            "s3",
            "PutObject",
            {"Bucket": processed, "Key": "x.dcm", "ServerSideEncryption": "AES256"},
        )[0],
        t.for_call(
            instance_role,
            "s3",
            "PutObject",
            {
                "Bucket": processed,
                "Key": "x.dcm",
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": phi,
            },
        )[0],
    ]
    for request in denied_to_roles:
        request.expect = DENIED
    return out + denied_to_roles


def _verdicts(requests: list[Request]) -> list[tuple[Request, dict]]:  # type: ignore[type-arg]
    pairs = list(zip(requests, evaluate(requests), strict=True))
    if os.environ.get("MEDPIPE_PRINT_VERDICTS"):  # the table for a closing note or a review
        print("\n" + _report(pairs))
    return pairs


def _report(pairs) -> str:  # type: ignore[no-untyped-def]
    return "\n".join(
        f"{v['result']:<17} expect {r.expect:<8} {r.label}: {r.action} {r.resource} {v.get('decisive', '')}"
        f"{v.get('errors', '')}"
        for r, v in pairs
    )


def _wrong(pairs):  # type: ignore[no-untyped-def]
    return [
        (r, v)
        for r, v in pairs
        if (v["result"] == ALLOWED) != (r.expect == ALLOWED) or v["result"] == "Error"
    ]


def test_every_request_our_code_makes_is_allowed(code_requests):
    pairs = _verdicts(code_requests)
    assert len(pairs) >= 20
    wrong = _wrong(pairs)
    assert not wrong, _report(wrong)


def test_every_request_aws_makes_for_the_stack_is_allowed(stack):
    requests = every_service_request(stack, stack.ref("RawBucket"))
    logs = [r for r in requests if r.principal.startswith("logs.")]
    requests = [r for r in requests if r not in logs]
    pairs = _verdicts(requests)
    assert {r.action for r in requests} >= {
        "sqs:ReceiveMessage",
        "states:StartSyncExecution",
        "states:StartExecution",
        "sqs:SendMessage",
        "lambda:InvokeFunction",
        "s3:ListBucket",
        "s3:PutObject",
        "sns:Publish",
        "logs:PutLogEvents",
    }
    wrong = _wrong(pairs)
    assert not wrong, _report(wrong)
    # The evaluator ignores kms:EncryptionContext keys: match the Logs statement's pattern.
    for request in logs:
        statement = next(
            s
            for s in request.resource_policy["Statement"]
            if s.get("Principal", {}).get("Service") == request.principal
        )
        assert request.action.removeprefix("kms:") in str(statement["Action"])
        pattern = statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
        assert fnmatch.fnmatchcase(request.context["kms:EncryptionContext:aws:logs:arn"], pattern)


def test_the_people_in_the_parameters_can_work_and_the_negative_controls_are_denied(stack):
    pairs = _verdicts(_people(stack))
    wrong = _wrong(pairs)
    assert not wrong, _report(wrong)
    assert sum(r.expect == DENIED for r, _ in pairs) >= 14


def test_without_people_in_the_parameters_nobody_outside_the_stack_decrypts():
    _tools_or_skip()
    bare = Stack()
    t = Translator(bare)
    phi = bare.att("PhiKey", "Arn")
    request = t._kms_via(
        "uploader", UPLOADER, {"aws:PrincipalArn": UPLOADER}, [], "kms:Decrypt", phi, "s3"
    )
    (verdict,) = evaluate([request])
    assert verdict["result"] != ALLOWED
    statements = [s.get("Sid") for s in bare.props("PhiKey")["KeyPolicy"]["Statement"]]
    assert "PhiUsersThroughServices" not in statements
