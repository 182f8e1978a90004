"""The zip checks refuse bombs and nothing else: literal archives of each shape."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from src.pipeline.archives import ArchiveLimits, unsafe_archive
from tests.integration.test_attacks_intake import overlapping_zip


def verdict(path: Path, limits: ArchiveLimits | None = None) -> str:
    with zipfile.ZipFile(path) as archive:
        return unsafe_archive(archive, path.stat().st_size, limits or ArchiveLimits())


class Unseekable(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors after each member."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[no-untyped-def]
        self.data.extend(b)
        return len(b)


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_ordinary_archives_are_opened(tmp_path: Path, method: int) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr("dir/", b"")
        for i in range(5):
            archive.writestr(f"dir/{i}.dcm", os.urandom(10_000))
        archive.writestr("dir/0.dcm", os.urandom(500))  # a second member of the same name
    assert verdict(path) == ""


def test_members_with_data_descriptors_are_opened(tmp_path: Path) -> None:
    stream = Unseekable()
    with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            with archive.open(f"{i}.dcm", "w") as member:
                member.write(os.urandom(5000))
    path = tmp_path / "streamed.zip"
    path.write_bytes(bytes(stream.data))
    with zipfile.ZipFile(path) as archive:
        assert all(i.flag_bits & 0x08 for i in archive.infolist())
    assert verdict(path) == ""


def test_overlapping_members_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.zip"
    overlapping_zip(path, members=3, member_bytes=1000)
    assert "offset" in verdict(path)


def test_the_expansion_budget(tmp_path: Path) -> None:
    path = tmp_path / "zeros.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("z.dcm", b"\0" * (2 << 20))
    small = ArchiveLimits(ratio_floor_bytes=1 << 20)
    assert "times the archive" in verdict(path, small)
    assert verdict(path) == ""  # under the 64 MiB floor: tiny archives may compress well
    assert "in all" in verdict(path, ArchiveLimits(max_total_bytes=1 << 20))
    assert "a member declares" in verdict(path, ArchiveLimits(max_member_bytes=1 << 20))
