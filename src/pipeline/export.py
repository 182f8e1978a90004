"""Volumes for training: one NIfTI file per series of a de-identified OUTPUT, by dcm2niix.

The conversion is dcm2niix's (the binary of the ``dcm2niix`` wheel, found beside the
interpreter or on ``PATH``), not a reimplementation: it knows slice order, gantry tilt,
mosaics, enhanced multi-frame and vendor scaling. This module chooses what to convert,
names the results and keeps the books:

- ``DEST/images/<series uid>.nii.gz`` and its sidecar ``<series uid>.json`` (dcm2niix's
  BIDS sidecar with ``-ba y``: acquisition parameters, no names and no dates). A series
  dcm2niix splits (echoes, phases, inconsistent geometry) gives several volumes, named
  with dcm2niix's own suffixes (``_e2``, ``_ph``, ``_i00001``...).
- ``DEST/dataset.csv``: one row per volume, with the pseudonymised patient, study and
  series ids and the series table's columns (join on ``series_instance_uid`` with
  ``OUTPUT/series.parquet``, or through the crosswalk to labels).
- ``DEST/dataset.json``: the same list as a MONAI data list (key ``"volumes"``, paths
  relative to DEST), for ``monai.data.load_decathlon_datalist``.
- ``DEST/refused.csv``: each series not converted, with the reason.

Series are refused, never converted, when any of their images may carry burned-in text
that was not cleaned (a volume has no Patient Identity Removed flag to carry the
warning), when they hold no images, or when dcm2niix writes nothing (its last warning
or error is the reason). Every file appears whole or not at all: volumes are written
into ``DEST/.staging`` and renamed; a re-run replaces them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.atomic import write_bytes_atomic
from src.errors import PipelineError
from src.records.series_table import describe_series
from src.storage.index_table import table_row

STAGING = ".staging"
#: Series table columns copied into dataset.csv beside the volume's paths.
DATASET_COLUMNS = (
    "patient_id",
    "study_instance_uid",
    "series_instance_uid",
    "series_number",
    "modality",
    "body_part_examined",
    "number_of_instances",
    "number_of_frames",
    "rows",
    "columns",
    "pixel_spacing",
    "slice_thickness",
    "measured_slice_spacing",
    "uniform_spacing",
    "complete",
    "geometry_consistent",
    "manufacturer",
    "manufacturer_model_name",
    "convolution_kernel",
    "contrast",
    "study_date",
)
_SAFE_NAME = re.compile(r"^[0-9.]+$")


class ExportError(PipelineError):
    """OUTPUT cannot be exported (not a medpipe OUTPUT, or dcm2niix is missing)."""

    status_code = 400


@dataclass
class ExportSummary:
    """What :func:`export_nifti` did: volumes written, series converted and refused."""

    volumes: int = 0
    series_converted: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # reason -> series

    @property
    def series_refused(self) -> int:
        return sum(self.refused.values())


def dcm2niix_path() -> str:
    """The dcm2niix binary: the wheel's, beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("dcm2niix")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("dcm2niix")
    if found is None:
        raise ExportError("dcm2niix is not installed (pip install dcm2niix)")
    return found


def read_index(output: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of ``OUTPUT/index.jsonl``; ExportError when OUTPUT has none."""
    path = Path(output) / "index.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportError("OUTPUT has no index.jsonl: is it a medpipe OUTPUT?") from None
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def export_nifti(
    output: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    progress: Callable[[int], object] | None = None,
) -> ExportSummary:
    """Write one NIfTI volume per series of ``output`` into ``dest`` (see the module doc).

    Parameters
    ----------
    output : path
        A de-identified OUTPUT of ``medpipe run`` or ``medpipe receive``.
    dest : path
        The export folder (created; must not be inside ``output``'s patient folders).
    progress : callable, optional
        Called with 1 after each series.

    Returns
    -------
    ExportSummary

    Raises
    ------
    ExportError
        When OUTPUT has no index or dcm2niix cannot be found.
    """
    root, target = Path(output).resolve(), Path(dest).resolve()
    binary = dcm2niix_path()
    series: dict[str, list[dict[str, Any]]] = {}
    for row in read_index(root):
        typed = table_row(row)
        uid = typed.get("series_instance_uid")
        if uid and typed.get("output"):
            series.setdefault(str(uid), []).append(typed)
    images, staging = target / "images", target / STAGING
    images.mkdir(parents=True, exist_ok=True)
    summary = ExportSummary()
    volumes: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for uid in sorted(series):
        members = series[uid]
        described = describe_series(members)
        reason = _refusal(uid, members)
        written: list[str] = []
        if reason is None:
            written, reason = _convert(binary, root, members, uid, staging, images)
        if reason is None:
            summary.series_converted += 1
            summary.volumes += len(written)
            for name in written:
                volumes.append(
                    {
                        "image": f"images/{name}.nii.gz",
                        "sidecar": f"images/{name}.json",
                        **{c: described.get(c) for c in DATASET_COLUMNS},
                    }
                )
        else:
            summary.refused[reason] = summary.refused.get(reason, 0) + 1
            refused.append(
                {
                    "series_instance_uid": uid,
                    "patient_id": described.get("patient_id"),
                    "modality": described.get("modality"),
                    "number_of_instances": len(members),
                    "reason": reason,
                }
            )
        if progress is not None:
            progress(1)
    shutil.rmtree(staging, ignore_errors=True)
    columns = ["image", "sidecar", *DATASET_COLUMNS]
    write_bytes_atomic(target / "dataset.csv", _csv(columns, volumes))
    datalist = {"volumes": [{k: _plain(v) for k, v in row.items()} for row in volumes]}
    write_bytes_atomic(
        target / "dataset.json", json.dumps(datalist, indent=1, sort_keys=True).encode()
    )
    refusal_columns = ["series_instance_uid", "patient_id", "modality", "number_of_instances"]
    write_bytes_atomic(target / "refused.csv", _csv([*refusal_columns, "reason"], refused))
    return summary


def _refusal(uid: str, members: list[dict[str, Any]]) -> str | None:
    if not _SAFE_NAME.match(uid):  # a pseudonymised UID is digits and dots; a file name
        return "series UID is not a DICOM UID"
    if not any(m.get("image_rows") and m.get("image_columns") for m in members):
        return "not an image series (no rows and columns)"
    if any(m.get("burned_in_annotation_risk") and not m.get("clean_pixel_data") for m in members):
        return "burned-in text risk: pixels not cleaned (run with --clean-pixels)"
    return None


def _convert(
    binary: str,
    root: Path,
    members: list[dict[str, Any]],
    uid: str,
    staging: Path,
    images: Path,
) -> tuple[list[str], str | None]:
    """Run dcm2niix on one series; (volume names written, None) or ([], reason)."""
    staging.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=staging, prefix="series-") as work:
        source, out = Path(work) / "dicom", Path(work) / "nifti"
        source.mkdir()
        out.mkdir()
        for n, member in enumerate(members):
            path = (root / str(member["output"])).resolve()
            if not path.is_relative_to(root) or not path.is_file():
                return [], "an indexed output is missing from OUTPUT"
            os.symlink(path, source / f"{n:06d}.dcm")
        command = [binary, "-b", "y", "-ba", "y", "-z", "y", "-d", "0", "-w", "1"]
        command += ["-f", uid, "-o", str(out), str(source)]
        # A list of arguments, no shell; the series UID was checked to be digits and dots.
        ran = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        names = sorted(p.name[: -len(".nii.gz")] for p in out.glob("*.nii.gz"))
        if not names:
            return [], _reason(ran.stdout + ran.stderr, work)
        for name in names:
            sidecar = out / f"{name}.json"
            if not sidecar.exists():  # dcm2niix writes one; the dataset promises one
                sidecar.write_text("{}")
            os.replace(sidecar, images / f"{name}.json")
            os.replace(out / f"{name}.nii.gz", images / f"{name}.nii.gz")
        return names, None


def _reason(text: str, work: str) -> str:
    """dcm2niix's last error or warning, without our scratch paths."""
    lines = [line.strip() for line in text.splitlines()]
    said = [line for line in lines if line.startswith(("Error", "Warning", "Unsupported"))]
    last = (said or ["dcm2niix wrote no volume"])[-1].replace(work, "")
    return f"dcm2niix: {last[:200]}"


def _plain(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    sink = io.StringIO()
    writer = csv.DictWriter(sink, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(v) if isinstance(v, list) else ("" if v is None else _plain(v))
                for k, v in row.items()
            }
        )
    return sink.getvalue().encode("utf-8")


__all__ = ["DATASET_COLUMNS", "ExportError", "ExportSummary", "dcm2niix_path", "export_nifti"]
