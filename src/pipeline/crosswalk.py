"""The crosswalk: original identifiers beside their pseudonyms, for the study team.

It is PHI by design (the source path, the original Patient ID, Accession Number and
UIDs), so it is written only when asked for (``--crosswalk FILE``), with mode 0600, and
outside OUTPUT unless the user says otherwise. Rows are appended as inputs are
committed, so a resumed run adds the rest and nothing twice.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from src.errors import ConfigurationError

COLUMNS = (
    "source",
    "patient_id",
    "issuer_of_patient_id",
    "patient_pseudonym",
    "accession_number",
    "study_instance_uid",
    "study_pseudonym",
    "series_instance_uid",
    "series_pseudonym",
    "sop_instance_uid",
    "sop_pseudonym",
    "output",
)


def check_location(path: str, output_dir: str | None, inside_ok: bool) -> Path:
    """Refuse a crosswalk inside OUTPUT (it would be shared with the data) unless asked."""
    target = Path(path).resolve()
    if output_dir is not None and not inside_ok:
        out = Path(output_dir).resolve()
        if target == out or out in target.parents:
            raise ConfigurationError(
                "the crosswalk holds PHI: write it outside OUTPUT "
                "(or pass --crosswalk-in-output to keep it there)"
            )
    if target.is_dir():
        raise ConfigurationError(f"--crosswalk {path} is a folder; give a file name")
    return target


class Crosswalk:
    """Append-only CSV of original identifiers and pseudonyms (mode 0600)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)  # also when it existed with a wider mode
        self._fh = os.fdopen(fd, "a", encoding="utf-8", newline="")
        if os.fstat(fd).st_size == 0:
            self._write(dict(zip(COLUMNS, COLUMNS, strict=True)))

    def _write(self, row: dict[str, str]) -> None:
        buffer = io.StringIO()
        csv.DictWriter(buffer, COLUMNS, extrasaction="ignore").writerow(row)
        self._fh.write(buffer.getvalue())
        self._fh.flush()

    def add(self, source: str, original: dict[str, str], index: dict[str, Any]) -> None:
        """One committed instance: ``original`` from the core, ``index`` its index row."""
        study = index.get("study", {})
        series = index.get("series", {})
        image = index.get("image", {})
        self._write(
            {
                **original,
                "source": source,
                "patient_pseudonym": str(index.get("patient", {}).get("patient_id") or ""),
                "study_pseudonym": str(study.get("study_instance_uid") or ""),
                "series_pseudonym": str(series.get("series_instance_uid") or ""),
                "sop_pseudonym": str(image.get("sop_instance_uid") or ""),
                "output": str(index.get("output") or ""),
            }
        )

    def close(self) -> None:
        self._fh.close()


__all__ = ["COLUMNS", "Crosswalk", "check_location"]
