"""The series table on AWS: one Parquet object per series, kept up to date as instances land.

Each instance pass leaves its index row; the index function turns the rows into the
instance table and, for each series they touch, calls :func:`update_series`:

1. the instance's row is written as ``series-members/<series uid>/<sop uid>.json`` (a
   retry or a repeated event overwrites the same object);
2. the members are listed and read, and ``series/<series uid>.parquet`` is rewritten with
   the series row of all of them (:func:`~src.records.series_table.describe_series`, the
   same row as ``OUTPUT/series.parquet`` holds locally);
3. the members are listed again; if a member arrived meanwhile, step 2 runs again.

Two invocations for the same series may race; the last write still holds every member.
A writer stops only when its second listing equals what it aggregated, and a member
written after that listing belongs to an invocation that lists, aggregates and writes
after it (S3 lists and reads are strongly consistent). The cost is one GET per member
per update: an n-instance series arriving one instance per invocation costs n(n+1)/2
GETs over its life (3,240 for an 80-slice CT, about $0.0013).
"""

from __future__ import annotations

import json
from typing import Any

from src.records.series_table import SERIES_COLUMNS, describe_series
from src.storage.index_table import table_row, to_parquet
from src.storage.store import Store

SERIES_PREFIX = "series"
MEMBERS_PREFIX = "series-members"
#: Rounds of list-aggregate-list before giving up (the next member's update finishes it).
MAX_ROUNDS = 10


def member_key(series_uid: str, sop_uid: str) -> str:
    """Where one instance's row waits for its series' aggregation."""
    return f"{MEMBERS_PREFIX}/{series_uid}/{sop_uid}.json"


def series_key(series_uid: str) -> str:
    """The Parquet object of one series (read by the Glue table ``series``)."""
    return f"{SERIES_PREFIX}/{series_uid}.parquet"


def update_series(store: Store, rows: list[dict[str, Any]]) -> list[str]:
    """Record ``rows`` (index rows) as series members and rewrite their series' rows.

    Parameters
    ----------
    store : Store
        The processed (de-identified) store.
    rows : list of dict
        Index rows as the instance pass wrote them (nested, ``index.jsonl`` shape).

    Returns
    -------
    list of str
        The keys of the series objects written.
    """
    touched: set[str] = set()
    for row in rows:
        typed = table_row(row)
        series, sop = typed.get("series_instance_uid"), typed.get("image_sop_instance_uid")
        if not series or not sop:
            continue
        body = json.dumps(row, sort_keys=True, default=str).encode("utf-8")
        store.put(member_key(str(series), str(sop)), body, content_type="application/json")
        touched.add(str(series))
    return [_rewrite(store, uid) for uid in sorted(touched)]


def _members(store: Store, series_uid: str) -> list[str]:
    return sorted(o.key for o in store.list(f"{MEMBERS_PREFIX}/{series_uid}/"))


def _rewrite(store: Store, series_uid: str) -> str:
    key = series_key(series_uid)
    listed = _members(store, series_uid)
    for _ in range(MAX_ROUNDS):
        rows = []
        for member in listed:
            with store.open(member) as fh:
                rows.append(table_row(json.loads(fh.read())))
        body = to_parquet([describe_series(rows)], SERIES_COLUMNS)
        store.put(key, body, content_type="application/vnd.apache.parquet")
        again = _members(store, series_uid)
        if again == listed:
            break
        listed = again
    return key


__all__ = ["MEMBERS_PREFIX", "SERIES_PREFIX", "member_key", "series_key", "update_series"]
