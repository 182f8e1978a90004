"""Seeded burned-in text: fake names, IDs and dates drawn onto real image backgrounds.

Backgrounds are pydicom's own ultrasound, secondary-capture-like and cross-sectional
test images (their existing annotations blanked to black, keeping the anatomy) and
generated frames (an ultrasound-like speckle sector, a gradient). Text is rendered with
the fonts Debian ships (DejaVu, Liberation) at several sizes, levels and positions, in
RGB, palette and monochrome, and written native, RLE Lossless, JPEG baseline (lossy) or
JPEG 2000 lossless. Every sample knows the boxes of the ink it drew.
"""

from __future__ import annotations

import copy
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from src.synthetic.label_codes import draw_codes
from src.synthetic.paint import paint
from src.synthetic.paint import shown as displayed
from src.synthetic.people import FakePatient, make_patient

FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/truetype/liberation2",
    "/usr/share/fonts/truetype/liberation",
)
#: pydicom test images and the window (x0, y0, x1, y1) of anatomy kept from each; the
#: rest (the vendor's own annotations) is blanked. Chosen by eye, not by the detector.
_REAL = {
    "examples_jpeg2k.dcm": (48, 110, 590, 340),
    "examples_rgb_color.dcm": (24, 55, 295, 170),
    "examples_palette.dcm": (335, 62, 600, 200),
    "examples_ybr_color.dcm": (30, 15, 280, 215),
    "693_J2KI.dcm": None,
    "examples_overlay.dcm": None,
    "image_dfl.dcm": None,
}
_ROOT = "1.2.826.0.1.3680043.10.1078."
ENCODINGS = ("native", "rle", "jpeg-baseline", "j2k-lossless")


class FontsUnavailableError(RuntimeError):
    """No DejaVu or Liberation fonts (Debian: fonts-dejavu-core, fonts-liberation2)."""


def fonts() -> list[Path]:
    """The TrueType fonts the generator draws with."""
    found = sorted(p for d in FONT_DIRS for p in Path(d).glob("*.ttf") if "Bold" not in p.stem)
    found += sorted(p for d in FONT_DIRS for p in Path(d).glob("*Bold.ttf"))
    if not found:
        raise FontsUnavailableError("no DejaVu or Liberation fonts under /usr/share/fonts")
    return found


@dataclass
class Background:
    """Stored pixel values of one frame and the dataset they came from."""

    name: str
    array: np.ndarray[Any, Any]
    template: Dataset
    photometric: str


@dataclass
class BurnedSample:
    """One generated image: its dataset and the ink boxes drawn (frame, x, y, w, h)."""

    name: str
    dataset: Dataset
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)
    #: For each box, the ink drawn inside it (a boolean array of the box's shape).
    ink: list[np.ndarray[Any, Any]] = field(default_factory=list, repr=False)
    background: str = ""
    encoding: str = "native"
    patient: FakePatient | None = None

    @property
    def text_free(self) -> bool:
        return not self.boxes


def _blank_outside(
    array: np.ndarray[Any, Any], window: tuple[int, int, int, int], value: Any
) -> None:
    x0, y0, x1, y1 = window
    keep = array[y0:y1, x0:x1].copy()
    array[...] = value
    array[y0:y1, x0:x1] = keep


def _real_backgrounds() -> list[Background]:
    from pydicom.pixels.utils import pixel_array

    out = []
    for name, window in _REAL.items():
        path = get_testdata_file(name)
        if path is None:
            continue
        ds = dcmread(path)
        array = pixel_array(ds, as_rgb=True, index=0 if "NumberOfFrames" in ds else None)
        array = np.ascontiguousarray(array)
        photometric = str(ds.PhotometricInterpretation)
        if int(ds.SamplesPerPixel) == 3:
            photometric = "RGB"
        if window is not None:
            black: Any = (0, 0, 0) if array.ndim == 3 else int(array.min())
            if photometric == "PALETTE COLOR":
                black = 0
            _blank_outside(array, window, black)
        out.append(Background(name, array, ds, photometric))
    return out


def _generated_backgrounds(rng: random.Random) -> list[Background]:
    gen = np.random.default_rng(rng.randrange(2**32))
    rows, cols = 480, 640
    yy, xx = np.mgrid[0:rows, 0:cols]
    angle = np.arctan2(xx - cols / 2, yy + 40)
    radius = np.hypot(xx - cols / 2, yy + 40)
    sector = (np.abs(angle) < 0.6) & (radius > 60) & (radius < 470)
    speckle = gen.gamma(2.0, 40.0, (rows, cols)) * np.exp(-radius / 600)
    us = np.where(sector, np.clip(speckle, 0, 255), 0).astype(np.uint8)
    rgb = np.repeat(us[:, :, np.newaxis], 3, axis=2)
    gradient = (np.clip(xx / cols * 1800 + yy / rows * 600, 0, 4095)).astype(np.uint16)
    out = []
    for name, array, photometric in (
        ("generated-us-sector", rgb, "RGB"),
        ("generated-mono-gradient", gradient, "MONOCHROME2"),
    ):
        out.append(Background(name, array, _template(photometric, array), photometric))
    return out


def _template(photometric: str, array: np.ndarray[Any, Any]) -> Dataset:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.Modality = "US" if photometric == "RGB" else "OT"
    ds.Rows, ds.Columns = array.shape[:2]
    ds.BitsAllocated = 8 if array.dtype == np.uint8 else 16
    ds.BitsStored = 8 if array.dtype == np.uint8 else 12
    ds.PixelRepresentation = 0
    return ds


def backgrounds(seed: int = 0) -> list[Background]:
    """Every background, real and generated."""
    return _real_backgrounds() + _generated_backgrounds(random.Random(seed))


def _strings(patient: FakePatient, rng: random.Random) -> list[str]:
    family, given = patient.name.split("^")[:2]
    born = date(
        int(patient.birth_date[:4]), int(patient.birth_date[4:6]), int(patient.birth_date[6:])
    )
    seen = born + timedelta(days=rng.randrange(7000, 25000))
    return [
        rng.choice([f"{family.upper()}, {given}", f"{family}^{given}", f"{given} {family}"]),
        rng.choice([patient.patient_id, f"ID: {patient.patient_id}", patient.other_id]),
        rng.choice(
            [born.strftime("%d/%m/%Y"), born.strftime("%Y-%m-%d"), f"DOB {born:%d-%b-%Y}".upper()]
        ),
        rng.choice([seen.strftime("%m/%d/%Y %H:%M"), patient.accession_base, "St Mary's Hospital"]),
    ]


def _draw(
    bg: Background,
    rng: random.Random,
    font_files: list[Path],
    patient: FakePatient,
    lines: int,
    layout: str = "horizontal",
) -> tuple[np.ndarray[Any, Any], list[tuple[int, int, int, int, int]], list[np.ndarray[Any, Any]]]:
    """Text drawn into a copy of the background: upright lines, or with ``layout``
    ``"vertical"`` lines turned by 90 or 270 degrees (the patient line along the edge of
    a radiograph); returns the array, the drawn boxes and each box's ink."""
    from PIL import Image, ImageDraw, ImageFont

    array = bg.array.copy()
    rows, cols = array.shape[:2]
    turns = rng.choice([1, 3]) if layout == "vertical" else 0
    canvas = (rows, cols) if turns else (cols, rows)  # PIL's (width, height), drawn upright
    boxes: list[tuple[int, int, int, int, int]] = []
    inks: list[np.ndarray[Any, Any]] = []
    taken = np.zeros((rows, cols), dtype=bool)
    for text in _strings(patient, rng)[:lines]:
        size = rng.randint(max(10, rows // 40), max(14, rows // 16))
        font = ImageFont.truetype(str(rng.choice(font_files)), size)
        layer = Image.new("L", canvas, 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(20):
            width, height = canvas
            x, y = rng.randrange(0, max(1, width - 20)), rng.randrange(0, max(1, height - size))
            draw.rectangle([0, 0, width, height], fill=0)
            draw.text((x, y), text, fill=255, font=font)
            mask = np.rot90(np.asarray(layer) > 0, turns)
            ys, xs = np.nonzero(mask)
            if not len(xs) or xs.max() >= cols - 1 or ys.max() >= rows - 1:
                continue
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            if taken[max(0, y0 - 4) : y1 + 4, max(0, x0 - 4) : x1 + 4].any():
                continue
            taken[y0:y1, x0:x1] = True
            boxes.append((0, x0, y0, x1 - x0, y1 - y0))
            inks.append(mask[y0:y1, x0:x1].copy())
            break
    # Burned-in annotations are made to be read: each line contrasts with what is
    # behind it (light on dark, dark on light) by 40 to 100% of the displayed range.
    shown = displayed(bg, array)
    for (_, x, y, w, h), ink_box in zip(boxes, inks, strict=True):
        behind = float(shown[y : y + h, x : x + w][~ink_box].mean()) if (~ink_box).any() else 0.0
        contrast = rng.choice([1.0, 0.7, 0.4])
        target = behind + contrast * 255 if behind < 128 else behind - contrast * 255
        level = min(1.0, max(0.0, target / 255))
        strokes = np.zeros(shown.shape, dtype=bool)
        strokes[y : y + h, x : x + w] = ink_box
        paint(bg, array, strokes, level)
        # Ink that lands on a background of its own level cannot be seen by anyone: only
        # the visible strokes (a fifth of the range or more from what was there) count.
        after = displayed(bg, array)[y : y + h, x : x + w]
        ink_box &= np.abs(after - shown[y : y + h, x : x + w]) >= 51
    return array, boxes, inks


def _jpeg_baseline(ds: Dataset, array: np.ndarray[Any, Any]) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90, subsampling=2)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = "ISO_10918_1"


def _identify(ds: Dataset, patient: FakePatient, seed: int, index: int) -> None:
    """The fake patient's identity in the header, as a modality would write it."""
    from pydicom.uid import generate_uid

    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.AccessionNumber = patient.accession_base
    ds.OtherPatientIDs = patient.other_id
    ds.InstitutionName = "St Mary's Hospital"
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if keyword not in ds:
            setattr(ds, keyword, generate_uid(_ROOT, entropy_srcs=[str(seed), str(index), keyword]))
    ds.StudyDate = ds.get("StudyDate") or "20240102"


def _dataset(bg: Background, array: np.ndarray[Any, Any], encoding: str, uid: str) -> Dataset:
    from pydicom.pixels.utils import set_pixel_data

    ds = copy.deepcopy(bg.template)
    for keyword in (
        "NumberOfFrames",
        "FrameIncrementPointer",
        "FrameTime",
        "LossyImageCompression",
    ):
        if keyword in ds:
            del ds[keyword]
    if (
        ds.file_meta.TransferSyntaxUID.is_compressed
        or not ds.file_meta.TransferSyntaxUID.is_little_endian
    ):
        from pydicom.uid import ExplicitVRLittleEndian

        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    bits = int(ds.get("BitsStored", 8)) if array.dtype != np.uint8 else 8
    set_pixel_data(ds, array, bg.photometric, bits, generate_instance_uid=False)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = UID(uid)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.BurnedInAnnotation = "YES"
    if encoding == "rle":
        ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    elif encoding == "jpeg-baseline":
        _jpeg_baseline(ds, array)
    elif encoding == "j2k-lossless":
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    return ds


def generate(
    seed: int,
    count: int,
    text_free_every: int = 4,
    encoding: str | None = None,
    layout: str = "horizontal",
) -> Iterator[BurnedSample]:
    """Yield ``count`` samples; about one in ``text_free_every`` has no text drawn.

    Parameters
    ----------
    seed : int
        The same seed gives the same samples.
    count : int
    text_free_every : int
        About one sample in this many is left text-free (for the clean-image change rate).
    encoding : str, optional
        One of :data:`ENCODINGS` for every sample that supports it (JPEG baseline is for
        RGB only, palette images are native or RLE); by default they rotate.
    layout : {"horizontal", "vertical", "codes"}
        Upright lines of text; lines turned by 90 or 270 degrees; or bar and 2D codes of
        the patient's MRN, name and birth date.
    """
    from pydicom.uid import generate_uid

    rng = random.Random(seed)
    font_files = fonts()
    pool = backgrounds(seed)
    for index in range(count):
        bg = pool[index % len(pool)]
        text_free = text_free_every > 0 and rng.randrange(text_free_every) == 0
        patient = make_patient(rng, index)
        if text_free:
            array = bg.array.copy()
            boxes: list[tuple[int, int, int, int, int]] = []
            inks: list[np.ndarray[Any, Any]] = []
        elif layout == "codes":
            array, boxes, inks = draw_codes(bg, rng, patient)
        else:
            array, boxes, inks = _draw(bg, rng, font_files, patient, rng.randint(1, 4), layout)
        encodings = ["native", "rle", "j2k-lossless"]
        if bg.photometric == "RGB":
            encodings.append("jpeg-baseline")
        if bg.photometric == "PALETTE COLOR":
            encodings = ["native", "rle"]
        chosen = encodings[(index // len(pool) + index) % len(encodings)]
        if encoding is not None:
            chosen = encoding if encoding in encodings else "native"
        uid = str(generate_uid(_ROOT, entropy_srcs=[str(seed), str(index)]))
        ds = _dataset(bg, array, chosen, uid)
        _identify(ds, patient, seed, index)
        yield BurnedSample(f"burned-{seed}-{index:04d}", ds, boxes, inks, bg.name, chosen, patient)


__all__ = [
    "ENCODINGS",
    "Background",
    "BurnedSample",
    "FontsUnavailableError",
    "backgrounds",
    "fonts",
    "generate",
]
