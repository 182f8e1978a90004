"""Per-container state of the Lambda functions: the key, the core and the stores.

Built once per warm container and rebuilt only when the (cached) key changes. The
shell's configuration comes from the environment, resolved here and passed into the
core, which never reads it itself.

Environment
-----------
MEDPIPE_PROCESSED_BUCKET, MEDPIPE_QUARANTINE_BUCKET, MEDPIPE_OPERATIONS_BUCKET
    Where de-identified files, quarantined inputs and results (index rows, backfill
    reports) go. The operations bucket is optional for the per-object handlers.
MEDPIPE_KEY_SECRET_ID or MEDPIPE_KEY_PARAMETER
    The de-identification key in Secrets Manager or SSM (cached for five minutes).
MEDPIPE_PROFILE
    Optional JSON object of PS3.15 options, as in the ``[profile]`` TOML table.
MEDPIPE_KMS_KEY_ID
    Optional: send SSE-KMS with this key on every write. Leave it unset with the
    template's buckets: their default (SSE-KMS with the stack's keys) applies.
MEDPIPE_DEAD_LETTER_QUEUE_URL
    Where an SQS message whose object met a permanent fault (access denied, a missing
    bucket) goes at once, with the fault's code as the ``medpipe-reason`` attribute.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from src.errors import ConfigurationError
from src.ingestion.dicom_parser import DICOMParser
from src.instance.pipeline import InstancePipeline, schema_validation

METRIC_NAMESPACE = "MedicalImaging/Pipeline"
SERVICE = "medpipe"

STATE: dict[str, Any] = {}


def env(name: str) -> str:
    """A required environment variable.

    Raises
    ------
    ConfigurationError
        Naming the variable when it is not set.
    """
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@functools.cache
def parser() -> DICOMParser:
    return DICOMParser()


def profile() -> Any:
    from src.ingestion.annex_e.profile import ConfidentialityProfile

    raw = os.environ.get("MEDPIPE_PROFILE")
    if not raw:
        return ConfidentialityProfile()
    try:
        return ConfidentialityProfile.from_mapping(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"MEDPIPE_PROFILE is invalid: {exc}") from exc


def key() -> bytes:
    from src.orchestration.secrets import get_deidentification_key

    return get_deidentification_key()


def pipeline() -> InstancePipeline:
    """The core, rebuilt only when the key changes."""
    from src.ingestion.deidentifier import Deidentifier

    current = key()
    if STATE.get("pipeline") is None or STATE.get("key") != current:
        deid = Deidentifier(profile=profile(), key=current, parser=parser())
        STATE["pipeline"] = InstancePipeline(deid, schema_validation)
        STATE["key"] = current
    pipe: InstancePipeline = STATE["pipeline"]
    return pipe


def store(bucket: str) -> Any:
    """The S3 store of ``bucket`` (one S3 client per container, shared by the buckets)."""
    from src.storage.store import open_store

    stores: dict[str, Any] = STATE.setdefault("stores", {})
    if bucket not in stores:
        region = os.environ.get("AWS_REGION", "us-east-1")
        if "s3" not in STATE:
            # One client for every bucket: each boto3 session and client costs a cold
            # start some 100-300 ms of loading service models.
            from src.aws import make_client

            STATE["s3"] = make_client("s3", region_name=region)
        options: dict[str, Any] = {"region_name": region, "s3_client": STATE["s3"]}
        if os.environ.get("MEDPIPE_KMS_KEY_ID"):
            options["kms_key_id"] = os.environ["MEDPIPE_KMS_KEY_ID"]
        stores[bucket] = open_store(f"s3://{bucket}", **options)
    return stores[bucket]


def dead_letter(message: dict[str, Any], object_id: str, reason: str) -> None:
    """Send an SQS message to the dead-letter queue now, with a PHI-free reason.

    The body is the message's own (the queue's trust zone already holds it); the
    attributes name the fault's code and the object's keyed id, never its key.

    Raises
    ------
    ConfigurationError
        If ``MEDPIPE_DEAD_LETTER_QUEUE_URL`` is not set.
    StorageError
        If the queue refused the message (the message is then redelivered).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    from src.aws import make_client, translate_client_error

    url = env("MEDPIPE_DEAD_LETTER_QUEUE_URL")
    if "sqs" not in STATE:
        STATE["sqs"] = make_client("sqs", region_name=os.environ.get("AWS_REGION", "us-east-1"))
    attributes = {
        "medpipe-reason": {"DataType": "String", "StringValue": reason},
        "medpipe-object-id": {"DataType": "String", "StringValue": object_id},
    }
    try:
        STATE["sqs"].send_message(
            QueueUrl=url, MessageBody=str(message.get("body") or "{}"), MessageAttributes=attributes
        )
    except (ClientError, BotoCoreError) as exc:
        raise translate_client_error(exc, "dead_letter", "the dead-letter queue") from exc


def metrics() -> Any:
    from aws_lambda_powertools import Metrics

    if "metrics" not in STATE:
        STATE["metrics"] = Metrics(namespace=METRIC_NAMESPACE, service=SERVICE)
    return STATE["metrics"]


def metric(name: str, value: float, unit: str) -> None:
    """Record a metric in Embedded Metric Format (printed with the invocation's logs)."""
    metrics().add_metric(name=name, unit=unit, value=value)


__all__ = [
    "STATE",
    "dead_letter",
    "env",
    "key",
    "metric",
    "metrics",
    "parser",
    "pipeline",
    "profile",
    "store",
]
