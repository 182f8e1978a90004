"""Every AWS request the stack makes, as IAM sees it, and its verdict from a real evaluator.

Three sources of requests:

- :class:`Recorder` wraps botocore's ``BaseClient._make_api_call`` while an entry point of
  our code runs on moto, so each API call our code (and Powertools) sends is captured with
  its parameters, and attributed to the role of the function that made it;
- :func:`service_requests` derives what AWS services do on the stack's behalf from the
  rendered template's own wiring (the Pipe reading its queue and starting its machine,
  rules delivering to queues, machines and functions, state machines invoking functions,
  the Distributed Map's ItemReader and ResultWriter, CloudWatch publishing alarms, Lambda
  writing logs);
- the test's own people: uploaders, operators and consumers named in the parameters.

:meth:`Translator.for_call` turns one API call into the IAM requests it implies, the KMS
ones included (S3 with SSE-KMS and Bucket Keys, SQS with a CMK, Secrets Manager), with the
context keys AWS sets (``aws:SecureTransport``, ``s3:TlsVersion``, ``s3:authType``,
``kms:ViaService``, encryption headers). :func:`evaluate` sends them all to
``@cloud-copilot/iam-simulate`` in one node process and returns the verdicts.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.rendered_stack import ACCOUNT, REGION, Stack

ROOT = Path(__file__).resolve().parents[2]
SIMULATOR = Path(__file__).with_name("iam_simulate.cjs")
TOOLS = ROOT / "tools"
ALLOWED = "Allowed"


@dataclass
class Request:
    """One request as IAM evaluates it, with what the test expects of it."""

    label: str
    principal: str
    action: str
    resource: str
    context: dict[str, Any]
    identity: list[dict[str, Any]] = field(default_factory=list)
    resource_policy: dict[str, Any] | None = None
    expect: str = ALLOWED

    def simulation(self, index: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(index),
            "request": {
                "principal": self.principal,
                "action": self.action,
                "resource": {"resource": self.resource, "accountId": ACCOUNT},
                "contextVariables": self.context,
            },
            "identityPolicies": self.identity,
            "serviceControlPolicies": [],
            "resourceControlPolicies": [],
        }
        if self.resource_policy is not None:
            out["resourcePolicy"] = self.resource_policy
        return out


def evaluate(requests: list[Request]) -> list[dict[str, Any]]:
    """The simulator's verdict for each request, in order."""
    home = TOOLS
    done = subprocess.run(
        ["node", str(SIMULATOR)],
        input=json.dumps([r.simulation(i) for i, r in enumerate(requests)]),
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "IAM_SIMULATE_HOME": str(home)},
        timeout=300,
    )
    if done.returncode:
        raise AssertionError(f"iam-simulate failed: {done.stderr[-3000:]}")
    verdicts: list[dict[str, Any]] = json.loads(done.stdout)
    return verdicts


# -- recording our code's calls ----------------------------------------------------------
class Recorder:
    """Capture each botocore API call, attributed to the role that would make it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any]]] = []
        self.role: str | None = None

    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        recorder = self

        def spy(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if recorder.role is not None:
                service = client.meta.service_model.service_name
                recorder.calls.append((recorder.role, service, operation, dict(params)))
            return original(client, operation, params)

        BaseClient._make_api_call = spy  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    @contextlib.contextmanager
    def as_role(self, role: str) -> Iterator[None]:
        self.role = role
        try:
            yield
        finally:
            self.role = None


# -- one call -> IAM requests --------------------------------------------------------------
def session(stack: Stack, role: str) -> tuple[str, dict[str, Any]]:
    """The principal of a role's session and the context keys AWS sets for it."""
    arn = stack.att(role, "Arn")
    name = arn.rsplit("/", 1)[-1]
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{name}/session", {
        "aws:PrincipalArn": arn,
        "aws:PrincipalAccount": ACCOUNT,
        "aws:SecureTransport": "true",
    }


def s3_context(auth: str = "REST-HEADER", tls: str = "1.3") -> dict[str, Any]:
    return {"s3:TlsVersion": tls, "s3:authType": auth, "s3:signatureversion": "AWS4-HMAC-SHA256"}


class Translator:
    """Turn API calls into IAM requests against one :class:`Stack`'s policies."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def for_call(
        self, role: str, service: str, operation: str, params: dict[str, Any]
    ) -> list[Request]:
        principal, base = session(self.stack, role)
        identity = self.stack.identity_policies(role)
        label = f"{role} {service}:{operation}"
        handler = getattr(self, f"_{service}_{operation}", None)
        if handler is None:
            raise AssertionError(f"no IAM mapping for {service}:{operation}: add one")
        out: list[Request] = handler(label, principal, base, identity, params)
        return out

    # S3 ---------------------------------------------------------------------------------
    def _bucket(self, name: str) -> tuple[str, str]:
        logical = self.stack.bucket_by_name(name)
        return logical, f"arn:aws:s3:::{name}"

    def _s3(
        self,
        label: str,
        principal: str,
        base: dict[str, Any],
        identity: list[Any],
        action: str,
        bucket: str,
        key: str | None,
        extra: dict[str, Any] | None = None,
    ) -> Request:
        logical, arn = self._bucket(bucket)
        return Request(
            f"{label} {logical}",
            principal,
            action,
            f"{arn}/{key}" if key is not None else arn,
            {**base, **s3_context(), **(extra or {})},
            identity,
            self.stack.bucket_policy(logical),
        )

    def _kms_via(
        self,
        label: str,
        principal: str,
        base: dict[str, Any],
        identity: list[Any],
        action: str,
        key_arn: str,
        service: str,
        context: dict[str, Any] | None = None,
    ) -> Request:
        arn = (
            key_arn
            if key_arn.startswith("arn:")
            else self.stack.att(self.stack.key_logical(key_arn), "Arn")
        )
        return Request(
            f"{label} -> {action} {self.stack.key_logical(key_arn)}",
            principal,
            action,
            arn,
            {
                **base,
                "kms:ViaService": f"{service}.{REGION}.amazonaws.com",
                "kms:CallerAccount": ACCOUNT,
                **(context or {}),
            },
            identity,
            self.stack.key_policy(key_arn),
        )

    def _object_key(self, bucket: str, params: dict[str, Any]) -> str | None:
        if params.get("ServerSideEncryption") == "aws:kms":
            return params.get("SSEKMSKeyId") or "aws/s3"
        if params.get("ServerSideEncryption"):
            return None
        return self.stack.bucket_key(self.stack.bucket_by_name(bucket))

    def _put(self, label, principal, base, identity, params, *, decrypt=False):  # type: ignore[no-untyped-def]
        bucket, key = params["Bucket"], params["Key"]
        headers: dict[str, Any] = {}
        if params.get("ServerSideEncryption"):
            headers["s3:x-amz-server-side-encryption"] = params["ServerSideEncryption"]
        if params.get("SSEKMSKeyId"):
            headers["s3:x-amz-server-side-encryption-aws-kms-key-id"] = params["SSEKMSKeyId"]
        out = [self._s3(label, principal, base, identity, "s3:PutObject", bucket, key, headers)]
        kms_key = self._object_key(bucket, params)
        if kms_key and kms_key != "aws/s3":
            context = {"kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}"}
            out.append(
                self._kms_via(
                    label, principal, base, identity, "kms:GenerateDataKey", kms_key, "s3", context
                )
            )
            if decrypt:
                out.append(
                    self._kms_via(
                        label, principal, base, identity, "kms:Decrypt", kms_key, "s3", context
                    )
                )
        return out

    def _s3_PutObject(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return self._put(label, principal, base, identity, params)

    def _s3_CreateMultipartUpload(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return self._put(label, principal, base, identity, params, decrypt=True)

    def _s3_UploadPart(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return [
            self._s3(
                label, principal, base, identity, "s3:PutObject", params["Bucket"], params["Key"]
            )
        ]

    def _s3_CompleteMultipartUpload(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return self._s3_UploadPart(label, principal, base, identity, params)

    def _s3_AbortMultipartUpload(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return [
            self._s3(
                label,
                principal,
                base,
                identity,
                "s3:AbortMultipartUpload",
                params["Bucket"],
                params["Key"],
            )
        ]

    def _s3_GetObject(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        bucket, key = params["Bucket"], params["Key"]
        out = [self._s3(label, principal, base, identity, "s3:GetObject", bucket, key)]
        kms_key = self.stack.bucket_key(self.stack.bucket_by_name(bucket))
        if kms_key:
            context = {"kms:EncryptionContext:aws:s3:arn": f"arn:aws:s3:::{bucket}"}
            out.append(
                self._kms_via(
                    label, principal, base, identity, "kms:Decrypt", kms_key, "s3", context
                )
            )
        return out

    def _s3_HeadObject(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        return [
            self._s3(
                label, principal, base, identity, "s3:GetObject", params["Bucket"], params["Key"]
            )
        ]

    def _s3_ListObjectsV2(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        extra = {"s3:prefix": params.get("Prefix", "")}
        return [
            self._s3(
                label, principal, base, identity, "s3:ListBucket", params["Bucket"], None, extra
            )
        ]

    def _s3_CopyObject(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        source = params["CopySource"]
        get = self._s3_GetObject(
            label, principal, base, identity, {"Bucket": source["Bucket"], "Key": source["Key"]}
        )
        return get + self._put(label, principal, base, identity, params)

    # Secrets Manager, SQS -------------------------------------------------------------------
    def _secretsmanager_GetSecretValue(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        (secret,) = self.stack.of_type("AWS::SecretsManager::Secret")
        arn = self.stack.ref(secret)
        key = self.stack.props(secret)["KmsKeyId"]
        return [
            Request(label, principal, "secretsmanager:GetSecretValue", arn, base, identity),
            self._kms_via(label, principal, base, identity, "kms:Decrypt", key, "secretsmanager"),
        ]

    def _sqs_SendMessage(self, label, principal, base, identity, params):  # type: ignore[no-untyped-def]
        queue = self.stack.queue_by_url(params["QueueUrl"])
        return self.send_to_queue(label, principal, base, identity, queue)

    def send_to_queue(self, label, principal, base, identity, queue):  # type: ignore[no-untyped-def]
        arn = self.stack.att(queue, "Arn")
        out = [
            Request(
                f"{label} {queue}",
                principal,
                "sqs:SendMessage",
                arn,
                base,
                identity,
                self.stack.queue_policy(queue),
            )
        ]
        key = self.stack.props(queue).get("KmsMasterKeyId")
        if key:
            for action in ("kms:GenerateDataKey", "kms:Decrypt"):
                out.append(self._kms_via(label, principal, base, identity, action, key, "sqs"))
        return out


__all__ = ["ALLOWED", "Recorder", "Request", "Translator", "evaluate", "s3_context", "session"]
