"""The resume journal: an append-only JSON-lines record of outcomes, read back to resume.

A line cut by ``kill -9`` is skipped on load, so its input is simply redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """The latest entry of every input id in the journal at ``path``."""
    entries: dict[str, dict[str, Any]] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by kill -9: its input is simply redone
            entries[entry["input_id"]] = entry
    return entries


class Journal:
    """Append-only JSON-lines record of outcomes, read back to resume."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def load(self) -> dict[str, dict[str, Any]]:
        return read_journal(self.path)

    def append(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, sort_keys=True) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


__all__ = ["Journal", "read_journal"]
