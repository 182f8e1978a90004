"""What the Lambda functions are handed: S3, EventBridge, SQS, Pipes and batch events.

Every shape reduces to a list of :class:`ObjectRef` (bucket, key, size and, for SQS, the
message id that a partial batch failure names). Keys arrive URL-encoded in S3 and
EventBridge notifications (spaces as ``+``); Powertools' data classes decode them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from src.errors import ConfigurationError


@dataclass(frozen=True)
class ObjectRef:
    """One S3 object to process. ``key`` can hold PHI: it never leaves the function."""

    bucket: str
    key: str
    size: int = -1
    message_id: str = ""


def object_from_event(event: dict[str, Any]) -> tuple[str, str]:
    """Return ``(bucket, key)`` from an S3 notification, an EventBridge event or a flat event.

    A flat ``{"bucket", "key"}`` event (the backfill map's items) is taken as it is.

    Raises
    ------
    ConfigurationError
        If the event names no object, or more than one.
    """
    refs = objects_from_event(event)
    if len(refs) != 1:
        raise ConfigurationError(f"expected one object per event, got {len(refs)}")
    return refs[0].bucket, refs[0].key


def objects_from_event(event: Any) -> list[ObjectRef]:
    """Every object an event names, in order.

    Accepts a list (what an EventBridge Pipe hands a state machine), ``{"Items": [...]}``
    (a Distributed Map batch, less the objects it routed elsewhere), SQS records whose
    bodies are EventBridge or S3 events, S3 notifications, EventBridge events and flat
    ``{"bucket", "key"}`` items.
    """
    if isinstance(event, list):
        return [ref for item in event if not routed(item) for ref in objects_from_event(item)]
    if not isinstance(event, dict):
        raise ConfigurationError("the event is not a JSON object")
    if "input" in event and isinstance(event["input"], dict):
        return objects_from_event(event["input"])
    if isinstance(event.get("Items"), list):
        return objects_from_event(event["Items"])
    if "Records" in event:
        return _records(event)
    if event.get("eventSource") == "aws:sqs" or ("body" in event and "messageId" in event):
        return _sqs_message(event)
    if "detail" in event:
        from aws_lambda_powertools.utilities.data_classes.s3_event import (
            S3EventBridgeNotificationEvent,
        )

        eb = S3EventBridgeNotificationEvent(event)
        size = event.get("detail", {}).get("object", {}).get("size", -1)
        return [ObjectRef(eb.detail.bucket.name, eb.detail.object.key, int(size))]
    bucket = event.get("bucket") or event.get("Bucket")
    key = event.get("key") or event.get("Key")
    if isinstance(bucket, str) and isinstance(key, str) and bucket and key:
        size = event.get("size", event.get("Size"))
        return [ObjectRef(bucket, key, int(size) if isinstance(size, int | str) else -1)]
    raise ConfigurationError("the event names no S3 object (bucket and key)")


def routed(item: Any) -> bool:
    """Whether a batch entry stands for an object the workflow sent elsewhere.

    The backfill's per-object Choice replaces an object of ``LargeObjectBytes`` or more
    with ``{"routed": "large-object"}`` once it has started the large-object state machine.
    """
    return isinstance(item, dict) and set(item) == {"routed"}


def _records(event: dict[str, Any]) -> list[ObjectRef]:
    records = event["Records"] or []
    if isinstance(records, dict):  # one event wrapped by the state machine
        return objects_from_event(records)
    if records and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records):
        return [ref for record in records for ref in _sqs_message(record)]
    from aws_lambda_powertools.utilities.data_classes import S3Event

    out = []
    for record in S3Event(event).records:
        obj = record.s3.get_object
        out.append(ObjectRef(record.s3.bucket.name, unquote_plus(obj.key), obj.size or -1))
    return out


def _sqs_message(message: dict[str, Any]) -> list[ObjectRef]:
    try:
        body = json.loads(message.get("body") or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigurationError("an SQS message body is not JSON") from exc
    refs = objects_from_event(body)
    mid = str(message.get("messageId") or "")
    return [ObjectRef(r.bucket, r.key, r.size, mid) for r in refs]


__all__ = ["ObjectRef", "object_from_event", "objects_from_event", "routed"]
