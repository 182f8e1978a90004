"""The project's exceptions and the documented error shape.

Messages name files, tags and reasons, never a PHI value. Every exception that wraps a
lower-level error chains it (``raise ... from exc``).
"""

from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """Base class of every error the pipeline raises on purpose.

    Attributes
    ----------
    status_code : int
        The HTTP-style code of the documented error shape (400, 403, 404, 500, 503).
    details : dict
        Extra context that holds no PHI.
    """

    status_code: int = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})


class InvalidDICOMError(PipelineError):
    """The input is empty, not DICOM, truncated or otherwise unreadable.

    Parameters
    ----------
    source : str
        The file name or a label such as ``"<bytes>"``; never a PHI value.
    reason : str
        Why the input was refused, in a few words.
    """

    status_code = 400

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(
            f"{source}: not a readable DICOM file ({reason})",
            details={"source": source, "reason": reason},
        )
        self.source = source
        self.reason = reason


class MetadataValidationError(PipelineError):
    """Extracted metadata failed the pydantic schemas; ``details['fields']`` names them."""

    status_code = 400


class DeidentificationError(PipelineError):
    """De-identification could not be completed safely; the output was not written."""

    status_code = 500


class KeyConfigurationError(PipelineError):
    """No usable de-identification key (argument, environment, key file or secret)."""

    status_code = 500


class ConfigurationError(PipelineError):
    """An option or configuration file is invalid."""

    status_code = 400


class StorageError(PipelineError):
    """A storage or AWS operation failed; ``aws_error_code`` keeps the service's code."""

    status_code = 500

    def __init__(
        self,
        message: str,
        *,
        aws_error_code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.aws_error_code = aws_error_code


class ObjectNotFoundError(StorageError):
    """The bucket, object, state machine or execution does not exist (404)."""

    status_code = 404


class AccessDeniedError(StorageError):
    """The credentials may not perform the operation (403)."""

    status_code = 403


class ThrottlingError(StorageError):
    """The service throttled or was unavailable after all retries (503)."""

    status_code = 503


class ConflictError(StorageError):
    """A concurrent change got in the way (S3's 409 ConditionalRequestConflict, an object
    gone between two calls): nothing is wrong with the request, and a retry settles it."""

    status_code = 409


def error_response(
    exc: BaseException,
    *,
    status_code: int | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Shape an exception as the documented error response.

    Parameters
    ----------
    exc : BaseException
        The error. A :class:`PipelineError` supplies its own status code and details;
        anything else is a 500 whose message is generic, so that an unexpected
        exception text (which might quote data) never leaves the process.
    status_code : int, optional
        Overrides the code derived from ``exc``.
    details : dict, optional
        Merged over the exception's own details.

    Returns
    -------
    dict
        ``{"statusCode", "error", "message", "details"}``.

    Examples
    --------
    >>> error_response(InvalidDICOMError("a.dcm", "empty file"))["statusCode"]
    400
    """
    if isinstance(exc, PipelineError):
        code = exc.status_code
        message = exc.message
        merged = dict(exc.details)
    else:
        code = 500
        message = "Internal error; see the function's logs for the error type"
        merged = {}
    if details:
        merged.update(details)
    return {
        "statusCode": status_code if status_code is not None else code,
        "error": type(exc).__name__,
        "message": message,
        "details": merged,
    }
