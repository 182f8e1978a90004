"""The crosswalk: original identifiers beside their pseudonyms, for the study team.

It is PHI by design (the source path, the original Patient ID, Accession Number and
UIDs), so it is written only when asked for (``--crosswalk FILE``), with mode 0600, and
outside OUTPUT unless the user says otherwise. Rows are appended as inputs are
committed, so a resumed run adds the rest and nothing twice.

A spreadsheet runs a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
return as a formula; a Patient ID, an accession or a file name can begin that way. Such
a value is written with a leading apostrophe (OWASP's advice for CSV files), which
spreadsheets show as text; a program joining on the crosswalk strips one leading
apostrophe from a value whose next character is one of those. A crosswalk path that is
a symbolic link is refused: it would be written, and its mode changed, elsewhere.
"""

from __future__ import annotations

import csv
import io
import os
import stat
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

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: str) -> str:
    """``value`` as a CSV cell no spreadsheet runs as a formula."""
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value


def check_location(path: str, output_dir: str | None, inside_ok: bool) -> Path:
    """Refuse a crosswalk inside OUTPUT (it would be shared with the data) unless asked,
    and a crosswalk path that is a symbolic link."""
    if Path(path).is_symlink():
        raise ConfigurationError(f"--crosswalk {path} is a symbolic link; give the file itself")
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
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(path, flags, 0o600)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot open the crosswalk ({exc.strerror or type(exc).__name__})"
            ) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ConfigurationError("the crosswalk must be a regular file")
        os.fchmod(fd, 0o600)  # also when it existed with a wider mode
        self._fh = os.fdopen(fd, "a", encoding="utf-8", newline="")
        if os.fstat(fd).st_size == 0:
            self._write(dict(zip(COLUMNS, COLUMNS, strict=True)))

    def _write(self, row: dict[str, str]) -> None:
        buffer = io.StringIO()
        safe = {name: cell(str(value)) for name, value in row.items()}
        csv.DictWriter(buffer, COLUMNS, extrasaction="ignore").writerow(safe)
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


__all__ = ["COLUMNS", "Crosswalk", "cell", "check_location"]
