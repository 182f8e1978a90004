"""Why an instance is refused: the named reasons every shell and report use, and the
refusal itself (PHI-free: a tag, a field or an error type, never a value)."""

from __future__ import annotations

import errno
from enum import StrEnum

from src.errors import InvalidDICOMError, PipelineError, StorageError


class Reason(StrEnum):
    """Why an input was quarantined. The same names in every shell and in every report."""

    EMPTY = "empty"
    NOT_DICOM = "not-dicom"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    IMAGE_WITHOUT_PIXEL_DATA = "image-without-pixel-data"
    FAILED_VALIDATION = "failed-validation"
    DEIDENTIFICATION_REFUSED = "deidentification-refused"
    DUPLICATE_SOP_INSTANCE = "duplicate-sop-instance"
    UNREADABLE = "unreadable"
    NOT_A_REGULAR_FILE = "not-a-regular-file"
    UNSAFE_ARCHIVE = "unsafe-archive"
    CORRUPT_ARCHIVE = "corrupt-archive"
    MEDIA_DIRECTORY = "media-directory"
    PIXEL_PHI_REMAINS = "pixel-phi-remains"
    STORAGE_ERROR = "storage-error"
    INTERNAL_ERROR = "internal-error"


#: Write failures that say nothing about the instance: the disk or the quota is full, or
#: the output is read-only. The instance is neither processed nor refused.
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class OutputWriteError(StorageError):
    """The output could not be written for lack of room (or a read-only target)."""


class InstanceRefusedError(PipelineError):
    """The instance cannot be shipped; it belongs in quarantine.

    Parameters
    ----------
    reason : Reason
        The named reason.
    detail : str
        A short, PHI-free explanation (a tag, a field or an error type; never a value).
    stage : str
        ``"read"``, ``"parse"``, ``"validate"``, ``"deidentify"`` or ``"write"``.
    """

    def __init__(self, reason: Reason, detail: str = "", stage: str = "") -> None:
        self.reason = Reason(reason)
        self.detail = detail
        self.stage = stage
        super().__init__(
            f"{self.reason.value}: {detail}" if detail else self.reason.value,
            details={"reason": self.reason.value, "stage": stage},
        )


def parse_refusal(exc: InvalidDICOMError) -> InstanceRefusedError:
    text = exc.reason
    if text.startswith("empty"):
        return InstanceRefusedError(Reason.EMPTY, text, "parse")
    if text.startswith("truncated"):
        return InstanceRefusedError(Reason.TRUNCATED, text, "parse")
    if text.startswith("malformed"):
        return InstanceRefusedError(Reason.MALFORMED, text.removeprefix("malformed: "), "parse")
    if text.startswith("cannot open"):
        return InstanceRefusedError(Reason.UNREADABLE, text, "read")
    return InstanceRefusedError(Reason.NOT_DICOM, text, "parse")


__all__ = [
    "NO_ROOM",
    "InstanceRefusedError",
    "OutputWriteError",
    "Reason",
    "parse_refusal",
]
