"""What the audit reads of a file: its bytes, or for our own reports only their values
(JSON and JSON lines, Parquet cells as DICOM text, the text of an HTML page), and for a
gzipped file (a NIfTI volume of ``medpipe export``) its first MiB decompressed."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from html.parser import HTMLParser
from pathlib import Path


class _ReportText(HTMLParser):
    """The values shown in report.html: table cells, plot labels and figures.

    Headings, column heads, card labels and notes are the page's own words.
    """

    _VALUES = frozenset({"td", "text", "code", "b"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.values: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop() != tag:
            pass

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1] in self._VALUES:
            self.values.append(data)


def _parquet_values(path: Path) -> bytes:
    """The string cells of a Parquet table (column names are ours)."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    values: list[str] = []
    for column in table.columns:
        for value in column.to_pylist():
            items = value if isinstance(value, list) else [value]
            values += [_as_dicom(item) for item in items if item is not None]
    return "\n".join(values).encode("utf-8")


def _as_dicom(value: object) -> str:
    """A cell as DICOM writes it: a typed date or timestamp is searched as DA/DT text, so
    a leaked birth date is found in the typed table as in the files."""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y%m%d%H%M%S")
    if isinstance(value, dt.date):
        return value.strftime("%Y%m%d")
    return str(value)


#: How much of a gzipped file is searched once decompressed (NIfTI header, extensions).
GZIP_HEAD_BYTES = 1 << 20


def searchable(path: Path) -> bytes:
    """A file's bytes; for our JSON, Parquet and HTML reports, only their values; for a
    gzipped file, its first :data:`GZIP_HEAD_BYTES` decompressed."""
    if path.suffix == ".parquet":
        try:
            return _parquet_values(path)
        except (OSError, ValueError):
            return path.read_bytes()
    if path.suffix == ".gz":  # a gzipped NIfTI (medpipe export): its header and extensions
        try:
            with gzip.open(path, "rb") as packed:
                return packed.read(GZIP_HEAD_BYTES)
        except (OSError, EOFError):
            return path.read_bytes()
    data = path.read_bytes()
    if path.suffix == ".html":
        parser = _ReportText()
        parser.feed(data.decode("utf-8", "replace"))
        return "\n".join(parser.values).encode("utf-8")
    if path.suffix not in (".json", ".jsonl"):
        return data
    values: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)
        elif isinstance(node, str):
            values.append(node)

    try:
        lines = (
            [json.loads(data)]
            if path.suffix == ".json"
            else [json.loads(line) for line in data.splitlines() if line.strip()]
        )
    except ValueError:
        return data
    for document in lines:
        collect(document)
    return "\n".join(values).encode("utf-8")


__all__ = ["GZIP_HEAD_BYTES", "searchable"]
