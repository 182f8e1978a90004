"""One Lambda invocation's objects: an SQS batch, a Distributed Map batch or one object.

SQS messages (what an EventBridge Pipe hands the Express machine) go through Powertools'
:class:`~aws_lambda_powertools.utilities.batch.BatchProcessor`: a message whose object
meets a transient fault, or a defect of ours, is named in ``batchItemFailures`` and
redelivered alone (a poison message reaches the dead-letter queue by itself); one with a
permanent fault is sent to the dead-letter queue at once, with the fault's code. A
Distributed Map batch or a single object raises :class:`TransientError` for the state
machine's Retry; a permanent fault is one ``failed`` result in a batch, and
:class:`PermanentError` for a single object (its execution fails and alarms).
"""

from __future__ import annotations

import logging
from typing import Any

from src.errors import PipelineError
from src.orchestration import lambda_runtime as rt
from src.orchestration.events import ObjectRef, objects_from_event
from src.orchestration.faults import (
    PERMANENT,
    TRANSIENT,
    PermanentError,
    TransientError,
    error_code,
    fault_kind,
    log_permanent,
    log_retry,
)

logger = logging.getLogger("src.orchestration.lambda_handlers")


def sqs_batch(
    records: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Each SQS message's objects; returns the results and the messages to redeliver."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

    results: list[dict[str, Any]] = []

    def record_handler(record: SQSRecord) -> None:
        for ref in objects_from_event(record.raw_event):
            try:
                results.append(one(ref))
            except Exception as exc:
                kind = fault_kind(exc)
                if kind != PERMANENT:
                    log_retry("instance", error_code(exc))
                    raise
                oid = object_id_of(ref)
                rt.dead_letter(record.raw_event, oid, error_code(exc))
                log_permanent(oid, exc, "dead-letter queue")
                results.append({"object_id": oid, "status": "failed", "reason": error_code(exc)})

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    with processor(records=records, handler=record_handler):
        processor.process()
    failures = processor.response()["batchItemFailures"]
    return results, [{"itemIdentifier": str(f["itemIdentifier"])} for f in failures]


def object_batch(refs: list[ObjectRef], *, batch: bool) -> list[dict[str, Any]]:
    """Each object of a Distributed Map batch (``batch``) or the one object of an event.

    Raises
    ------
    TransientError
        For a transient fault: the state machine's Retry redoes the call.
    PermanentError
        For a permanent fault of a single object (not in any Retry).
    """
    results = []
    for ref in refs:
        try:
            results.append(one(ref))
        except Exception as exc:
            kind = fault_kind(exc)
            if kind == TRANSIENT:
                # The caller's Retry redoes the batch whole (what was already written
                # is recognised by its owner and skipped).
                raise TransientError(f"InstanceHandler: {error_code(exc)}") from None
            if kind is None:
                raise
            oid = object_id_of(ref)
            if not batch:
                log_permanent(oid, exc, "failed execution")
                raise PermanentError(f"InstanceHandler: {error_code(exc)}") from None
            log_permanent(oid, exc, "backfill results")
            results.append({"object_id": oid, "status": "failed", "reason": error_code(exc)})
    return results


def object_id_of(ref: ObjectRef) -> str:
    """The object's keyed id, or ``unknown`` when no key can be read."""
    from src.orchestration.one_pass import object_id

    try:
        return object_id(rt.key(), ref)
    except PipelineError:  # no usable key: the fault itself is what is reported
        return "unknown"


def one(ref: ObjectRef) -> dict[str, Any]:
    """One object's PHI-free state (with its index row under ``_index``)."""
    from src.orchestration.one_pass import SourceMissingError, process_object

    try:
        result = process_object(ref)
    except SourceMissingError:
        # Deleted before it was read: nothing to process or quarantine.
        oid = object_id_of(ref)
        logger.warning(
            "Object missing",
            extra={"operation": "instance", "status": "missing", "details": {"object_id": oid}},
        )
        return {"object_id": oid, "status": "missing"}
    state = result.as_state()
    if result.index:
        state["_index"] = result.index
    return state


__all__ = ["PERMANENT", "TRANSIENT", "object_batch", "object_id_of", "one", "sqs_batch"]
