"""Bar codes and 2D codes in a frame (a slide label's accession number, a wristband's
MRN, a form's QR code), found with zxing-cpp, the maintained C++ port of ZXing.

Every symbol zxing-cpp decodes, at any rotation and either polarity, becomes a box to
fill (source ``"barcode"``); what it encodes is never kept. A symbol too damaged to
decode is not found here: the text detector may still see its human-readable line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from src.pixels.detector import TextBox

if TYPE_CHECKING:
    from numpy.typing import NDArray

SOURCE = "barcode"


def find_codes(rgb: NDArray[np.uint8], frame: int = 0) -> list[TextBox]:
    """The bounding boxes of the codes in one ``(rows, columns, 3)`` uint8 frame."""
    import zxingcpp

    rows, cols = rgb.shape[:2]
    grey = np.ascontiguousarray(rgb.mean(axis=2).astype(np.uint8))
    boxes = []
    for found in zxingcpp.read_barcodes(grey, try_rotate=True, try_invert=True):
        pos = found.position
        corners = (pos.top_left, pos.top_right, pos.bottom_right, pos.bottom_left)
        xs, ys = [p.x for p in corners], [p.y for p in corners]
        x0, y0 = max(0, min(xs)), max(0, min(ys))
        x1, y1 = min(cols, max(xs) + 1), min(rows, max(ys) + 1)
        # A linear code is found along a scan line: its box is as tall as its bars,
        # which zxing-cpp reports; a code read on one line only gets a square's height.
        if y1 - y0 < 4:
            y0, y1 = max(0, y0 - (x1 - x0) // 4), min(rows, y1 + (x1 - x0) // 4)
        if x1 - x0 < 4:
            x0, x1 = max(0, x0 - (y1 - y0) // 4), min(cols, x1 + (y1 - y0) // 4)
        if x1 > x0 and y1 > y0:
            boxes.append(TextBox(frame, x0, y0, x1 - x0, y1 - y0, SOURCE))
    return boxes


__all__ = ["SOURCE", "find_codes"]
