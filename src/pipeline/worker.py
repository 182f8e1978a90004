"""One input through the chain: parse → extract metadata → validate → de-identify → stage.

Runs inside worker processes. Every outcome is either ``processed`` (a staged output
file plus its index row) or ``quarantined`` with a reason; an unexpected exception is
turned into a quarantine too, so no input is ever dropped. Reasons and log lines name
stages, tags and fields, never values.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from pydicom.dataset import Dataset

from src.errors import (
    DeidentificationError,
    InvalidDICOMError,
    MetadataValidationError,
    PipelineError,
    StorageError,
)
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser, is_image, quiet_pydicom
from src.ingestion.metadata_extractor import MetadataExtractor
from src.monitoring.logs import configure_logging
from src.pipeline.config import RunConfig
from src.pipeline.sources import InputItem, materialise
from src.validation.schemas import DICOMMetadataModel

logger = logging.getLogger(__name__)

PROCESSED = "processed"
QUARANTINED = "quarantined"
SKIPPED = "skipped"


@dataclass
class Outcome:
    """What happened to one input (holds no PHI: ids, pseudonymous paths, reasons)."""

    input_id: str
    fingerprint: str
    status: str
    reason: str = ""
    stage: str = ""
    output: str = ""
    staged: str = ""
    quarantine_source: str = ""
    bytes_in: int = 0
    bytes_out: int = 0
    seconds: float = 0.0
    removed: int = 0
    burned_in_annotation_risk: bool = False
    index: dict[str, Any] = field(default_factory=dict)

    def journal_entry(self) -> dict[str, Any]:
        """The durable record of this outcome (no staging paths)."""
        return {
            "input_id": self.input_id,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "reason": self.reason,
            "stage": self.stage,
            "output": self.output,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "removed": self.removed,
            "burned_in_annotation_risk": self.burned_in_annotation_risk,
            "index": self.index,
        }


@dataclass
class _WorkerState:
    deidentifier: Deidentifier
    extractor: MetadataExtractor
    config: RunConfig
    staging: str
    s3: Any


_STATE: _WorkerState | None = None


def init_worker(config: RunConfig, key: bytes, staging: str, log_level: int | None = None) -> None:
    """Process-pool initializer: build the de-identifier once per process."""
    global _STATE
    # Ctrl-C reaches the whole process group: the coordinator handles it and stops the
    # pool; workers ignore it rather than each printing a traceback.
    if multiprocessing.parent_process() is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if log_level is not None:
        configure_logging(log_level)
    quiet_pydicom()
    parser = DICOMParser(max_inflated_bytes=config.max_inflated_bytes)
    s3 = None
    _STATE = _WorkerState(
        deidentifier=Deidentifier(profile=config.profile, key=key, parser=parser),
        extractor=MetadataExtractor(),
        config=config,
        staging=staging,
        s3=s3,
    )


def _s3_for(item: InputItem, state: _WorkerState) -> Any:
    if item.kind != "s3":
        return None
    if state.s3 is None or state.s3.bucket_name != item.bucket:
        from src.storage.s3_handler import S3Handler  # only S3 runs need it

        state.s3 = S3Handler(
            item.bucket, state.config.region_name, endpoint_url=state.config.endpoint_url
        )
    return state.s3


def validation_reason(exc: ValidationError) -> str:
    """Name the failing fields of a pydantic error, without the offending values."""
    fields = sorted({".".join(str(p) for p in err["loc"]) for err in exc.errors()})
    return "failed validation: " + ", ".join(fields[:8])


def output_relative(ds: Dataset, pseudonym: str) -> str:
    """``<patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm`` of a de-identified dataset."""
    parts = [
        pseudonym,
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("SeriesInstanceUID", "") or ""),
        str(ds.get("SOPInstanceUID", "") or ""),
    ]
    for part in parts:
        if not part or "/" in part or part in (".", "..") or "\x00" in part:
            raise DeidentificationError("de-identified dataset lacks a usable UID for its path")
    return "/".join(parts[:3]) + f"/{parts[3]}.dcm"


def process(item_and_id: tuple[InputItem, str]) -> Outcome:
    """Process one input; never raises (everything becomes an :class:`Outcome`)."""
    item, iid = item_and_id
    state = _STATE
    assert state is not None, "init_worker was not called"
    started = time.perf_counter()
    outcome = Outcome(iid, item.fingerprint, QUARANTINED, bytes_in=item.size)
    if item.kind == "refused":
        outcome.reason, outcome.stage = item.refusal, "discover"
        return outcome
    # Only zip members and S3 objects need a scratch copy.
    workdir = (
        "" if item.kind == "file" else tempfile.mkdtemp(prefix=".medpipe-tmp-w", dir=state.staging)
    )
    try:
        _run_chain(item, state, outcome, workdir)
    except InvalidDICOMError as exc:
        outcome.reason, outcome.stage = _parse_reason(exc), outcome.stage or "parse"
    except MetadataValidationError as exc:
        outcome.reason, outcome.stage = exc.message, "validate"
    except DeidentificationError as exc:
        outcome.reason, outcome.stage = f"de-identification refused: {exc.message}", "deidentify"
    except StorageError as exc:
        outcome.reason, outcome.stage = f"storage error: {exc.aws_error_code}", "read"
    except PipelineError as exc:
        outcome.reason = f"{type(exc).__name__}"
    except (ValueError, OSError) as exc:
        outcome.reason = f"unreadable input ({type(exc).__name__})"
        outcome.stage = outcome.stage or "read"
    except Exception as exc:
        outcome.reason = f"internal error ({type(exc).__name__})"
        logger.error(
            "Unexpected error; input quarantined",
            extra={
                "operation": "process",
                "status": "failed",
                "details": {"input_id": iid, "error": type(exc).__name__},
            },
        )
    finally:
        if outcome.status != PROCESSED:
            outcome.staged = ""
            leftover = os.path.join(state.staging, f"{iid}.dcm")
            if os.path.exists(leftover):
                os.unlink(leftover)
            keep = outcome.quarantine_source
            if keep and workdir and keep.startswith(workdir):
                # Keep the downloaded/extracted copy for the quarantine move.
                moved = os.path.join(state.staging, f"{iid}.quarantine")
                os.replace(keep, moved)
                outcome.quarantine_source = moved
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        outcome.seconds = time.perf_counter() - started
    return outcome


def _parse_reason(exc: InvalidDICOMError) -> str:
    reason = exc.reason
    if reason.startswith(("truncated", "not DICOM", "empty")):
        return reason
    return f"not DICOM or unreadable: {reason}"


def _run_chain(item: InputItem, state: _WorkerState, outcome: Outcome, workdir: str) -> None:
    outcome.stage = "read"
    local = materialise(item, workdir, _s3_for(item, state), state.config.max_zip_member_bytes)
    outcome.quarantine_source = local
    outcome.stage = "parse"
    staged = os.path.join(state.staging, f"{outcome.input_id}.dcm")
    memo: dict[int, Any] = {}

    def check(original: Dataset) -> None:
        outcome.stage = "validate"
        metadata = state.extractor.extract_metadata(original, memo=memo)
        try:
            DICOMMetadataModel(**metadata)
        except ValidationError as exc:
            raise MetadataValidationError(validation_reason(exc)) from None
        outcome.stage = "deidentify"

    image = {"value": False}

    def check_and_note(original: Dataset) -> None:
        check(original)
        image["value"] = is_image(original)

    # The staging area is private and the coordinator renames into place: one rename.
    result = state.deidentifier.deidentify_file_with_report(
        local, staged, before=check_and_note, atomic=False
    )
    if image["value"] and not result.has_pixel_data:
        outcome.stage = "parse"
        raise InvalidDICOMError(
            outcome.input_id, "truncated or incomplete: an image without pixel data"
        )
    ds = result.dataset
    outcome.output = output_relative(ds, result.patient_pseudonym)
    index = state.extractor.extract_metadata(ds, memo=memo)
    index["output"] = outcome.output
    index["burned_in_annotation_risk"] = result.burned_in_annotation_risk
    outcome.index = index
    outcome.removed = len(result.removed_tags)
    outcome.burned_in_annotation_risk = result.burned_in_annotation_risk
    outcome.staged = staged
    outcome.bytes_out = os.path.getsize(staged)
    outcome.status = PROCESSED
    outcome.stage = "write"
