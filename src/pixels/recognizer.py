"""The opt-in ``phi`` mode: read each detected text box and keep only what looks like PHI.

Recognition uses the PP-OCRv4 recogniser shipped in the ``rapidocr-onnxruntime`` wheel
(its character set is in the model's metadata; CTC greedy decoding). A box is PHI when
its text contains one of this patient's identifiers from the original header (family
and given names, IDs, accession, birth date in any common layout, institution and staff
names), allowing one OCR slip in longer tokens, or matches a PHI pattern: a date, a run
of six or more digits, a phone number, or a label such as ``DOB`` or ``MRN``. Text that
cannot be read with confidence is treated as PHI. Recognised text lives only in memory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from src.pixels.detector import TextBox, model_file, onnx_session

if TYPE_CHECKING:
    from numpy.typing import NDArray

RECOGNIZER_MODEL = "models/ch_PP-OCRv4_rec_infer.onnx"
#: Below this mean character confidence, text counts as unreadable (and so as PHI).
MIN_CONFIDENCE = 0.6

_DATE = re.compile(
    r"\b\d{1,4}\s*[-/.]\s*(\d{1,2}|[A-Z]{3})\s*[-/.]\s*\d{2,4}\b"
    r"|\b(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])\b"
)
_DIGITS = re.compile(r"\d{6,}")
_PHONE = re.compile(r"\+?\d[\d ()-]{8,}\d")
_LABELS = re.compile(r"\b(DOB|D\.O\.B|MRN|NAME|PATIENT|BIRTH|ACC(ESSION)?|NHS)\b")


class TextRecognizer:
    """Read the text of a box (PP-OCRv4 recogniser, CPU).

    Parameters
    ----------
    model_path : path, optional
    threads : int
    """

    def __init__(self, model_path: str | Path | None = None, threads: int = 1) -> None:
        self._session = onnx_session(model_file(RECOGNIZER_MODEL, model_path), threads)
        self._input = self._session.get_inputs()[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        self._characters = ["", *meta["character"].splitlines(), " "]

    def read_with_confidence(self, rgb: NDArray[np.uint8], box: TextBox) -> tuple[str, float]:
        """The text in ``box`` of ``rgb`` and its mean character confidence."""
        from PIL import Image

        crop = rgb[box.y : box.y + box.height, box.x : box.x + box.width]
        if crop.size == 0:
            return "", 0.0
        height = 48
        width = max(8, min(1280, round(crop.shape[1] * height / max(1, crop.shape[0]))))
        image = Image.fromarray(np.ascontiguousarray(crop[:, :, ::-1]))
        resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        tensor = (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[np.newaxis]
        probabilities = self._session.run(None, {self._input: tensor})[0][0]
        best = probabilities.argmax(axis=1)
        scores = probabilities.max(axis=1)
        chars: list[str] = []
        kept: list[float] = []
        previous = -1
        for index, score in zip(best.tolist(), scores.tolist(), strict=True):
            if index != previous and index != 0:
                chars.append(self._characters[index] if index < len(self._characters) else "")
                kept.append(score)
            previous = index
        return "".join(chars), (float(np.mean(kept)) if kept else 0.0)

    def read(self, rgb: NDArray[np.uint8], box: TextBox) -> str | None:
        """The text in ``box``, or None when it cannot be read with confidence."""
        text, confidence = self.read_with_confidence(rgb, box)
        return text if text.strip() and confidence >= MIN_CONFIDENCE else None


def _alnum(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def _near(token: str, text: str) -> bool:
    """``token`` occurs in ``text``, exactly or with one substituted character."""
    if token in text:
        return True
    if len(token) < 5:
        return False
    n = len(token)
    for start in range(len(text) - n + 1):
        window = text[start : start + n]
        if sum(a != b for a, b in zip(window, token, strict=True)) <= 1:
            return True
    return False


class PHIMatcher:
    """Decide whether recognised text is PHI for one instance.

    Parameters
    ----------
    header : mapping
        Original header values by keyword (see ``PixelCleaner.context``).
    """

    def __init__(self, header: Mapping[str, Any]) -> None:
        tokens: set[str] = set()
        for keyword, value in header.items():
            text = str(value or "")
            if keyword.endswith("BirthDate") or keyword.endswith("Date"):
                digits = _alnum(text)
                if len(digits) == 8:
                    y, m, d = digits[:4], digits[4:6], digits[6:]
                    tokens.update({digits, d + m + y, m + d + y, d + m + y[2:], m + d + y[2:]})
                continue
            for part in re.split(r"[\^\\=,\s]+", text):
                token = _alnum(part)
                if len(token) >= 3:
                    tokens.add(token)
        self._tokens = sorted(tokens, key=len, reverse=True)

    def matches(self, text: str | None) -> bool:
        """True for PHI (and for unreadable text, which is treated as PHI)."""
        if text is None:
            return True
        upper = text.upper()
        if _DATE.search(upper) or _DIGITS.search(upper) or _PHONE.search(upper):
            return True
        if _LABELS.search(upper):
            return True
        compact = _alnum(upper)
        return any(_near(t, compact) for t in self._tokens)


__all__ = ["MIN_CONFIDENCE", "PHIMatcher", "TextRecognizer"]
