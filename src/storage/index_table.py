"""The index as a table: de-identified metadata rows written as Parquet for Athena.

Rows are the same as the local ``index.jsonl`` rows, flattened (``study.study_date`` →
``study_date``, ``image.rows`` → ``image_rows``) and typed by :data:`COLUMNS`, which the
Glue table's columns in ``infra/template.yaml`` follow (a test holds them equal).

On AWS the instance function carries the OCR detector for Clean Pixel Data, and pyarrow
does not fit beside it in one Lambda package (250 MB unzipped). So the Lambda pass writes
each invocation's rows as JSON under ``index-rows/date=YYYY-MM-DD/`` in the operations
bucket (:func:`put_index_rows`), and the small index function, started by that object's
creation, writes the same rows as Parquet under ``index/date=YYYY-MM-DD/`` with the same
name (:func:`compact_index_rows`). Both names come from the keyed ids of the objects,
so a retried invocation or a repeated event overwrites its own file instead of adding a
second one. The Glue table reads ``index/`` with partition projection.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
from typing import Any

INDEX_PREFIX = "index"
#: Rows waiting to become Parquet (JSON, one document per Lambda invocation).
PENDING_PREFIX = "index-rows"

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


def pending_key(index: str) -> str:
    """The ``index-rows/...json`` key whose rows become the Parquet object ``index``."""
    return PENDING_PREFIX + index[len(INDEX_PREFIX) : -len(".parquet")] + ".json"


def parquet_key(pending: str) -> str:
    """The inverse of :func:`pending_key`; raises ValueError for any other key."""
    if not (pending.startswith(PENDING_PREFIX + "/date=") and pending.endswith(".json")):
        raise ValueError("not an index-rows object")
    name = pending[len(PENDING_PREFIX) : -len(".json")]
    if ".." in name or "//" in name:
        raise ValueError("not an index-rows object")
    return INDEX_PREFIX + name + ".parquet"


def put_index_rows(store: Any, rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """Write ``rows`` as one JSON document under ``index-rows/``; returns its key."""
    key = pending_key(index_key([str(r.get("object_id", "")) for r in results]))
    body = json.dumps({"rows": rows}, default=str, separators=(",", ":")).encode("utf-8")
    store.put(key, body, content_type="application/json")
    return key


def compact_index_rows(store: Any, pending: str, target_store: Any = None) -> str:
    """Write the rows held at ``pending`` as Parquet under ``index/``; returns that key.

    ``target_store`` is where the Parquet goes (the processed bucket on AWS, beside the
    de-identified outputs and under the same key, so that a consumer needs one bucket and
    one key); by default, ``store`` itself.

    Raises
    ------
    ValueError
        If ``pending`` is not an ``index-rows/`` object.
    """
    target = parquet_key(pending)
    with store.open(pending) as fh:
        rows = json.loads(fh.read())["rows"]
    (target_store or store).put(
        target, to_parquet(rows), content_type="application/vnd.apache.parquet"
    )
    return target


__all__ = [
    "COLUMNS",
    "PENDING_PREFIX",
    "compact_index_rows",
    "flatten",
    "index_key",
    "parquet_key",
    "pending_key",
    "put_index_rows",
    "to_parquet",
]
