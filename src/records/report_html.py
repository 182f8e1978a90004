"""``report.html``: one self-contained page describing an OUTPUT, for a person.

Counts by modality, SOP Class and patient pseudonym, the quarantine reasons and the run
history, each with a bar chart drawn in inline SVG: no script, no network, nothing to
install; it opens from the file system in any browser. Everything on it comes from the
index and the manifest, which hold de-identified values, ids and reasons only, and every
value is HTML-escaped.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable
from typing import Any

from src.ingestion.annex_e.iod_types import sop_class_name

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2rem auto;max-width:64rem;color:#1b1f24}
h1{font-size:1.6rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.2rem .8rem;text-align:left}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #d0d7de;border-radius:6px;
padding:.6rem 1rem;min-width:8rem}.card b{display:block;font-size:1.5rem}
.note{color:#57606a}.warn{color:#9a6700}
"""


def _bars(counts: list[tuple[str, int]], colour: str = "#0969da") -> str:
    """A horizontal bar chart as inline SVG."""
    if not counts:
        return '<p class="note">none</p>'
    top = max(n for _, n in counts) or 1
    height = 22 * len(counts) + 4
    rows = []
    for i, (label, n) in enumerate(counts):
        width = max(2, round(420 * n / top))
        y = 22 * i + 2
        rows.append(
            f'<text x="0" y="{y + 14}" font-size="12">{html.escape(label[:48])}</text>'
            f'<rect x="330" y="{y}" width="{width}" height="16" fill="{colour}"/>'
            f'<text x="{336 + width}" y="{y + 13}" font-size="12">{n}</text>'
        )
    return (
        f'<svg role="img" width="820" height="{height}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(rows)
        + "</svg>"
    )


def _table(head: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{v}</td>'
            if isinstance(v, int | float)
            else f"<td>{html.escape(str(v))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _sop_name(uid: str) -> str:
    name = (sop_class_name(uid) or "") if uid else ""
    if uid and not name:  # a retired class: pydicom's UID dictionary (loaded only then)
        from pydicom.uid import UID

        name = UID(uid).name
    return name if name and name != uid else (uid or "unknown")


def render(rows: list[dict[str, Any]], manifest: dict[str, Any]) -> bytes:
    """The page for index ``rows`` and ``manifest`` (as ``write_reports`` writes them)."""
    totals = manifest.get("totals", {})
    modality = Counter(str(r.get("series", {}).get("modality") or "unknown") for r in rows)
    sop = Counter(_sop_name(str(r.get("image", {}).get("sop_class_uid") or "")) for r in rows)
    patients = Counter(str(r.get("patient", {}).get("patient_id") or "unknown") for r in rows)
    studies = {str(r.get("study", {}).get("study_instance_uid")) for r in rows}
    reasons = Counter(
        str(e.get("reason") or "unknown")
        for e in manifest.get("inputs", [])
        if e.get("status") == "quarantined"
    )
    risk = sum(1 for r in rows if r.get("burned_in_annotation_risk"))
    cards = "".join(
        f'<div class="card"><b>{n}</b>{html.escape(label)}</div>'
        for label, n in (
            ("inputs", totals.get("inputs", 0)),
            ("processed", totals.get("processed", 0)),
            ("quarantined", totals.get("quarantined", 0)),
            ("patients", len(patients)),
            ("studies", len(studies)),
        )
    )
    runs = manifest.get("runs", [])
    history = _table(
        ("finished", "inputs", "processed", "quarantined", "skipped", "files/s", "workers"),
        (
            (
                r.get("finished", ""),
                r.get("inputs", 0),
                r.get("processed", 0),
                r.get("quarantined", 0),
                r.get("skipped", 0),
                r.get("files_per_second", 0),
                r.get("workers", 1),
            )
            for r in runs
        ),
    )
    profile = manifest.get("profile", {})
    options = (
        ", ".join(k.replace("_", " ") for k, v in sorted(profile.items()) if v is True)
        or "Basic Profile"
    )
    quarantine_note = (
        '<p class="warn">The refused inputs are in <code>quarantine/</code>: original data '
        "with PHI. Do not share that folder.</p>"
        if totals.get("quarantined")
        else ""
    )
    risk_note = (
        f'<p class="warn">{risk} file(s) may carry burned-in text in their pixels: '
        "they are marked Patient Identity Removed = NO and are not sent on "
        "(index: <code>burned_in_annotation_risk</code>).</p>"
        if risk
        else ""
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>medpipe report</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>De-identified data set</h1>
<p class="note">PS3.15 Annex E with: {html.escape(options)}.</p>
<div class="cards">{cards}</div>{quarantine_note}{risk_note}
<h2>By modality</h2>{_bars(modality.most_common())}
<h2>By SOP Class</h2>{_bars(sop.most_common())}
<h2>By patient (pseudonym)</h2>{_bars(patients.most_common(30), "#1a7f37")}
<h2>Quarantine reasons</h2>{_bars(reasons.most_common(), "#cf222e")}
<h2>Run history</h2>{history}
</body></html>
"""
    return page.encode("utf-8")


__all__ = ["render"]
