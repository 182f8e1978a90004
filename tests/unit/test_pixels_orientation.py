"""Clean Pixel Data finds text at any orientation and bar or 2D codes (#29 item 1).

The samples are drawn by the seeded generator: patient lines turned by 90 or 270 degrees
(as along the edge of a radiograph or an ultrasound), and a slide label's Code 128 of the
MRN with a Data Matrix or QR code of the name and birth date, written by zxing-cpp. Every
drawn ink pixel must end up inside a filled box, and every code must be unreadable after
cleaning (zxing-cpp reads the cleaned frame again: the independent check for codes).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array

from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline
from src.synthetic.burned_text import BurnedSample, generate

KEY = b"pixel orientation key 0123456789"


@pytest.fixture(scope="module")
def pipeline() -> InstancePipeline:
    profile = ConfidentialityProfile(clean_pixels=True)
    return InstancePipeline(Deidentifier(profile=profile, key=KEY))


def _covered(index_boxes: list[dict[str, int]], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for b in index_boxes:
        mask[b["y"] : b["y"] + b["height"], b["x"] : b["x"] + b["width"]] = True
    return mask


def _clean(sample: BurnedSample, pipeline: InstancePipeline, tmp_path: Path):  # type: ignore[no-untyped-def]
    source, out = tmp_path / f"{sample.name}.dcm", tmp_path / f"{sample.name}-out.dcm"
    sample.dataset.save_as(source, enforce_file_format=True)
    result = pipeline.process(source, out)
    return result, pixel_array(pydicom.dcmread(source)), pixel_array(pydicom.dcmread(out))


def _recall(
    samples: list[BurnedSample], pipeline: InstancePipeline, tmp_path: Path
) -> tuple[int, int]:
    masked = drawn = 0
    for sample in samples:
        result, before, _ = _clean(sample, pipeline, tmp_path)
        assert result.pixels is not None and result.pixels.examined
        covered = _covered(result.index.get("pixel_boxes", []), before.shape[:2])
        for (_, x, y, w, h), ink in zip(sample.boxes, sample.ink, strict=True):
            ink_mask = np.zeros(before.shape[:2], dtype=bool)
            ink_mask[y : y + h, x : x + w] = ink
            drawn += 1
            masked += bool(covered[ink_mask].all())
    return masked, drawn


def test_text_turned_by_90_or_270_degrees_is_masked(pipeline, tmp_path, capsys):
    samples = [s for s in generate(23, 12, text_free_every=0, layout="vertical") if s.boxes]
    masked, drawn = _recall(samples, pipeline, tmp_path)
    with capsys.disabled():
        print(f"\nvertical text boxes masked: {masked}/{drawn}")
    assert drawn >= 12 and masked == drawn


def test_bar_and_2d_codes_are_masked_and_unreadable_after(pipeline, tmp_path, capsys):
    import zxingcpp

    samples = [s for s in generate(29, 8, text_free_every=0, layout="codes") if s.boxes]
    masked, drawn = _recall(samples, pipeline, tmp_path)
    with capsys.disabled():
        print(f"\ncodes masked: {masked}/{drawn}")
    assert drawn >= 8 and masked == drawn
    for sample in samples:
        _, before, after = _clean(sample, pipeline, tmp_path)
        assert zxingcpp.read_barcodes(_grey(before)), sample.name  # the oracle reads them...
        assert not zxingcpp.read_barcodes(_grey(after)), sample.name  # ...and not after


def _grey(array: np.ndarray) -> np.ndarray:
    """8-bit grey by min-max scaling (no windowing of the project's), for zxing-cpp."""
    a = array.mean(axis=-1) if array.ndim == 3 else array.astype(float)
    low, high = float(a.min()), float(a.max())
    return np.ascontiguousarray(((a - low) * 255.0 / max(1.0, high - low)).astype(np.uint8))
