"""The template as CloudFormation would create it: rendered by the SAM translator, then
every intrinsic resolved against parameter values and physical names of one stack.

``Stack(parameters)`` gives each resource the physical id and attributes that AWS would
give it (bucket names, key, role, queue, state machine and function ARNs, with the role
paths the template sets), evaluates the template's conditions, and resolves ``Ref``,
``Fn::GetAtt``, ``Fn::Sub``, ``Fn::If``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split`` and
``AWS::NoValue`` everywhere. What it cannot resolve raises, so a new construct cannot slip
past the policy evaluation unseen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
SAM_PYTHON = ROOT / "tools" / "sam" / "bin" / "python"
ACCOUNT = "123456789012"
REGION = "us-east-1"
NAME = "medpipe-prod"
_NO_VALUE = object()


@functools.cache
def rendered() -> dict[str, Any]:
    """The SAM-translated template (plain CloudFormation, intrinsics unresolved)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_DEFAULT_REGION=REGION, SAM_CLI_TELEMETRY="0")
    done = subprocess.run(
        [str(SAM_PYTHON), str(Path(__file__).with_name("sam_render.py")), str(TEMPLATE)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if done.returncode:
        raise AssertionError(f"the SAM translator refused the template: {done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    return out


class Stack:
    """One created stack: parameters, conditions, physical ids, resolved resources."""

    def __init__(self, parameters: dict[str, Any] | None = None, name: str = NAME) -> None:
        self.template = rendered()
        self.name = name
        given = parameters or {}
        self.parameters: dict[str, Any] = {}
        for key, spec in self.template["Parameters"].items():
            value = given.get(key, spec.get("Default"))
            if spec["Type"] == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",") if value else [""]
            self.parameters[key] = value if isinstance(value, list) else str(value)
        self.pseudo = {
            "AWS::AccountId": ACCOUNT,
            "AWS::Region": REGION,
            "AWS::Partition": "aws",
            "AWS::StackName": name,
            "AWS::URLSuffix": "amazonaws.com",
        }
        self.conditions: dict[str, bool] = {}
        for cond in self.template.get("Conditions", {}):
            self.condition(cond)
        self.resources = {
            logical: self.resolve(resource)
            for logical, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    # -- physical ids ---------------------------------------------------------------------
    def ref(self, logical: str) -> Any:
        if logical in self.pseudo:
            return self.pseudo[logical]
        if logical in self.parameters:
            return self.parameters[logical]
        kind = self.template["Resources"][logical]["Type"]
        name = self._name(logical)
        if kind == "AWS::KMS::Key":
            return self._key_id(logical)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        if kind == "AWS::StepFunctions::StateMachine":
            return self.att(logical, "Arn")
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        return name

    def att(self, logical: str, attribute: str) -> Any:
        kind = self.template["Resources"][logical]["Type"]
        name = self._name(logical)
        props = self.template["Resources"][logical].get("Properties", {})
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::KMS::Key" and attribute == "Arn":
            return f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self._key_id(logical)}"
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            path = self.resolve(props.get("Path", "/"))
            return f"arn:aws:iam::{ACCOUNT}:role{path}{name}"
        if kind == "AWS::SQS::Queue":
            return {"Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}", "QueueName": name}[attribute]
        if kind == "AWS::StepFunctions::StateMachine":
            sm = self.resolve(props.get("StateMachineName", name))
            return {"Arn": f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{sm}", "Name": sm}[
                attribute
            ]
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            return f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{name}"
        if kind == "AWS::Logs::LogGroup" and attribute == "Arn":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"
        if kind == "AWS::Pipes::Pipe" and attribute == "Arn":
            return f"arn:aws:pipes:{REGION}:{ACCOUNT}:pipe/{name}"
        raise KeyError(f"no attribute {attribute} for {kind} {logical}")

    def _name(self, logical: str) -> str:
        # CloudFormation's generated names: stack name, logical id, a random suffix (bucket
        # names in lower case).
        name = f"{self.name}-{logical}-1A2B3C"
        kind = self.template["Resources"][logical]["Type"]
        return name.lower() if kind == "AWS::S3::Bucket" else name

    @staticmethod
    def _key_id(logical: str) -> str:
        digits = hashlib.sha256(logical.encode()).hexdigest()[:12]
        return f"0000aaaa-0000-4000-8000-{digits}"

    # -- intrinsics -----------------------------------------------------------------------
    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self._value(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, node: Any) -> Any:
        value = self._value(node)
        return None if value is _NO_VALUE else value

    def _value(self, node: Any) -> Any:
        if isinstance(node, list):
            values = [self._value(n) for n in node]
            return [v for v in values if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.att(logical, attribute)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return self._sub(text, {k: self._value(v) for k, v in extra.items()})
            if key == "Fn::If":
                name, yes, no = arg
                return self._value(yes if self.condition(name) else no)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self._value(items))
            if key == "Fn::Select":
                index, items = arg
                return self._value(items)[int(self._value(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self._value(text)).split(sep)
            if key == "Fn::Equals":
                a, b = (self._value(x) for x in arg)
                return str(a) == str(b)
            if key == "Fn::Not":
                return not self._value(arg[0])
            if key == "Fn::And":
                return all(self._value(x) for x in arg)
            if key == "Fn::Or":
                return any(self._value(x) for x in arg)
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise KeyError(f"unresolved intrinsic {key}")
        out = {}
        for k, v in node.items():
            value = self._value(v)
            if value is not _NO_VALUE:
                out[k] = value
        return out

    def _sub(self, text: str, extra: dict[str, Any]) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in extra:
                return str(extra[name])
            if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                logical, attribute = name.split(".", 1)
                return str(self.att(logical, attribute))
            value = self.ref(name)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    # -- what the tests ask of it ---------------------------------------------------------
    def props(self, logical: str) -> dict[str, Any]:
        out: dict[str, Any] = self.resources[logical].get("Properties", {})
        return out

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.resources.items() if r["Type"] == kind}

    def identity_policies(self, role: str) -> list[dict[str, Any]]:
        return [
            {"name": p["PolicyName"], "policy": p["PolicyDocument"]}
            for p in self.props(role).get("Policies", [])
        ]

    def _resource_policy(self, kind: str, holds: Any) -> dict[str, Any] | None:
        """The PolicyDocument of the first ``kind`` resource whose properties ``holds``."""
        for policy in self.of_type(kind).values():
            if holds(policy["Properties"]):
                doc: dict[str, Any] = policy["Properties"]["PolicyDocument"]
                return doc
        return None

    def _by_ref(self, kind: str, ref: str) -> str:
        for logical in self.of_type(kind):
            if self.ref(logical) == ref:
                return logical
        raise KeyError(f"no {kind} {ref} in the stack")

    def bucket_policy(self, bucket_logical: str) -> dict[str, Any] | None:
        name = self.ref(bucket_logical)
        return self._resource_policy("AWS::S3::BucketPolicy", lambda p: p["Bucket"] == name)

    def bucket_by_name(self, name: str) -> str:
        return self._by_ref("AWS::S3::Bucket", name)

    def bucket_key(self, bucket_logical: str) -> str | None:
        """The ARN of the bucket's default SSE-KMS key (``None`` for SSE-S3)."""
        rules = self.props(bucket_logical)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        default = rules[0]["ServerSideEncryptionByDefault"]
        return default.get("KMSMasterKeyID") if default["SSEAlgorithm"] == "aws:kms" else None

    def key_logical(self, arn_or_id: str) -> str:
        for logical in self.of_type("AWS::KMS::Key"):
            if arn_or_id in (self.ref(logical), self.att(logical, "Arn")):
                return logical
        raise KeyError("a KMS key that is not the stack's")

    def key_policy(self, arn_or_id: str) -> dict[str, Any]:
        policy: dict[str, Any] = self.props(self.key_logical(arn_or_id))["KeyPolicy"]
        return policy

    def queue_policy(self, queue_logical: str) -> dict[str, Any] | None:
        url = self.ref(queue_logical)
        return self._resource_policy("AWS::SQS::QueuePolicy", lambda p: url in p["Queues"])

    def queue_by_url(self, url: str) -> str:
        return self._by_ref("AWS::SQS::Queue", url)

    def role_of_function(self, function_logical: str) -> str:
        arn = self.props(function_logical)["Role"]
        for logical in self.of_type("AWS::IAM::Role"):
            if self.att(logical, "Arn") == arn:
                return logical
        raise KeyError(f"no role for {function_logical}")


__all__ = ["ACCOUNT", "REGION", "Stack", "rendered"]
