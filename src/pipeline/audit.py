"""PHI audit: search de-identified outputs and logs for identifying values of the inputs.

The identifying values are collected from every input, at every depth: each element that
the de-identifier would not keep as it is (names, IDs, dates, original UIDs, free text,
private attributes, SR content, overlay and curve text), plus the components of person
names. The outputs' bytes (and any log files) are then searched for them, in UTF-8 and
Latin-1. Hits are reported by the source tag path and the output file, never by value.

``quarantine/`` and ``.medpipe/`` are skipped: they hold original material by design.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from src.errors import InvalidDICOMError
from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser
from src.pipeline.audit_text import searchable
from src.pipeline.audit_where import locate

MIN_TEXT = 4
MIN_UID = 10
_SKIP_DIRS = {"quarantine", ".medpipe"}
_DUMMIES = {"ANON", "ANONYMIZED", "ANONYMOUS", "19000101", "000000"}
# The attributes that say how the object was de-identified (written by the engine).
_MARKERS = frozenset(
    {
        "DeidentificationMethod",
        "DeidentificationMethodCodeSequence",
        "PatientIdentityRemoved",
        "LongitudinalTemporalInformationModified",
        "BurnedInAnnotation",
    }
)


@dataclass
class AuditHit:
    """One identifying value found where it must not be (no value, only where)."""

    source: str  # tag path of the value in the input, e.g. "ContentSequence[0].TextValue"
    found_in: str  # output file (relative to OUTPUT) or log file
    #: In a DICOM output: the element holding it and the rule that kept it (no value).
    found_at: str = ""


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


_TEXT_VRS = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS", "UR"})
_BINARY_VRS = frozenset({"OB", "OW", "UN"})


def _keep(text: str, vr: str) -> bool:
    """Whether a removed value is worth searching for (identifying, not too generic)."""
    if text.upper() in _DUMMIES or sum(ch.isalnum() for ch in text) < 2:
        return False
    if vr == "UI":
        return len(text) >= MIN_UID
    if vr in ("DA", "DT"):
        return len(text) >= 8 and text[:8].isdigit()
    if vr in _BINARY_VRS:
        # Private text stored as bytes: only printable, word-like values.
        printable = sum(ch.isprintable() for ch in text)
        return (
            len(text) >= MIN_TEXT + 2
            and printable == len(text)
            and any(ch.isalpha() for ch in text)
        )
    if vr not in _TEXT_VRS:
        return False  # numbers, times: not identifying on their own
    if text.replace(".", "").replace("-", "").replace(" ", "").isdigit():
        return len(text) >= 6
    return len(text) >= MIN_TEXT


def collect_identifiers(
    path: str, deidentifier: Deidentifier
) -> tuple[dict[str, tuple[str, str]], list[str]]:
    """Return the identifying values of one input file and the values the profile keeps.

    Returns
    -------
    (dict, list)
        ``{value: (tag path, VR)}`` for every element the profile removes or replaces,
        and the text of every element it keeps. A removed value that also stands inside
        a kept one (a manufacturer name repeated in a private tag, a word of a code
        meaning) is not evidence of a leak; :func:`audit` drops those.
    """
    dataset = DICOMParser().parse_file(path)
    originals: dict[str, tuple[str, str]] = {}
    for path_text, value, vr in _walk(dataset, ""):
        originals.setdefault(path_text, (value, vr))
    result = deidentifier.deidentify(dataset)
    # What the de-identifier itself wrote is not evidence of a leak: a dummy that equals
    # the input ("+0000" for "+0000") and the marker attributes' text (the code meanings
    # of the De-identification Method Code Sequence contain words such as "Dates").
    written: dict[str, set[str]] = {}
    assert result.dataset is not None  # the pydicom path always describes
    for path_text, value, _vr in _walk(result.dataset, ""):
        written.setdefault(path_text, set()).add(value)
    markers = [
        value
        for path_text, values in written.items()
        if path_text.split("[", 1)[0].split(".", 1)[0] in _MARKERS
        for value in values
    ]
    # A Code Meaning replaced by the standard's own meaning for that code is not PHI.
    benign = {"K", "standard-code"}
    kept = [
        originals[a.path][0].strip()
        for a in result.actions
        if (a.action in benign or a.reason in benign) and a.path in originals
    ] + markers
    found: dict[str, tuple[str, str]] = {}
    for action in result.actions:
        if action.action == "K" or action.reason == "standard-code":
            continue
        entry = originals.get(action.path)
        if entry is None:
            continue
        raw, vr = entry
        if raw in written.get(action.path, ()):
            continue  # the profile's own replacement happens to equal the input
        candidates = [raw]
        if vr == "PN":
            candidates += [p for p in re.split(r"[\^=]+", raw) if len(p) >= 3]
        if vr in ("DT",):
            candidates = [raw[:8]]
        for text in candidates:
            text = text.strip()
            if _keep(text, vr):
                found.setdefault(text, (action.path, vr))
    return found, kept


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


_TOKEN_BYTES = frozenset(b"0123456789.")


def _matches(pattern: re.Pattern[bytes], data: bytes, tokens: set[bytes]) -> Iterator[bytes]:
    """Each needle found in ``data``; a token needle only where no digit or dot precedes."""
    pos = 0
    while (match := pattern.search(data, pos)) is not None:
        found, start = match.group(0), match.start()
        if found in tokens and start > 0 and data[start - 1] in _TOKEN_BYTES:
            pos = start + 1  # inside a longer number: a needle may still start later
            continue
        yield found
        pos = match.end()


def _files(root: Path) -> Iterable[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            yield Path(dirpath) / name


def profile_of_output(
    output: str | os.PathLike[str], overrides: dict[str, Any] | None = None
) -> ConfidentialityProfile | None:
    """The profile OUTPUT was written with, from its manifest.json (None without one).

    ``overrides`` (option name to value; None means "not given") win over the manifest.
    """
    try:
        recorded = json.loads((Path(output) / "manifest.json").read_text())["profile"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    values = dict(recorded)
    values["attribute_types"] = {
        int(tag, 16): kind for tag, kind in (values.get("attribute_types") or {}).items()
    }
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return ConfidentialityProfile.from_mapping(values)


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
    needles: dict[str, tuple[str, str]] = {}
    kept: set[str] = set()
    for path in _files(Path(against)):
        try:
            found, kept_here = collect_identifiers(str(path), deid)
        except (InvalidDICOMError, ValueError, OSError):
            continue
        report.inputs += 1
        kept.update(kept_here)
        for value, origin in found.items():
            needles.setdefault(value, origin)
    kept_text = "\n".join(kept)
    needles = {v: o for v, o in needles.items() if v not in kept_text}
    report.values = len(needles)
    if not needles:
        return report
    encoded: dict[bytes, str] = {}
    alternatives = []
    tokens: set[bytes] = set()
    for value, (source, vr) in sorted(needles.items(), key=lambda kv: -len(kv[0])):
        for encoding in ("utf-8", "latin-1"):
            try:
                data = value.encode(encoding)
            except UnicodeEncodeError:
                continue
            if data in encoded:
                continue
            encoded[data] = source
            if vr in ("UI", "DA", "DT") or data.replace(b".", b"").isdigit():
                # A UID or number counts only as a whole token, not inside a longer one
                # (the check before it is made on each match: a look-behind at the start
                # of a branch would cost the pattern its first-byte scan).
                tokens.add(data)
                alternatives.append(re.escape(data) + rb"(?![.]?[0-9])")
            else:
                alternatives.append(re.escape(data))
    pattern = re.compile(b"|".join(alternatives))
    output_root = Path(output)
    written = profile_of_output(output) or profile  # the rules the outputs were made by
    targets = [(p, p.relative_to(output_root).as_posix()) for p in _files(output_root)]
    targets += [(Path(log), str(log)) for log in logs]
    for path, label in targets:
        data = searchable(path)
        report.files_scanned += 1
        report.bytes_scanned += len(data)
        seen: set[str] = set()
        for needle in _matches(pattern, data, tokens):
            tag_path = encoded[needle]
            if tag_path not in seen:
                seen.add(tag_path)
                where = locate(path, needle, written) if label.endswith(".dcm") else ""
                report.hits.append(AuditHit(source=tag_path, found_in=label, found_at=where))
    return report
