"""Where INPUT and OUTPUT are, and the keyed id that names an input in every record.

An input's path can hold PHI (file names often do), so records name it by
:func:`input_id`, a keyed hash of its path inside INPUT, never by the path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from urllib.parse import urlparse


@dataclass(frozen=True)
class Location:
    """A parsed INPUT or OUTPUT: a local folder or ``s3://bucket/prefix``."""

    raw: str
    scheme: str  # "file" or "s3"
    bucket: str = ""
    prefix: str = ""
    path: str = ""

    @property
    def is_s3(self) -> bool:
        return self.scheme == "s3"

    def key(self, relative: str) -> str:
        """The S3 key of ``relative`` under this prefix."""
        return f"{self.prefix.rstrip('/')}/{relative}" if self.prefix.strip("/") else relative


def parse_location(text: str) -> Location:
    """Parse ``s3://bucket/prefix`` or a local path."""
    if text.startswith("s3://"):
        parsed = urlparse(text)
        if not parsed.netloc:
            raise ValueError(f"no bucket in {text!r}")
        return Location(text, "s3", bucket=parsed.netloc, prefix=parsed.path.lstrip("/"))
    return Location(text, "file", path=os.path.abspath(text))


def input_id(key: bytes, relative: str) -> str:
    """Keyed, stable identifier of an input (no PHI, unlike its path)."""
    return hmac.new(
        key, b"input\x00" + relative.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()[:20]


__all__ = ["Location", "input_id", "parse_location"]
