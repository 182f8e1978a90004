"""Overlays embedded in the unused high bits of Pixel Data (the retired style).

Before Overlay Data (60xx,3000) existed, an overlay could live in bits of each pixel
sample above the stored image: Overlay Bit Position (60xx,0102) names the bit, and no
(60xx,3000) element is present. Such an overlay can hold burned-in text. Under the
profile's default (overlays removed), those bits are zeroed while the pixel data is
copied, and the overlay's group is removed; with Clean Graphics they are kept and the
object is flagged for review.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from pydicom.dataset import Dataset

from src.ingestion.annex_e.safety_net import _value

_CHUNK = 1 << 20


def embedded_overlay_bits(ds: Dataset) -> dict[int, int]:
    """``{overlay group: bit position}`` of overlays held in the pixel samples' high bits.

    Only bits above the stored image count (``HighBit`` < bit < ``BitsAllocated``), so an
    Overlay Bit Position that the image itself uses is never treated as an overlay.
    """
    try:
        allocated = int(_value(ds, 0x00280100) or 0)
        high_bit = int(_value(ds, 0x00280102) or 0)
    except ValueError:
        return {}
    if allocated != 16:
        return {}
    found: dict[int, int] = {}
    for group in range(0x6000, 0x6020, 2):
        if (group << 16 | 0x3000) in ds or (group << 16 | 0x0102) not in ds:
            continue
        try:
            bit = int(_value(ds, group << 16 | 0x0102))
        except ValueError:
            continue
        if high_bit < bit < allocated:
            found[group] = bit
    return found


def sample_mask(bits: dict[int, int]) -> int:
    """The 16-bit AND mask that clears ``bits``' positions."""
    mask = 0xFFFF
    for bit in bits.values():
        mask &= ~(1 << bit) & 0xFFFF
    return mask


def _tables(mask: int) -> tuple[bytes, bytes]:
    low, high = mask & 0xFF, mask >> 8
    return bytes(b & low for b in range(256)), bytes(b & high for b in range(256))


def masked_chunks(data: bytes | bytearray, mask: int, little: bool) -> bytes:
    """``data`` (16-bit samples) with every sample ANDed with ``mask``."""
    low_table, high_table = _tables(mask)
    buffer = bytearray(data)
    first, second = (low_table, high_table) if little else (high_table, low_table)
    buffer[0::2] = bytes(buffer[0::2]).translate(first)
    buffer[1::2] = bytes(buffer[1::2]).translate(second)
    return bytes(buffer)


def copy_masked(src: IO[bytes], dst: IO[bytes], length: int, mask: int, little: bool) -> None:
    """Copy ``length`` bytes of 16-bit samples from ``src`` to ``dst``, masking each."""
    for chunk in _read_exact(src, length):
        dst.write(masked_chunks(chunk, mask, little))


def _read_exact(src: IO[bytes], length: int) -> Iterator[bytes]:
    from src.errors import DeidentificationError

    remaining = length
    while remaining > 0:
        data = src.read(min(_CHUNK, remaining))
        if not data:
            raise DeidentificationError("input changed while it was being copied")
        remaining -= len(data)
        yield data


__all__ = ["copy_masked", "embedded_overlay_bits", "masked_chunks", "sample_mask"]
