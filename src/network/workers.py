"""The receiver's de-identifying workers: concurrent associations processed in parallel.

Each association's thread hands its received instance to :meth:`InstanceWorkers.process`
and waits for the outcome; the pipeline runs in one of ``workers`` processes started with
the receiver (before its first thread), so that two associations de-identify on two
cores. The commit, the journal and the sender's answer stay in the association's thread,
in :class:`~src.network.intake.Intake`, after the outcome is back: the durability rules
do not change. One worker runs the pipeline in this process, one instance at a time.
"""

from __future__ import annotations

import errno
import logging
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from src.errors import PipelineError
from src.instance.outcome import PROCESSED, QUARANTINED, Outcome
from src.instance.pipeline import (
    InstancePipeline,
    InstanceRefusedError,
    OutputWriteError,
    schema_validation,
)
from src.monitoring.logs import configure_logging, current_format
from src.processes import worker_executor
from src.settings.config import RunConfig

_PIPELINE: InstancePipeline | None = None


def build_pipeline(config: RunConfig, key: bytes) -> InstancePipeline:
    """The receiver's core: the run's pipeline, without the crosswalk's identities."""
    from src.ingestion.deidentifier import Deidentifier
    from src.ingestion.dicom_parser import DICOMParser

    parser = DICOMParser(max_inflated_bytes=config.max_inflated_bytes)
    deidentifier = Deidentifier(profile=config.profile, key=key, parser=parser)
    return InstancePipeline(deidentifier, schema_validation)


def deidentify(
    pipeline: InstancePipeline, iid: str, fingerprint: str, size: int, path: str, staged: str
) -> Outcome:
    """One received instance through the core into ``staged``; never raises for the data.

    A refusal becomes a quarantined outcome with its reason; a full disk sets
    ``no_room`` (the sender is then told to keep the instance).
    """
    outcome = Outcome(iid, fingerprint, QUARANTINED, bytes_in=size)
    try:
        result = pipeline.process(path, staged, label=iid)
    except InstanceRefusedError as exc:
        outcome.refuse(exc.reason, exc.detail, exc.stage)
    except OutputWriteError as exc:
        cause = exc.__cause__
        code = cause.errno if isinstance(cause, OSError) else None
        outcome.no_room = errno.errorcode.get(code or errno.ENOSPC, "ENOSPC")
    else:
        outcome.processed_as(result)
        outcome.identity = {}  # the receiver writes no crosswalk
    assert outcome.status in (PROCESSED, QUARANTINED)
    return outcome


def _init(config: RunConfig, key: bytes, level: int, fmt: str) -> None:
    global _PIPELINE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the receiver's process stops the pool
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    configure_logging(level, fmt=fmt)
    from src.ingestion.dicom_parser import quiet_pydicom

    quiet_pydicom()
    _PIPELINE = build_pipeline(config, key)


def _task(task: tuple[str, str, int, str, str]) -> Outcome:
    assert _PIPELINE is not None, "the worker was not initialised"
    return deidentify(_PIPELINE, *task)


class InstanceWorkers:
    """The processes that de-identify received instances.

    Parameters
    ----------
    config : RunConfig
        Its ``worker_count()`` processes are started (one: in this process).
    key : bytes
        The de-identification key.
    """

    def __init__(self, config: RunConfig, key: bytes) -> None:
        self.count = config.worker_count()
        self._config, self._key = config, key
        self._pool: ProcessPoolExecutor | None = None
        self._local: InstancePipeline | None = None
        self._lock = threading.Lock()
        if self.count <= 1:
            self._local = build_pipeline(config, key)
        else:
            self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        level = logging.getLogger("src").getEffectiveLevel()
        pool = worker_executor(
            self.count, _init, (self._config, self._key, level, current_format()), __name__
        )
        pool.submit(int).result()  # every worker forked now, before the first association
        return pool

    def process(self, iid: str, fingerprint: str, size: int, path: str, staged: str) -> Outcome:
        """De-identify ``path`` into ``staged``; blocks this thread until it is done.

        Raises
        ------
        WorkerLostError
            When the worker died under it (killed, out of memory): nothing was recorded,
            and the pool is started again for the next instance.
        """
        if self._pool is None:
            assert self._local is not None
            with self._lock:  # one pipeline, one instance at a time
                return deidentify(self._local, iid, fingerprint, size, path, staged)
        pool = self._pool
        try:
            return pool.submit(_task, (iid, fingerprint, size, path, staged)).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:  # the first thread to see it starts a new pool
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._pool = self._start()
            raise WorkerLostError("a de-identifying worker process died") from None

    def close(self) -> None:
        """Stop the worker processes (instances in flight are finished first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class WorkerLostError(PipelineError):
    """A worker process died while it de-identified an instance (nothing was recorded)."""


__all__ = ["InstanceWorkers", "WorkerLostError", "build_pipeline", "deidentify"]
