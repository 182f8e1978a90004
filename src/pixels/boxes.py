"""The geometry of the boxes Clean Pixel Data fills: grown around their glyphs, extended
along their line, joined with the other pieces of the line, and how the verifying look
sees a filled frame.

A box knows its orientation from its source: ``"ocr"`` boxes hold horizontal lines (the
detector's upright look), ``"ocr-vertical"`` boxes vertical ones (text running along an
edge, found in the look at the frame turned by 90 degrees), ``"barcode"`` boxes a bar or
2D code (grown by the margin alone).
"""

from __future__ import annotations

from typing import Any

from src.pixels.detector import VERTICAL, TextBox

#: How many pixels a detected box grows by on every side before it is filled, besides a
#: quarter of the line's height above and below (diacritics, descenders, a box the
#: detector placed a little high or low) and two thirds of it at the ends of the line
#: (where detectors cut the first and last glyphs short: thin ones, text over texture).
MARGIN = 3


def _transposed(box: TextBox) -> TextBox:
    return TextBox(box.frame, box.y, box.x, box.height, box.width, box.source)


def grow(box: TextBox, rows: int, cols: int) -> TextBox:
    """The box grown around its line (see :data:`MARGIN`), in the line's direction."""
    if box.source == "barcode":
        x0, y0 = max(0, box.x - MARGIN), max(0, box.y - MARGIN)
        x1 = min(cols, box.x + box.width + MARGIN)
        y1 = min(rows, box.y + box.height + MARGIN)
        return TextBox(box.frame, x0, y0, x1 - x0, y1 - y0, box.source)
    if box.source == VERTICAL:  # the horizontal rule, on the box turned on its side
        turned = _transposed(grow(_transposed(_as_ocr(box)), cols, rows))
        return TextBox(box.frame, turned.x, turned.y, turned.width, turned.height, VERTICAL)
    side = MARGIN + (2 * box.height) // 3
    above = MARGIN + box.height // 4
    x0, y0 = max(0, box.x - side), max(0, box.y - above)
    x1, y1 = min(cols, box.x + box.width + side), min(rows, box.y + box.height + above)
    return TextBox(box.frame, x0, y0, x1 - x0, y1 - y0, box.source)


def extend_to_ink(rgb: Any, box: TextBox) -> TextBox:
    """Grow a box along its line while the next strip holds ink like the box's own.

    Detectors cut lines short over texture or colour; the strokes they left out have the
    level of the strokes inside the box. Each end grows by half a line height at a time,
    at most three line heights, while the strip beside it holds at least half the box's
    share of such pixels.
    """
    import numpy as np

    if box.source != "ocr":  # a vertical line or a code: as it was found
        return box
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


def join_lines(boxes: list[TextBox]) -> list[TextBox]:
    """Merge boxes of one frame that sit on one text line with a word-sized gap between
    (vertical lines along their own direction).

    The detector sometimes splits a line into pieces and loses the glyphs between them.
    """
    vertical = [_transposed(b) for b in boxes if b.source == VERTICAL]
    rest = _join([b for b in boxes if b.source != VERTICAL])
    return rest + [_transposed(b) for b in _join(vertical)]


def _join(boxes: list[TextBox]) -> list[TextBox]:
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


def verification_view(rgb: Any, boxes: list[TextBox], frame: int) -> Any:
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


def _as_ocr(box: TextBox) -> TextBox:
    return TextBox(box.frame, box.x, box.y, box.width, box.height, "ocr")


__all__ = ["MARGIN", "VERTICAL", "extend_to_ink", "grow", "join_lines", "verification_view"]
