"""What a fault that is not the object's means on the AWS path: retry it, or stop.

``transient`` faults (throttling, a 5xx, a timeout, a conflicting concurrent write) are
retried and never quarantined; ``permanent`` ones (access denied, a missing bucket, no
usable key, a configuration error) cannot be mended by retrying, so they are reported
once, with their code, and raise the ``PermanentFailures`` alarm. Anything else is a
defect of ours: its message is redelivered alone until the dead-letter queue takes it.
"""

from __future__ import annotations

import logging

from src.errors import (
    AccessDeniedError,
    ConfigurationError,
    KeyConfigurationError,
    ObjectNotFoundError,
    StorageError,
)
from src.orchestration import lambda_runtime as rt

logger = logging.getLogger("src.orchestration.lambda_handlers")

TRANSIENT = "transient"
PERMANENT = "permanent"


class TransientError(Exception):
    """Raised to the Lambda runtime so that Step Functions (or SQS) retries with backoff."""


def log_retry(operation: str, code: str) -> None:
    logger.warning(
        "Transient failure; raising for retry",
        extra={"operation": operation, "status": "retry", "details": {"aws_error_code": code}},
    )


def fault_kind(exc: BaseException) -> str | None:
    """How a fault that is not the object's is handled; ``None`` for a defect of ours.

    ``transient`` (throttling, 5xx, a timeout, a conflicting concurrent write): retried,
    never quarantined. ``permanent`` (access denied, a missing bucket, no usable key, a
    configuration error): retrying cannot help, so it is dead-lettered or reported failed
    once, with its code, and the ``PermanentFailures`` metric raises an alarm.
    """
    if isinstance(exc, AccessDeniedError | ObjectNotFoundError):
        return PERMANENT
    if isinstance(exc, KeyConfigurationError | ConfigurationError):
        return PERMANENT
    if isinstance(exc, StorageError):
        return TRANSIENT
    return None


def error_code(exc: BaseException) -> str:
    return getattr(exc, "aws_error_code", None) or type(exc).__name__


def log_permanent(oid: str, exc: BaseException, where: str) -> None:
    rt.metric("PermanentFailures", 1, "Count")
    logger.error(
        "Permanent fault; not retried",
        extra={
            "operation": "instance",
            "status": "failed",
            "details": {"object_id": oid, "error_code": error_code(exc), "sent_to": where},
        },
    )


class PermanentError(Exception):
    """Raised for a single object whose fault retrying cannot mend (not in any Retry)."""


__all__ = [
    "PERMANENT",
    "TRANSIENT",
    "PermanentError",
    "TransientError",
    "error_code",
    "fault_kind",
    "log_permanent",
    "log_retry",
]
