"""``medpipe send SOURCE DEST``: ship a de-identified OUTPUT to a DICOM node or DICOMweb.

Only de-identified data leaves: files without Patient Identity Removed = YES are refused,
and ``quarantine/`` is never read. What DEST acknowledged is recorded in the OUTPUT's
``.medpipe/`` folder, so a re-run (after a drop, a crash or new files) sends only the
rest.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from src.errors import ConfigurationError
from src.network import scu, stow
from src.network.destinations import Destination, parse_destination
from src.network.outgoing import (
    Outgoing,
    RefusedFileError,
    SentRecord,
    describe,
    find_files,
    output_root,
)
from src.records.state import STATE_DIR

logger = logging.getLogger(__name__)


@dataclass
class SendSummary:
    """The account of a send: files = sent + already sent + refused + failed."""

    destination: str
    files: int = 0
    sent: int = 0
    already_sent: int = 0
    refused: int = 0
    failed: int = 0
    bytes_sent: int = 0
    elapsed_seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    #: Acknowledgements forgotten before sending (``--resend``, or ``--verify`` found
    #: them missing at the destination): those files were sent again.
    forgotten: int = 0

    @property
    def ok(self) -> bool:
        return self.refused == 0 and self.failed == 0

    @property
    def balanced(self) -> bool:
        return self.files == self.sent + self.already_sent + self.refused + self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "files": self.files,
            "sent": self.sent,
            "already_sent": self.already_sent,
            "refused": self.refused,
            "failed": self.failed,
            "bytes_sent": self.bytes_sent,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "reasons": dict(sorted(self.reasons.items())),
            "forgotten": self.forgotten,
        }

    def lines(self) -> list[str]:
        rate = self.sent / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0
        out = [
            f"files = sent + already sent + refused + failed: {self.files} = {self.sent} + "
            f"{self.already_sent} + {self.refused} + {self.failed}",
            f"sent {self.bytes_sent / 1e6:.1f} MB to {self.destination} in "
            f"{self.elapsed_seconds:.2f} s: {rate:.1f} files/s",
        ]
        if self.forgotten:
            out.append(
                f"{self.forgotten} earlier acknowledgement(s) forgotten first "
                "(--resend, or --verify found them missing at the destination)"
            )
        out += [f"not sent {n}: {reason}" for reason, n in sorted(self.reasons.items())]
        return out


def deliver(
    items: list[Outgoing],
    dest: Destination,
    record: SentRecord,
    summary: SendSummary,
    *,
    how: scu.Association | None = None,
    on_file: Callable[[], None] | None = None,
) -> None:
    """Send the ``items`` not yet in ``record`` and add the outcome to ``summary``."""
    todo = [i for i in items if i not in record]
    summary.already_sent += len(items) - len(todo)

    def acknowledged(item: Outgoing) -> None:
        record.add(item)
        if on_file is not None:
            on_file()

    if dest.scheme == "dicom":
        delivery = scu.store(todo, dest, acknowledged, how)
    else:
        retries = how.retries if how is not None else 4
        client = stow.client_for(dest, how)
        delivery = stow.store(todo, dest, acknowledged, retries=retries, client=client)
    summary.sent += delivery.sent
    summary.failed += delivery.failed
    summary.bytes_sent += delivery.bytes_sent
    for reason, n in delivery.reasons.items():
        summary.reasons[reason] = summary.reasons.get(reason, 0) + n


def _verify(
    record: SentRecord, items: list[Outgoing], dest: Destination, how: scu.Association | None
) -> int:
    """Forget the recorded files ``dest`` no longer holds; how many were forgotten."""
    recorded = [i for i in items if i in record]
    if not recorded:
        return 0
    try:
        held = stow.held_instances(
            stow.client_for(dest, how), (i.study_instance_uid for i in recorded)
        )
    except requests.RequestException as exc:
        raise ConfigurationError(
            f"--verify: {dest.label} could not be queried ({type(exc).__name__}); nothing was sent"
        ) from exc
    keep = {i.record_key for i in recorded if i.sop_instance_uid in held}
    return record.keep_only(keep | (record.keys - {i.record_key for i in recorded}))


def _tick(bar: tqdm[Any]) -> None:
    bar.update(1)


def record_for(state_dir: Path, dest: Destination) -> SentRecord:
    """The record of what ``dest`` acknowledged, kept under ``state_dir``."""
    return SentRecord(state_dir / "sent" / dest.state_name)


def send(
    source: str,
    dest_text: str,
    *,
    how: scu.Association | None = None,
    progress: bool | None = None,
    resend: bool = False,
    verify: bool = False,
) -> SendSummary:
    """Send every de-identified file under ``source`` to ``dest_text``.

    What ``dest_text`` acknowledged is recorded in ``OUTPUT/.medpipe/sent/`` and not
    sent again; ``resend`` forgets that record first (every file is sent), ``verify``
    keeps only what a DICOMweb destination still holds (asked with QIDO-RS).

    Parameters
    ----------
    source : str
        A de-identified OUTPUT folder or a folder inside one.
    dest_text : str
        ``dicom://AE@host:port`` or an ``http(s)://`` DICOMweb base URL.
    how : scu.Association, optional
        Calling AE title, TLS and the retry budget.
    progress : bool, optional
        Show a progress bar (default: when stderr is a terminal).
    resend : bool
        Send every file, whatever the record says (a destination that was emptied).
    verify : bool
        DICOMweb only: before sending, ask the destination which of the recorded
        instances it holds; the others are sent again.

    Returns
    -------
    SendSummary

    Raises
    ------
    ConfigurationError
        For a bad DEST, a SOURCE that is not a folder or is a quarantine folder, a
        SOURCE with no DICOM files, ``verify`` for a DIMSE destination, or a
        destination that cannot be queried.
    """
    started = time.perf_counter()
    dest = parse_destination(dest_text)
    if verify and dest.scheme != "dicomweb":
        raise ConfigurationError("--verify needs a DICOMweb destination (QIDO-RS)")
    root = output_root(source)
    paths = list(find_files(source, root))
    if not paths:
        raise ConfigurationError(f"SOURCE {source} holds no .dcm files")
    summary = SendSummary(destination=dest.label, files=len(paths))
    items: list[Outgoing] = []
    for path in paths:
        try:
            items.append(describe(path))
        except RefusedFileError as exc:
            summary.refused += 1
            summary.reasons[exc.reason] = summary.reasons.get(exc.reason, 0) + 1
    record = record_for(root / STATE_DIR, dest)
    if resend:
        summary.forgotten = record.keep_only(set())
    elif verify:
        summary.forgotten = _verify(record, items, dest, how)
    show = progress if progress is not None else sys.stderr.isatty()
    with tqdm(total=len(items), unit="file", disable=not show, desc="sending") as bar:
        deliver(items, dest, record, summary, how=how, on_file=lambda: _tick(bar))
    summary.elapsed_seconds = time.perf_counter() - started
    logger.info(
        "Send finished",
        extra={"operation": "send", "status": "completed", "details": summary.as_dict()},
    )
    return summary


__all__ = ["SendSummary", "deliver", "record_for", "send"]
