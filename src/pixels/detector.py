"""Text detection with the PP-OCRv4 detector (DB, differentiable binarisation).

The ONNX model ships inside the ``rapidocr-onnxruntime`` wheel; it is located on disk
without importing that package (which would import OpenCV), and run with ONNX Runtime.
The post-processing (threshold, connected components, box score, unclip) is done with
numpy alone, so the same detector runs in a Lambda package without OpenCV.

Detection, not recognition: every text box found is returned, whatever it says.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from src.errors import ConfigurationError

if TYPE_CHECKING:
    from numpy.typing import NDArray

#: The detector model inside the rapidocr-onnxruntime wheel.
DETECTOR_MODEL = "models/ch_PP-OCRv4_det_infer.onnx"


class DetectorUnavailableError(ConfigurationError):
    """The OCR model or ONNX Runtime is not installed."""


@dataclass(frozen=True, order=True)
class TextBox:
    """An axis-aligned box in pixel coordinates of one frame (no text, only where).

    Attributes
    ----------
    frame : int
        Zero-based frame number.
    x, y : int
        Top-left column and row.
    width, height : int
    source : str
        ``"ocr"`` or ``"rule:<name>"``.
    """

    frame: int
    x: int
    y: int
    width: int
    height: int
    source: str = "ocr"

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the index (coordinates, frame and source; never the text)."""
        return {
            "frame": self.frame,
            "x": self.x,
            "y": self.y,
            "width": self.width,
            "height": self.height,
            "source": self.source,
        }


def model_directory(package: str = "rapidocr_onnxruntime") -> Path:
    """The directory of an installed package, found without importing it.

    Raises
    ------
    DetectorUnavailableError
        When the package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorUnavailableError(
            f"{package} is not installed; Clean Pixel Data needs its OCR models"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def model_file(name: str, override: str | os.PathLike[str] | None = None) -> Path:
    """The path of a shipped OCR model (or ``override``), checked to exist.

    Cheap (no import, no load): the shells call it when they build the pipeline, so a
    missing model stops them with one error instead of quarantining every image at risk.

    Raises
    ------
    DetectorUnavailableError
        When ONNX Runtime or the model is not installed.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise DetectorUnavailableError("onnxruntime is not installed")
    path = Path(override) if override else model_directory() / name
    if not path.is_file():
        raise DetectorUnavailableError(f"OCR model not found: {path.name}")
    return path


def onnx_session(path: Path, threads: int) -> Any:
    """An ONNX Runtime CPU session for ``path``, ``threads`` intra-op threads, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def _components(bitmap: NDArray[np.bool_]) -> list[tuple[int, int, int, int]]:
    """Bounding boxes ``(x0, y0, x1, y1)`` (exclusive ends) of 8-connected components."""
    padded = np.zeros((bitmap.shape[0], bitmap.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = bitmap
    edges = np.diff(padded, axis=1)
    starts = np.argwhere(edges == 1)
    ends = np.argwhere(edges == -1)
    if not len(starts):
        return []
    rows = starts[:, 0].tolist()
    x0s = starts[:, 1].tolist()
    x1s = ends[:, 1].tolist()
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    # Runs are in row-major order; join each run to the overlapping runs of the row above.
    above_start = above_end = 0  # the previous row's run index range
    current_row = -1
    row_start = 0
    for i, row in enumerate(rows):
        if row != current_row:
            if row == current_row + 1:
                above_start, above_end = row_start, i
            else:
                above_start = above_end = i
            current_row, row_start = row, i
        j = above_start
        while j < above_end:
            if x0s[j] <= x1s[i] and x0s[i] <= x1s[j]:  # touching, diagonals included
                a, b = find(i), find(j)
                if a != b:
                    parent[a] = b
            j += 1
    boxes: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        root = find(i)
        box = boxes.get(root)
        if box is None:
            boxes[root] = [x0s[i], row, x1s[i], row + 1]
        else:
            box[0] = min(box[0], x0s[i])
            box[2] = max(box[2], x1s[i])
            box[3] = row + 1
    return [(b[0], b[1], b[2], b[3]) for b in boxes.values()]


def _unturned(box: TextBox, cols: int) -> TextBox:
    """A box found in the frame turned counterclockwise, in the frame's own coordinates:
    turned row ``i`` is column ``cols - 1 - i``, turned column ``j`` is row ``j``."""
    return TextBox(box.frame, cols - box.y - box.height, box.x, box.height, box.width, VERTICAL)


#: The source of boxes found in the turned look (vertical lines of text).
VERTICAL = "ocr-vertical"


class TextDetector:
    """Find text boxes in an 8-bit RGB frame.

    Parameters
    ----------
    model_path : path, optional
        The DB detector ONNX model; defaults to the PP-OCRv4 model of rapidocr.
    side_limit : int
        The shorter side is scaled up to at least this many pixels (PP-OCR's ``min``
        limit), so small text is seen.
    threshold : float
        Probability above which a pixel is text.
    box_threshold : float
        Mean probability over its bounding box a component needs to count as a text box.
    unclip_ratio : float
        How far a box grows around its core (PP-OCR's DB unclip).
    max_line_height : float
        A box taller than this fraction of the frame is not a line of burned-in text
        (the detector sometimes answers to texture in anatomy); it is dropped.
    both_polarities : bool
        Look at the frame as it is and inverted, and keep the boxes of both. The model
        learnt mostly dark text on light ground; burned-in text is mostly light on dark.
        On the seeded corpus the second look finds about half of what the first misses,
        for twice the time (``benchmarks/pixels.py``).
    vertical : bool
        Also look at the frame turned by 90 degrees, for text that runs along an edge
        (the patient line on the side of a radiograph or an ultrasound, at 90 or 270
        degrees, and letters stacked one above the other); those boxes come back in the
        frame's own coordinates with the source ``"ocr-vertical"``. Upside-down text is
        found by the upright look.
    threads : int
        ONNX Runtime intra-op threads; 1 per worker process.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        side_limit: int = 736,
        threshold: float = 0.3,
        box_threshold: float = 0.5,
        unclip_ratio: float = 1.6,
        max_line_height: float = 0.15,
        both_polarities: bool = True,
        vertical: bool = True,
        threads: int = 1,
    ) -> None:
        self._session = onnx_session(model_file(DETECTOR_MODEL, model_path), threads)
        self._input = self._session.get_inputs()[0].name
        self.side_limit = side_limit
        self.threshold = threshold
        self.box_threshold = box_threshold
        self.unclip_ratio = unclip_ratio
        self.max_line_height = max_line_height
        self.both_polarities = both_polarities
        self.vertical = vertical

    def _tensor(self, rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
        from PIL import Image

        rows, cols = rgb.shape[:2]
        ratio = max(1.0, self.side_limit / min(rows, cols))
        height = max(32, round(rows * ratio / 32) * 32)
        width = max(32, round(cols * ratio / 32) * 32)
        image = Image.fromarray(np.ascontiguousarray(rgb[:, :, ::-1]))  # the model wants BGR
        resized = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        tensor = (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
        return tensor[np.newaxis]

    def detect(self, rgb: NDArray[np.uint8], frame: int = 0) -> list[TextBox]:
        """Return the text boxes of one frame, in its own pixel coordinates.

        With ``both_polarities`` the boxes of the inverted frame are added (overlapping
        boxes of the two looks are merged by the caller's line joining).

        Parameters
        ----------
        rgb : ndarray
            ``(rows, columns, 3)`` uint8.
        frame : int
            Recorded in the boxes.
        """
        rows, cols = rgb.shape[:2]
        if rows < 8 or cols < 8:
            return []
        boxes = set(self._look(rgb, frame))
        if self.both_polarities:
            boxes.update(self._look(255 - rgb, frame))
        if self.vertical:
            turned = np.ascontiguousarray(np.rot90(rgb))  # counterclockwise
            looks = (turned, 255 - turned) if self.both_polarities else (turned,)
            for look in looks:
                # Only lines: in the turned look, texture in anatomy also scores as text,
                # in squat boxes; a line of text is several times longer than it is high.
                found = self._look(look, frame)
                boxes.update(_unturned(b, cols) for b in found if b.width >= 2.5 * b.height)
        return sorted(boxes)

    def _look(self, rgb: NDArray[np.uint8], frame: int) -> list[TextBox]:
        rows, cols = rgb.shape[:2]
        tensor = self._tensor(rgb)
        probability = self._session.run(None, {self._input: tensor})[0][0, 0]
        height, width = probability.shape
        bitmap = probability > self.threshold
        # 2x2 dilation, as PP-OCR does, joins the strokes of one word.
        dilated = bitmap.copy()
        dilated[1:, :] |= bitmap[:-1, :]
        dilated[:, 1:] |= dilated[:, :-1].copy()
        sx, sy = cols / width, rows / height
        boxes = []
        for x0, y0, x1, y1 in _components(dilated):
            w, h = x1 - x0, y1 - y0
            if min(w, h) < 3:
                continue
            # Scored over the whole rectangle, as PP-OCR's fast mode does. A slanted or
            # joined line fills little of its rectangle, so a long thin component whose
            # text pixels are confidently text is kept too. (Scoring every box over its
            # text pixels alone also answers to ultrasound texture: measured, 7 of 65
            # text-free images changed instead of 0; benchmarks/pixels.py.)
            window = probability[y0:y1, x0:x1]
            if float(window.mean()) < self.box_threshold and not (
                w >= 5 * h and float(window[dilated[y0:y1, x0:x1]].mean()) >= 0.85
            ):
                continue
            grow = w * h * self.unclip_ratio / (2 * (w + h))
            bx0 = max(0, int(np.floor((x0 - grow) * sx)))
            by0 = max(0, int(np.floor((y0 - grow) * sy)))
            bx1 = min(cols, int(np.ceil((x1 + grow) * sx)))
            by1 = min(rows, int(np.ceil((y1 + grow) * sy)))
            if by1 - by0 > self.max_line_height * rows:
                continue
            if bx1 > bx0 and by1 > by0:
                boxes.append(TextBox(frame, bx0, by0, bx1 - bx0, by1 - by0))
        return boxes


__all__ = [
    "DETECTOR_MODEL",
    "DetectorUnavailableError",
    "TextBox",
    "TextDetector",
    "model_file",
    "onnx_session",
]
