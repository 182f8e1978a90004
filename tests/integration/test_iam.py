"""The Lambda pass under IAM enforcement, with exactly the policy the template grants.

moto enforces IAM only when asked (``enable_iam_authentication``); the function's
credentials belong to a user holding the template's ``InstanceFunctionRole`` policy,
resolved for this stack's names. A missing permission therefore fails here, as it would
on AWS. (moto does not evaluate bucket or KMS key policies, nor ``kms:`` actions on S3
requests, nor resource ARNs for Secrets Manager; those are checked by reading the
template in ``test_infra``.)
"""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from moto.core import enable_iam_authentication

from src.orchestration import lambda_handlers as lh
from tests.integration import template
from tests.integration import workflow_stack as ws
from tests.integration.lambda_seam import MOTO_CONFIG

ACCOUNT = "123456789012"


def _names(secret_arn: str) -> dict[str, str]:
    names = {f"{b.title()}Bucket.Arn": f"arn:aws:s3:::{b}" for b in ws.BUCKETS}
    names.update(
        {
            "DeidentificationKey": secret_arn,
            "PhiKey.Arn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/phi",
            "OutputKey.Arn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/output",
            "IngestDeadLetterQueue.Arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:medpipe-dlq",
            "SecretKey.Arn": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/secret",
            "InstanceLogGroup.Arn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:instance",
        }
    )
    return names


def _as_function(monkeypatch, statements) -> None:  # type: ignore[no-untyped-def]
    # moto authorises Secrets Manager calls against resource "*" only (its responses name
    # no resource), so the secret statement keeps its action but not its ARN here.
    statements = [
        {**s, "Resource": "*"} if str(s["Action"]).startswith("secretsmanager:") else s
        for s in statements
    ]
    iam = boto3.client("iam", region_name=ws.REGION)
    iam.create_user(UserName="instance-function")
    iam.put_user_policy(
        UserName="instance-function",
        PolicyName="instance",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    creds = iam.create_access_key(UserName="instance-function")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", creds["SecretAccessKey"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    from aws_lambda_powertools.utilities import parameters

    boto3.DEFAULT_SESSION = None  # its credentials were read before the user existed
    parameters.clear_caches()
    parameters.base.DEFAULT_PROVIDERS.clear()
    lh._STATE.clear()


@pytest.fixture()
def stack(monkeypatch, corpus):  # type: ignore[no-untyped-def]
    with mock_aws(config=MOTO_CONFIG):  # type: ignore[arg-type]
        built = ws.build(monkeypatch)
        data = corpus.files[0].read_bytes()
        built["s3"].put_object(Bucket="raw", Key="in/good.dcm", Body=data)
        built["s3"].put_object(Bucket="raw", Key="in/cut.dcm", Body=data[: len(data) - 200])
        secret = boto3.client("secretsmanager", region_name=ws.REGION).describe_secret(
            SecretId="medpipe/key"
        )["ARN"]
        built["names"] = _names(secret)
        yield built


def test_with_the_templates_policy_good_files_are_processed_and_bad_ones_quarantined(
    stack, monkeypatch
):
    statements = template.role_statements("InstanceFunctionRole", stack["names"])
    _as_function(monkeypatch, statements)
    batch = ws.pipe_batch("raw", ["in/good.dcm", "in/cut.dcm"])
    with enable_iam_authentication():
        response = lh.instance_handler({"Records": batch}, None)
    assert response["statusCode"] == 200, response
    assert response["batchItemFailures"] == []
    assert [r["status"] for r in response["body"]["results"]] == ["processed", "quarantined"]
    admin = stack["s3"]
    assert len(ws.keys(admin, "processed")) == 1
    reasons = [k for k in ws.keys(admin, "quarantine") if k.endswith(".reason.json")]
    assert len(reasons) == 1
    pending = [k for k in ws.keys(admin, "operations") if k.startswith("index-rows/")]
    assert len(pending) == 1


def test_the_index_function_turns_rows_into_parquet_with_its_own_policy(stack, monkeypatch):
    admin = stack["s3"]
    names = {**stack["names"], "IndexLogGroup.Arn": stack["names"]["InstanceLogGroup.Arn"]}
    iam = boto3.client("iam", region_name=ws.REGION)
    iam.create_user(UserName="index-function")
    iam.put_user_policy(
        UserName="index-function",
        PolicyName="index",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": template.role_statements("IndexFunctionRole", names),
            }
        ),
    )
    index_creds = iam.create_access_key(UserName="index-function")["AccessKey"]
    _as_function(monkeypatch, template.role_statements("InstanceFunctionRole", stack["names"]))
    with enable_iam_authentication():
        lh.instance_handler({"Records": ws.pipe_batch("raw", ["in/good.dcm"])}, None)
    pending = [k for k in ws.keys(admin, "operations") if k.startswith("index-rows/")]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", index_creds["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", index_creds["SecretAccessKey"])
    boto3.DEFAULT_SESSION = None
    lh._STATE.clear()
    with enable_iam_authentication():
        response = lh.index_handler(ws.object_created("operations", pending[0]), None)
        assert response["statusCode"] == 200, response
        # The index function may read rows and write Parquet, and nothing else.
        with pytest.raises(Exception, match="AccessDenied"):
            boto3.client("s3", region_name=ws.REGION).get_object(Bucket="raw", Key="in/good.dcm")
    written = [k for k in ws.keys(admin, "processed") if k.startswith("index/")]
    assert written == response["body"]["written"] and len(written) == 1


def test_without_put_on_the_processed_bucket_nothing_is_quarantined_and_it_is_dead_lettered(
    stack, monkeypatch
):
    statements = [
        s
        for s in template.role_statements("InstanceFunctionRole", stack["names"])
        if s["Sid"] != "WriteProcessedOnce"
    ]
    dlq = boto3.client("sqs", region_name=ws.REGION).create_queue(QueueName="medpipe-dlq")
    monkeypatch.setenv("MEDPIPE_DEAD_LETTER_QUEUE_URL", dlq["QueueUrl"])
    _as_function(monkeypatch, statements)
    batch = ws.pipe_batch("raw", ["in/good.dcm"])
    with enable_iam_authentication():
        response = lh.instance_handler({"Records": batch}, None)
    # Access denied is not the file's fault, and retrying cannot mend it: the message goes
    # to the dead-letter queue once, with the code, through the role's own permission.
    assert response["batchItemFailures"] == []
    assert response["body"]["results"][0]["status"] == "failed"
    assert ws.keys(stack["s3"], "processed") == []
    assert ws.keys(stack["s3"], "quarantine") == []
    letters = boto3.client("sqs", region_name=ws.REGION).receive_message(
        QueueUrl=dlq["QueueUrl"], MessageAttributeNames=["All"]
    )["Messages"]
    assert letters[0]["MessageAttributes"]["medpipe-reason"]["StringValue"] == "AccessDenied"
