"""Whether a zip archive in INPUT may be opened at all, decided before any member is read.

A zip is a list of members the archive *declares*; nothing stops those declarations
from lying. Two well-known shapes turn a small file into terabytes: members that share
or overlap their compressed data (the "overlapping" zip bomb of CVE-2024-0450, which
Python's ``zipfile`` before 3.11.8 does not detect) and members of absurd compression
ratio. Both are refused here, whatever the Python version, from the archive's own
central directory and local headers, so the run never expands them; the archive is
quarantined by its reason (it stays in INPUT).
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass

from src.settings.config import RunConfig

_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class ArchiveLimits:
    """What one zip archive may expand to.

    Attributes
    ----------
    max_member_bytes : int
        Largest member (declared and read).
    max_total_bytes : int
        Sum of all members' declared sizes.
    max_ratio : int
        Sum of declared sizes over the archive's own size, once that sum passes
        ``ratio_floor_bytes`` (DICOM compresses 2-10x; zeros compress 1000x).
    ratio_floor_bytes : int
    """

    max_member_bytes: int = 4 << 30
    max_total_bytes: int = 64 << 30
    max_ratio: int = 100
    ratio_floor_bytes: int = 64 << 20


def unsafe_archive(archive: zipfile.ZipFile, size: int, limits: ArchiveLimits) -> str:
    """Why ``archive`` (of ``size`` bytes on disk) must not be expanded; "" when it may.

    The reason names the rule, never a member's name (file names carry PHI).
    """
    infos = [i for i in archive.infolist() if not i.is_dir()]
    total = sum(i.file_size for i in infos)
    if any(i.file_size > limits.max_member_bytes for i in infos):
        return f"a member declares more than {limits.max_member_bytes} bytes"
    if total > limits.max_total_bytes:
        return f"the members declare more than {limits.max_total_bytes} bytes in all"
    if total > limits.ratio_floor_bytes and total > limits.max_ratio * max(size, 1):
        return f"the members expand more than {limits.max_ratio} times the archive"
    return _overlap(archive, infos, size)


def _overlap(archive: zipfile.ZipFile, infos: list[zipfile.ZipInfo], size: int) -> str:
    """Each member's local header and data must end before the next member begins."""
    fp = archive.fp
    if fp is None:
        return "the archive cannot be read"
    ordered = sorted(infos, key=lambda i: i.header_offset)
    offsets = [i.header_offset for i in ordered]
    if len(set(offsets)) != len(offsets):
        return "two members share one offset (a zip bomb)"
    directory = archive.start_dir if hasattr(archive, "start_dir") else size
    bounds = [*offsets[1:], min(directory, size)]
    for info, bound in zip(ordered, bounds, strict=True):
        fp.seek(info.header_offset)
        header = fp.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size:
            return "a member's local header lies past the end of the archive"
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        if signature != _LOCAL_SIGNATURE:
            return "a member's local header is missing (overlapping members)"
        end = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if end + info.compress_size > bound:
            return "members overlap (a zip bomb)"
    return ""


def archive_limits(config: RunConfig) -> ArchiveLimits:
    """What one zip archive in INPUT may expand to, from the run's settings."""
    return ArchiveLimits(
        max_member_bytes=config.max_zip_member_bytes,
        max_total_bytes=config.max_zip_bytes,
        max_ratio=config.max_zip_ratio,
    )


__all__ = ["ArchiveLimits", "archive_limits", "unsafe_archive"]
