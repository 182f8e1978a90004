"""The deployable template and the state machine definitions, checked by the tools AWS users
run (``sam validate``, ``sam validate --lint``, cfn-lint, checkov, asl-validator) and by
reading what they grant."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import src.orchestration.lambda_handlers as handlers
from src.records.series_table import SERIES_COLUMNS
from src.storage.index_table import COLUMNS
from tests.integration import template

ROOT = template.ROOT
TEMPLATE = template.TEMPLATE
DEFINITIONS = ROOT / "src" / "orchestration" / "definitions"
TOOLS = ROOT / "tools"


def _tool(relative: str) -> Path:
    path = TOOLS / relative
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{relative} missing: make test installs it into tools/")
        pytest.skip(f"{relative} not installed (make test installs it)")
    return path


def _offline_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_REGION="us-east-1",
        SAM_CLI_TELEMETRY="0",
        BC_SKIP_MAPPING="TRUE",
        CHECKOV_CREATE_GRAPH="True",
    )
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, capture_output=True, text=True, check=False, cwd=TEMPLATE.parent, env=_offline_env()
    )


def test_sam_validate_accepts_the_template():
    sam = _tool("sam/bin/sam")
    proc = _run([str(sam), "validate", "--region", "us-east-1", "-t", str(TEMPLATE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "is a valid SAM Template" in proc.stdout + proc.stderr


def test_sam_validate_lint_accepts_the_template():
    sam = _tool("sam/bin/sam")
    proc = _run([str(sam), "validate", "--lint", "--region", "us-east-1", "-t", str(TEMPLATE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cfn_lint_is_clean():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = _run([str(cfn_lint), str(TEMPLATE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_checkov_finds_nothing_and_every_skip_says_why():
    checkov = _tool("checkov/bin/checkov")
    proc = _run(
        [
            str(checkov),
            "-f",
            str(TEMPLATE),
            "--framework",
            "cloudformation",
            "--compact",
            "--skip-download",
            "-o",
            "json",
        ]
    )
    report = json.loads(proc.stdout[proc.stdout.index("{") :])
    summary = report["summary"]
    assert summary["failed"] == 0, [c["check_id"] for c in report["results"]["failed_checks"]]
    assert summary["passed"] > 50
    for skipped in report["results"]["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "")) > 20, skipped["check_id"]


def test_asl_validator_accepts_both_definitions():
    tool = ROOT / "tools" / "node_modules" / ".bin" / "asl-validator"
    if not tool.exists():
        if os.environ.get("CI") and shutil.which("npm"):
            pytest.fail("asl-validator missing: make test installs it into tools/")
        pytest.skip("asl-validator (npm) not installed")
    for name in ("pipeline.asl.json", "backfill.asl.json"):
        proc = subprocess.run(
            [str(tool), "--json-path", str(DEFINITIONS / name)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _resources() -> dict[str, Any]:
    return template.load()["Resources"]  # type: ignore[no-any-return]


def test_every_function_runs_the_one_pass_handler_and_placeholders_match():
    resources = _resources()
    functions = {k: v for k, v in resources.items() if v["Type"] == "AWS::Serverless::Function"}
    expected = {
        "InstanceFunction": "instance_handler",
        "LargeInstanceFunction": "instance_handler",
        "IndexFunction": "index_handler",  # JSON rows -> Parquet, beside no OCR
    }
    assert set(functions) == set(expected)
    for name, resource in functions.items():
        module, _, attr = resource["Properties"]["Handler"].rpartition(".")
        assert (module, attr) == ("src.orchestration.lambda_handlers", expected[name])
        assert callable(getattr(handlers, attr))
    rule = resources["IndexRowsRule"]["Properties"]
    assert rule["EventPattern"]["detail"]["object"]["key"] == [{"prefix": "index-rows/"}]
    assert rule["Targets"][0]["Arn"] == {"GetAtt": "IndexFunction.Arn"}
    machines = {
        k: v for k, v in resources.items() if v["Type"] == "AWS::StepFunctions::StateMachine"
    }
    assert {m["Properties"]["StateMachineType"] for m in machines.values()} == {
        "EXPRESS",
        "STANDARD",
    }
    for name, machine in machines.items():
        props = machine["Properties"]
        text = (TEMPLATE.parent / props["DefinitionS3Location"]).resolve().read_text()
        assert set(re.findall(r"\$\{(\w+)\}", text)) == set(props["DefinitionSubstitutions"]), name
        assert props["EncryptionConfiguration"]["Type"] == "CUSTOMER_MANAGED_KMS_KEY"
    pipe = resources["IngestPipe"]["Properties"]
    assert pipe["Target"] == {"Ref": "PipelineStateMachine"}
    assert (
        pipe["TargetParameters"]["StepFunctionStateMachineParameters"]["InvocationType"]
        == "REQUEST_RESPONSE"
    )
    assert resources["PipelineStateMachine"]["Properties"]["StateMachineType"] == "EXPRESS"
    queue = resources["IngestQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"GetAtt": "IngestDeadLetterQueue.Arn"}


def _stack() -> Any:
    if not (TOOLS / "sam" / "bin" / "python").exists():
        _tool("sam/bin/python")
    from tests.integration.rendered_stack import Stack

    return Stack(
        {
            "PhiUserArns": "arn:aws:iam::123456789012:role/uploader",
            "OutputReaderArns": "arn:aws:iam::123456789012:role/analyst",
        }
    )


def test_buckets_are_sse_kms_with_bucket_keys_tls12_and_lifecycle():
    stack = _stack()
    keys = {
        "RawBucket": "PhiKey",
        "QuarantineBucket": "PhiKey",
        "OperationsBucket": "PhiKey",
        "ProcessedBucket": "OutputKey",
    }
    for name, key in keys.items():
        resource = stack.resources[name]
        assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
        props = resource["Properties"]
        sse = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
        assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
        assert sse["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == stack.att(key, "Arn")
        assert sse["BucketKeyEnabled"] is True
        assert all(props["PublicAccessBlockConfiguration"].values())
        assert props["LoggingConfiguration"]["DestinationBucketName"] == stack.ref(
            "AccessLogsBucket"
        )
        rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
        assert "AbortIncompleteMultipartUpload" in rules["OldVersionsAndUploads"]
        statements = {s.get("Sid"): s for s in stack.bucket_policy(name)["Statement"]}
        assert statements["DenyTlsBelow12"]["Condition"]["NumericLessThan"]["s3:TlsVersion"] == 1.2
        # A wrong header is denied; a missing one gets the default (the Null guard).
        for sid in ("DenyOtherEncryption", "DenyOtherKmsKey"):
            assert statements[sid]["Condition"]["Null"] == {
                next(iter(statements[sid]["Condition"]["StringNotEquals"])): "false"
            }
        assert "DenyInsecureTransport" in statements
        phi = name in ("RawBucket", "QuarantineBucket")
        assert ("DenyPresignedUrls" in statements) is phi, name
        assert ("PhiRetention" in rules) is phi, name
    for key in ("PhiKey", "OutputKey", "SecretKey", "DeidentificationKey"):
        assert stack.resources[key]["DeletionPolicy"] == "Retain", key
    assert stack.props("DeidentificationKey")["KmsKeyId"] == stack.ref("SecretKey")


def test_no_role_grants_a_wildcard_resource_or_logs_star():
    stack = _stack()
    roles = stack.of_type("AWS::IAM::Role")
    assert len(roles) >= 5
    for logical, role in roles.items():
        assert "RoleName" not in role["Properties"], logical  # no CAPABILITY_NAMED_IAM
        assert role["Properties"]["Path"] == f"/medpipe/{stack.name}/"
        for policy in role["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                actions = (
                    [statement["Action"]]
                    if isinstance(statement["Action"], str)
                    else statement["Action"]
                )
                assert not any(a in ("*", "logs:*", "s3:*", "kms:*") for a in actions), statement
                targets = (
                    [statement["Resource"]]
                    if isinstance(statement["Resource"], str)
                    else statement["Resource"]
                )
                assert "*" not in targets, statement
    for name in ("PhiKey", "OutputKey", "SecretKey"):
        sids = {s["Sid"]: s for s in stack.props(name)["KeyPolicy"]["Statement"]}
        admin = sids["Administrators"]["Action"]
        assert "kms:Decrypt" not in admin and "kms:*" not in admin  # administrators cannot read
        users = [
            s for s in sids.values() if "kms:Decrypt" in s["Action"] and "AWS" in s["Principal"]
        ]
        assert users and all("kms:ViaService" in s["Condition"]["StringEquals"] for s in users)


def test_the_glue_table_has_the_index_columns():
    table = _resources()["IndexTable"]["Properties"]["TableInput"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == COLUMNS
    assert table["PartitionKeys"] == [{"Name": "date", "Type": "string"}]


def test_the_glue_series_table_has_the_series_columns():
    table = _resources()["SeriesTable"]["Properties"]["TableInput"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns == SERIES_COLUMNS
    assert table["StorageDescriptor"]["Location"] == {"Sub": "s3://${ProcessedBucket}/series/"}


def test_backfill_batches_into_express_children_and_writes_results_to_operations():
    backfill = json.loads((DEFINITIONS / "backfill.asl.json").read_text())
    state = backfill["States"]["Backfill"]
    assert state["ItemProcessor"]["ProcessorConfig"] == {
        "Mode": "DISTRIBUTED",
        "ExecutionType": "EXPRESS",
    }
    assert state["ItemBatcher"]["MaxItemsPerBatch"] >= 10
    assert 0 < state["ToleratedFailurePercentage"] <= 100
    assert state["ResultWriter"]["Parameters"]["Bucket"] == "${OperationsBucket}"
    pipeline = json.loads((DEFINITIONS / "pipeline.asl.json").read_text())
    tasks = [s for s in pipeline["States"].values() if s["Type"] == "Task"]
    assert len(tasks) == 1 and pipeline["StartAt"] == "Deidentify"
    assert "Catch" not in tasks[0]  # failures fail the execution: SQS redelivers


@pytest.mark.slow
def test_the_instance_package_carries_the_detector_within_lambdas_size_limit(
    tmp_path: Path,
) -> None:
    """`sam build`'s makefile target, for real: arm64 wheels from the registry."""
    artifacts = tmp_path / "instance"
    subprocess.run(
        [
            "make",
            "-s",
            "build-InstanceFunction",
            f"ARTIFACTS_DIR={artifacts}",
            f"PYTHON={sys.executable}",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=900,
    )
    size = sum(p.stat().st_size for p in artifacts.rglob("*") if p.is_file())
    assert size < 262_144_000, f"{size / 2**20:.0f} MiB unzipped is over Lambda's 250 MB"
    assert (artifacts / "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx").is_file()
    assert list(artifacts.glob("onnxruntime/capi/onnxruntime_pybind11_state*aarch64*.so"))
    assert not (artifacts / "cv2").exists() and not (artifacts / "pyarrow").exists()
    assert (artifacts / "src/pixels/detector.py").is_file()


def test_a_stranger_can_deploy_it_with_the_documented_command():
    import tomllib

    config = tomllib.loads((ROOT / "infra" / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    # No fixed role names in the template, so no CAPABILITY_NAMED_IAM.
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True
    dry = subprocess.run(
        ["make", "-n", "deploy"], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert "sam build --template-file infra/template.yaml" in dry
    assert "sam deploy --guided" in dry and "infra/samconfig.toml" in dry
    guide = (ROOT / "docs" / "aws.md").read_text()
    for heading in (
        "## Prerequisites",
        "## Parameters",
        "## First deploy",
        "## Uploading",
        "## Reading the outputs",
        "## Backfilling",
        "## Alarms",
        "## The pseudonym key",
        "## Cost",
        "## Teardown",
        "## What is tested offline, and how",
    ):
        assert heading in guide, heading
    parameters = _stack().template["Parameters"]
    for name in ("PhiUserArns", "OutputReaderArns", "AlarmEmail"):
        assert f"`{name}`" in guide and name in parameters, name
    outputs = _stack().template["Outputs"]
    assert {"AlarmTopicArn", "DeidentificationKeySecretArn"} <= set(outputs)
    assert "AlarmEmail" in str(_stack().template["Resources"]["AlarmSubscription"])


def test_every_machine_function_and_queue_has_its_alarms_on_the_topic():
    stack = _stack()
    alarms = stack.of_type("AWS::CloudWatch::Alarm").values()
    topic = stack.ref("AlarmTopic")
    assert all(a["Properties"]["AlarmActions"] == [topic] for a in alarms)
    watched = {
        (a["Properties"]["MetricName"], d["Value"])
        for a in alarms
        for d in a["Properties"]["Dimensions"]
    }
    for machine in stack.of_type("AWS::StepFunctions::StateMachine"):
        for metric in ("ExecutionsFailed", "ExecutionsTimedOut"):
            assert (metric, stack.ref(machine)) in watched, (metric, machine)
    for function in stack.of_type("AWS::Lambda::Function"):
        for metric in ("Errors", "Throttles"):
            assert (metric, stack.ref(function)) in watched, (metric, function)
    dlq = stack.att("IngestDeadLetterQueue", "QueueName")
    assert ("ApproximateNumberOfMessagesVisible", dlq) in watched
    assert ("ApproximateAgeOfOldestMessage", dlq) in watched
    assert ("ApproximateAgeOfOldestMessage", stack.att("IngestQueue", "QueueName")) in watched
