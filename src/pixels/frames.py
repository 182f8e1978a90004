"""Pixel Data in and out: decode every frame, render it for the detector, mask, re-encode.

Decoding goes through pydicom's pixel handlers (with pylibjpeg, libjpeg, OpenJPEG and
RLE plugins), so native, RLE, JPEG baseline/lossless, JPEG-LS and JPEG 2000 all work.
A masked image is written back losslessly: a native image keeps its transfer syntax, an
encapsulated one becomes RLE Lossless. Colour that the codec stored as YCbCr (YBR_FULL,
YBR_FULL_422, YBR_ICT, YBR_RCT) is written as RGB. An image that was lossy-compressed
keeps Lossy Image Compression ``01``; nothing is lossy-compressed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLSNearLossless,
    RLELossless,
)

from src.errors import DeidentificationError

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from src.pixels.detector import TextBox

_SUPPORTED = frozenset(
    {
        "MONOCHROME1",
        "MONOCHROME2",
        "RGB",
        "PALETTE COLOR",
        "YBR_FULL",
        "YBR_FULL_422",
        "YBR_ICT",
        "YBR_RCT",
    }
)
_YBR = frozenset({"YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT"})
#: Transfer syntaxes that are always lossy: the image stays marked as lossy-compressed.
_ALWAYS_LOSSY = {
    JPEGBaseline8Bit: "ISO_10918_1",
    JPEGExtended12Bit: "ISO_10918_1",
    JPEGLSNearLossless: "ISO_14495_1",
}


class UnsupportedPixelDataError(DeidentificationError):
    """Pixel Data this module cannot decode or write back (named by its attribute)."""


@dataclass
class Frames:
    """The decoded frames of one image.

    Attributes
    ----------
    array : ndarray
        ``(frames, rows, columns)`` or ``(frames, rows, columns, 3)``, as stored (colour
        converted to RGB where the codec stored YCbCr).
    photometric : str
        The Photometric Interpretation of ``array``.
    encapsulated : bool
        Whether the source Pixel Data was compressed.
    """

    array: NDArray[np.generic]
    photometric: str
    encapsulated: bool

    @property
    def count(self) -> int:
        return int(self.array.shape[0])


def check_supported(ds: Dataset) -> None:
    """Raise :class:`UnsupportedPixelDataError` unless the image can be cleaned here."""
    if "PixelData" not in ds:
        raise UnsupportedPixelDataError("no Pixel Data (7FE0,0010)")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in _SUPPORTED:
        raise UnsupportedPixelDataError("Photometric Interpretation (0028,0004) not supported")
    if int(ds.get("BitsAllocated", 0) or 0) not in (1, 8, 16, 32):
        raise UnsupportedPixelDataError("Bits Allocated (0028,0100) not 1, 8, 16 or 32")


def decode(ds: Dataset) -> Frames:
    """Decode every frame of ``ds`` (see :class:`Frames`)."""
    from pydicom.pixels.utils import pixel_array

    check_supported(ds)
    photometric = str(ds.PhotometricInterpretation).strip()
    encapsulated = bool(ds.file_meta.TransferSyntaxUID.is_compressed)
    try:
        array = pixel_array(ds, as_rgb=True)
    except Exception as exc:
        raise UnsupportedPixelDataError(
            f"Pixel Data (7FE0,0010) cannot be decoded ({type(exc).__name__})"
        ) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames == 1:
        array = array[np.newaxis]
    if samples == 3 and photometric in _YBR:
        photometric = "RGB"
    return Frames(array=array, photometric=photometric, encapsulated=encapsulated)


def _to_uint8(values: NDArray[np.generic]) -> NDArray[np.uint8]:
    data = values.astype(np.float32)
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
    return ((data - low) * (255.0 / (high - low))).astype(np.uint8)


def render(ds: Dataset, frames: Frames, index: int) -> NDArray[np.uint8]:
    """One frame as 8-bit RGB, as a viewer would show it, for the detector."""
    frame = frames.array[index]
    if frames.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        frame = apply_color_lut(frame, ds)
    if frame.ndim == 2:
        gray = _to_uint8(frame)
        if frames.photometric == "MONOCHROME1":
            gray = 255 - gray
        return np.repeat(gray[:, :, np.newaxis], 3, axis=2)
    if frame.dtype == np.uint8:
        return np.ascontiguousarray(frame)
    return _to_uint8(frame)


def fill_value(ds: Dataset, frames: Frames) -> int | tuple[int, int, int]:
    """The stored value that displays as black (the darkest the image holds)."""
    if frames.photometric == "RGB":
        return (0, 0, 0)
    if frames.photometric == "PALETTE COLOR":
        from pydicom.pixels.processing import apply_color_lut

        entries = int(ds.RedPaletteColorLookupTableDescriptor[0]) or 65536
        first = int(ds.RedPaletteColorLookupTableDescriptor[1])
        dtype = np.uint8 if int(ds.BitsAllocated) == 8 else np.uint16
        indices = np.arange(first, first + entries, dtype=np.int64)
        indices = indices[indices <= np.iinfo(dtype).max].astype(dtype)
        colours = apply_color_lut(indices, ds).astype(np.int64).sum(axis=-1)
        return int(indices[int(np.argmin(colours))])
    # The darkest value the image already holds: it displays as black under any window
    # that shows the image, and keeps the detector's rendering of the rest unchanged.
    low, high = int(frames.array.min()), int(frames.array.max())
    return high if frames.photometric == "MONOCHROME1" else low


def mask(frames: Frames, boxes: Iterable[TextBox], value: int | tuple[int, int, int]) -> int:
    """Fill every box of every frame with ``value``; return how many boxes were filled."""
    count = 0
    rows, cols = frames.array.shape[1:3]
    for box in boxes:
        x0, y0 = max(0, box.x), max(0, box.y)
        x1, y1 = min(cols, box.x + box.width), min(rows, box.y + box.height)
        if x1 <= x0 or y1 <= y0 or not 0 <= box.frame < frames.count:
            continue
        frames.array[box.frame, y0:y1, x0:x1] = value
        count += 1
    return count


def write_back(ds: Dataset, frames: Frames) -> None:
    """Store the masked frames in ``ds``, losslessly, with truthful attributes."""
    from pydicom.pixels.utils import set_pixel_data

    source_syntax = ds.file_meta.TransferSyntaxUID
    lossy_method = _ALWAYS_LOSSY.get(source_syntax)
    if lossy_method and str(ds.get("LossyImageCompression", "")) != "01":
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = lossy_method
    array = frames.array if frames.count > 1 else frames.array[0]
    number_of_frames = ds.get("NumberOfFrames")  # set_pixel_data drops it for one frame
    bits_stored = int(ds.get("BitsStored", ds.BitsAllocated))
    bits = int(ds.BitsAllocated)
    if bits not in (8, 16) or not source_syntax.is_little_endian:
        # 1 and 32 bits, and big-endian data: written back as they came (set_pixel_data
        # writes 8 or 16 bits, little endian), native only.
        if frames.encapsulated:
            raise UnsupportedPixelDataError(
                f"compressed {bits}-bit Pixel Data (7FE0,0010) not written back"
            )
        ds.PixelData = _native_bytes(ds, array, bits, source_syntax.is_little_endian)
        if number_of_frames is not None:
            ds.NumberOfFrames = number_of_frames
        return
    if frames.encapsulated:
        # set_pixel_data writes native Explicit VR Little Endian; then RLE Lossless.
        keep = {k: ds.get(k) for k in ("LossyImageCompression", "LossyImageCompressionMethod")}
        set_pixel_data(ds, array, frames.photometric, bits_stored, generate_instance_uid=False)
        ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        for keyword, value in keep.items():
            if value is not None:
                setattr(ds, keyword, value)
    else:
        set_pixel_data(ds, array, frames.photometric, bits_stored, generate_instance_uid=False)
        ds.file_meta.TransferSyntaxUID = source_syntax  # native, little endian: unchanged
    if number_of_frames is not None:
        ds.NumberOfFrames = number_of_frames


def _native_bytes(ds: Dataset, array: NDArray[np.generic], bits: int, little: bool) -> bytes:
    """The frames as native Pixel Data of ``bits`` bits in the data set's byte order (1-bit
    packed as PS3.5 8.1.1 says), colour samples interleaved as decoded."""
    if int(ds.get("SamplesPerPixel", 1) or 1) > 1 and int(ds.get("PlanarConfiguration", 0)):
        raise UnsupportedPixelDataError("colour-by-plane Pixel Data (7FE0,0010) not written back")
    if bits == 1:
        from pydicom.pixels.utils import pack_bits

        data = bytes(pack_bits(np.ascontiguousarray(array).ravel(), pad=False))
    else:
        kind = "i" if int(ds.get("PixelRepresentation", 0)) else "u"
        order = "<" if little else ">"
        data = np.ascontiguousarray(array).astype(f"{order}{kind}{bits // 8}").tobytes()
    return data + b"\x00" * (len(data) & 1)


__all__ = [
    "Frames",
    "UnsupportedPixelDataError",
    "check_supported",
    "decode",
    "fill_value",
    "mask",
    "render",
    "write_back",
]
