"""`medpipe run --clean-pixels` on burned-in text, then `medpipe review` in headless Chromium."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from src.synthetic.burned_text import generate
from tests.conftest import medpipe
from tests.integration.peers import need
from tests.integration.test_report_html import CHROMIUM


@pytest.fixture(scope="module")
def cleaned_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list]:  # type: ignore[type-arg]
    from pydicom.data import get_testdata_file

    root = tmp_path_factory.mktemp("clean-pixels")
    inputs, out = root / "in", root / "out"
    inputs.mkdir()
    samples = list(generate(21, 9))
    for s in samples:
        s.dataset.save_as(inputs / f"{s.name}.dcm", enforce_file_format=True)
    (inputs / "ct.dcm").write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    proc = medpipe("run", "--clean-pixels", "-j", "2", str(inputs), str(out))
    return inputs, out, [samples, proc]


def test_run_cleans_every_image_at_risk_and_says_so(cleaned_run) -> None:  # type: ignore[no-untyped-def]
    _, out, (samples, proc) = cleaned_run
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    cleaned = [r for r in rows if r.get("clean_pixel_data")]
    assert len(cleaned) == len(samples), "every generated image was examined and verified"
    assert not [r for r in rows if r["burned_in_annotation_risk"]]
    # The rewritten files' hashes were taken as they were written, not of the first write.
    from blake3 import blake3

    for row in rows:
        assert row["output_blake3"] == blake3((out / row["output"]).read_bytes()).hexdigest()
    ct = [r for r in rows if "pixel_boxes" not in r]
    assert len(ct) == 1 and ct[0]["series"]["modality"] == "CT"  # not at risk: never searched
    boxes = sum(len(r["pixel_boxes"]) for r in cleaned)
    assert (
        f"{len(cleaned)} image(s) searched and verified, {boxes} text box(es) masked" in proc.stdout
    )
    index_text = (out / "index.jsonl").read_text()
    for s in samples:
        family = s.patient.name.split("^")[0]
        assert family not in index_text and s.patient.patient_id not in index_text
    for r in cleaned:
        ds = pydicom.dcmread(out / r["output"], stop_before_pixels=True)
        assert ds.BurnedInAnnotation == "NO" and ds.PatientIdentityRemoved == "YES"
        assert "113101" in {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["totals"]["processed"] == len(samples) + 1


@pytest.mark.peer
def test_review_page_renders_before_and_after_with_boxes(cleaned_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    need("chromium")
    inputs, out, (samples, _) = cleaned_run
    proc = medpipe("review", str(out), "--input", str(inputs))
    page = out / "quarantine" / "review.html"
    assert f"{len(samples)} image(s) to review" in proc.stdout and page.is_file()
    assert page.stat().st_mode & 0o077 == 0, "a page with PHI is readable by its owner only"
    profile = tmp_path / "chromium-profile"
    dom = subprocess.run(
        [*CHROMIUM, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert dom.count('alt="before"') == len(samples)
    assert dom.count('alt="after"') == len(samples)
    assert "This page holds original pixels (PHI)" in dom
    shot = tmp_path / "review.png"
    subprocess.run(
        [
            *CHROMIUM,
            f"--user-data-dir={profile}",
            "--window-size=1300,1500",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    red = int(((pixels[..., 0] > 200) & (pixels[..., 1] < 60) & (pixels[..., 2] < 60)).sum())
    assert red > 200, "the masked boxes are outlined on the thumbnails"


@pytest.mark.peer
def test_cleaning_adds_no_dciodvfy_error(cleaned_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """dicom3tools judges each cleaned object against the same object de-identified without
    Clean Pixel Data: the option may change pixels and markers, never break the IOD."""
    need("dciodvfy")
    inputs, out, _ = cleaned_run
    plain = tmp_path / "plain"
    medpipe("run", "-j", "2", str(inputs), str(plain))

    def errors(path: Path) -> list[str]:
        proc = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, check=False)
        return sorted(
            line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")
        )

    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    checked = 0
    for row in rows:
        if row.get("clean_pixel_data"):
            assert errors(out / row["output"]) == errors(plain / row["output"]), row["output"]
            checked += 1
    assert checked >= 8


def test_clean_pixel_data_writes_each_output_once_and_reads_none_back(tmp_path, monkeypatch):
    """The cleaner works on the engine's output in memory: the output file is opened once,
    to be written, and never read (#28 item 6)."""
    import builtins

    from src.ingestion.annex_e.profile import ConfidentialityProfile
    from src.ingestion.deidentifier import Deidentifier
    from src.instance.pipeline import InstancePipeline

    (sample,) = list(generate(3, 1))
    source = tmp_path / "in.dcm"
    sample.dataset.save_as(source, enforce_file_format=True)
    profile = ConfidentialityProfile(clean_pixels=True)
    pipeline = InstancePipeline(Deidentifier(profile=profile, key=b"k" * 32))
    output = tmp_path / "out.dcm"
    opened: list[str] = []
    real_open = builtins.open

    def watching(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(file) == str(output) or str(file).startswith(str(tmp_path / ".medpipe-tmp")):
            opened.append(mode)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", watching)
    result = pipeline.process(source, output, atomic=False)
    monkeypatch.undo()
    assert result.pixels is not None and result.pixels.verified and result.pixels.boxes
    assert opened == ["wb"]  # written once; not written, read back and written again
    from blake3 import blake3

    assert result.index["output_blake3"] == blake3(output.read_bytes()).hexdigest()
