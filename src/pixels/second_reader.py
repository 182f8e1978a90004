"""Verification by an independent reader: Tesseract reads the cleaned frame.

The detector that found the text cannot see what it missed when it looks again; a
second, different method can. With ``pixel_verify = "tesseract"`` every cleaned frame
(and every examined frame in which nothing was found) is read whole by Tesseract (the
Debian package ``tesseract-ocr``, LSTM engine, sparse-text layout), upright and turned
by 90, 180 and 270 degrees. A word it reads with confidence that is not a known-safe
annotation sends the image to quarantine (``pixel-phi-remains``): it never ships.

Only where the words are is kept (frame, box, orientation); never what they say.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from src.errors import ConfigurationError

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: Words a cleaned ultrasound or radiograph may show that name no one: units, scales,
#: laterality and view markers, probe and mode names.
SAFE_WORDS = frozenset(
    {
        "cm", "mm", "mhz", "khz", "hz", "db", "fps", "bpm", "cm/s", "mm/s", "gain", "depth",
        "freq", "frq", "dr", "map", "pwr", "prf", "wf", "ap", "pa", "lat", "left", "right",
        "ll", "rl", "lao", "rao", "cc", "mlo", "mi", "tis", "tib", "tic", "res", "gen",
        "pen", "thi", "cw", "pw", "cfm", "sv", "hr", "ef", "vol", "area", "dist",
    }
)  # fmt: skip
#: A word counts when Tesseract is at least this confident (0-100) and it holds at least
#: this many letters or digits.
MIN_CONFIDENCE = 75
MIN_CHARACTERS = 3


class SecondReaderUnavailableError(ConfigurationError):
    """Tesseract is not installed (``apt install tesseract-ocr``)."""


@dataclass(frozen=True)
class ReadWord:
    """Where the second reader read a word (never the word)."""

    frame: int
    turns: int  # quarter turns counterclockwise of the frame as read
    x: int
    y: int
    width: int
    height: int


def check_available() -> str:
    """The path of the ``tesseract`` binary.

    Raises
    ------
    SecondReaderUnavailableError
    """
    found = shutil.which("tesseract")
    if found is None:
        raise SecondReaderUnavailableError(
            "pixel_verify = tesseract needs Tesseract: apt install tesseract-ocr"
        )
    return found


def _pgm(grey: NDArray[np.uint8]) -> bytes:
    rows, cols = grey.shape
    return b"P5 %d %d 255\n" % (cols, rows) + np.ascontiguousarray(grey).tobytes()


def read_words(rgb: NDArray[np.uint8], frame: int = 0) -> list[ReadWord]:
    """The words Tesseract reads with confidence in one frame, at every orientation,
    that are not :data:`SAFE_WORDS`."""
    binary = check_available()
    grey = rgb.mean(axis=2).astype(np.uint8)
    found: list[ReadWord] = []
    for turns in range(4):
        view = np.rot90(grey, turns)
        # Upscaled twice: burned-in text is small; Tesseract reads best at 20-30 px.
        big = np.repeat(np.repeat(view, 2, axis=0), 2, axis=1)
        done = subprocess.run(  # noqa: S603 - our own argument list, no shell
            [binary, "stdin", "stdout", "--psm", "11", "--oem", "1", "-l", "eng", "tsv"],
            input=_pgm(big),
            capture_output=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise SecondReaderUnavailableError("tesseract failed on a frame")
        rows = csv.DictReader(io.StringIO(done.stdout.decode("utf-8", "replace")), delimiter="\t")
        for row in rows:
            text = (row.get("text") or "").strip()
            try:
                confidence = float(row.get("conf") or -1)
            except ValueError:
                continue
            if confidence < MIN_CONFIDENCE or sum(c.isalnum() for c in text) < MIN_CHARACTERS:
                continue
            if text.lower().strip(".:,;()") in SAFE_WORDS:
                continue
            found.append(
                ReadWord(
                    frame,
                    turns,
                    int(row["left"]) // 2,
                    int(row["top"]) // 2,
                    int(row["width"]) // 2,
                    int(row["height"]) // 2,
                )
            )
    return found


__all__ = [
    "MIN_CONFIDENCE",
    "SAFE_WORDS",
    "ReadWord",
    "SecondReaderUnavailableError",
    "check_available",
    "read_words",
]
