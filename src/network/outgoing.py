"""What ``medpipe send`` ships: de-identified files found under SOURCE, and the record
of what a destination has acknowledged (so that a re-run sends only the rest)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from src.atomic import write_bytes_atomic
from src.errors import ConfigurationError
from src.records.state import STATE_DIR
from src.storage.store import QUARANTINE_PREFIX

QUARANTINE_DIR = QUARANTINE_PREFIX
_HEADER_TAGS = [
    "PatientIdentityRemoved",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
]


@dataclass(frozen=True)
class Outgoing:
    """One de-identified file to send (UIDs here are the de-identified ones)."""

    path: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str
    size: int

    @property
    def record_key(self) -> str:
        return f"{self.sop_instance_uid}:{self.size}"


class RefusedFileError(Exception):
    """A file that must not leave: ``reason`` names why (never a value)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe(path: str) -> Outgoing:
    """Read the header of one file and check it may leave.

    Raises
    ------
    RefusedFileError
        If the file is not DICOM or lacks Patient Identity Removed = YES.
    """
    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise RefusedFileError(f"not a readable DICOM file ({type(exc).__name__})") from exc
    if str(ds.get("PatientIdentityRemoved", "")).strip().upper() != "YES":
        raise RefusedFileError("Patient Identity Removed (0012,0062) is not YES")
    meta = getattr(ds, "file_meta", None)
    ts = str(getattr(meta, "TransferSyntaxUID", "") or "")
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    if not ts or not sop_class or not sop_instance:
        raise RefusedFileError("no Transfer Syntax, SOP Class or SOP Instance UID")
    return Outgoing(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax_uid=ts,
        study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
        size=os.path.getsize(path),
    )


def output_root(source: str) -> Path:
    """The OUTPUT folder that holds ``source`` (the nearest ancestor with ``.medpipe``),
    else ``source`` itself. Refuses a source inside (or being) a quarantine folder."""
    here = Path(source).resolve()
    if not here.is_dir():
        raise ConfigurationError(f"SOURCE {source} is not a folder")
    for folder in (here, *here.parents):
        if (folder / STATE_DIR).is_dir() or (folder / "manifest.json").is_file():
            inside = here.relative_to(folder).parts
            if inside and inside[0] == QUARANTINE_DIR:
                raise ConfigurationError(
                    "SOURCE is a quarantine folder: it holds original, identified data"
                )
            return folder
    return here


def find_files(source: str, root: Path) -> Iterator[str]:
    """Every ``.dcm`` file under ``source``, sorted, never under ``quarantine/`` or
    ``.medpipe/`` of the OUTPUT ``root``."""
    skip = {str(root / QUARANTINE_DIR), str(root / STATE_DIR)}
    for dirpath, dirnames, filenames in os.walk(Path(source).resolve()):
        dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in skip)
        for name in sorted(filenames):
            if name.endswith(".dcm") and not name.startswith("."):
                yield os.path.join(dirpath, name)


class SentRecord:
    """Append-only record of what one destination acknowledged (de-identified UIDs only).

    Parameters
    ----------
    path : Path
        A JSON-lines file; created on first use.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.keys: set[str] = set()
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        self.keys.add(json.loads(line)["key"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by a crash: that file is sent again
        path.parent.mkdir(parents=True, exist_ok=True)

    def __contains__(self, item: Outgoing) -> bool:
        return item.record_key in self.keys

    def add(self, item: Outgoing) -> None:
        """Record that ``item`` was acknowledged."""
        with self._lock:
            self.keys.add(item.record_key)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": item.record_key}) + "\n")

    def keep_only(self, keys: set[str]) -> int:
        """Forget every acknowledgement not in ``keys`` (rewritten atomically).

        Returns
        -------
        int
            How many were forgotten: those files are sent again.
        """
        with self._lock:
            forgotten = len(self.keys - keys)
            self.keys &= keys
            lines = "".join(json.dumps({"key": k}) + "\n" for k in sorted(self.keys))
            write_bytes_atomic(self.path, lines.encode("utf-8"))
        return forgotten


__all__ = ["Outgoing", "RefusedFileError", "SentRecord", "describe", "find_files", "output_root"]
