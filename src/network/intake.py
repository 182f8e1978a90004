"""Where a received instance goes: the per-instance pipeline, then OUTPUT, durably.

The receiver calls :meth:`Intake.accept` once per C-STORE and answers the sender with
the status it returns. Success (``0x0000``) means the instance is de-identified and
committed to OUTPUT, or quarantined there with a reason, written and fsynced (or
uploaded) and journalled. When that cannot be done (a full disk, a failed upload) the
status is ``0xA700`` (Out of Resources): nothing was recorded, and the sender keeps the
instance and may send it again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from src.errors import StorageError
from src.ingestion.annex_e.pseudonyms import KeyMaterial
from src.instance.outcome import PROCESSED, QUARANTINED, SKIPPED, Outcome
from src.instance.refusals import Reason
from src.network.workers import InstanceWorkers, WorkerLostError
from src.records.journal import Journal, session_counts
from src.records.provenance import check_provenance
from src.records.reports import write_reports
from src.records.settle import ALREADY_WRITTEN, settle
from src.records.state import state_dir_for, sweep_leftovers
from src.records.summary import RunSummary
from src.settings.config import RunConfig
from src.settings.locations import Location, input_id, parse_location
from src.storage.store import (
    Store,
    open_store,
)

logger = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700


@dataclass
class Study:
    """A study being received: its instances' output keys and when the last one came."""

    uid: str
    keys: list[str] = field(default_factory=list)
    last_seen: float = 0.0


class StudyTracker:
    """Decides when a study is complete: ``quiet_seconds`` with no new instance for it.

    The study is named by its de-identified Study Instance UID (a keyed value, not PHI).
    """

    def __init__(self, quiet_seconds: float) -> None:
        self.quiet_seconds = quiet_seconds
        self._studies: dict[str, Study] = {}
        self._lock = threading.Lock()

    def touch(self, uid: str, key: str, now: float | None = None) -> None:
        with self._lock:
            study = self._studies.setdefault(uid, Study(uid))
            study.keys.append(key)
            study.last_seen = time.monotonic() if now is None else now

    def due(self, now: float | None = None, *, everything: bool = False) -> list[Study]:
        """Remove and return the studies that have been quiet long enough."""
        now = time.monotonic() if now is None else now
        with self._lock:
            done = [
                s
                for s in self._studies.values()
                if everything or now - s.last_seen >= self.quiet_seconds
            ]
            for study in done:
                del self._studies[study.uid]
        return done

    def __len__(self) -> int:
        return len(self._studies)


def spool_dir(location: Location) -> Path:
    """Where received bytes land before processing: a private (0700) folder of the system
    temp dir, named by OUTPUT and emptied at start. Not on OUTPUT's disk, so that a full
    OUTPUT still lets an instance arrive whole and be answered with a failure status
    (pynetdicom aborts the association when it cannot write what it receives)."""
    import hashlib
    import shutil
    import tempfile

    name = hashlib.sha256(location.raw.encode("utf-8")).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"medpipe-spool-{os.getuid()}-{name}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    return folder


class Intake:
    """Durable, accounted intake of received instances into OUTPUT.

    Parameters
    ----------
    output_uri : str
        A folder or ``s3://bucket/prefix``.
    config : RunConfig
        The profile, the S3 settings and the limits, as for ``medpipe run``.
    key : KeyMaterial
        The de-identification key (resolved by the shell).
    quiet_seconds : float
        Quiet time after which a study counts as complete.
    """

    def __init__(
        self, output_uri: str, config: RunConfig, key: KeyMaterial, quiet_seconds: float = 30.0
    ) -> None:
        try:
            self.location: Location = parse_location(output_uri)
        except ValueError as exc:
            from src.errors import ConfigurationError

            raise ConfigurationError(str(exc)) from exc
        self.config = config
        self.key = key
        self.state = state_dir_for(self.location, config)
        self.staging = self.state / "staging"
        self.state.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(self.location, self.staging)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.spool = spool_dir(self.location)
        self.sink: Store = open_store(
            self.location.raw if self.location.is_s3 else self.location.path,
            region_name=config.region_name,
            endpoint_url=config.endpoint_url,
            fsync=True,  # the sender is told "success" only for what is on disk
        )
        check_provenance(self.sink, key.fingerprint(), config.profile.as_dict())
        # Earlier sessions' true counts (a kill -9 can stop one between two rewrites of
        # the run history); the journal was written before each "success" was sent.
        self.recovered = session_counts(self.state / "journal.jsonl")
        self.journal = Journal(self.state / "journal.jsonl")
        self.entries = self.journal.load()
        self.claims = {e["output"]: i for i, e in self.entries.items() if e["status"] == PROCESSED}
        # Started now, before the receiver's first thread: its processes fork from here.
        self.workers = InstanceWorkers(config, key.key)
        self.summary = RunSummary(workers=1)
        self.studies = StudyTracker(quiet_seconds)
        self.session = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._started = time.perf_counter()

    def accept(self, path: str, sop_instance_uid: str, calling_ae: str) -> int:
        """Process, store and journal one received instance; return the C-STORE status.

        Parameters
        ----------
        path : str
            The received instance as a DICOM file (with its file meta).
        sop_instance_uid : str
            The original Affected SOP Instance UID: keys the input id (never logged).
        calling_ae : str
            The sender's AE title, recorded with a quarantined instance.
        """
        iid = input_id(self.key.key, f"dicom:{sop_instance_uid}")
        size = os.path.getsize(path)
        fingerprint = content_fingerprint(path, self.key.key)
        with self._lock:
            previous = self.entries.get(iid)
        if previous is not None and same_content(previous["fingerprint"], fingerprint):
            # The same instance again (a sender's retry): acknowledged, not redone, and
            # counted once in the manifest, as `run` skips an unchanged input.
            return self._repeat(iid, fingerprint, size)
        duplicate = previous is not None and previous["status"] == PROCESSED
        if duplicate:
            # Other content under a SOP Instance UID already written: `run`'s rule, a
            # second input, quarantined as duplicate-sop-instance; the first output stays.
            iid = input_id(self.key.key, f"dicom:{sop_instance_uid}:{fingerprint}")
            with self._lock:
                retried = iid in self.entries  # that other content's own retry
            if retried:
                return self._repeat(iid, fingerprint, size)
        staged = str(self.staging / f"{iid}.{uuid.uuid4().hex[:8]}.dcm")
        started = time.perf_counter()
        try:
            if duplicate:
                outcome = Outcome(iid, fingerprint, QUARANTINED, bytes_in=size)
                outcome.refuse(Reason.DUPLICATE_SOP_INSTANCE, ALREADY_WRITTEN, "write")
            else:  # in a worker process: associations de-identify in parallel
                outcome = self.workers.process(iid, fingerprint, size, path, staged)
            if outcome.no_room:
                raise OSError(getattr(errno, outcome.no_room, errno.ENOSPC), outcome.no_room)
            with self._lock:
                claimed = self.claims.get(outcome.output) == iid
            settle(
                outcome,
                self.sink,
                staged=staged,
                original=path,
                source=f"C-STORE from {calling_ae}",
                claimed=claimed,
            )
        except (OSError, StorageError, WorkerLostError) as exc:
            logger.error(
                "Instance not stored; the sender is told to keep it",
                extra={
                    "operation": "receive",
                    "status": "failed",
                    "details": {"input_id": iid, "error": error_name(exc)},
                },
            )
            return OUT_OF_RESOURCES
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(staged)
        outcome.seconds = time.perf_counter() - started
        try:
            self._account(outcome)
        except OSError as exc:  # the journal could not be written: not acknowledged
            logger.error(
                "Instance not journalled; the sender is told to keep it",
                extra={
                    "operation": "receive",
                    "status": "failed",
                    "details": {"input_id": iid, "error": error_name(exc)},
                },
            )
            return OUT_OF_RESOURCES
        return SUCCESS

    def _repeat(self, iid: str, fingerprint: str, size: int) -> int:
        try:
            with self._lock:
                entry = {
                    "input_id": iid,
                    "fingerprint": fingerprint,
                    "status": SKIPPED,
                    "session": self.session,
                }
                self.journal.append(entry)
                self.summary.inputs += 1
                self.summary.skipped += 1
                self.summary.bytes_in += size
        except OSError as exc:
            logger.error(
                "Repeat not journalled; the sender is told to keep it",
                extra={
                    "operation": "receive",
                    "status": "failed",
                    "details": {"input_id": iid, "error": error_name(exc)},
                },
            )
            return OUT_OF_RESOURCES
        logger.debug(
            "Instance received again",
            extra={"operation": "receive", "status": SKIPPED, "details": {"input_id": iid}},
        )
        return SUCCESS

    def _account(self, outcome: Outcome) -> None:
        with self._lock:
            entry = {**outcome.journal_entry(), "session": self.session}
            self.journal.append(entry)
            self.entries[outcome.input_id] = entry
            summary = self.summary
            summary.inputs += 1
            summary.bytes_in += outcome.bytes_in
            if outcome.status == PROCESSED:
                self.claims[outcome.output] = outcome.input_id
                summary.processed += 1
                summary.bytes_out += outcome.bytes_out
                summary.burned_in_annotation_risk += int(outcome.burned_in_annotation_risk)
                summary.count_pixels(outcome.index)
                study = str(outcome.index.get("study", {}).get("study_instance_uid") or "unknown")
                self.studies.touch(study, outcome.output)
            else:
                summary.quarantined += 1
                summary.reasons[outcome.reason] = summary.reasons.get(outcome.reason, 0) + 1
        logger.log(
            logging.INFO if outcome.status == QUARANTINED else logging.DEBUG,
            "Instance received",
            extra={
                "operation": "receive",
                "status": outcome.status,
                "details": {
                    "input_id": outcome.input_id,
                    "reason": outcome.reason,
                    "output": outcome.output,
                    "seconds": round(outcome.seconds, 4),
                },
            },
        )

    def flush(self) -> None:
        """Rewrite index.jsonl, index.parquet and manifest.json from the journal."""
        with self._lock:
            self.summary.elapsed_seconds = time.perf_counter() - self._started
            entries = dict(self.entries)
            write_reports(
                self.sink,
                entries,
                self.summary,
                self.config,
                session=self.session,
                recovered=self.recovered,
            )

    def local_path(self, key: str) -> str | None:
        """The local file of an output key (None for an S3 OUTPUT)."""
        return None if self.location.is_s3 else str(Path(self.location.path) / key)

    def close(self) -> None:
        import shutil

        self.workers.close()
        self.journal.close()
        shutil.rmtree(self.spool, ignore_errors=True)


def content_fingerprint(path: str, key: bytes) -> str:
    """What a repeat is recognised by: the received bytes' size and keyed digest (an HMAC,
    so that the journal cannot confirm which original file was received)."""
    digest = hmac.new(key, b"received\x00", hashlib.sha256)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return f"size:{os.path.getsize(path)} hmac:{digest.hexdigest()[:32]}"


def same_content(recorded: str, fingerprint: str) -> bool:
    """Whether a journalled fingerprint is this content's. A journal from before digests
    recorded the size alone (``size:N``): a retry of the same size counts as the same."""
    return recorded == fingerprint or (
        " " not in recorded and fingerprint.startswith(recorded + " ")
    )


def error_name(exc: BaseException) -> str:
    """The errno name, AWS error code or exception type of ``exc`` (never its text)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        import errno

        return errno.errorcode.get(exc.errno, type(exc).__name__)
    if isinstance(exc, StorageError) and exc.aws_error_code:
        return exc.aws_error_code
    if isinstance(exc.__cause__, OSError) and exc.__cause__.errno is not None:
        return error_name(exc.__cause__)  # OutputWriteError: the disk is full, say so
    return type(exc).__name__


__all__ = ["OUT_OF_RESOURCES", "SUCCESS", "Intake", "Study", "StudyTracker", "error_name"]
