"""Painting onto a generated background: the displayed grey level of every pixel, and
the stored value that shows a wanted level, in any photometric interpretation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from src.synthetic.burned_text import Background


def shown(bg: Background, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Displayed grey level 0..255 of every pixel."""
    if bg.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        colours: np.ndarray[Any, Any] = np.asarray(apply_color_lut(array, bg.template), dtype=float)
        scale = 257 if int(bg.template.RedPaletteColorLookupTableDescriptor[2]) == 16 else 1
        return np.asarray(colours.mean(-1) / scale, dtype=float)
    if array.ndim == 3:
        return np.asarray(np.asarray(array, dtype=float).mean(-1), dtype=float)
    low, high = float(bg.array.min()), float(bg.array.max()) or 1.0
    return (np.asarray(array, dtype=float) - low) * 255 / max(1.0, high - low)


def paint(
    bg: Background, array: np.ndarray[Any, Any], strokes: np.ndarray[Any, Any], level: float
) -> None:
    """Set the strokes to the stored value that displays as ``level`` (0..1)."""
    if bg.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        grey = np.asarray(apply_color_lut(np.arange(256, dtype=np.uint8), bg.template), dtype=float)
        grey = grey.mean(-1) / (grey.max() or 1.0)
        array[strokes] = int(np.argmin(np.abs(grey - level)))
    elif array.ndim == 3:
        array[strokes] = int(255 * level)
    else:
        low, high = int(bg.array.min()), int(bg.array.max())
        array[strokes] = int(low + (high - low) * level)


__all__ = ["paint", "shown"]
