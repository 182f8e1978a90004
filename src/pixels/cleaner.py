"""Clean Pixel Data for one de-identified instance: detect, mask, verify, mark, rewrite.

Only images at risk come here (the per-instance pipeline decides; a CT or MR series
without risk costs nothing). Boxes come from two detectors, combined: the region rules
that match the original header, and OCR text detection on every frame. Every box is
filled; then the detector runs again on each cleaned frame, and text still found there
makes the outcome *unverified*: the pipeline quarantines such an image
(``pixel-phi-remains``), it never ships.

An image in which nothing was found keeps its Pixel Data byte for byte; only the
markers change (Burned In Annotation NO, code 113101, Patient Identity Removed YES).
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from src.atomic import DigestingWriter, new_digest, open_output
from src.ingestion.annex_e.burned_in import says_text
from src.ingestion.annex_e.markers import mark_clean_pixels
from src.pixels.detector import DETECTOR_MODEL, TextBox, TextDetector, model_file
from src.pixels.frames import (
    UnsupportedPixelDataError,
    decode,
    fill_value,
    mask,
    render,
    write_back,
)
from src.pixels.regions import RegionRules

#: What the opt-in ``phi`` mode compares recognised text with (held in memory only).
IDENTIFIER_KEYWORDS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "OperatorsName",
    "PerformingPhysicianName",
    "StudyDate",
)
#: How many pixels a detected box grows by on every side before it is filled, besides a
#: quarter of the line's height above and below (diacritics, descenders, a box the
#: detector placed a little high or low) and two thirds of it at the ends of the line
#: (where detectors cut the first and last glyphs short: thin ones, text over texture).
MARGIN = 3
#: Extra detect-and-fill rounds before an image with text still found is given up on.
ROUNDS = 2


@dataclass
class PixelOutcome:
    """What Clean Pixel Data did to one image (coordinates only, never text).

    Attributes
    ----------
    examined : bool
        Every frame was decoded and searched.
    boxes : list of TextBox
        The boxes filled.
    remaining : list of TextBox
        Text found again after cleaning (the image must not ship).
    reason : str
        Why the image was not examined (a named attribute, never a value).
    frames : int
        Frames searched.
    """

    examined: bool
    boxes: list[TextBox] = field(default_factory=list)
    remaining: list[TextBox] = field(default_factory=list)
    reason: str = ""
    frames: int = 0
    #: The cleaned dataset as written (set by :meth:`PixelCleaner.clean_file` when
    #: verified), so that the caller describes it without reading the file again.
    dataset: Dataset | None = field(default=None, repr=False)
    #: BLAKE3 (hex) of the rewritten file, hashed as it was written (None: not rewritten).
    output_blake3: str | None = None
    #: The header says a label is in the image (a slide's LABEL or OVERVIEW, Specimen
    #: Label in Image YES) and the detector found no text: the image is not marked clean.
    contradicted: bool = False

    @property
    def verified(self) -> bool:
        """Examined, no text found after cleaning, and no header saying otherwise."""
        return self.examined and not self.remaining and not self.contradicted

    def as_index(self) -> list[dict[str, Any]]:
        """The cleaned boxes for the index row."""
        return [b.as_dict() for b in self.boxes]


def _grow(box: TextBox, rows: int, cols: int) -> TextBox:
    side = MARGIN + (2 * box.height) // 3
    above = MARGIN + box.height // 4
    x0, y0 = max(0, box.x - side), max(0, box.y - above)
    x1, y1 = min(cols, box.x + box.width + side), min(rows, box.y + box.height + above)
    return TextBox(box.frame, x0, y0, x1 - x0, y1 - y0, box.source)


def _extend_to_ink(rgb: Any, box: TextBox) -> TextBox:
    """Grow a box along its line while the next strip holds ink like the box's own.

    Detectors cut lines short over texture or colour; the strokes they left out have the
    level of the strokes inside the box. Each end grows by half a line height at a time,
    at most three line heights, while the strip beside it holds at least half the box's
    share of such pixels.
    """
    import numpy as np

    grey = rgb[box.y : box.y + box.height].mean(axis=2)
    inside = grey[:, box.x : box.x + box.width]
    if inside.size == 0:
        return box
    ground = float(np.median(inside))
    bright = float(inside.max()) - ground >= ground - float(inside.min())
    ink = (grey - ground >= 64) if bright else (ground - grey >= 64)
    share = float(ink[:, box.x : box.x + box.width].mean())
    if share == 0.0:
        return box
    step = max(3, box.height // 2)
    limit = 3 * box.height
    x0, x1 = box.x, box.x + box.width
    cols = rgb.shape[1]
    while x0 > 0 and box.x - x0 < limit and ink[:, max(0, x0 - step) : x0].mean() >= share / 2:
        x0 = max(0, x0 - step)
    while (
        x1 < cols
        and x1 - (box.x + box.width) < limit
        and (ink[:, x1 : min(cols, x1 + step)].mean() >= share / 2)
    ):
        x1 = min(cols, x1 + step)
    return TextBox(box.frame, x0, box.y, x1 - x0, box.height, box.source)


def _join_lines(boxes: list[TextBox]) -> list[TextBox]:
    """Merge boxes of one frame that sit on one text line with a word-sized gap between.

    The detector sometimes splits a line into pieces and loses the glyphs between them.
    """
    out: list[TextBox] = []
    for box in sorted(boxes, key=lambda b: (b.frame, b.source, b.y, b.x)):
        for i, other in enumerate(out):
            if other.frame != box.frame or other.source != box.source:
                continue
            top, bottom = max(box.y, other.y), min(box.y + box.height, other.y + other.height)
            overlap = bottom - top
            height = min(box.height, other.height)
            gap = max(box.x, other.x) - min(box.x + box.width, other.x + other.width)
            if overlap >= 0.6 * height and gap <= 1.5 * max(box.height, other.height):
                x0, y0 = min(box.x, other.x), min(box.y, other.y)
                x1 = max(box.x + box.width, other.x + other.width)
                y1 = max(box.y + box.height, other.y + other.height)
                out[i] = TextBox(box.frame, x0, y0, x1 - x0, y1 - y0, box.source)
                break
        else:
            out.append(box)
    return out


def _verification_view(rgb: Any, boxes: list[TextBox], frame: int) -> Any:
    """The cleaned frame as the verifying detector sees it.

    Each filled box is painted with the median colour of the ring just outside it, so
    that the hard edges of a black box over texture are not taken for text; glyph parts
    left outside a box are untouched and still found.
    """
    import numpy as np

    view = rgb.copy()
    rows, cols = view.shape[:2]
    for b in boxes:
        if b.frame != frame:
            continue
        x0, y0 = max(0, b.x - 2), max(0, b.y - 2)
        x1, y1 = min(cols, b.x + b.width + 2), min(rows, b.y + b.height + 2)
        ring = np.concatenate(
            [
                view[y0:y1, x0 : b.x].reshape(-1, 3),
                view[y0:y1, b.x + b.width : x1].reshape(-1, 3),
                view[y0 : b.y, x0:x1].reshape(-1, 3),
                view[b.y + b.height : y1, x0:x1].reshape(-1, 3),
            ]
        )
        colour = np.median(ring, axis=0) if len(ring) else 0
        view[b.y : b.y + b.height, b.x : b.x + b.width] = colour
    return view


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple | MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


class PixelCleaner:
    """Apply Clean Pixel Data to de-identified files.

    Parameters
    ----------
    regions : RegionRules, optional
        Defaults to the shipped starter set.
    detector : TextDetector, optional
        Created on first use (loading the model takes a moment).
    mode : {"all", "phi"}
        ``"all"`` (the default) fills every text box the detector finds; ``"phi"``
        fills only text whose recognised content matches this patient's identifiers
        or a PHI pattern (:mod:`src.pixels.recognizer`). Region rules always apply.
    """

    def __init__(
        self,
        regions: RegionRules | None = None,
        detector: TextDetector | None = None,
        mode: str = "all",
    ) -> None:
        if mode not in ("all", "phi"):
            raise ValueError("mode must be 'all' or 'phi'")
        self.regions = regions if regions is not None else RegionRules()
        if detector is None:  # fail now, not as a quarantine of every image at risk
            model_file(DETECTOR_MODEL)
            if mode == "phi":
                from src.pixels.recognizer import RECOGNIZER_MODEL

                model_file(RECOGNIZER_MODEL)
        self._detector = detector
        self.mode = mode
        self._recognizer: Any = None

    @property
    def detector(self) -> TextDetector:
        if self._detector is None:
            self._detector = TextDetector()
        return self._detector

    def context(self, original: Dataset) -> dict[str, str]:
        """What the rules and the ``phi`` mode need from the original header (PHI: in memory)."""
        wanted = set(self.regions.keywords)
        if self.mode == "phi":
            wanted.update(IDENTIFIER_KEYWORDS)
        return {k: _text(original.get(k)) for k in sorted(wanted) if k in original}

    def _find(self, ds: Dataset, frames: Any, header: Mapping[str, str]) -> list[TextBox]:
        rows, cols = frames.array.shape[1:3]
        boxes = self.regions.boxes(header, rows, cols, frames.count)
        for index in range(frames.count):
            rgb = render(ds, frames, index)
            found = self._select(rgb, self.detector.detect(rgb, index), header)
            lines = _join_lines([_extend_to_ink(rgb, b) for b in found])
            boxes.extend(_grow(b, rows, cols) for b in lines)
        return boxes

    def _select(self, rgb: Any, boxes: list[TextBox], header: Mapping[str, str]) -> list[TextBox]:
        """The boxes to fill: all of them, or in ``phi`` mode those that read as PHI."""
        if self.mode != "phi" or not boxes:
            return boxes
        from src.pixels.recognizer import PHIMatcher, TextRecognizer

        if self._recognizer is None:
            self._recognizer = TextRecognizer()
        matcher = PHIMatcher(header)
        return [b for b in boxes if matcher.matches(self._recognizer.read(rgb, b))]

    def clean_dataset(self, ds: Dataset, header: Mapping[str, str] | None = None) -> PixelOutcome:
        """Clean ``ds`` in memory; see :meth:`clean_file`."""
        header = header or {}
        try:
            frames = decode(ds)
        except UnsupportedPixelDataError as exc:
            return PixelOutcome(examined=False, reason=exc.message)
        boxes = self._find(ds, frames, header)
        outcome = PixelOutcome(examined=True, boxes=boxes, frames=frames.count)
        if not boxes:
            if says_text(ds):  # the header says text is there and none was found
                outcome.contradicted = True
                outcome.reason = "the header says a label is in the image; no text was found"
                return outcome  # never marked clean: flagged as at risk, as it came
            mark_clean_pixels(ds)
            return outcome
        fill = fill_value(ds, frames)
        mask(frames, boxes, fill)
        # Verify: search every changed frame again. Text found now (an edge left
        # uncovered, or text the first look missed) is filled too, up to ROUNDS times;
        # what the last look still finds makes the image unverified.
        pending = sorted({b.frame for b in boxes})
        for round_ in range(ROUNDS + 1):
            found: list[TextBox] = []
            for index in pending:
                view = _verification_view(render(ds, frames, index), outcome.boxes, index)
                hits = self._select(view, self.detector.detect(view, index), header)
                lines = _join_lines([_extend_to_ink(view, b) for b in hits])
                found.extend(_grow(b, *frames.array.shape[1:3]) for b in lines)
            if not found:
                break
            if round_ == ROUNDS:
                outcome.remaining = found
                return outcome
            mask(frames, found, fill)
            outcome.boxes.extend(found)
            pending = sorted({b.frame for b in found})
        try:
            write_back(ds, frames)
        except UnsupportedPixelDataError as exc:
            outcome.examined = False
            outcome.reason = exc.message
            return outcome
        mark_clean_pixels(ds)
        return outcome

    def clean_file(
        self, path: str | os.PathLike[str], header: Mapping[str, str] | None = None
    ) -> PixelOutcome:
        """Clean the de-identified file at ``path`` in place (atomically).

        Parameters
        ----------
        path : path
            A de-identified Part 10 file.
        header : mapping, optional
            :meth:`context` of the original instance (region-rule conditions).

        Returns
        -------
        PixelOutcome
            The file is rewritten only when the outcome is verified.
        """
        with open(path, "rb") as fh:
            data = fh.read()
        return self.clean_bytes(data, path, header, unchanged_written=True)

    def clean_bytes(
        self,
        data: bytes | memoryview,
        path: str | os.PathLike[str],
        header: Mapping[str, str] | None = None,
        *,
        atomic: bool = True,
        fsync: bool = True,
        unchanged_written: bool = False,
    ) -> PixelOutcome:
        """Clean a de-identified Part 10 file held in memory and write it once to ``path``.

        The frames are decoded from ``data`` (no file is read); the cleaned dataset is
        written when the outcome is verified, else ``data`` as it is (unless
        ``unchanged_written``: it is at ``path`` already).

        Returns
        -------
        PixelOutcome
            With ``output_blake3`` when the cleaned dataset was written.
        """
        ds = dcmread(io.BytesIO(data))
        outcome = self.clean_dataset(ds, header)
        if outcome.verified:
            digest = new_digest()
            with open_output(path, atomic, fsync) as out:
                ds.save_as(DigestingWriter(out, digest), enforce_file_format=True)
            outcome.dataset = ds
            outcome.output_blake3 = digest.hexdigest()
        elif not unchanged_written:
            with open_output(path, atomic, fsync) as out:
                out.write(data)
        return outcome


def cleaner_for(profile: Any) -> PixelCleaner:
    """The cleaner a :class:`ConfidentialityProfile` asks for (rules file, text mode).

    Raises
    ------
    RegionRulesError, DetectorUnavailableError
        A rules file that cannot be read; OCR models or ONNX Runtime not installed.
    """
    paths = [profile.pixel_regions] if profile.pixel_regions else []
    return PixelCleaner(RegionRules(paths), mode=profile.pixel_text)


__all__ = ["IDENTIFIER_KEYWORDS", "PixelCleaner", "PixelOutcome", "cleaner_for"]
