"""report.html renders in headless Chromium, says what the manifest says, and holds no PHI."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.conftest import medpipe
from tests.integration.peers import need

CHROMIUM = [
    "chromium",
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _png_pixels(path: Path) -> bytes:
    """The decompressed scanlines of a PNG (enough to tell a blank page from a drawn one)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat = 8, b""
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    return zlib.decompress(idat)


@pytest.mark.peer
def test_report_renders_with_the_manifests_counts_and_no_phi(tmp_path: Path, corpus) -> None:
    need("chromium")
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i, path in enumerate(corpus.files):
        (inputs / f"{i:03d}.dcm").write_bytes(path.read_bytes())
    (inputs / "notes.txt").write_text("not DICOM")
    out = tmp_path / "out"
    medpipe("run", str(inputs), str(out))
    page = out / "report.html"
    text = page.read_text()
    assert not [p for p in corpus.planted if p in text]
    assert "<script" not in text and "http" not in text.replace("http://www.w3.org/2000/svg", "")
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    manifest = json.loads((out / "manifest.json").read_text())
    totals = manifest["totals"]
    cards = dict((label, int(n)) for n, label in re.findall(r"<b>(\d+)</b>(\w+)", dom))
    assert cards["processed"] == totals["processed"] == len(corpus.files)
    assert cards["quarantined"] == totals["quarantined"] == 1
    assert cards["patients"] == len(corpus.patients)
    assert ">not-dicom<" in dom and "quarantine/" in dom
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            *CHROMIUM,
            f"--user-data-dir={profile}",
            "--window-size=1100,1400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = _png_pixels(shot)
    assert len(pixels) > 1100 * 1400  # the whole window was drawn
    drawn = sum(1 for b in pixels[::97] if b < 0xF0)
    assert drawn > len(pixels[::97]) // 50  # text and bars, not a blank page
