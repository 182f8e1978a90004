"""The index as a table: de-identified metadata rows written as Parquet for Athena.

Rows are the same as the local ``index.jsonl`` rows, flattened (``study.study_date`` →
``study_study_date``). The Lambda pass writes one file per invocation under
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


def flatten(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One level of columns: nested dicts joined with ``_``; lists kept as JSON text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
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

    flat = [flatten(r) for r in rows]
    columns = sorted({c for r in flat for c in r})
    arrays = {}
    for column in columns:
        values = [r.get(column) for r in flat]
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1:  # mixed types: text is the one type that holds them all
            values = [None if v is None else str(v) for v in values]
        arrays[column] = pa.array(values)
    table = pa.table(arrays)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


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


__all__ = ["flatten", "index_key", "put_index_rows", "to_parquet"]
