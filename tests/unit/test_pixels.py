"""Clean Pixel Data on generated burned-in text over real backgrounds.

Expectations come from the generator (it knows every ink pixel it drew), from PS3.15
E.3.1 / CID 7050 (code 113101) and from pydicom decoding the output independently.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from src.ingestion.annex_e.profile import ConfidentialityProfile
from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline, InstanceRefusedError, Reason
from src.pixels.detector import TextBox, TextDetector
from src.synthetic.burned_text import BurnedSample, generate

KEY = b"pixel test key 0123456789"


@pytest.fixture(scope="module")
def samples() -> list[BurnedSample]:
    """Three rounds of every background for each encoding, seeded."""
    from src.synthetic.burned_text import ENCODINGS

    return [s for e in ENCODINGS for s in generate(11, 27, encoding=e)]


@pytest.fixture(scope="module")
def pipeline() -> InstancePipeline:
    profile = ConfidentialityProfile(clean_pixels=True)
    return InstancePipeline(Deidentifier(profile=profile, key=KEY))


def _write(sample: BurnedSample, folder: Path) -> Path:
    path = folder / f"{sample.name}.dcm"
    sample.dataset.save_as(path, enforce_file_format=True)
    return path


def _pick(samples: list[BurnedSample], **want: str) -> BurnedSample:
    for s in samples:
        if all(getattr(s, k) == v for k, v in want.items()) and s.boxes:
            return s
    raise LookupError(want)


def _background(name: str) -> np.ndarray:
    """A background as the generator holds it, before any text is drawn."""
    from src.synthetic.burned_text import backgrounds

    return next(b.array for b in backgrounds(0) if b.name == name)


def _covered(index_boxes: list[dict[str, int]], shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for b in index_boxes:
        mask[b["y"] : b["y"] + b["height"], b["x"] : b["x"] + b["width"]] = True
    return mask


def _codes(ds: pydicom.Dataset) -> set[str]:
    return {str(i.CodeValue) for i in ds.DeidentificationMethodCodeSequence}


@pytest.mark.parametrize(
    ("background", "encoding"),
    [
        ("examples_jpeg2k.dcm", "native"),  # real US, RGB
        ("examples_palette.dcm", "rle"),  # real US, PALETTE COLOR, compressed
        ("693_J2KI.dcm", "j2k-lossless"),  # real CT, 16-bit MONOCHROME2, JPEG 2000
        ("generated-us-sector", "rle"),
        ("examples_overlay.dcm", "native"),  # real MR, 16-bit
    ],
)
def test_drawn_text_is_masked_and_nothing_else_changes(
    samples: list[BurnedSample],
    pipeline: InstancePipeline,
    tmp_path: Path,
    background: str,
    encoding: str,
) -> None:
    sample = _pick(samples, background=background, encoding=encoding)
    source = _write(sample, tmp_path)
    result = pipeline.process(source, tmp_path / "out.dcm")
    out = pydicom.dcmread(tmp_path / "out.dcm")
    before = pixel_array(pydicom.dcmread(source))
    after = pixel_array(out)
    assert result.pixels is not None and result.pixels.verified
    covered = _covered(result.index["pixel_boxes"], before.shape[:2])
    for (_, x, y, w, h), ink in zip(sample.boxes, sample.ink, strict=True):
        ink_mask = np.zeros(before.shape[:2], dtype=bool)
        ink_mask[y : y + h, x : x + w] = ink
        assert covered[ink_mask].all(), f"ink of a drawn box left uncovered in {sample.name}"
        dark = after.min(axis=-1) if after.ndim == 3 else after
        assert (dark[ink_mask] == dark[ink_mask].min()).all(), "masked ink is not one fill value"
    # Lossless paths: every pixel outside the boxes is unchanged.
    assert np.array_equal(before[~covered], after[~covered])
    assert out.BurnedInAnnotation == "NO"
    assert out.PatientIdentityRemoved == "YES"
    assert "113101" in _codes(out) and "113100" in _codes(out)
    assert "Clean Pixel Data Option" in list(out.DeidentificationMethod)
    syntax = out.file_meta.TransferSyntaxUID
    assert syntax == (RLELossless if encoding != "native" else ExplicitVRLittleEndian)
    assert result.index["clean_pixel_data"] is True
    assert result.index["burned_in_annotation_risk"] is False
    assert all(
        set(b) == {"frame", "x", "y", "width", "height", "source"}
        for b in result.index["pixel_boxes"]
    )


class _DrawnTextDetector(TextDetector):
    """A fake for tests not about detection: it "sees" the text the generator drew.

    A drawn box counts as text while its ink still stands out from the rest of the box
    (a mean difference of more than 20 grey levels in the frame it is given); once the
    box is filled, ink and background are one value and the text is gone.
    """

    def __init__(self, sample: BurnedSample) -> None:  # no model
        self.drawn = [(box[1:], ink) for box, ink in zip(sample.boxes, sample.ink, strict=True)]

    def detect(self, rgb: np.ndarray, frame: int = 0) -> list[TextBox]:  # type: ignore[override]
        found = []
        for (x, y, w, h), ink in self.drawn:
            grey = rgb[y : y + h, x : x + w].astype(float).mean(axis=-1)
            if ink.any() and (~ink).any() and abs(grey[ink].mean() - grey[~ink].mean()) > 20:
                found.append(TextBox(frame, x, y, w, h))
        return found


def _knowing(sample: BurnedSample) -> InstancePipeline:
    """A Clean Pixel Data pipeline whose detector is :class:`_DrawnTextDetector`."""
    from src.pixels.cleaner import PixelCleaner

    pipe = InstancePipeline(
        Deidentifier(profile=ConfidentialityProfile(clean_pixels=True), key=KEY)
    )
    pipe._pixels = PixelCleaner(detector=_DrawnTextDetector(sample))
    return pipe


def test_lossy_source_is_re_encoded_losslessly_and_stays_marked_lossy(
    samples: list[BurnedSample], tmp_path: Path
) -> None:
    sample = _pick(samples, encoding="jpeg-baseline")
    result = _knowing(sample).process(_write(sample, tmp_path), tmp_path / "out.dcm")
    assert result.pixels is not None and result.pixels.verified and result.pixels.boxes
    out = pydicom.dcmread(tmp_path / "out.dcm")
    assert out.file_meta.TransferSyntaxUID == RLELossless
    assert out.PhotometricInterpretation == "RGB"  # decoded from YBR_FULL_422
    assert out.LossyImageCompression == "01"
    assert out.LossyImageCompressionMethod == "ISO_10918_1"
    assert pixel_array(out).shape == (int(out.Rows), int(out.Columns), 3)


def test_image_without_text_keeps_its_pixel_data_byte_for_byte(
    samples: list[BurnedSample], pipeline: InstancePipeline, tmp_path: Path
) -> None:
    sample = next(s for s in samples if s.text_free and s.encoding == "rle")
    source = _write(sample, tmp_path)
    result = pipeline.process(source, tmp_path / "clean.dcm")
    plain = InstancePipeline(Deidentifier(key=KEY)).process(source, tmp_path / "plain.dcm")
    assert result.pixels is not None and result.pixels.verified and not result.pixels.boxes
    cleaned, untouched = (
        pydicom.dcmread(tmp_path / "clean.dcm"),
        pydicom.dcmread(tmp_path / "plain.dcm"),
    )
    assert cleaned.PixelData == untouched.PixelData == pydicom.dcmread(source).PixelData
    assert untouched.PatientIdentityRemoved == "NO" and plain.burned_in_annotation_risk
    assert cleaned.PatientIdentityRemoved == "YES" and cleaned.BurnedInAnnotation == "NO"


def test_multi_frame_text_is_masked_in_the_frame_that_has_it(
    samples: list[BurnedSample], pipeline: InstancePipeline, tmp_path: Path
) -> None:
    from pydicom.pixels.utils import set_pixel_data

    text = _pick(samples, background="generated-us-sector", encoding="native")
    blank = np.ascontiguousarray(_background("generated-us-sector"))  # before any text
    frames = np.stack([blank, pixel_array(text.dataset), blank])
    ds = copy.deepcopy(text.dataset)
    set_pixel_data(ds, frames, "RGB", 8, generate_instance_uid=False)
    ds.save_as(tmp_path / "cine.dcm", enforce_file_format=True)
    result = pipeline.process(tmp_path / "cine.dcm", tmp_path / "out.dcm")
    assert {b["frame"] for b in result.index["pixel_boxes"]} == {1}
    after = pixel_array(pydicom.dcmread(tmp_path / "out.dcm"))
    assert after.shape == frames.shape
    assert np.array_equal(after[0], frames[0]) and np.array_equal(after[2], frames[2])


def test_monochrome1_is_filled_with_its_black(samples: list[BurnedSample], tmp_path: Path) -> None:
    from pydicom.pixels.utils import set_pixel_data

    sample = _pick(samples, background="693_J2KI.dcm", encoding="native")
    ds = copy.deepcopy(sample.dataset)
    values = pixel_array(ds)
    inverted = (values.max() - values + values.min()).astype(values.dtype)
    set_pixel_data(ds, inverted, "MONOCHROME1", int(ds.BitsStored), generate_instance_uid=False)
    ds.save_as(tmp_path / "m1.dcm", enforce_file_format=True)
    result = _knowing(sample).process(tmp_path / "m1.dcm", tmp_path / "out.dcm")
    after = pixel_array(pydicom.dcmread(tmp_path / "out.dcm"))
    x, y, w, h = (sample.boxes[0][i] for i in (1, 2, 3, 4))
    assert result.pixels is not None and result.pixels.boxes
    assert (after[y : y + h, x : x + w][sample.ink[0]] == inverted.max()).all()


def test_images_not_at_risk_never_reach_the_detector(
    pipeline: InstancePipeline, tmp_path: Path
) -> None:
    from pydicom.data import get_testdata_file

    fresh = InstancePipeline(
        Deidentifier(profile=ConfidentialityProfile(clean_pixels=True), key=KEY)
    )
    result = fresh.process(get_testdata_file("CT_small.dcm"), tmp_path / "ct.dcm")
    assert result.pixels is None and "pixel_boxes" not in result.index
    assert fresh.pixel_cleaner is not None and fresh.pixel_cleaner._detector is None


class _StubbornDetector(TextDetector):
    """A detector that sees text everywhere, every time: cleaning can never be verified."""

    def __init__(self) -> None:  # no model: this double only exercises the refusal path
        pass

    def detect(self, rgb: np.ndarray, frame: int = 0) -> list[TextBox]:  # type: ignore[override]
        return [TextBox(frame, 1, 1, 4, 4)]


def test_text_found_again_after_cleaning_quarantines(
    samples: list[BurnedSample], tmp_path: Path
) -> None:
    from src.pixels.cleaner import PixelCleaner

    pipe = InstancePipeline(
        Deidentifier(profile=ConfidentialityProfile(clean_pixels=True), key=KEY)
    )
    pipe._pixels = PixelCleaner(detector=_StubbornDetector())
    sample = _pick(samples, background="generated-us-sector")
    with pytest.raises(InstanceRefusedError) as refused:
        pipe.process(_write(sample, tmp_path), tmp_path / "out.dcm")
    assert refused.value.reason is Reason.PIXEL_PHI_REMAINS
    assert refused.value.stage == "clean-pixels"
    assert not (tmp_path / "out.dcm").exists()


def test_phi_mode_keeps_device_text_and_masks_the_patient(
    samples: list[BurnedSample], tmp_path: Path
) -> None:
    from PIL import Image, ImageDraw, ImageFont

    from src.synthetic.burned_text import fonts

    sample = _pick(samples, background="generated-us-sector", encoding="native")
    assert sample.patient is not None
    ds = copy.deepcopy(sample.dataset)
    image = Image.fromarray(np.ascontiguousarray(_background("generated-us-sector")))
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(str(next(f for f in fonts() if f.stem == "DejaVuSans")), 20)
    family = sample.patient.name.split("^")[0].upper()
    draw.text((20, 20), f"{family} {sample.patient.patient_id}", fill=(255, 255, 255), font=font)
    draw.text((380, 440), "C5-1  Gen  THI", fill=(255, 255, 255), font=font)
    from pydicom.pixels.utils import set_pixel_data

    set_pixel_data(ds, np.asarray(image), "RGB", 8, generate_instance_uid=False)
    ds.save_as(tmp_path / "phi.dcm", enforce_file_format=True)
    pipe = InstancePipeline(
        Deidentifier(profile=ConfidentialityProfile(clean_pixels=True, pixel_text="phi"), key=KEY)
    )
    result = pipe.process(tmp_path / "phi.dcm", tmp_path / "out.dcm")
    boxes = result.index["pixel_boxes"]
    assert any(b["y"] < 60 and b["x"] < 200 for b in boxes), "the patient's name and ID stay"
    assert not any(b["y"] > 400 and b["x"] > 340 for b in boxes), "device text was masked"


def test_a_missing_model_stops_the_shell_instead_of_quarantining(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import src.pixels.cleaner as cleaner
    from src.pixels.detector import DetectorUnavailableError

    monkeypatch.setattr(cleaner, "DETECTOR_MODEL", "models/absent.onnx")
    with pytest.raises(DetectorUnavailableError, match=r"absent\.onnx"):
        InstancePipeline(Deidentifier(profile=ConfidentialityProfile(clean_pixels=True), key=KEY))


def test_a_bad_rules_file_is_one_error_line_and_nothing_is_written(tmp_path: Path) -> None:
    from tests.conftest import medpipe

    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "x"\nboxes = [[0, 0, 10]]\n[rule.when]\nModality = "US"\n')
    (tmp_path / "in").mkdir()
    for name in ("a", "b", "c"):  # enough for a pool of workers, whose initializer must not fail
        (tmp_path / "in" / f"{name}.dcm").write_bytes(b"not read: the run stops first")
    proc = medpipe(
        "run",
        "-j",
        "2",
        "--clean-pixels",
        "--pixel-regions",
        str(rules),
        str(tmp_path / "in"),
        str(tmp_path / "out"),
        check=False,
        timeout=120,
    )
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("medpipe: error:")]
    assert len(errors) == 1 and "rule x" in errors[0] and "[x, y, width, height]" in errors[0]
    assert not (tmp_path / "out" / "index.jsonl").exists()


def test_cleaning_never_imports_opencv_which_the_lambda_package_lacks(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys, pydicom\n"
        "from src.pixels.cleaner import PixelCleaner\n"
        "from src.synthetic.burned_text import generate\n"
        "s = next(s for s in generate(11, 9) if s.boxes)\n"
        "PixelCleaner(mode='phi').clean_dataset(s.dataset, {'PatientName': 'X^Y'})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cv2', 'rapidocr_onnxruntime')))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
