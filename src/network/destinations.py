"""Where ``medpipe send`` and ``medpipe receive --forward`` send: a parsed DEST."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from src.errors import ConfigurationError

#: PS3.8 9.3.1: an AE title is 1 to 16 characters of the default repertoire, no backslash.
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


@dataclass(frozen=True)
class Destination:
    """A parsed DEST: ``dicom://AE@host:port`` or an ``http(s)://`` DICOMweb base URL.

    Attributes
    ----------
    scheme : str
        ``"dicom"`` or ``"dicomweb"``.
    ae_title : str
        The called AE title (DICOM only).
    host : str
    port : int
    url : str
        The DICOMweb base URL (DICOMweb only).
    """

    scheme: str
    ae_title: str = ""
    host: str = ""
    port: int = 0
    url: str = ""

    @property
    def label(self) -> str:
        """A printable name of the destination (no credentials)."""
        if self.scheme == "dicom":
            return f"dicom://{self.ae_title}@{self.host}:{self.port}"
        parts = urlsplit(self.url)
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"

    @property
    def state_name(self) -> str:
        """The file name of this destination's record of what it acknowledged."""
        digest = hashlib.sha256(self.label.encode("utf-8")).hexdigest()[:16]
        return f"sent-{digest}.jsonl"


def check_ae_title(title: str, what: str = "AE title") -> str:
    """Return ``title`` if it is a valid AE title, else raise ConfigurationError."""
    if not _AE_TITLE.match(title) or not title.strip():
        raise ConfigurationError(f"{what} must be 1 to 16 printable characters without a backslash")
    return title


def parse_destination(text: str) -> Destination:
    """Parse DEST.

    Examples
    --------
    >>> parse_destination("dicom://RESEARCH@pacs.example.org:11112").port
    11112
    >>> parse_destination("https://archive.example.org/dicom-web").scheme
    'dicomweb'

    Raises
    ------
    ConfigurationError
        If DEST is neither form.
    """
    parts = urlsplit(text)
    if parts.scheme == "dicom":
        if not parts.username or not parts.hostname or not parts.port:
            raise ConfigurationError(
                "DEST must look like dicom://AE_TITLE@host:port (for example "
                "dicom://RESEARCH@127.0.0.1:11112)"
            )
        ae = check_ae_title(parts.username, "the AE title in DEST")
        return Destination("dicom", ae_title=ae, host=parts.hostname, port=parts.port)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise ConfigurationError("DEST has no host; give the DICOMweb base URL")
        return Destination("dicomweb", url=text.rstrip("/"))
    raise ConfigurationError(
        "DEST must be dicom://AE_TITLE@host:port or an http(s):// DICOMweb base URL"
    )


__all__ = ["Destination", "check_ae_title", "parse_destination"]
