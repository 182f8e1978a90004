"""The resume journal: an append-only JSON-lines record of outcomes, read back to resume.

A line cut by ``kill -9`` is skipped on load, so its input is simply redone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by kill -9: its input is simply redone


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """The latest entry of every input id in the journal at ``path``.

    A ``skipped`` line (a receiver's record of a repeated instance it acknowledged
    without redoing it) counts for its session but changes no input's entry.
    """
    entries: dict[str, dict[str, Any]] = {}
    for entry in _lines(path):
        if entry.get("status") != "skipped":
            entries[entry["input_id"]] = entry
    return entries


def session_counts(path: Path) -> dict[str, dict[str, Any]]:
    """What each session recorded in the journal at ``path``: its inputs, processed,
    quarantined (by reason) and skipped, from every line it wrote (the journal is written
    before a sender is told "success", so these counts survive a ``kill -9``)."""
    counts: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return counts
    for entry in _lines(path):
        session = entry.get("session")
        if not session:
            continue
        c = counts.setdefault(
            session,
            {"inputs": 0, "processed": 0, "quarantined": 0, "skipped": 0, "reasons": {}},
        )
        status = str(entry.get("status"))
        c["inputs"] += 1
        if status in ("processed", "quarantined", "skipped"):
            c[status] += 1
        if status == "quarantined":
            reason = str(entry.get("reason", ""))
            c["reasons"][reason] = c["reasons"].get(reason, 0) + 1
    return counts


class Journal:
    """Append-only JSON-lines record of outcomes, read back to resume.

    Parameters
    ----------
    path : Path
    batch : int
        Entries written together (default 1: each entry is written before
        :meth:`append` returns, as a receiver needs before it answers a sender). A run
        writes in batches, at least once a second: a ``kill -9`` loses at most one
        batch, whose inputs are redone; their outputs are the same bytes, so the redo
        finds its own output in place and changes nothing.
    """

    def __init__(self, path: Path, *, batch: int = 1) -> None:
        self.path = path
        self.batch = max(1, batch)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._pending: list[str] = []
        self._written = time.monotonic()

    def load(self) -> dict[str, dict[str, Any]]:
        return read_journal(self.path)

    def append(self, entry: dict[str, Any]) -> None:
        self._pending.append(json.dumps(entry, sort_keys=True) + "\n")
        if len(self._pending) >= self.batch or time.monotonic() - self._written >= 1.0:
            self.flush()

    def flush(self) -> None:
        """Write the entries appended so far."""
        if self._pending:
            self._fh.write("".join(self._pending))
            self._pending.clear()
        self._fh.flush()
        self._written = time.monotonic()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._fh.close()


__all__ = ["Journal", "read_journal", "session_counts"]
