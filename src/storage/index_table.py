"""The index as a table: de-identified metadata rows written as Parquet for Athena.

Rows are the same as the local ``index.jsonl`` rows, flattened (``study.study_date`` →
``study_date``, ``image.rows`` → ``image_rows``) and typed by :data:`COLUMNS`, which the
Glue table's columns in ``infra/template.yaml`` follow (a test holds them equal). The Lambda
pass writes one file per invocation under
``index/date=YYYY-MM-DD/`` in the operations bucket, named after the keyed ids of the
objects it holds, so a retried invocation overwrites its own file instead of adding a
second one. The Glue table in ``infra/template.yaml`` reads that layout with partition
projection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from typing import Any

INDEX_PREFIX = "index"

_INT = tuple(
    "series_number image_instance_number image_rows image_columns image_bits_allocated "
    "image_number_of_frames acquisition_number".split()
)
_FLOAT = tuple(
    "acquisition_slice_thickness acquisition_kvp acquisition_exposure_time "
    "acquisition_repetition_time acquisition_echo_time "
    "acquisition_magnetic_field_strength image_rescale_intercept image_rescale_slope "
    "image_window_center image_window_width".split()
)
#: Geometry as arrays of numbers, for ML loaders (patient coordinates in mm).
_ARRAY = ("image_position_patient", "image_orientation_patient")
_TEXT = (
    "patient_id patient_name patient_birth_date patient_sex patient_age study_instance_uid "
    "study_date study_time study_description study_accession_number series_instance_uid "
    "series_modality series_description series_body_part_examined image_sop_instance_uid "
    "image_sop_class_uid "
    "image_pixel_spacing image_photometric_interpretation image_transfer_syntax_uid "
    "acquisition_date acquisition_time acquisition_manufacturer "
    "acquisition_manufacturer_model_name output output_sha256 pixel_boxes"
).split()

#: Column name -> Athena/Glue type of the index table.
COLUMNS: dict[str, str] = {
    **{name: "string" for name in _TEXT},
    **{name: "bigint" for name in _INT},
    **{name: "double" for name in _FLOAT},
    **{name: "array<double>" for name in _ARRAY},
    "burned_in_annotation_risk": "boolean",
    "clean_pixel_data": "boolean",
}


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of columns: nested dicts joined with ``_``; lists kept as JSON text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = key if key.startswith(prefix) or not prefix else f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, default=str)
        elif value is None or isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    """Encode rows as one Parquet file (pyarrow; every column nullable)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"string": pa.string(), "bigint": pa.int64(), "double": pa.float64()}
    types["boolean"] = pa.bool_()
    types["array<double>"] = pa.list_(pa.float64())
    flat = [flatten(r) for r in rows]
    arrays = {}
    for column, kind in COLUMNS.items():
        values = [_coerce(r.get(column), kind) for r in flat]
        arrays[column] = pa.array(values, type=types[kind])
    table = pa.table(arrays)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def _coerce(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None
    if kind != "string" and isinstance(value, str) and value.startswith("["):
        value = json.loads(value)  # a multi-valued element, flattened to JSON text
    try:
        if kind == "array<double>":
            values = value if isinstance(value, list) else [value]
            return [float(v) for v in values]
        if isinstance(value, list):  # window values: the first (default) window
            value = value[0] if value else None
            if value is None:
                return None
        if kind == "bigint":
            return int(value)
        if kind == "double":
            return float(value)
    except (TypeError, ValueError):
        return None
    if kind == "boolean":
        return bool(value)
    return str(value)


def index_key(object_ids: list[str], today: dt.date | None = None) -> str:
    """``index/date=YYYY-MM-DD/<digest of the ids>.parquet`` (no PHI, stable on retry)."""
    day = (today or dt.datetime.now(dt.UTC).date()).isoformat()
    digest = hashlib.sha256("\n".join(sorted(object_ids)).encode()).hexdigest()[:32]
    return f"{INDEX_PREFIX}/date={day}/{digest}.parquet"


def put_index_rows(store: Any, rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """Write ``rows`` as one Parquet object into ``store``; returns its key."""
    key = index_key([str(r.get("object_id", "")) for r in results])
    store.put(key, to_parquet(rows), content_type="application/vnd.apache.parquet")
    return key


__all__ = ["COLUMNS", "flatten", "index_key", "put_index_rows", "to_parquet"]
