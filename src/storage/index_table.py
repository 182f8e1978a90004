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

#: Column name -> Athena/Glue type of the index table, in table order. A row's nested
#: keys flatten to these names (``study.study_date`` -> ``study_date``); the JSON lines keep
#: DICOM's own text (DA ``YYYYMMDD``, TM ``HHMMSS.FFFFFF``), the Parquet table types it.
#: Times stay text (Athena has no time-of-day column type); each date with its time is
#: also one ``timestamp`` (``study_datetime``, ``acquisition_datetime``, see
#: :data:`DERIVED`), so a query can order and subtract them.
COLUMNS: dict[str, str] = {
    "patient_id": "string",
    "patient_name": "string",
    "patient_birth_date": "date",
    "patient_sex": "string",
    "patient_age": "string",
    "study_instance_uid": "string",
    "study_date": "date",
    "study_time": "string",
    "study_datetime": "timestamp",
    "study_description": "string",
    "study_accession_number": "string",
    "series_instance_uid": "string",
    "series_number": "bigint",
    "series_modality": "string",
    "series_description": "string",
    "series_body_part_examined": "string",
    "image_sop_instance_uid": "string",
    "image_sop_class_uid": "string",
    "image_type": "array<string>",
    "image_instance_number": "bigint",
    "image_rows": "bigint",
    "image_columns": "bigint",
    "image_bits_allocated": "bigint",
    "image_number_of_frames": "bigint",
    "image_pixel_spacing": "array<double>",
    "image_photometric_interpretation": "string",
    "image_position_patient": "array<double>",
    "image_orientation_patient": "array<double>",
    "image_frame_of_reference_uid": "string",
    "image_spacing_between_slices": "double",
    "image_temporal_position_index": "bigint",
    "image_rescale_intercept": "double",
    "image_rescale_slope": "double",
    "image_window_center": "array<double>",
    "image_window_width": "array<double>",
    "image_transfer_syntax_uid": "string",
    "acquisition_date": "date",
    "acquisition_time": "string",
    "acquisition_datetime": "timestamp",
    "acquisition_number": "bigint",
    "acquisition_manufacturer": "string",
    "acquisition_manufacturer_model_name": "string",
    "acquisition_slice_thickness": "double",
    "acquisition_kvp": "double",
    "acquisition_exposure_time": "double",
    "acquisition_repetition_time": "double",
    "acquisition_echo_time": "double",
    "acquisition_magnetic_field_strength": "double",
    "acquisition_convolution_kernel": "array<string>",
    "acquisition_contrast_bolus_agent": "string",
    "burned_in_annotation_risk": "boolean",
    "clean_pixel_data": "boolean",
    "pixel_boxes": "string",
    "output": "string",
    "output_blake3": "string",
}

#: Columns of the table that the row does not hold: a timestamp from a date and a time.
DERIVED: dict[str, tuple[str, str]] = {
    "study_datetime": ("study_date", "study_time"),
    "acquisition_datetime": ("acquisition_date", "acquisition_time"),
}


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of columns: nested dicts joined with ``_`` (lists and values as they are)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = key if key.startswith(prefix) or not prefix else f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}_"))
        else:
            out[name] = value
    return out


def table_row(row: dict[str, Any]) -> dict[str, Any]:
    """One index row as the table's typed values, keyed by :data:`COLUMNS` (None if absent).

    Dates become :class:`datetime.date`, each date with its time a
    :class:`datetime.datetime` (no time zone: DICOM's local time, shifted like the date),
    numbers and lists of numbers are typed, a single value where a list is due becomes a
    one-item list. A value that does not read as its type is None (it is still in the
    JSON lines as written).
    """
    flat = flatten(row)
    typed = {name: _coerce(flat.get(name), kind) for name, kind in COLUMNS.items()}
    for name, (day, time) in DERIVED.items():
        typed[name] = _timestamp(typed[day], flat.get(time))
    return typed


def to_parquet(rows: list[dict[str, Any]], columns: dict[str, str] | None = None) -> bytes:
    """Encode rows as one Parquet file (pyarrow; every column nullable).

    ``rows`` are index rows (nested, as in ``index.jsonl``) typed by :func:`table_row`;
    with ``columns``, they are already flat and typed by those columns (the series table).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = columns or COLUMNS
    flat = [table_row(r) for r in rows] if columns is None else rows
    arrays = {
        name: pa.array([r.get(name) for r in flat], type=_arrow_type(kind))
        for name, kind in schema.items()
    }
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink, compression="zstd")
    return sink.getvalue()


def _arrow_type(kind: str) -> Any:
    import pyarrow as pa

    if kind.startswith("array<"):
        return pa.list_(_arrow_type(kind[len("array<") : -1]))
    return {
        "string": pa.string(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us"),
    }[kind]


def _coerce(value: Any, kind: str) -> Any:
    if type(value) is str and kind == "string":  # most cells: already what they should be
        return value or None
    if value is None or value == "" or value == []:
        return None
    if kind.startswith("array<"):
        inner = kind[len("array<") : -1]
        items = value if isinstance(value, list | tuple) else [value]
        typed = [_coerce(v, inner) for v in items]
        return None if any(v is None for v in typed) else typed
    if isinstance(value, list | tuple | dict):  # several values where the column holds one
        if kind == "string":  # as JSON text (pixel boxes, a multi-valued text)
            return json.dumps(value, default=str)
        return _coerce(value[0], kind) if isinstance(value, list | tuple) else None
    try:
        if kind == "bigint":
            return int(value)
        if kind == "double":
            return float(value)
        if kind == "date":
            text = str(value)
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (TypeError, ValueError):
        return None
    if kind == "boolean":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def _timestamp(day: dt.date | None, time: Any) -> dt.datetime | None:
    """A DA and a TM as one moment; None without a date, midnight without a time."""
    if day is None:
        return None
    text = str(time or "").replace(":", "").strip()
    try:
        hour = int(text[0:2] or 0)
        minute = int(text[2:4] or 0)
        second = min(int(text[4:6] or 0), 59)  # a leap second reads as :59
        fraction = text[7:13] if text[6:7] == "." else ""
        micro = int(fraction.ljust(6, "0")) if fraction else 0
        return dt.datetime.combine(day, dt.time(hour, minute, second, micro))
    except ValueError:
        return dt.datetime.combine(day, dt.time())


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


def read_pending_rows(store: Any, pending: str) -> list[dict[str, Any]]:
    """The index rows held at ``pending`` (an ``index-rows/`` object).

    Raises
    ------
    ValueError
        If ``pending`` is not an ``index-rows/`` object.
    """
    parquet_key(pending)  # the key check
    with store.open(pending) as fh:
        rows: list[dict[str, Any]] = json.loads(fh.read())["rows"]
    return rows


def compact_index_rows(
    store: Any,
    pending: str,
    target_store: Any = None,
    *,
    rows: list[dict[str, Any]] | None = None,
) -> str:
    """Write the rows held at ``pending`` as Parquet under ``index/``; returns that key.

    ``target_store`` is where the Parquet goes (the processed bucket on AWS, beside the
    de-identified outputs and under the same key, so that a consumer needs one bucket and
    one key); by default, ``store`` itself. ``rows``, when the caller has read them
    already (:func:`read_pending_rows`), saves a second read.

    Raises
    ------
    ValueError
        If ``pending`` is not an ``index-rows/`` object.
    """
    target = parquet_key(pending)
    if rows is None:
        rows = read_pending_rows(store, pending)
    (target_store or store).put(
        target, to_parquet(rows), content_type="application/vnd.apache.parquet"
    )
    return target


__all__ = [
    "COLUMNS",
    "DERIVED",
    "PENDING_PREFIX",
    "compact_index_rows",
    "flatten",
    "index_key",
    "parquet_key",
    "pending_key",
    "put_index_rows",
    "read_pending_rows",
    "table_row",
    "to_parquet",
]
