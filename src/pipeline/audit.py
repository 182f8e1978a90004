"""PHI audit: search de-identified outputs and logs for identifying values of the inputs.

The identifying values are collected from every input, at every depth: each element that
the de-identifier would not keep as it is (names, IDs, dates, original UIDs, free text,
private attributes, SR content, overlay and curve text), plus the components of person
names. The outputs' bytes (and any log files) are then searched for them, in UTF-8 and
Latin-1. Hits are reported by the source tag path and the output file, never by value.

``quarantine/`` and ``.medpipe/`` are skipped: they hold original material by design.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from src.errors import InvalidDICOMError
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser
from src.ingestion.profile import ConfidentialityProfile

MIN_TEXT = 4
MIN_UID = 10
_SKIP_DIRS = {"quarantine", ".medpipe"}
_DUMMIES = {"ANONYMIZED", "ANONYMOUS", "19000101", "000000"}


@dataclass
class AuditHit:
    """One identifying value found where it must not be (no value, only where)."""

    source: str  # tag path of the value in the input, e.g. "ContentSequence[0].TextValue"
    found_in: str  # output file (relative to OUTPUT) or log file


@dataclass
class AuditReport:
    """What the audit looked at and found."""

    inputs: int = 0
    values: int = 0
    files_scanned: int = 0
    bytes_scanned: int = 0
    hits: list[AuditHit] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.hits


def _values(value: object) -> list[str]:
    items = value if isinstance(value, MultiValue | list | tuple) else [value]
    out = []
    for item in items:
        if item is None or isinstance(item, Dataset):
            continue
        text = item.decode("latin-1", "ignore") if isinstance(item, bytes) else str(item)
        text = text.strip(" \x00")
        if text:
            out.append(text)
    return out


def _keep(text: str, vr: str) -> bool:
    if text.upper() in _DUMMIES or vr == "TM":
        # A time of day alone identifies no one; the profile keeps it under Modified Dates.
        return False
    if vr == "UI":
        return len(text) >= MIN_UID
    if vr in ("DA", "DT"):
        return len(text) >= 8 and text[:8].isdigit()
    if text.replace(".", "").replace("-", "").isdigit():
        return len(text) >= 6
    return len(text) >= MIN_TEXT


def collect_identifiers(path: str, deidentifier: Deidentifier) -> dict[str, str]:
    """Return ``{value: tag path}`` of the identifying values in one input file."""
    dataset = DICOMParser().parse_file(path)
    originals: dict[str, tuple[str, str]] = {}
    for path_text, value, vr in _walk(dataset, ""):
        originals.setdefault(path_text, (value, vr))
    result = deidentifier.deidentify(dataset)
    found: dict[str, str] = {}
    for action in result.actions:
        if action.action == "K":
            continue
        entry = originals.get(action.path)
        if entry is None:
            continue
        raw, vr = entry
        candidates = [raw]
        if vr == "PN":
            candidates += [p for p in re.split(r"[\^=]+", raw) if len(p) >= 3]
        if vr in ("DT",):
            candidates = [raw[:8]]
        for text in candidates:
            text = text.strip()
            if _keep(text, vr):
                found.setdefault(text, action.path)
    return found


def _walk(ds: Dataset, prefix: str) -> Iterable[tuple[str, str, str]]:
    from pydicom.datadict import keyword_for_tag

    for elem in ds:
        tag = int(elem.tag)
        name = keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        path = prefix + name
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                yield from _walk(item, f"{path}[{i}].")
            continue
        if elem.VR in ("OB", "OW", "UN") and tag != 0x60003000:
            values = _values(elem.value) if len(elem.value or b"") < 4096 else []
        else:
            values = [] if elem.VR in ("OB", "OW") else _values(elem.value)
        for text in values:
            yield path, text, str(elem.VR)


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def audit(
    output: str | os.PathLike[str],
    against: str | os.PathLike[str],
    logs: Iterable[str | os.PathLike[str]] = (),
    profile: ConfidentialityProfile | None = None,
    key: bytes | str | None = None,
) -> AuditReport:
    """Search OUTPUT (and ``logs``) for the identifying values found in the inputs.

    Parameters
    ----------
    output : path
        The de-identified tree (``medpipe run``'s OUTPUT).
    against : path
        The original inputs.
    logs : paths
        Log files to search too.
    profile, key
        As for the run; they decide which elements count as identifying.

    Returns
    -------
    AuditReport
    """
    report = AuditReport()
    deid = Deidentifier(profile=profile, key=key)
    needles: dict[str, str] = {}
    for path in _files(Path(against)):
        try:
            found = collect_identifiers(str(path), deid)
        except (InvalidDICOMError, ValueError, OSError):
            continue
        report.inputs += 1
        for value, source in found.items():
            needles.setdefault(value, source)
    report.values = len(needles)
    if not needles:
        return report
    encoded: dict[bytes, str] = {}
    for value, source in needles.items():
        for encoding in ("utf-8", "latin-1"):
            try:
                encoded.setdefault(value.encode(encoding), source)
            except UnicodeEncodeError:
                continue
    pattern = re.compile(b"|".join(re.escape(n) for n in sorted(encoded, key=len, reverse=True)))
    output_root = Path(output)
    targets = [(p, p.relative_to(output_root).as_posix()) for p in _files(output_root)]
    targets += [(Path(log), str(log)) for log in logs]
    for path, label in targets:
        data = path.read_bytes()
        report.files_scanned += 1
        report.bytes_scanned += len(data)
        seen: set[str] = set()
        for match in pattern.finditer(data):
            source = encoded[match.group(0)]
            if source not in seen:
                seen.add(source)
                report.hits.append(AuditHit(source=source, found_in=label))
    return report
