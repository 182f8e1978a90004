"""The deflate-bomb guard: a Deflated Explicit VR Little Endian dataset is measured,
never inflated, before pydicom reads it."""

from __future__ import annotations

import zlib
from typing import IO

from src.errors import InvalidDICOMError


def check_deflate_limit(fp: IO[bytes], source: str, limit: int) -> None:
    """Refuse a deflated dataset that inflates beyond ``limit`` bytes, without inflating it.

    ``fp`` is positioned at the start of the deflated stream; its position is restored.
    """
    start = fp.tell()
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        while True:
            chunk = fp.read(1 << 16)
            if not chunk:
                break
            data = inflater.decompress(chunk, limit + 1 - total)
            total += len(data)
            while inflater.unconsumed_tail and total <= limit:
                data = inflater.decompress(inflater.unconsumed_tail, limit + 1 - total)
                total += len(data)
            if total > limit:
                raise InvalidDICOMError(
                    source, f"deflated dataset inflates beyond the {limit}-byte limit"
                )
            if inflater.eof:
                break
    except zlib.error as exc:
        raise InvalidDICOMError(source, "corrupt deflated dataset") from exc
    finally:
        fp.seek(start)


__all__ = ["check_deflate_limit"]
