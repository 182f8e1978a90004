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
from src.pixels.barcodes import find_codes
from src.pixels.boxes import extend_to_ink, grow, join_lines, verification_view
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
    verify : {"detector", "tesseract"}
        Who looks again after cleaning: the detector (default), or also Tesseract, an
        independent reader of the whole frame at every orientation
        (:mod:`src.pixels.second_reader`); a word it reads quarantines the image.
    """

    def __init__(
        self,
        regions: RegionRules | None = None,
        detector: TextDetector | None = None,
        mode: str = "all",
        verify: str = "detector",
    ) -> None:
        if mode not in ("all", "phi"):
            raise ValueError("mode must be 'all' or 'phi'")
        if verify not in ("detector", "tesseract"):
            raise ValueError("verify must be 'detector' or 'tesseract'")
        if verify == "tesseract":
            from src.pixels.second_reader import check_available

            check_available()  # fail now, not as a quarantine of every image
        self.verify = verify
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
            found += find_codes(rgb, index)  # codes are filled in either mode
            lines = join_lines([extend_to_ink(rgb, b) for b in found])
            boxes.extend(grow(b, rows, cols) for b in lines)
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
            if self._read_again(ds, frames, outcome):
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
                view = verification_view(render(ds, frames, index), outcome.boxes, index)
                hits = self._select(view, self.detector.detect(view, index), header)
                hits += find_codes(view, index)
                lines = join_lines([extend_to_ink(view, b) for b in hits])
                found.extend(grow(b, *frames.array.shape[1:3]) for b in lines)
            if not found:
                break
            if round_ == ROUNDS:
                outcome.remaining = found
                return outcome
            mask(frames, found, fill)
            outcome.boxes.extend(found)
            pending = sorted({b.frame for b in found})
        if not self._read_again(ds, frames, outcome):
            return outcome
        try:
            write_back(ds, frames)
        except UnsupportedPixelDataError as exc:
            outcome.examined = False
            outcome.reason = exc.message
            return outcome
        mark_clean_pixels(ds)
        return outcome

    def _read_again(self, ds: Dataset, frames: Any, outcome: PixelOutcome) -> bool:
        """With ``verify="tesseract"``, the independent reader on every frame as cleaned;
        what it reads becomes ``outcome.remaining``. True when nothing was read."""
        if self.verify != "tesseract":
            return True
        from src.pixels.second_reader import read_words

        for index in range(frames.count):
            for word in read_words(render(ds, frames, index), index):
                outcome.remaining.append(
                    TextBox(index, word.x, word.y, word.width, word.height, "tesseract")
                )
        return not outcome.remaining

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
    return PixelCleaner(RegionRules(paths), mode=profile.pixel_text, verify=profile.pixel_verify)


__all__ = ["IDENTIFIER_KEYWORDS", "PixelCleaner", "PixelOutcome", "cleaner_for"]
