"""Lambda handlers of the serverless pipeline: thin adapters around the core.

Each handler unpacks its event, calls the ingestion, validation or de-identification core,
and shapes the documented response. Errors become the documented error shape
(``statusCode``, ``error``, ``message``, ``details``): 400 for invalid DICOM or failed
validation, 404 for a missing object, 500 for anything else. Throttling and service
unavailability (503) are *raised* as :class:`TransientError`, so the state machine's
``Retry`` can back off and try again.

Step Functions keeps every state's input and output in its execution history, so no
response here carries PHI: the ``metadata`` that ingestion returns is the de-identified
projection of the file (pseudonymous IDs and UIDs, shifted dates); the original is
validated inside the function and never leaves it.

Entry points (``Handler`` in the template): ``ingestion_handler``,
``validation_handler``, ``deidentification_handler`` and ``quarantine_handler``.

Environment
-----------
MEDPIPE_PROCESSED_BUCKET, MEDPIPE_QUARANTINE_BUCKET
    Where de-identified files and quarantined inputs go.
MEDPIPE_KEY_SECRET_ID or MEDPIPE_KEY_PARAMETER
    The de-identification key in Secrets Manager or SSM (cached for the warm container).
MEDPIPE_PROFILE
    Optional JSON object of PS3.15 options, as in the ``[profile]`` TOML table.
"""

from __future__ import annotations

import functools
import json
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
from src.ingestion.dicom_parser import DICOMParser, quiet_pydicom
from src.ingestion.metadata_extractor import MetadataExtractor
from src.monitoring.logs import configure_logging

logger = logging.getLogger(__name__)
T = TypeVar("T")

METRIC_NAMESPACE = "MedicalImaging/Pipeline"
SERVICE = "medpipe"


class TransientError(Exception):
    """Raised to the Lambda runtime so that Step Functions retries with backoff."""


# -- event parsing --------------------------------------------------------------------


def object_from_event(event: dict[str, Any]) -> tuple[str, str]:
    """Return ``(bucket, key)`` from an S3 notification, an EventBridge event or a flat event.

    Keys arrive URL-encoded in S3 and EventBridge notifications (spaces as ``+``);
    Powertools' data classes decode them. A flat ``{"bucket", "key"}`` event (the backfill
    map's items) is taken as it is.

    Raises
    ------
    ConfigurationError
        If the event names no object, or more than one.
    """
    from aws_lambda_powertools.utilities.data_classes import S3Event
    from aws_lambda_powertools.utilities.data_classes.s3_event import (
        S3EventBridgeNotificationEvent,
    )

    if "input" in event and isinstance(event["input"], dict):
        event = event["input"]
    if "Records" in event:
        records = event["Records"] or []
        if len(records) != 1:
            raise ConfigurationError(f"expected one S3 record per event, got {len(records)}")
        s3_event = S3Event(event)
        return s3_event.bucket_name, s3_event.object_key
    if "detail" in event:
        eb = S3EventBridgeNotificationEvent(event)
        return eb.detail.bucket.name, eb.detail.object.key
    bucket, key = event.get("bucket"), event.get("key")
    if isinstance(bucket, str) and isinstance(key, str) and bucket and key:
        return bucket, key
    raise ConfigurationError("the event names no S3 object (bucket and key)")


# -- the decorator --------------------------------------------------------------------


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
        except ThrottlingError as exc:
            status = "retry"
            logger.warning(
                "Transient failure; raising for retry",
                extra={
                    "operation": operation,
                    "status": status,
                    "details": {"aws_error_code": exc.aws_error_code},
                },
            )
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


# -- shared per-container state -------------------------------------------------------


@functools.cache
def _parser() -> DICOMParser:
    return DICOMParser()


def _profile() -> Any:
    from src.ingestion.profile import ConfidentialityProfile

    raw = os.environ.get("MEDPIPE_PROFILE")
    if not raw:
        return ConfidentialityProfile()
    try:
        return ConfidentialityProfile.from_mapping(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"MEDPIPE_PROFILE is invalid: {exc}") from exc


def _deidentifier() -> Any:
    """The de-identifier, rebuilt only when the (cached) key changes."""
    from src.ingestion.deidentifier import Deidentifier
    from src.orchestration.secrets import get_deidentification_key

    key = get_deidentification_key()
    cached = _STATE.get("deidentifier")
    if cached is None or _STATE.get("key") != key:
        _STATE["deidentifier"] = Deidentifier(profile=_profile(), key=key, parser=_parser())
        _STATE["key"] = key
    return _STATE["deidentifier"]


_STATE: dict[str, Any] = {}


def _s3(bucket: str) -> Any:
    from src.storage.s3_handler import S3Handler

    handlers: dict[str, Any] = _STATE.setdefault("s3", {})
    if bucket not in handlers:
        handlers[bucket] = S3Handler(bucket, os.environ.get("AWS_REGION", "us-east-1"))
    return handlers[bucket]


def _download(bucket: str, key: str, workdir: str) -> str:
    path = os.path.join(workdir, "object.dcm")
    _s3(bucket).download_file(key, path)
    return path


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


def _metrics() -> Any:
    from aws_lambda_powertools import Metrics

    if "metrics" not in _STATE:
        _STATE["metrics"] = Metrics(namespace=METRIC_NAMESPACE, service=SERVICE)
    return _STATE["metrics"]


def _metric(name: str, value: float, unit: str) -> None:
    """Record a metric in Embedded Metric Format (printed with the invocation's logs)."""
    _metrics().add_metric(name=name, unit=unit, value=value)


# -- handlers ---------------------------------------------------------------------------


@lambda_handler_wrapper
class IngestionHandler:
    """Fetch the uploaded object, parse it, validate its original metadata in-process,
    and return the de-identified metadata projection (no PHI leaves the function)."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from pydantic import ValidationError

        from src.pipeline.worker import validation_reason
        from src.validation.schemas import DICOMMetadataModel

        bucket, key = object_from_event(event)
        with tempfile.TemporaryDirectory(prefix="medpipe-") as workdir:
            path = _download(bucket, key, workdir)
            size = os.path.getsize(path)
            with open(path, "rb") as fh:
                header = _parser().parse_header(fh, f"s3://{bucket}/{key}")
            extractor = MetadataExtractor()
            try:
                DICOMMetadataModel(**extractor.extract_metadata(header))
            except ValidationError as exc:
                raise MetadataValidationError(
                    validation_reason(exc),
                    details={
                        "fields": sorted({".".join(map(str, e["loc"])) for e in exc.errors()})
                    },
                ) from None
            _deidentifier().deidentify(header)
            metadata = extractor.extract_metadata(header)
        return {
            "statusCode": 200,
            "body": {"bucket": bucket, "key": key, "size": size, "metadata": metadata},
        }


@lambda_handler_wrapper
class ValidationHandler:
    """Validate metadata against the pydantic schemas."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from pydantic import ValidationError

        from src.pipeline.worker import validation_reason
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
    """De-identify the object and write it to the processed bucket."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        from src.pipeline.worker import output_relative

        bucket, key = object_from_event(event)
        processed = _env("MEDPIPE_PROCESSED_BUCKET")
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="medpipe-") as workdir:
            path = _download(bucket, key, workdir)
            out = os.path.join(workdir, "deidentified.dcm")
            result = _deidentifier().deidentify_file_with_report(path, out)
            output_key = output_relative(result.dataset, result.patient_pseudonym)
            _s3(processed).upload_file(
                out,
                output_key,
                metadata={
                    "burned-in-annotation-risk": str(result.burned_in_annotation_risk).lower()
                },
            )
            size = os.path.getsize(path)
        _metric("DeidentifyLatency", (time.perf_counter() - started) * 1000, "Milliseconds")
        _metric("FilesProcessed", 1, "Count")
        _metric("BytesProcessed", size, "Bytes")
        return {
            "statusCode": 200,
            "body": {
                "input_key": key,
                "output_key": output_key,
                "output_bucket": processed,
                "removed_tags": result.removed_tags,
                "burned_in_annotation_risk": result.burned_in_annotation_risk,
            },
        }


@lambda_handler_wrapper
class QuarantineHandler:
    """Copy a refused object to the quarantine bucket with a reason object beside it."""

    def handle(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        bucket, key = object_from_event(event.get("input") or event)
        quarantine = _env("MEDPIPE_QUARANTINE_BUCKET")
        reason = {
            "source_bucket": bucket,
            "source_key": key,
            "stage": str(event.get("stage") or "unknown"),
            "error": str(event.get("error") or "unknown"),
            "reason": str(event.get("reason") or ""),
        }
        target = _s3(quarantine)
        try:
            target.s3_client.copy_object(
                Bucket=quarantine,
                Key=f"objects/{key}",
                CopySource={"Bucket": bucket, "Key": key},
                ServerSideEncryption="AES256",
            )
            copied = True
        except Exception as exc:
            from botocore.exceptions import ClientError

            if not isinstance(exc, ClientError):
                raise
            copied = False
        reason["copied"] = copied  # type: ignore[assignment]
        target.upload_bytes(
            json.dumps(reason, indent=1).encode("utf-8"),
            f"reasons/{key}.json",
            content_type="application/json",
        )
        _metric("FilesQuarantined", 1, "Count")
        return {
            "statusCode": 200,
            "body": {"quarantined": True, "key": key, "copied": copied, "stage": reason["stage"]},
        }


# -- module-level entry points ----------------------------------------------------------


def _entry(handler: Any) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    def entry(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if not _STATE.get("configured"):
            configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
            quiet_pydicom()
            _STATE["configured"] = True
        metrics = _metrics()
        try:
            response: dict[str, Any] = handler.handle(event, context)
        finally:
            if metrics.metric_set:
                metrics.flush_metrics()
        return response

    return entry


ingestion_handler = _entry(IngestionHandler())
validation_handler = _entry(ValidationHandler())
deidentification_handler = _entry(DeidentificationHandler())
quarantine_handler = _entry(QuarantineHandler())

__all__ = [
    "DeidentificationHandler",
    "IngestionHandler",
    "InvalidDICOMError",
    "QuarantineHandler",
    "TransientError",
    "ValidationHandler",
    "deidentification_handler",
    "ingestion_handler",
    "lambda_handler_wrapper",
    "object_from_event",
    "quarantine_handler",
    "validation_handler",
]
