"""Lambda handlers of the serverless pipeline: thin adapters around the core.

The state machines call one function, :data:`instance_handler`: one pass per object
(download once, parse once, validate, de-identify, upload once) through
:func:`~src.orchestration.one_pass.process_object`, the same per-instance core that
``medpipe run`` uses. It takes one object or a batch (an EventBridge Pipe's SQS
messages, a Distributed Map's ``ItemBatcher`` batch) and returns one PHI-free result per
object. Throttling and service faults are raised as :class:`TransientError` (a single
object, a Distributed Map batch) or reported as ``batchItemFailures`` (SQS messages), so
they are retried and never quarantined.

The documented ``IngestionHandler``, ``ValidationHandler`` and
``DeidentificationHandler`` keep their API document shapes; they run the same core.
Errors become the documented error shape (``statusCode``, ``error``, ``message``,
``details``). Environment: see :mod:`src.orchestration.lambda_runtime`.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any, TypeVar

from src.errors import (
    ConfigurationError,
    InvalidDICOMError,
    MetadataValidationError,
    PipelineError,
    ThrottlingError,
    error_response,
)
from src.ingestion.dicom_parser import quiet_pydicom
from src.monitoring.logs import configure_logging
from src.orchestration import batch as batch_of_objects
from src.orchestration import lambda_runtime as rt
from src.orchestration.events import object_from_event, objects_from_event, routed
from src.orchestration.faults import (
    PERMANENT,
    TRANSIENT,
    PermanentError,
    TransientError,
    fault_kind,
    log_retry,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

METRIC_NAMESPACE = rt.METRIC_NAMESPACE
SERVICE = rt.SERVICE
_STATE = rt.STATE


def lambda_handler_wrapper(handler_class: type[T]) -> type[T]:
    """Give a handler class standard error handling, logging and response shape.

    The class's ``handle(event, context)`` is wrapped so that project errors become the
    documented error response, unexpected errors become a generic 500 (their text can
    quote data, so it is not returned), and throttling is raised as
    :class:`TransientError` for the state machine to retry. Each call is logged as one
    JSON line with the operation, status and duration.

    Examples
    --------
    >>> @lambda_handler_wrapper
    ... class MyHandler:
    ...     def handle(self, event, context):
    ...         return {"statusCode": 200, "body": {"ok": True}}
    >>> MyHandler().handle({}, None)["statusCode"]
    200
    """
    original: Callable[..., dict[str, Any]] = handler_class.handle  # type: ignore[attr-defined]
    operation = handler_class.__name__

    @functools.wraps(original)
    def handle(self: Any, event: dict[str, Any], context: Any) -> dict[str, Any]:
        started = time.perf_counter()
        status = "completed"
        try:
            response = original(self, event, context)
        except TransientError:
            status = "retry"
            log_retry(operation, "TransientError")
            raise
        except ThrottlingError as exc:
            status = "retry"
            log_retry(operation, exc.aws_error_code or "throttled")
            raise TransientError(f"{operation}: {exc.aws_error_code or 'throttled'}") from None
        except PipelineError as exc:
            status = "rejected"
            response = error_response(exc)
        except Exception as exc:
            status = "failed"
            logger.error(
                "Unexpected error",
                extra={
                    "operation": operation,
                    "status": status,
                    "details": {"error_type": type(exc).__name__},
                },
            )
            response = error_response(exc)
        logger.info(
            "Handled event",
            extra={
                "operation": operation,
                "status": status,
                "details": {
                    "statusCode": response.get("statusCode"),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            },
        )
        return response

    handler_class.handle = handle  # type: ignore[attr-defined]
    return handler_class


@lambda_handler_wrapper
class InstanceHandler:
    """The one pass, for one object or a batch; returns a PHI-free result per object.

    SQS messages (what an EventBridge Pipe hands the Express machine) go through
    Powertools' :class:`BatchProcessor`: a message whose object meets a transient fault, or
    a defect of ours, is named in ``batchItemFailures`` and redelivered alone (a poison
    message reaches the dead-letter queue by itself); one with a permanent fault is sent to
    the dead-letter queue at once with the fault's code. A Distributed Map batch or a
    single object raises :class:`TransientError` for the state machine's Retry; a
    permanent fault is one ``failed`` result in a batch, and :class:`PermanentError` for a
    single object.
    """

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        records = event.get("Records") if isinstance(event, dict) else None
        if (
            isinstance(records, list)
            and records
            and all(isinstance(r, dict) and r.get("eventSource") == "aws:sqs" for r in records)
        ):
            results, failures = batch_of_objects.sqs_batch(records)
        else:
            batch = isinstance(event, dict) and isinstance(event.get("Items"), list)
            results = batch_of_objects.object_batch(objects_from_event(event), batch=batch)
            failures = []
        rows = [r.pop("_index") for r in results if r.get("_index")]
        for r in results:
            r.pop("_index", None)
        if rows and os.environ.get("MEDPIPE_OPERATIONS_BUCKET"):
            from src.storage.index_table import put_index_rows

            put_index_rows(rt.store(os.environ["MEDPIPE_OPERATIONS_BUCKET"]), rows, results)
        counts = {s: sum(r["status"] == s for r in results) for s in ("processed", "quarantined")}
        if isinstance(event, dict) and isinstance(event.get("Items"), list):
            counts["routed_to_large_object"] = sum(map(routed, event["Items"]))
        return {
            "statusCode": 200,
            "body": {"results": results, **counts},
            "batchItemFailures": failures,
        }


@lambda_handler_wrapper
class IngestionHandler:
    """Fetch the uploaded object, parse and validate it in-process, and return the
    de-identified metadata projection (no PHI leaves the function)."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        bucket, key = object_from_event(event)
        result, size = _run_core(bucket, key)
        return {
            "statusCode": 200,
            "body": {"bucket": bucket, "key": key, "size": size, "metadata": result.index},
        }


@lambda_handler_wrapper
class ValidationHandler:
    """Validate metadata against the pydantic schemas."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from pydantic import ValidationError

        from src.instance.pipeline import validation_reason
        from src.validation.schemas import DICOMMetadataModel

        metadata = event.get("metadata")
        if not isinstance(metadata, dict):
            raise MetadataValidationError("the event holds no metadata object")
        try:
            model = DICOMMetadataModel(**metadata)
        except ValidationError as exc:
            fields = sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
            response = error_response(
                MetadataValidationError(validation_reason(exc), details={"fields": fields})
            )
            response["body"] = {"valid": False, "fields": fields}
            return response
        return {
            "statusCode": 200,
            "body": {"valid": True, "metadata": model.model_dump(mode="json")},
        }


@lambda_handler_wrapper
class DeidentificationHandler:
    """De-identify the object and write it to the processed bucket (the API document's
    response; the state machines use :class:`InstanceHandler`, which returns no keys)."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from src.storage.store import commit_instance

        bucket, key = object_from_event(event)
        processed = rt.env("MEDPIPE_PROCESSED_BUCKET")
        with tempfile.TemporaryDirectory(prefix="medpipe-") as work:
            result, _ = _run_core(bucket, key, work)
            from src.orchestration.events import ObjectRef
            from src.orchestration.one_pass import object_id

            owner = object_id(rt.key(), ObjectRef(bucket, key))
            commit_instance(
                rt.store(processed), result.output_key, result.output_path, owner, claimed=False
            )
        return {
            "statusCode": 200,
            "body": {
                "input_key": key,
                "output_key": result.output_key,
                "output_bucket": processed,
                "removed_tags": result.report.removed_tags,
                "burned_in_annotation_risk": result.burned_in_annotation_risk,
            },
        }


@lambda_handler_wrapper
class IndexHandler:
    """Turn the JSON rows an instance invocation left under ``index-rows/`` into Parquet,
    and rewrite the row of each series they touch (:mod:`src.records.series_objects`).

    Started by EventBridge when such an object is created in the operations bucket; the
    Parquet object under ``index/`` of the processed bucket (de-identified, read by the
    same consumers with the same key as the outputs) takes the same name, so a repeated
    event rewrites it.
    """

    def handle(self, event: Any, context: Any) -> dict[str, Any]:
        from src.records.series_objects import update_series
        from src.storage.index_table import compact_index_rows, read_pending_rows

        written, series = [], []
        processed = rt.store(rt.env("MEDPIPE_PROCESSED_BUCKET"))
        for ref in objects_from_event(event):
            if ref.bucket != os.environ.get("MEDPIPE_OPERATIONS_BUCKET"):
                raise ConfigurationError("index event for a bucket other than the operations one")
            operations = rt.store(ref.bucket)
            rows = read_pending_rows(operations, ref.key)
            written.append(compact_index_rows(operations, ref.key, processed, rows=rows))
            # The series table: each touched series' row, rewritten from its members.
            series.extend(update_series(processed, rows))
        logger.info(
            "Index rows compacted",
            extra={
                "operation": "index",
                "status": "ok",
                "details": {"objects": len(written), "series": len(series)},
            },
        )
        return {"statusCode": 200, "body": {"written": written, "series": series}}


def _run_core(bucket: str, key: str, work: str | None = None) -> tuple[Any, int]:
    """Download once and run the core; a refusal is an :class:`InvalidDICOMError` (400)."""
    from src.instance.pipeline import InstanceRefusedError, Reason

    with tempfile.TemporaryDirectory(prefix="medpipe-") as scratch:
        folder = work or scratch
        original = os.path.join(folder, "object.bin")
        rt.store(bucket).fetch(key, original)
        try:
            result = rt.pipeline().process(
                original, os.path.join(folder, "deidentified.dcm"), label="object"
            )
        except InstanceRefusedError as exc:
            if exc.reason is Reason.FAILED_VALIDATION:
                raise MetadataValidationError(exc.message, details=exc.details) from None
            raise InvalidDICOMError("object", exc.message) from None
        return result, os.path.getsize(original)


def _entry(handler: Any) -> Callable[[Any, Any], dict[str, Any]]:
    def entry(event: Any, context: Any) -> dict[str, Any]:
        if not _STATE.get("configured"):
            configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
            quiet_pydicom()
            _STATE["configured"] = True
        metrics = rt.metrics()
        try:
            response: dict[str, Any] = handler.handle(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()
        return response

    return entry


instance_handler = _entry(InstanceHandler())
index_handler = _entry(IndexHandler())
ingestion_handler = _entry(IngestionHandler())
validation_handler = _entry(ValidationHandler())
deidentification_handler = _entry(DeidentificationHandler())

__all__ = [
    "PERMANENT",
    "TRANSIENT",
    "DeidentificationHandler",
    "IndexHandler",
    "IngestionHandler",
    "InstanceHandler",
    "PermanentError",
    "TransientError",
    "ValidationHandler",
    "deidentification_handler",
    "fault_kind",
    "index_handler",
    "ingestion_handler",
    "instance_handler",
    "lambda_handler_wrapper",
    "object_from_event",
    "validation_handler",
]
