"""A slide label's codes for the burned-in text corpus: a Code 128 of the MRN and a
Data Matrix or QR code of the name and birth date, written by zxing-cpp."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np

from src.synthetic.paint import paint
from src.synthetic.people import FakePatient

if TYPE_CHECKING:
    from src.synthetic.burned_text import Background


def draw_codes(
    bg: Background, rng: random.Random, patient: FakePatient
) -> tuple[np.ndarray[Any, Any], list[tuple[int, int, int, int, int]], list[np.ndarray[Any, Any]]]:
    """A slide label's codes: a Code 128 of the MRN and a Data Matrix or QR code of the
    name and birth date, dark modules on a light quiet zone (zxing-cpp writes them)."""
    import zxingcpp

    array = bg.array.copy()
    rows, cols = array.shape[:2]
    boxes: list[tuple[int, int, int, int, int]] = []
    inks: list[np.ndarray[Any, Any]] = []
    symbols = [
        (patient.patient_id, zxingcpp.BarcodeFormat.Code128),
        (
            f"{patient.name} {patient.birth_date}",
            rng.choice([zxingcpp.BarcodeFormat.DataMatrix, zxingcpp.BarcodeFormat.QRCode]),
        ),
    ]
    taken = np.zeros((rows, cols), dtype=bool)
    for text, kind in symbols:
        symbol = np.asarray(zxingcpp.create_barcode(text, kind).to_image(scale=2))
        h, w = symbol.shape
        if h + 8 >= rows or w + 8 >= cols:
            continue
        for _ in range(20):
            x, y = rng.randrange(4, cols - w - 4), rng.randrange(4, rows - h - 4)
            if taken[y - 4 : y + h + 4, x - 4 : x + w + 4].any():
                continue
            taken[y - 4 : y + h + 4, x - 4 : x + w + 4] = True
            dark = symbol < 128
            zone = np.zeros((rows, cols), dtype=bool)
            zone[y : y + h, x : x + w] = True
            paint(bg, array, zone, 1.0)  # the light ground, in any photometric
            modules = np.zeros((rows, cols), dtype=bool)
            modules[y : y + h, x : x + w] = dark
            paint(bg, array, modules, 0.0)
            boxes.append((0, x, y, w, h))
            inks.append(dark.copy())
            break
    return array, boxes, inks


__all__ = ["draw_codes"]
