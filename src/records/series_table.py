"""The series table: one row per de-identified series, from the index rows of its instances.

What a loader needs before it reads a single pixel: how many instances and frames, the
matrix, the spacing in all three directions (the slice spacing *measured* from the image
positions, not only the header's), whether the spacing is uniform, whether slices are
missing, and whether the instances share one geometry (frame of reference, orientation,
matrix, pixel spacing, positions on one line; None for images not placed in patient
space). Every identifier is the output's
pseudonymised one and every date is the shifted one: the rows are made from the index,
which is made from the written outputs.

Locally ``OUTPUT/series.parquet`` holds the table; on AWS the index function keeps one
Parquet object per series under ``series/`` of the processed bucket, read by the Glue
table ``series``. Both rows come from :func:`series_rows`.

Examples
--------
>>> rows = [{"series": {"series_instance_uid": "2.25.1", "modality": "CT"},
...          "image": {"sop_instance_uid": f"2.25.{i}", "rows": 512, "columns": 512,
...                    "image_position_patient": [0, 0, 2.5 * i],
...                    "image_orientation_patient": [1, 0, 0, 0, 1, 0]}}
...         for i in range(3)]
>>> row = series_rows(rows)[0]
>>> row["number_of_instances"], row["measured_slice_spacing"], row["complete"]
(3, 2.5, True)
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import pairwise
from statistics import median
from typing import Any

from src.storage.index_table import table_row

#: Column name -> Athena/Glue type of the series table, in table order.
SERIES_COLUMNS: dict[str, str] = {
    "patient_id": "string",
    "study_instance_uid": "string",
    "series_instance_uid": "string",
    "series_number": "bigint",
    "modality": "string",
    "series_description": "string",
    "body_part_examined": "string",
    "sop_class_uid": "string",
    "image_type": "array<string>",
    "number_of_instances": "bigint",
    "number_of_frames": "bigint",
    "rows": "bigint",
    "columns": "bigint",
    "pixel_spacing": "array<double>",
    "slice_thickness": "double",
    "spacing_between_slices": "double",
    "measured_slice_spacing": "double",
    "uniform_spacing": "boolean",
    "complete": "boolean",
    "geometry_consistent": "boolean",
    "image_orientation_patient": "array<double>",
    "frame_of_reference_uid": "string",
    "manufacturer": "string",
    "manufacturer_model_name": "string",
    "convolution_kernel": "array<string>",
    "contrast": "boolean",
    "study_date": "date",
    "first_acquisition_datetime": "timestamp",
    "last_acquisition_datetime": "timestamp",
}

#: Positions this close (mm) are one slice position; spacings this close are uniform.
POSITION_TOLERANCE_MM = 0.01
#: A spacing this much larger than the median is a gap (a missing slice).
GAP_FACTOR = 1.5


def series_rows(index_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One typed row per series (keyed by :data:`SERIES_COLUMNS`), ordered by series UID.

    Parameters
    ----------
    index_rows : list of dict
        Index rows, nested as in ``index.jsonl`` (or already typed by
        :func:`~src.storage.index_table.table_row`).
    """
    series: dict[str, list[dict[str, Any]]] = {}
    for row in index_rows:
        typed = row if "image_sop_instance_uid" in row else table_row(row)
        uid = typed.get("series_instance_uid")
        if uid:
            series.setdefault(str(uid), []).append(typed)
    return [describe_series(series[uid]) for uid in sorted(series)]


def describe_series(instances: list[dict[str, Any]]) -> dict[str, Any]:
    """The series row of one series' typed instance rows (see :func:`series_rows`)."""
    instances = sorted(
        instances,
        key=lambda r: (r.get("image_instance_number") or 0, str(r.get("image_sop_instance_uid"))),
    )
    first = instances[0]
    times = [r["acquisition_datetime"] for r in instances if r.get("acquisition_datetime")]
    spacing, uniform, complete, collinear = _slice_geometry(instances)
    shared = {
        name: _one(instances, column)
        for name, column in (
            ("rows", "image_rows"),
            ("columns", "image_columns"),
            ("pixel_spacing", "image_pixel_spacing"),
            ("slice_thickness", "acquisition_slice_thickness"),
            ("frame_of_reference_uid", "image_frame_of_reference_uid"),
            ("image_orientation_patient", "image_orientation_patient"),
        )
    }
    placed = any(r.get("image_orientation_patient") for r in instances)
    consistent = (
        placed
        and collinear
        and all(
            _same(instances, column)
            for column in (
                "image_rows",
                "image_columns",
                "image_pixel_spacing",
                "image_orientation_patient",
                "image_frame_of_reference_uid",
            )
        )
    )
    classes = Counter(str(r.get("image_sop_class_uid")) for r in instances)
    classes.pop("None", None)
    return {
        "patient_id": first.get("patient_id"),
        "study_instance_uid": first.get("study_instance_uid"),
        "series_instance_uid": first.get("series_instance_uid"),
        "series_number": first.get("series_number"),
        "modality": first.get("series_modality"),
        "series_description": first.get("series_description"),
        "body_part_examined": first.get("series_body_part_examined"),
        "sop_class_uid": classes.most_common(1)[0][0] if classes else None,
        "image_type": first.get("image_type"),
        "number_of_instances": len(instances),
        "number_of_frames": sum(r.get("image_number_of_frames") or 1 for r in instances),
        **shared,
        "spacing_between_slices": _first(instances, "image_spacing_between_slices"),
        "measured_slice_spacing": spacing,
        "uniform_spacing": uniform,
        "complete": complete,
        "geometry_consistent": consistent if placed else None,
        "manufacturer": _first(instances, "acquisition_manufacturer"),
        "manufacturer_model_name": _first(instances, "acquisition_manufacturer_model_name"),
        "convolution_kernel": _first(instances, "acquisition_convolution_kernel"),
        "contrast": any(r.get("acquisition_contrast_bolus_agent") for r in instances),
        "study_date": first.get("study_date"),
        "first_acquisition_datetime": min(times) if times else None,
        "last_acquisition_datetime": max(times) if times else None,
    }


def _first(rows: list[dict[str, Any]], column: str) -> Any:
    return next((r[column] for r in rows if r.get(column) is not None), None)


def _same(rows: list[dict[str, Any]], column: str) -> bool:
    """Every instance has this value, and the same one (numbers within a tolerance)."""
    values = [r.get(column) for r in rows]
    if values.count(values[0]) == len(values) and values[0] is not None:
        return True  # equal everywhere (the common case): no tolerance needed
    if any(v is None for v in values):
        return all(v is None for v in values) and column != "image_orientation_patient"
    return all(_close(v, values[0]) for v in values[1:])


def _one(rows: list[dict[str, Any]], column: str) -> Any:
    """The series' value where every instance agrees, else None."""
    value = rows[0].get(column)
    return value if value is not None and _same(rows, column) else None


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and isinstance(b, float | int):
        return abs(a - b) <= 1e-4 * max(1.0, abs(a), abs(b))
    return bool(a == b)


def _slice_geometry(
    rows: list[dict[str, Any]],
) -> tuple[float | None, bool | None, bool | None, bool]:
    """(measured spacing, uniform, complete, positions on one line) from the positions.

    Positions are projected on the slice normal (row direction x column direction). The
    same position may repeat (several time points or echoes), as long as each position
    repeats equally often. Spacing, uniformity and completeness are None when they cannot
    be measured: fewer than two positions, no orientation or a position missing.
    """
    positions = [r.get("image_position_patient") for r in rows]
    orientation = rows[0].get("image_orientation_patient")
    if (
        len(rows) < 2
        or orientation is None
        or len(orientation) != 6
        or any(p is None or len(p) != 3 for p in positions)
    ):
        return None, None, None, True
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = [
        row_dir[1] * col_dir[2] - row_dir[2] * col_dir[1],
        row_dir[2] * col_dir[0] - row_dir[0] * col_dir[2],
        row_dir[0] * col_dir[1] - row_dir[1] * col_dir[0],
    ]
    length = math.sqrt(sum(n * n for n in normal))
    if length < 1e-6:
        return None, None, None, False
    normal = [n / length for n in normal]
    origin = positions[0]
    # Off the line through the first position along the normal: a tilt or another stack.
    collinear = True
    distances = []
    for p in positions:
        offset = [p[i] - origin[i] for i in range(3)]  # type: ignore[index]
        along = sum(offset[i] * normal[i] for i in range(3))
        off_line = math.sqrt(max(0.0, sum(o * o for o in offset) - along * along))
        collinear = collinear and off_line <= 10 * POSITION_TOLERANCE_MM
        distances.append(along)
    distinct: list[float] = []
    counts: list[int] = []
    for d in sorted(distances):
        if distinct and d - distinct[-1] <= POSITION_TOLERANCE_MM:
            counts[-1] += 1
        else:
            distinct.append(d)
            counts.append(1)
    if len(distinct) < 2:
        return None, None, None, collinear
    steps = [b - a for a, b in pairwise(distinct)]
    spacing = median(steps)
    uniform = all(abs(s - spacing) <= max(POSITION_TOLERANCE_MM, 0.01 * spacing) for s in steps)
    complete = len(set(counts)) == 1 and max(steps) <= GAP_FACTOR * spacing
    return round(spacing, 6), uniform, complete, collinear


__all__ = [
    "GAP_FACTOR",
    "POSITION_TOLERANCE_MM",
    "SERIES_COLUMNS",
    "describe_series",
    "series_rows",
]
