"""The local run's worker processes: read one input, hand it to the core, report.

The core (:class:`~src.instance.pipeline.InstancePipeline`) decides everything about the
instance; this module only reads the input (a file, a zip member, an S3 object), keeps a
scratch copy of the original where one is needed for quarantine, and turns the result
into an :class:`Outcome` for the coordinator, which commits it to the store in input
order. Every outcome is ``processed`` or ``quarantined`` with a named reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from typing import Any

from src.errors import StorageError
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser, quiet_pydicom
from src.instance.outcome import PROCESSED, QUARANTINED, SKIPPED, Outcome
from src.instance.pipeline import (
    NO_ROOM,
    InstancePipeline,
    InstanceRefusedError,
    OutputWriteError,
    Reason,
    schema_validation,
)
from src.monitoring.logs import configure_logging
from src.pipeline.sources import InputChangedError, InputItem, materialise, open_input
from src.settings.config import RunConfig

logger = logging.getLogger(__name__)


@dataclass
class _WorkerState:
    pipeline: InstancePipeline
    config: RunConfig
    staging: str
    input_store: Any = None


_STATE: _WorkerState | None = None


def init_worker(
    config: RunConfig,
    key: bytes,
    staging: str,
    log_level: int | None = None,
    log_format: str = "json",
) -> None:
    """Process-pool initializer: build the core once per process."""
    global _STATE
    # Ctrl-C reaches the whole process group: the coordinator handles it and stops the
    # pool; workers ignore it rather than each printing a traceback.
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level is not None:
        configure_logging(log_level, fmt=log_format)
    quiet_pydicom()
    parser = DICOMParser(max_inflated_bytes=config.max_inflated_bytes)
    deidentifier = Deidentifier(profile=config.profile, key=key, parser=parser)
    pipeline = InstancePipeline(
        deidentifier, schema_validation, keep_identity=config.crosswalk is not None
    )
    _STATE = _WorkerState(pipeline, config, staging)


def _input_store(item: InputItem, state: _WorkerState) -> Any:
    if item.kind != "s3":
        return None
    if state.input_store is None or state.input_store.bucket != item.bucket:
        from src.storage.store import open_store

        state.input_store = open_store(
            f"s3://{item.bucket}",
            region_name=state.config.region_name,
            endpoint_url=state.config.endpoint_url,
        )
    return state.input_store


def process(item_and_id: tuple[InputItem, str]) -> Outcome:
    """Process one input; never raises (everything becomes an :class:`Outcome`)."""
    item, iid = item_and_id
    state = _STATE
    assert state is not None, "init_worker was not called"
    started = time.perf_counter()
    outcome = Outcome(iid, item.fingerprint, QUARANTINED, bytes_in=item.size)
    if item.kind == "refused":
        outcome.refuse(Reason(item.refused_as), item.refusal, "discover")
        return outcome
    staged = os.path.join(state.staging, f"{iid}.dcm")
    try:
        outcome.stage = "read"
        if item.kind == "file":
            # Read from the descriptor of the file discovery found, never by a path
            # that may since have become a link out of INPUT.
            with open_input(item) as source:
                result = state.pipeline.process(source, staged, label=iid, atomic=False)
        else:
            # Zip members and S3 objects get a scratch copy, kept until the coordinator
            # has committed the output: a duplicate is quarantined with these bytes.
            local = materialise(
                item,
                os.path.join(state.staging, f"{iid}.orig"),
                _input_store(item, state),
                state.config.max_zip_member_bytes,
            )
            outcome.original = local
            # The staging folder is this run's own: written in place, moved later.
            result = state.pipeline.process(local, staged, label=iid, atomic=False)
    except InputChangedError as exc:
        outcome.refuse(Reason.NOT_A_REGULAR_FILE, str(exc), "read")
    except InstanceRefusedError as exc:
        detail = exc.detail
        if exc.reason == Reason.NOT_DICOM:
            detail = _archive_detail(item, outcome.original) or detail
        outcome.refuse(exc.reason, detail, exc.stage)
    except OutputWriteError as exc:
        outcome.no_room = _errno_name(exc.__cause__) or "ENOSPC"
    except StorageError as exc:
        outcome.refuse(Reason.STORAGE_ERROR, exc.aws_error_code or type(exc).__name__, "read")
    except (OSError, ValueError) as exc:
        if isinstance(exc, OSError) and exc.errno in NO_ROOM:  # the staging disk is full
            outcome.no_room = _errno_name(exc) or "ENOSPC"
        else:
            outcome.refuse(Reason.UNREADABLE, type(exc).__name__, "read")
    else:
        outcome.processed_as(result)
        outcome.staged = staged
    if outcome.status != PROCESSED:  # a refusal or a full disk leaves no partial output
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged)
    outcome.seconds = time.perf_counter() - started
    return outcome


def _archive_detail(item: InputItem, copy: str) -> str:
    """Say so when a refused input is an archive that was not opened (only zip files in
    a local INPUT are)."""
    try:
        with open(copy, "rb") if copy else open_input(item) as fh:
            head = fh.read(512)
    except OSError:
        return ""
    where = {"zip": "inside a zip archive", "s3": "in S3"}.get(item.kind, "")
    if head[:4] == b"PK\x03\x04":
        return f"a zip archive {where or 'here'} is not opened: unpack it into INPUT first"
    if head[257:262] == b"ustar":
        return "a tar archive is not opened: unpack it into INPUT first"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file is not opened: unpack it into INPUT first"
    return ""


def _errno_name(exc: BaseException | None) -> str:
    import errno

    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, "")
    return ""


__all__ = ["PROCESSED", "QUARANTINED", "SKIPPED", "Outcome", "init_worker", "process"]
