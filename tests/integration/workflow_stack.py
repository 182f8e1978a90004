"""The moto stack the workflow tests run: buckets, the key, the function, the machines.

Events are built from the real AWS event JSON in ``tests/events`` (an EventBridge
"Object Created" event, and an SQS message as an EventBridge Pipe hands it to a state
machine), never hand-rolled dicts.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3

from src.orchestration import lambda_handlers as lh
from src.orchestration.step_functions import StepFunctionsHandler

DEFINITIONS = Path(lh.__file__).parent / "definitions"
EVENTS = Path(__file__).parents[1] / "events"
REGION = "us-east-1"
BUCKETS = ("raw", "processed", "quarantine", "operations")
FUNCTION = "medpipe-instance"
LARGE_FUNCTION = "medpipe-large-instance"
# The template's LargeObjectBytes, lowered so that a test's files can be "large".
LARGE_OBJECT_BYTES = 1_000_000


def object_created(bucket: str, key: str, size: int = 1024) -> dict[str, Any]:
    """An EventBridge "Object Created" event as S3 sends it (key URL-encoded, "/" kept)."""
    event: dict[str, Any] = json.loads(
        (EVENTS / "eventbridge_object_created.json")
        .read_text()
        .replace("RAW_BUCKET", bucket)
        .replace("OBJECT_KEY", quote_plus(key, safe="/"))  # as S3 encodes keys: "/" kept
    )
    event["detail"]["object"]["size"] = size
    return event


def pipe_batch(bucket: str, keys: list[str]) -> list[dict[str, Any]]:
    """What an EventBridge Pipe hands the Express machine: a list of SQS messages."""
    template = (EVENTS / "pipes_sqs_batch_item.json").read_text()
    out = []
    for i, key in enumerate(keys):
        message = json.loads(template.replace("MESSAGE_ID", f"msg-{i:03d}"))
        message["body"] = json.dumps(object_created(bucket, key))
        out.append(message)
    return out


def moto_compatible(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition less what moto's ASL parser refuses.

    ``ItemBatcher`` goes, and each child starts with a Pass state that makes its one item
    a batch of one (``{"Items": [item]}``, the shape ``ItemBatcher`` hands a child); EXPRESS
    children run as STANDARD, and ``ResultWriter.WriterConfig`` goes. moto's
    ``states:startExecution`` integration fails on the PascalCase parameters that AWS
    documents (``'StateMachineArn'``), so a task that starts the large-object machine
    calls the large function directly instead, with the same input (what that machine's
    one task does).
    """
    copy = json.loads(json.dumps(definition))
    _start_large_directly(copy)
    for state in copy["States"].values():
        if state.pop("ItemBatcher", None) is not None:
            processor = state["ItemProcessor"]
            processor["States"]["BatchOfOne"] = {
                "Type": "Pass",
                "Parameters": {"Items.$": "States.Array($)"},
                "Next": processor["StartAt"],
            }
            processor["StartAt"] = "BatchOfOne"
        processor = state.get("ItemProcessor", {}).get("ProcessorConfig", {})
        if processor.get("ExecutionType") == "EXPRESS":
            processor["ExecutionType"] = "STANDARD"
        state.get("ResultWriter", {}).pop("WriterConfig", None)
    return copy


def _start_large_directly(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("Resource") == "arn:aws:states:::states:startExecution":
            node["Resource"] = "arn:aws:states:::lambda:invoke"
            node["Parameters"] = {
                "FunctionName": "${LargeInstanceFunctionArn}",
                "Payload": node["Parameters"]["Input"],
            }
        for value in node.values():
            _start_large_directly(value)
    elif isinstance(node, list):
        for value in node:
            _start_large_directly(value)


def build(monkeypatch: Any, definitions: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Create the stack inside an active ``mock_aws``; returns clients and machine ARNs."""
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in BUCKETS:
        s3.create_bucket(Bucket=bucket)
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="medpipe/key", SecretString="workflow-test-key-0123456789"
    )
    monkeypatch.setenv("MEDPIPE_KEY_SECRET_ID", secret["ARN"])
    monkeypatch.delenv("MEDPIPE_DEID_KEY", raising=False)
    monkeypatch.setenv("MEDPIPE_PROCESSED_BUCKET", "processed")
    monkeypatch.setenv("MEDPIPE_QUARANTINE_BUCKET", "quarantine")
    monkeypatch.setenv("MEDPIPE_OPERATIONS_BUCKET", "operations")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MedicalImaging/Pipeline")
    lh._STATE.clear()
    role = boto3.client("iam", region_name=REGION).create_role(
        RoleName="medpipe", AssumeRolePolicyDocument="{}"
    )["Role"]["Arn"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    arns = {
        name: boto3.client("lambda", region_name=REGION).create_function(
            FunctionName=name,
            Runtime="python3.12",
            Role=role,
            Handler="handler.handler",
            Code={"ZipFile": buf.getvalue()},
        )["FunctionArn"]
        for name in (FUNCTION, LARGE_FUNCTION)
    }
    sfn = StepFunctionsHandler()
    machines: dict[str, str] = {}
    for kind, source, function in (
        ("large", "pipeline", LARGE_FUNCTION),
        ("pipeline", "pipeline", FUNCTION),
        ("backfill", "backfill", FUNCTION),
    ):
        definition = (definitions or {}).get(kind) or sfn.load_state_machine_definition(
            str(DEFINITIONS / f"{source}.asl.json")
        )
        filled = sfn.substitute_variables(
            moto_compatible(definition),
            {
                "InstanceFunctionArn": arns[function],
                "OperationsBucket": "operations",
                "LargeObjectStateMachineArn": machines.get("large", ""),
                "LargeInstanceFunctionArn": arns[LARGE_FUNCTION],
                "LargeObjectBytes": LARGE_OBJECT_BYTES,
            },
        )
        machines[kind] = sfn.create_state_machine(f"medpipe-{kind}", filled, role)[
            "state_machine_arn"
        ]
    return {"s3": s3, "sfn": sfn, "machines": machines}


def run(
    stack: dict[str, Any], kind: str, payload: Any, name: str, timeout: float = 120
) -> dict[str, Any]:
    """Start an execution and wait for it to end."""
    sfn: StepFunctionsHandler = stack["sfn"]
    arn = sfn.start_execution(stack["machines"][kind], payload, execution_name=name)[
        "execution_arn"
    ]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        details = sfn.describe_execution(arn)
        if details["status"] != "RUNNING":
            details["history"] = boto3.client(
                "stepfunctions", region_name=REGION
            ).get_execution_history(executionArn=arn)["events"]
            return details
        time.sleep(0.1)
    raise AssertionError("execution did not finish")


def keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]
