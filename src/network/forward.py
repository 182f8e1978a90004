"""``medpipe receive --forward DEST``: each completed study is sent on, in the background.

One thread sends one study at a time, as ``medpipe send`` would: only files with Patient
Identity Removed = YES, and with the same record of what DEST acknowledged
(``.medpipe/sent/``), so ``medpipe send OUTPUT DEST`` later sends only what is left
(after a crash, for example).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time

from src.network.destinations import Destination
from src.network.intake import Intake, Study
from src.network.outgoing import Outgoing, RefusedFileError, SentRecord, describe
from src.network.scu import Association
from src.network.send import SendSummary, deliver, record_for

logger = logging.getLogger(__name__)


class Forwarder:
    """Sends completed studies of an :class:`Intake` to ``dest``.

    Parameters
    ----------
    intake : Intake
    dest : Destination
    how : Association, optional
        Calling AE title, TLS and retries for C-STORE.
    """

    def __init__(self, intake: Intake, dest: Destination, how: Association | None = None) -> None:
        self.intake, self.dest, self.how = intake, dest, how
        self.summary = SendSummary(dest.label)
        self._queue: queue.Queue[Study | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="scp-forward", daemon=True)
        self._thread.start()

    def submit(self, study: Study) -> None:
        self._queue.put(study)

    def close(self) -> None:
        """Finish the studies submitted, then stop."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        record = record_for(self.intake.state, self.dest)
        while (study := self._queue.get()) is not None:
            copies: list[str] = []
            try:
                self._forward(study, record, copies)
            finally:
                for copy in copies:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(copy)

    def _forward(self, study: Study, record: SentRecord, copies: list[str]) -> None:
        summary = self.summary
        items: list[Outgoing] = []
        for key in study.keys:
            path = self.intake.local_path(key)
            if path is None:  # an S3 OUTPUT: a local copy to send from, removed after
                path = str(self.intake.staging / f"forward-{key.replace('/', '_')}")
                self.intake.sink.fetch(key, path)
                copies.append(path)
            try:
                items.append(describe(path))
            except RefusedFileError as exc:
                summary.refused += 1
                summary.reasons[exc.reason] = summary.reasons.get(exc.reason, 0) + 1
        summary.files += len(study.keys)
        before = (summary.sent, summary.failed)
        started = time.perf_counter()
        deliver(items, self.dest, record, summary, how=self.how)
        # The time spent sending, summed over studies: the summary's rate is per second
        # of sending, not of the receiver's whole uptime.
        summary.elapsed_seconds += time.perf_counter() - started
        logger.info(
            "Study forwarded",
            extra={
                "operation": "forward",
                "status": "completed",
                "details": {
                    "study": study.uid,
                    "destination": self.dest.label,
                    "sent": summary.sent - before[0],
                    "failed": summary.failed - before[1],
                },
            },
        )


__all__ = ["Forwarder"]
