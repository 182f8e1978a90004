"""The Lambda pass over one S3 object: download once, run the core, commit or quarantine.

The same per-instance function as ``medpipe run`` (:class:`InstancePipeline`), with the
same output layout, the same duplicate rule and the same quarantine writer
(:mod:`src.storage.store`). The result holds keyed ids only: never the object's key,
which can name the patient.

Refused content (not DICOM, truncated, invalid, an image without pixel data, a
duplicate SOP Instance UID) is quarantined. Anything else (throttling, a service error,
a missing key) is raised, so that the caller retries and the object is never quarantined
for a fault that was not its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import tempfile
import time

from src.errors import ObjectNotFoundError, PipelineError
from src.instance.outcome import PROCESSED, QUARANTINED, Outcome
from src.instance.pipeline import InstanceRefusedError
from src.orchestration import lambda_runtime as rt
from src.orchestration.events import ObjectRef
from src.records.settle import settle


class SourceMissingError(PipelineError):
    """The object named by the event no longer exists (deleted before it was read)."""


def object_id(key: bytes, ref: ObjectRef) -> str:
    """The keyed id of an object (stable, no PHI): what workflow data carries."""
    text = f"s3://{ref.bucket}/{ref.key}".encode("utf-8", "surrogateescape")
    return hmac.new(key, b"object\x00" + text, hashlib.sha256).hexdigest()[:24]


def process_object(ref: ObjectRef) -> Outcome:
    """Process one object end to end.

    Raises
    ------
    StorageError, KeyConfigurationError
        For faults that are not the object's (retried by the caller).
    """
    pipeline = rt.pipeline()
    oid = object_id(rt.key(), ref)
    processed = rt.store(rt.env("MEDPIPE_PROCESSED_BUCKET"))
    quarantine = rt.store(rt.env("MEDPIPE_QUARANTINE_BUCKET"))
    source = rt.store(ref.bucket)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="medpipe-") as work:
        original = os.path.join(work, "object.bin")
        try:
            source.fetch(ref.key, original)
        except ObjectNotFoundError:
            raise SourceMissingError("the object no longer exists") from None
        size = os.path.getsize(original)
        staged = os.path.join(work, "deidentified.dcm")
        result = Outcome(oid, "", QUARANTINED, bytes_in=size)
        try:
            result.processed_as(pipeline.process(original, staged, label=oid))
            result.identity = {}
        except InstanceRefusedError as exc:
            result.refuse(exc.reason, exc.detail, exc.stage)
        try:
            # A store that cannot be written is not caught: the object is retried.
            settle(
                result,
                processed,
                staged=staged,
                original=original,
                source=ref.key,
                quarantine=quarantine,
            )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
    rt.metric("Files" + ("Processed" if result.status == PROCESSED else "Quarantined"), 1, "Count")
    rt.metric("BytesProcessed", size, "Bytes")
    rt.metric("InstanceLatency", (time.perf_counter() - started) * 1000, "Milliseconds")
    return result


__all__ = [
    "PROCESSED",
    "QUARANTINED",
    "SourceMissingError",
    "object_id",
    "process_object",
]
