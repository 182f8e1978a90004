"""``medpipe run``: the whole pipeline on one machine, in parallel, resumable.

Layout of OUTPUT::

    <patient pseudonym>/<study uid>/<series uid>/<sop uid>.dcm   de-identified files
    index.jsonl        one row of de-identified metadata per processed file
    manifest.json      every input ever seen: processed or quarantined, with reasons
    quarantine/        raw inputs that were refused, each with <id>.reason.json
    .medpipe/          resume journal and staging (never shared)

``quarantine/`` holds original, un-de-identified material and the original file names:
share only the pseudonym folders, ``index.jsonl`` and ``manifest.json``.

Each output is staged in ``.medpipe/staging`` and moved into place by the coordinator
with an atomic rename, after which the outcome is appended to the journal. A run that
is interrupted (Ctrl-C, ``kill -9``) resumes from the journal; staged leftovers are swept
at start. Results are consumed in input order, so the output is the same for any number
of workers.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from src.errors import ConfigurationError, StorageError
from src.ingestion.annex_e.pseudonyms import KeyMaterial
from src.instance.outcome import PROCESSED, QUARANTINED, SKIPPED, Outcome
from src.instance.refusals import NO_ROOM, OutputWriteError, Reason
from src.monitoring.logs import current_format
from src.pipeline.discovery import check_locations, discover, open_location
from src.pipeline.sources import InputItem, original_for_quarantine
from src.records.crosswalk import Crosswalk, check_location
from src.records.journal import Journal
from src.records.provenance import check_provenance
from src.records.settle import settle
from src.records.state import state_dir_for, sweep_leftovers
from src.records.summary import RunSummary
from src.settings.config import RunConfig
from src.settings.locations import Location, input_id
from src.storage.store import (
    Store,
)

logger = logging.getLogger(__name__)


QUARANTINE_DIR = "quarantine"
#: Journal entries written together (a kill -9 redoes at most this many inputs).
JOURNAL_BATCH = 64
METRIC_NAMESPACE = "MedicalImaging/Pipeline"


def run(
    input_uri: str,
    output_uri: str,
    config: RunConfig,
    key: KeyMaterial,
    *,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run the pipeline from INPUT to OUTPUT.

    Parameters
    ----------
    input_uri, output_uri : str
        Local folders (or a single file as INPUT) or ``s3://bucket/prefix``.
    config : RunConfig
    key : KeyMaterial
        The de-identification key.
    echo : callable, optional
        Where to print human-readable progress lines when no progress bar is shown.

    Returns
    -------
    RunSummary

    Raises
    ------
    OutputWriteError
        When OUTPUT (or the staging folder) is full or read-only: the run stops, every
        committed file is journalled, and the same command resumes.
    """
    try:
        return _run(input_uri, output_uri, config, key, echo)
    except OSError as exc:
        if exc.errno in NO_ROOM:
            raise _no_room(errno.errorcode.get(exc.errno or 0, "ENOSPC")) from exc
        raise


def _run(
    input_uri: str,
    output_uri: str,
    config: RunConfig,
    key: KeyMaterial,
    echo: Callable[[str], None] | None,
) -> RunSummary:
    started = time.perf_counter()
    input_loc, output_loc = check_locations(input_uri, output_uri)
    state = state_dir_for(output_loc, config)
    staging = state / "staging"
    state.mkdir(parents=True, exist_ok=True)
    sweep_leftovers(output_loc, staging)
    staging.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(staging, 0o700)  # scratch copies of originals: PHI
    journal = Journal(state / "journal.jsonl", batch=JOURNAL_BATCH)
    previous = journal.load()
    sink = open_location(output_loc, config)
    check_provenance(sink, key.fingerprint(), config.profile.as_dict())
    if config.profile.clean_pixels:  # in the coordinator: a pool initializer must not fail
        from src.pixels.cleaner import cleaner_for

        cleaner_for(config.profile)
    outputs: list[str] = []
    items = list(discover(input_loc, output_loc, config, outputs))
    if not items:
        raise ConfigurationError(
            f"INPUT {input_uri} holds no files"
            + (f" outside {len(outputs)} medpipe OUTPUT folder(s)" if outputs else "")
        )
    summary = RunSummary(
        inputs=len(items), workers=config.worker_count(), outputs_skipped=len(outputs)
    )
    claims = {e["output"]: iid for iid, e in previous.items() if e["status"] == PROCESSED}
    # One listing rather than a HEAD per object: which journalled outputs still exist.
    present = {o.key for o in sink.list()} if claims else set()
    todo: list[tuple[InputItem, str]] = []
    for item in items:
        iid = input_id(key.key, item.relative)
        before = previous.get(iid)
        if (
            before is not None
            and before["fingerprint"] == item.fingerprint
            and (before["status"] == QUARANTINED or before["output"] in present)
        ):
            summary.skipped += 1
            continue
        todo.append((item, iid))
    by_id = {iid: item for item, iid in todo}
    logger.info(
        "Run started",
        extra={
            "operation": "run",
            "status": "started",
            "details": {
                "inputs": len(items),
                "to_process": len(todo),
                "skipped": summary.skipped,
                "workers": summary.workers,
                "key_source": key.source.split(" ")[0],
                "key_fingerprint": key.fingerprint(),
            },
        },
    )
    from tqdm import tqdm  # here, not at import: an empty INPUT is refused sooner

    show_bar = config.progress if config.progress is not None else sys.stderr.isatty()
    # No monitor thread (it only nudges stalled bars): the workers fork from this process,
    # which must then have no other thread (src.processes.start_method).
    tqdm.monitor_interval = 0
    bar = tqdm(
        total=len(todo),
        unit="file",
        disable=not show_bar,
        dynamic_ncols=True,
        desc="de-identifying",
    )
    last_note = time.monotonic()
    crosswalk = _open_crosswalk(config, output_loc)
    try:
        for outcome in _outcomes(todo, config, key.key, str(staging)):
            if outcome.no_room:
                raise _no_room(outcome.no_room)
            _finish(
                outcome,
                by_id[outcome.input_id],
                sink,
                claims,
                summary,
                str(staging),
                config.max_quarantine_copy_bytes,
            )
            if crosswalk is not None and outcome.status == PROCESSED:
                crosswalk.add(by_id[outcome.input_id].relative, outcome.identity, outcome.index)
            journal.append(outcome.journal_entry())
            quarantined = outcome.status == QUARANTINED
            # INFO, not WARNING: one JSON line per refused file would flood the terminal
            # and the progress bar; the summary names every reason with its count.
            logger.log(
                logging.INFO if quarantined else logging.DEBUG,
                "Input quarantined" if quarantined else "Input processed",
                extra={
                    "operation": "process",
                    "status": outcome.status,
                    "details": {
                        "input_id": outcome.input_id,
                        "stage": outcome.stage,
                        "reason": outcome.reason,
                        "detail": outcome.detail,
                        "output": outcome.output,
                        "removed": outcome.removed,
                        "seconds": round(outcome.seconds, 4),
                    },
                },
            )
            if quarantined and echo is not None and _verbose_on_a_terminal():
                # Which input, for the person at the terminal only: the path as they gave
                # it (never in the JSON log or the manifest, which name the keyed id).
                given = _as_given(input_uri, by_id[outcome.input_id])
                echo(f"quarantined ({outcome.reason}): {given}")
            previous[outcome.input_id] = outcome.journal_entry()
            bar.update(1)
            elapsed = time.perf_counter() - started
            if show_bar and elapsed > 0:
                bar.set_postfix_str(f"{summary.bytes_in / 1e6 / elapsed:.1f} MB/s", refresh=False)
            elif time.monotonic() - last_note > 5 and echo is not None:
                done = summary.processed + summary.quarantined
                echo(f"progress: {done}/{len(todo)} files, {done / max(elapsed, 1e-9):.1f} files/s")
                last_note = time.monotonic()
    finally:
        bar.close()
        journal.close()
        if crosswalk is not None:
            crosswalk.close()
    summary.elapsed_seconds = time.perf_counter() - started
    from src.records.reports import write_reports

    write_reports(sink, previous, summary, config)
    logger.info(
        "Run finished",
        extra={"operation": "run", "status": "completed", "details": summary.as_dict()},
    )
    return summary


def _verbose_on_a_terminal() -> bool:
    return current_format() == "human" and logger.isEnabledFor(logging.INFO)


def _as_given(input_uri: str, item: InputItem) -> str:
    """An input's name as the user would type it: INPUT joined with its relative path."""
    if item.kind != "s3" and os.path.isfile(input_uri):
        return input_uri
    return input_uri.rstrip("/") + "/" + item.relative


def _no_room(name: str) -> OutputWriteError:
    if name == "EROFS":
        what, fix = "is on a read-only file system", "make it writable (or give another OUTPUT)"
    else:
        what, fix = "has no room left", "make room"
    return OutputWriteError(
        f"OUTPUT {what} ({name}); the run stopped and every file done so far is kept: "
        f"{fix} and run the same command again to resume"
    )


def _open_crosswalk(config: RunConfig, output: Location) -> Crosswalk | None:
    if config.crosswalk is None:
        return None
    target = check_location(
        config.crosswalk, None if output.is_s3 else output.path, config.crosswalk_in_output
    )
    return Crosswalk(target)


def _outcomes(
    todo: list[tuple[InputItem, str]], config: RunConfig, key: bytes, staging: str
) -> Iterator[Outcome]:
    if not todo:  # a re-run with everything done: no engine to load
        return
    # The engine (pydicom, numpy, pydantic) loads only when there is work, before the fork.
    from src.pipeline.worker import init_worker, process
    from src.processes import worker_pool

    workers = min(config.worker_count(), max(1, len(todo)))
    if workers <= 1:
        init_worker(config, key, staging)
        for task in todo:
            yield process(task)
        return
    chunk = max(1, min(16, len(todo) // (workers * 8)))
    level = logging.getLogger("src").getEffectiveLevel()
    fmt = current_format()
    pool = worker_pool(
        workers, init_worker, (config, key, staging, level, fmt), "src.pipeline.worker"
    )
    try:
        yield from pool.imap(process, todo, chunksize=chunk)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def _finish(
    outcome: Outcome,
    item: InputItem,
    sink: Store,
    claims: dict[str, str],
    summary: RunSummary,
    staging: str,
    copy_limit: int,
) -> None:
    """Settle one outcome (commit, or quarantine with the original) and count it."""
    copy = outcome.original if outcome.original.startswith(staging) else ""

    def original() -> AbstractContextManager[tuple[str | bytes | None, str]]:
        return original_for_quarantine(item, copy, outcome.detail, copy_limit)

    try:
        claimed = claims.get(outcome.output) == outcome.input_id
        while True:
            try:
                settle(
                    outcome,
                    sink,
                    staged=outcome.staged,
                    original=original,
                    source=item.relative,
                    claimed=claimed,
                )
                break
            except (OSError, StorageError) as exc:
                if isinstance(exc, OSError) and exc.errno in NO_ROOM:
                    raise  # the disk, not the input: the run stops, the input is redone
                if outcome.status != PROCESSED:
                    raise
                # Never drop an input: a failed write is a quarantine with a reason.
                outcome.refuse(Reason.STORAGE_ERROR, type(exc).__name__, "write")
        summary.bytes_in += outcome.bytes_in
        if outcome.status == PROCESSED:
            claims[outcome.output] = outcome.input_id
            summary.processed += 1
            summary.bytes_out += outcome.bytes_out
            summary.burned_in_annotation_risk += int(outcome.burned_in_annotation_risk)
            summary.count_pixels(outcome.index)
        else:
            summary.quarantined += 1
            summary.reasons[outcome.reason] = summary.reasons.get(outcome.reason, 0) + 1
    finally:
        for leftover in (outcome.staged, outcome.original):
            if leftover and leftover.startswith(staging):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)


__all__ = [
    "SKIPPED",
    "Journal",
    "RunSummary",
    "discover",
    "run",
    "state_dir_for",
    "sweep_leftovers",
]
