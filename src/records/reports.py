"""What a run leaves in OUTPUT besides the files: the index (JSON lines and Parquet),
the series table (Parquet), manifest.json with every invocation's account, report.html,
and the run's metrics."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from src.atomic import DIGEST_ALGORITHM
from src.errors import StorageError
from src.instance.outcome import PROCESSED, QUARANTINED
from src.records.report_html import render as render_page
from src.records.series_table import SERIES_COLUMNS, series_rows
from src.records.summary import RunSummary
from src.settings.config import RunConfig
from src.storage.index_table import COLUMNS, table_row, to_parquet
from src.storage.store import Store

METRIC_NAMESPACE = "MedicalImaging/Pipeline"


def _previous_runs(sink: Store) -> list[dict[str, Any]]:
    """The run history of an earlier manifest.json in OUTPUT (empty for a new OUTPUT)."""
    try:
        with sink.open("manifest.json") as fh:
            earlier = json.loads(fh.read())
    except (OSError, ValueError, StorageError):
        return []
    runs = earlier.get("runs")
    if isinstance(runs, list):
        return [r for r in runs if isinstance(r, dict)]
    return [earlier["run"]] if isinstance(earlier.get("run"), dict) else []


def write_reports(
    sink: Store,
    entries: dict[str, dict[str, Any]],
    summary: RunSummary,
    config: RunConfig,
    *,
    session: str = "",
    recovered: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Write index.jsonl, index.parquet, series.parquet and manifest.json (and metrics when asked).

    ``session`` names a long-lived invocation (a receiver) that rewrites the reports as it
    goes: its entry in the run history is replaced rather than appended each time.
    ``recovered`` holds earlier sessions' counts as their journal lines give them: a
    session stopped by ``kill -9`` between two rewrites gets its true counts back.
    """
    rows = sorted(
        (e for e in entries.values() if e["status"] == PROCESSED), key=lambda e: e["output"]
    )
    index = "".join(json.dumps(e["index"], sort_keys=True) + "\n" for e in rows)
    sink.put("index.jsonl", index.encode("utf-8"), content_type="application/x-ndjson")
    # The same rows as a typed table (the schema the AWS index and its Glue table use).
    typed = [table_row(e["index"]) for e in rows]
    table = to_parquet(typed, COLUMNS)
    sink.put("index.parquet", table, content_type="application/vnd.apache.parquet")
    # One row per series, for a loader that picks volumes before it reads any pixel.
    series = to_parquet(series_rows(typed), SERIES_COLUMNS)
    sink.put("series.parquet", series, content_type="application/vnd.apache.parquet")
    this_run = {"finished": datetime.now(UTC).isoformat(timespec="seconds"), **summary.as_dict()}
    earlier = _previous_runs(sink)
    if session:
        this_run["session"] = session
        earlier = [r for r in earlier if r.get("session") != session]
    for run in earlier:
        counts = (recovered or {}).get(str(run.get("session", "")))
        if counts is not None and run.get("inputs") != counts["inputs"]:
            for name in ("inputs", "processed", "quarantined", "skipped"):
                run[name] = counts[name]
            run["quarantine_reasons"] = dict(sorted(counts["reasons"].items()))
            run["balanced"] = True
            run["recovered_from_journal"] = True
    statuses = [e["status"] for e in entries.values()]
    manifest = {
        "run": summary.as_dict(),
        # Every invocation into this OUTPUT, and totals over all of them (they match the
        # index: one processed input, one row).
        "runs": [*earlier, this_run],
        "totals": {
            "inputs": len(statuses),
            "processed": statuses.count(PROCESSED),
            "quarantined": statuses.count(QUARANTINED),
            "index_rows": len(rows),
        },
        "profile": config.profile.as_dict(),
        # Each output's integrity hash, in the index (computed as the file was written).
        "integrity": {"algorithm": DIGEST_ALGORITHM, "index_column": "output_blake3"},
        "inputs": [
            {
                k: e.get(k, "")
                for k in (
                    "input_id",
                    "status",
                    "reason",
                    "detail",
                    "stage",
                    "output",
                    "bytes_in",
                    "bytes_out",
                    "removed",
                    "burned_in_annotation_risk",
                )
            }
            for e in sorted(entries.values(), key=lambda e: e["input_id"])
        ],
    }
    sink.put(
        "manifest.json",
        json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"),
        content_type="application/json",
    )
    # The same account for a person: one self-contained page.
    page = render_page([e["index"] for e in rows], manifest)
    sink.put("report.html", page, content_type="text/html; charset=utf-8")
    if config.metrics == "cloudwatch":
        from src.monitoring.cloudwatch_handler import CloudWatchHandler

        handler = CloudWatchHandler(region_name=config.region_name)
        for name, value in summary.metrics().items():
            unit = (
                "Bytes"
                if name.startswith("Bytes")
                else (
                    "Seconds"
                    if name.endswith("Seconds")
                    else ("Count/Second" if name.endswith("PerSecond") else "Count")
                )
            )
            handler.put_metric_data(METRIC_NAMESPACE, name, float(value), unit=unit)


__all__ = ["write_reports"]
