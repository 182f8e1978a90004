"""What AWS services do on the stack's behalf, derived from the rendered template's wiring.

Nothing here is retyped from the template: each request comes from a resource's own
properties (a Pipe's role, source and target; a rule's targets, roles and dead-letter
queue; a state machine's role, key and definition substitutions; a function's role and log
group; the alarm topic's key and policy), so a change to the wiring changes the requests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.integration.aws_requests import Request, Translator, s3_context, session
from tests.integration.rendered_stack import ACCOUNT, REGION, Stack

DEFINITIONS = Path(__file__).resolve().parents[2] / "src" / "orchestration" / "definitions"


def _service(name: str, **context: str) -> tuple[str, dict[str, Any]]:
    return f"{name}.amazonaws.com", {"aws:SecureTransport": "true", **context}


def _machine_of(stack: Stack, arn: str) -> str:
    for logical in stack.of_type("AWS::StepFunctions::StateMachine"):
        if stack.ref(logical) == arn:
            return logical
    raise KeyError("a state machine that is not the stack's")


def _role_of(stack: Stack, arn: str) -> str:
    for logical in stack.of_type("AWS::IAM::Role"):
        if stack.att(logical, "Arn") == arn:
            return logical
    raise KeyError("a role that is not the stack's")


def _acting(stack: Stack, role_arn: str) -> tuple[str, str, dict[str, Any], list[Any]]:
    """The role behind an ARN: its logical id, session principal, context and policies."""
    role = _role_of(stack, role_arn)
    principal, base = session(stack, role)
    return role, principal, base, stack.identity_policies(role)


def _queue_of(stack: Stack, arn: str) -> str | None:
    for logical in stack.of_type("AWS::SQS::Queue"):
        if stack.att(logical, "Arn") == arn:
            return logical
    return None


def start_machine(
    stack: Stack, t: Translator, label: str, role: str, machine: str, *, sync: bool
) -> list[Request]:
    principal, base = session(stack, role)
    identity = stack.identity_policies(role)
    action = "states:StartSyncExecution" if sync else "states:StartExecution"
    out = [
        Request(
            f"{label} {action} {machine}", principal, action, stack.ref(machine), base, identity
        )
    ]
    encryption = stack.props(machine).get("EncryptionConfiguration", {})
    if encryption.get("Type") == "CUSTOMER_MANAGED_KMS_KEY":
        context = {"kms:EncryptionContext:aws:states:stateMachineArn": stack.ref(machine)}
        actions = ["kms:GenerateDataKey", "kms:Decrypt"] if sync else ["kms:GenerateDataKey"]
        for kms in actions:
            out.append(
                t._kms_via(
                    label, principal, base, identity, kms, encryption["KmsKeyId"], "states", context
                )
            )
    return out


def pipes(stack: Stack, t: Translator) -> list[Request]:
    out: list[Request] = []
    for logical, pipe in stack.of_type("AWS::Pipes::Pipe").items():
        props = pipe["Properties"]
        role, principal, base, identity = _acting(stack, props["RoleArn"])
        queue = _queue_of(stack, props["Source"])
        assert queue, f"{logical}: only SQS sources are modelled"
        for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
            out.append(
                Request(
                    f"{logical} {action}",
                    principal,
                    action,
                    props["Source"],
                    base,
                    identity,
                    stack.queue_policy(queue),
                )
            )
        key = stack.props(queue).get("KmsMasterKeyId")
        if key:
            out.append(t._kms_via(logical, principal, base, identity, "kms:Decrypt", key, "sqs"))
        target = props["TargetParameters"]["StepFunctionStateMachineParameters"]
        sync = target["InvocationType"] == "REQUEST_RESPONSE"
        out += start_machine(
            stack, t, logical, role, _machine_of(stack, props["Target"]), sync=sync
        )
    return out


def _lambda_policy(stack: Stack, function_arn: str) -> dict[str, Any] | None:
    statements = []
    for perm in stack.of_type("AWS::Lambda::Permission").values():
        props = perm["Properties"]
        if (
            f"function:{props['FunctionName']}" in function_arn
            or props["FunctionName"] == function_arn
        ):
            statement: dict[str, Any] = {
                "Effect": "Allow",
                "Principal": {"Service": props["Principal"]},
                "Action": props["Action"],
                "Resource": function_arn,
            }
            if "SourceArn" in props:
                statement["Condition"] = {"ArnLike": {"aws:SourceArn": props["SourceArn"]}}
            statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements} if statements else None


def rules(stack: Stack, t: Translator) -> list[Request]:
    out: list[Request] = []
    for logical, rule in stack.of_type("AWS::Events::Rule").items():
        rule_arn = stack.att(logical, "Arn")
        principal, base = _service(
            "events", **{"aws:SourceArn": rule_arn, "aws:SourceAccount": ACCOUNT}
        )
        for target in rule["Properties"]["Targets"]:
            label = f"{logical} -> {target['Id']}"
            arn = target["Arn"]
            if "RoleArn" in target:
                role = _role_of(stack, target["RoleArn"])
                out += start_machine(stack, t, label, role, _machine_of(stack, arn), sync=False)
            elif (queue := _queue_of(stack, arn)) is not None:
                out += t.send_to_queue(label, principal, base, [], queue)
            elif ":function:" in arn:
                out.append(
                    Request(
                        f"{label} lambda:InvokeFunction",
                        principal,
                        "lambda:InvokeFunction",
                        arn,
                        base,
                        [],
                        _lambda_policy(stack, arn),
                    )
                )
            else:
                raise AssertionError(f"{label}: a target kind that is not modelled")
            dlq = target.get("DeadLetterConfig", {}).get("Arn")
            if dlq:
                queue = _queue_of(stack, dlq)
                assert queue
                out += t.send_to_queue(f"{label} dead letters", principal, base, [], queue)
    return out


def machines(stack: Stack, t: Translator, backfill_bucket: str) -> list[Request]:
    out: list[Request] = []
    for logical, machine in stack.of_type("AWS::StepFunctions::StateMachine").items():
        props = machine["Properties"]
        role, principal, base, identity = _acting(stack, props["RoleArn"])
        subs = props.get("DefinitionSubstitutions", {})
        for value in subs.values():
            if isinstance(value, str) and ":function:" in value:
                out.append(
                    Request(
                        f"{logical} lambda:InvokeFunction",
                        principal,
                        "lambda:InvokeFunction",
                        value,
                        base,
                        identity,
                    )
                )
            if isinstance(value, str) and ":stateMachine:" in value:
                out += start_machine(stack, t, logical, role, _machine_of(stack, value), sync=False)
        encryption = props.get("EncryptionConfiguration", {})
        if encryption.get("Type") == "CUSTOMER_MANAGED_KMS_KEY":
            context = {"kms:EncryptionContext:aws:states:stateMachineArn": stack.ref(logical)}
            for kms in ("kms:GenerateDataKey", "kms:Decrypt"):
                out.append(
                    t._kms_via(
                        f"{logical} own data",
                        principal,
                        base,
                        identity,
                        kms,
                        encryption["KmsKeyId"],
                        "states",
                        context,
                    )
                )
        key = props["DefinitionS3Location"]["Key"]
        definition = json.loads((DEFINITIONS / key).read_text())
        for state in definition["States"].values():
            if "ItemReader" in state:  # the Distributed Map lists the prefix it is given
                out += t._s3_ListObjectsV2(
                    f"{logical} ItemReader",
                    principal,
                    base,
                    identity,
                    {"Bucket": backfill_bucket, "Prefix": "backfill/"},
                )
            if (
                state.get("ItemProcessor", {}).get("ProcessorConfig", {}).get("Mode")
                == "DISTRIBUTED"
            ):
                out += start_machine(stack, t, f"{logical} child", role, logical, sync=False)
            if "ResultWriter" in state:  # no SSE header: the ResultWriter cannot send one
                params = state["ResultWriter"]["Parameters"]
                bucket = (
                    stack.ref("OperationsBucket")
                    if params["Bucket"] == "${OperationsBucket}"
                    else params["Bucket"]
                )
                out += t._put(
                    f"{logical} ResultWriter",
                    principal,
                    base,
                    identity,
                    {"Bucket": bucket, "Key": f"{params['Prefix']}/run/manifest.json"},
                    decrypt=True,
                )
    return out


def functions(stack: Stack, t: Translator) -> list[Request]:
    """Lambda writing each function's logs, and CloudWatch Logs encrypting them."""
    out: list[Request] = []
    for logical, function in stack.of_type("AWS::Lambda::Function").items():
        role = stack.role_of_function(logical)
        principal, base = session(stack, role)
        identity = stack.identity_policies(role)
        group = function["Properties"]["LoggingConfig"]["LogGroup"]
        group_logical = next(
            k for k in stack.of_type("AWS::Logs::LogGroup") if stack.ref(k) == group
        )
        group_arn = stack.att(group_logical, "Arn").removesuffix(":*")
        stream = f"{group_arn}:log-stream:2026/12/07/[$LATEST]0123456789abcdef"
        for action in ("logs:CreateLogStream", "logs:PutLogEvents"):
            out.append(Request(f"{logical} {action}", principal, action, stream, base, identity))
        key = stack.props(group_logical).get("KmsKeyId")
        if key:
            logs, context = _service(f"logs.{REGION}", **{"aws:SourceAccount": ACCOUNT})
            context["kms:EncryptionContext:aws:logs:arn"] = group_arn
            out.append(
                Request(
                    f"{logical} logs -> kms:GenerateDataKey",
                    logs,
                    "kms:GenerateDataKey",
                    key,
                    context,
                    [],
                    stack.key_policy(key),
                )
            )
    return out


def alarms(stack: Stack) -> list[Request]:
    """CloudWatch publishing to every topic an alarm names (once per topic)."""
    out: list[Request] = []
    topics = {
        arn: logical
        for logical, alarm in stack.of_type("AWS::CloudWatch::Alarm").items()
        for arn in alarm["Properties"]["AlarmActions"] + alarm["Properties"].get("OKActions", [])
    }
    for topic_arn, alarm in sorted(topics.items()):
        topic = next(k for k in stack.of_type("AWS::SNS::Topic") if stack.ref(k) == topic_arn)
        principal, base = _service(
            "cloudwatch",
            **{
                "aws:SourceAccount": ACCOUNT,
                "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{alarm}",
            },
        )
        policy = next(
            (
                p["Properties"]["PolicyDocument"]
                for p in stack.of_type("AWS::SNS::TopicPolicy").values()
                if topic_arn in p["Properties"]["Topics"]
            ),
            None,
        )
        out.append(
            Request(
                f"alarms -> {topic} sns:Publish",
                principal,
                "sns:Publish",
                topic_arn,
                base,
                [],
                policy,
            )
        )
        key = stack.props(topic).get("KmsMasterKeyId")
        if key:
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                out.append(
                    Request(
                        f"alarms -> {topic} {action}",
                        principal,
                        action,
                        stack.att(stack.key_logical(key), "Arn"),
                        base,
                        [],
                        stack.key_policy(key),
                    )
                )
    return out


def every_service_request(stack: Stack, backfill_bucket: str) -> list[Request]:
    t = Translator(stack)
    return (
        pipes(stack, t)
        + rules(stack, t)
        + machines(stack, t, backfill_bucket)
        + functions(stack, t)
        + alarms(stack)
    )


__all__ = ["every_service_request", "s3_context"]
