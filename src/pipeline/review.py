"""``medpipe review OUTPUT``: a page on which a person checks Clean Pixel Data, batch by batch.

One row per image that Clean Pixel Data cleaned, or that is still flagged (at risk and
not verified), or that was quarantined as ``pixel-phi-remains``: the "after" thumbnail
from the de-identified file, with the masked boxes outlined, and beside it the "before"
thumbnail from the raw side (the original in INPUT, given with ``--input``, or the copy
in ``quarantine/``), with the same boxes. The "before" pictures are original pixels,
PHI: so the page is written to the quarantine side (``OUTPUT/quarantine/review.html``
by default), never among the shareable files, and says so at the top. Images are
embedded as data URIs: the page opens from disk in any browser, with no server. A
checkbox per row and a button save the approved output keys as ``approved.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.pipeline.sources import iter_local
from src.records.journal import read_journal
from src.settings.locations import input_id

PIXEL_PHI_REMAINS = "pixel-phi-remains"
THUMBNAIL = 360


@dataclass
class ReviewItem:
    """One row of the page (keys and coordinates only; pictures are added when drawn)."""

    label: str
    status: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    after: str = ""
    before: str = ""


def _thumbnail(path: str | os.PathLike[str] | io.BytesIO, boxes: list[dict[str, Any]]) -> str:
    """A PNG data URI of the frame holding the first box (or frame 0), boxes in red."""
    import pydicom
    from PIL import Image, ImageDraw

    from src.pixels.frames import UnsupportedPixelDataError, decode, render

    try:
        ds = pydicom.dcmread(path)
        frames = decode(ds)
    except (UnsupportedPixelDataError, OSError, ValueError, pydicom.errors.InvalidDicomError):
        return ""
    frame = int(boxes[0]["frame"]) if boxes else 0
    image = Image.fromarray(render(ds, frames, min(frame, frames.count - 1)))
    draw = ImageDraw.Draw(image)
    for b in boxes:
        if int(b["frame"]) == frame:
            x, y = int(b["x"]), int(b["y"])
            draw.rectangle(
                [x, y, x + int(b["width"]) - 1, y + int(b["height"]) - 1],
                outline=(255, 0, 0),
                width=2,
            )
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _rows(output: Path) -> list[dict[str, Any]]:
    index = output / "index.jsonl"
    if not index.is_file():
        return []
    rows = []
    for line in index.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if "pixel_boxes" in row or row.get("burned_in_annotation_risk"):
                rows.append(row)
    return rows


def _originals(output: Path, input_root: str | None, key: bytes) -> dict[str, str]:
    """Output key -> original file in INPUT, matched through the run's journal."""
    journal = output / ".medpipe" / "journal.jsonl"
    if input_root is None or not journal.is_file():
        return {}
    by_id = {iid: e["output"] for iid, e in read_journal(journal).items() if e.get("output")}
    out = {}
    for item in iter_local(input_root, exclude=str(output)):
        if item.kind == "file":
            iid = input_id(key, item.relative)
            if iid in by_id:
                out[by_id[iid]] = item.path
    return out


def _quarantined(output: Path) -> list[Path]:
    folder = output / "quarantine"
    found = []
    for reason_file in sorted(folder.glob("*.reason.json")) if folder.is_dir() else []:
        record = json.loads(reason_file.read_text("utf-8"))
        data = reason_file.with_name(reason_file.name.replace(".reason.json", ""))
        if record.get("reason") == PIXEL_PHI_REMAINS:
            found.append(data)
    return found


def collect(output: str | os.PathLike[str], input_root: str | None, key: bytes) -> list[ReviewItem]:
    """Every image the page shows, with its thumbnails."""
    root = Path(output)
    originals = _originals(root, input_root, key)
    items = []
    for row in _rows(root):
        boxes = list(row.get("pixel_boxes") or [])
        status = "cleaned and verified" if row.get("clean_pixel_data") else "at risk, not cleaned"
        item = ReviewItem(str(row["output"]), status, boxes)
        item.after = _thumbnail(root / row["output"], boxes)
        if row["output"] in originals:
            item.before = _thumbnail(originals[row["output"]], boxes)
        items.append(item)
    for data in _quarantined(root):
        item = ReviewItem(f"quarantine/{data.name}", f"quarantined: {PIXEL_PHI_REMAINS}")
        item.before = _thumbnail(data, []) if data.is_file() else ""
        items.append(item)
    return items


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1f24}
.warn{background:#fff4e5;border:1px solid #f0a040;padding:.6rem 1rem;border-radius:6px}
table{border-collapse:collapse;margin-top:1rem}td,th{border-bottom:1px solid #ddd;padding:.5rem;
vertical-align:top;text-align:left}img{max-width:360px;display:block;background:#000}
code{font-size:.8em;word-break:break-all}td:nth-child(2){max-width:18rem}.none{color:#777;font-style:italic}"""

_SCRIPT = """function save(){const keys=[...document.querySelectorAll('input.ok:checked')]
.map(e=>e.value);const a=document.createElement('a');a.href=URL.createObjectURL(
new Blob([JSON.stringify({approved:keys},null,1)],{type:'application/json'}));
a.download='approved.json';a.click();}"""


def _picture(uri: str, what: str) -> str:
    if not uri:
        return f'<span class="none">no {what} picture</span>'
    return f'<img alt="{what}" src="{uri}">'


def render_page(items: list[ReviewItem], with_before: bool) -> str:
    """The HTML page (all values escaped)."""
    rows = []
    for item in items:
        label = html.escape(item.label)
        rows.append(
            "<tr>"
            f'<td><input type="checkbox" class="ok" value="{label}"></td>'
            f"<td><code>{label}</code><br>{html.escape(item.status)}<br>"
            f"{len(item.boxes)} box(es)</td>"
            f"<td>{_picture(item.before, 'before')}</td>"
            f"<td>{_picture(item.after, 'after')}</td>"
            "</tr>"
        )
    source = (
        "the original files in INPUT (matched through the run's journal) and the copies in "
        "quarantine/"
        if with_before
        else "quarantine/ only (pass --input INPUT to show the originals of cleaned images)"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        "<title>medpipe: Clean Pixel Data review</title>"
        f"<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>"
        "<h1>Clean Pixel Data review</h1>"
        '<p class="warn"><b>This page holds original pixels (PHI).</b> The "before" pictures '
        f"come from the raw side: {source}. It is written on the quarantine side: do not share "
        "it. Red boxes are the regions that were filled.</p>"
        f"<p>{len(items)} image(s). Tick the rows you approve, then "
        '<button onclick="save()">save approved.json</button>.</p>'
        "<table><tr><th>ok</th><th>image</th><th>before (raw)</th><th>after (shipped)</th></tr>"
        + "".join(rows)
        + "</table></body></html>"
    )


def _check_page_location(page: Path, output: Path) -> None:
    """The page shows original pixels (PHI): never in the shareable part of OUTPUT."""
    from src.errors import ConfigurationError

    if page.is_symlink():
        raise ConfigurationError("--to is a symbolic link; give the file itself")
    target, out = page.resolve(), output.resolve()
    private = (out / "quarantine", out / ".medpipe")
    inside = target == out or out in target.parents
    if inside and not any(p == target or p in target.parents for p in private):
        raise ConfigurationError(
            "the review page shows original pixels (PHI): write it under "
            "OUTPUT/quarantine/ or outside OUTPUT"
        )


def write_review(
    output: str | os.PathLike[str],
    key: bytes,
    input_root: str | None = None,
    target: str | os.PathLike[str] | None = None,
) -> tuple[Path, int]:
    """Write the review page; returns its path and the number of images on it."""
    from src.atomic import write_bytes_atomic

    page = Path(target) if target else Path(output) / "quarantine" / "review.html"
    _check_page_location(page, Path(output))
    items = collect(output, input_root, key)
    write_bytes_atomic(page, render_page(items, input_root is not None).encode("utf-8"))
    return page, len(items)


__all__ = ["ReviewItem", "collect", "render_page", "write_review"]
