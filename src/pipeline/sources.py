"""Where inputs come from and where outputs go: local folders, zip archives and S3.

Inputs are found recursively and by content, not by extension: every regular file is an
input, and the worker decides whether it is DICOM. Symbolic links are never followed
out of the input tree. Local zip archives are opened and each member becomes an input;
S3 inputs are listed through the S3 store, object by object.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
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


@dataclass(frozen=True)
class InputItem:
    """One input: a file, a zip member, or an S3 object.

    ``relative`` is its path inside INPUT; it can hold PHI (file names often do), so it is
    kept out of logs and manifests, which use ``input_id`` instead.
    """

    kind: str  # "file", "zip", "s3", "refused"
    relative: str
    fingerprint: str
    size: int
    path: str = ""
    member: str = ""
    bucket: str = ""
    key: str = ""
    refusal: str = ""
    member_index: int = -1


def input_id(key: bytes, relative: str) -> str:
    """Keyed, stable identifier of an input (no PHI, unlike its path)."""
    return hmac.new(
        key, b"input\x00" + relative.encode("utf-8", "surrogateescape"), hashlib.sha256
    ).hexdigest()[:20]


def _inside(root: str, target: str) -> bool:
    root_real = os.path.realpath(root)
    return os.path.commonpath([root_real, os.path.realpath(target)]) == root_real


def iter_local(root: str, exclude: str | None = None) -> Iterator[InputItem]:
    """Walk ``root`` recursively, in sorted order, yielding every input it holds.

    Symbolic links that resolve outside ``root`` (and symlinked directories) are
    yielded as refused inputs, never opened; ``exclude`` (the OUTPUT folder when it
    lies inside INPUT) is skipped.
    """
    if os.path.isfile(root):
        base = os.path.dirname(root)
        yield from _file_items(base, root)
        return
    excluded = os.path.realpath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if excluded and os.path.realpath(dirpath) == excluded:
            dirnames[:] = []
            continue
        dirnames.sort()
        kept = []
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if excluded and os.path.realpath(full) == excluded:
                continue
            if os.path.islink(full):
                rel = os.path.relpath(full, root)
                yield InputItem(
                    "refused",
                    rel,
                    "link",
                    0,
                    path=full,
                    refusal="symbolic link to a directory is not followed",
                )
                continue
            kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if name.startswith(".medpipe-tmp-"):
                continue
            yield from _file_items(root, full)


def _file_items(root: str, full: str) -> Iterator[InputItem]:
    rel = os.path.relpath(full, root)
    if os.path.islink(full) and not _inside(root, full):
        yield InputItem(
            "refused",
            rel,
            "link",
            0,
            path=full,
            refusal="symbolic link points outside the input tree",
        )
        return
    try:
        st = os.stat(full)
    except OSError:
        yield InputItem(
            "refused", rel, "missing", 0, path=full, refusal="unreadable or dangling link"
        )
        return
    if not os.path.isfile(full):
        yield InputItem("refused", rel, "special", 0, path=full, refusal="not a regular file")
        return
    fingerprint = f"{st.st_size}:{st.st_mtime_ns}"
    if st.st_size > 4 and _is_zip(full):
        yield from _zip_items(full, rel, fingerprint)
        return
    yield InputItem("file", rel, fingerprint, st.st_size, path=full)


def _is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    # A DICOM file may hold anything in its preamble; only a plain zip counts.
    return head[:4] == b"PK\x03\x04" and head[128:132] != b"DICM"


def _zip_items(path: str, rel: str, fingerprint: str) -> Iterator[InputItem]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = sorted(enumerate(archive.infolist()), key=lambda p: (p[1].filename, p[0]))
    except (zipfile.BadZipFile, OSError, ValueError):
        yield InputItem("file", rel, fingerprint, os.path.getsize(path), path=path)
        return
    for index, info in infos:
        if info.is_dir():
            continue
        # The index keeps members with the same name (zip allows it) apart.
        yield InputItem(
            "zip",
            f"{rel}::{index}:{info.filename}",
            f"{fingerprint}:{info.CRC}",
            info.file_size,
            path=path,
            member=info.filename,
            member_index=index,
        )


def iter_store(store: Any, bucket: str, exclude_prefix: str | None = None) -> Iterator[InputItem]:
    """Every object of an S3 store (all pages), in key order, as inputs."""
    for obj in store.list():
        if exclude_prefix and store.object_key(obj.key).startswith(exclude_prefix):
            continue
        yield InputItem(
            "s3",
            obj.key,
            obj.fingerprint,
            obj.size,
            bucket=bucket,
            key=store.object_key(obj.key),
        )


def materialise(item: InputItem, target: str, store: Any, max_member_bytes: int) -> str:
    """Return a local path holding the item's bytes (``target`` for zip and S3 items)."""
    if item.kind == "file":
        return item.path
    if item.kind == "zip":
        with (
            zipfile.ZipFile(item.path) as archive,
            archive.open(archive.infolist()[item.member_index]) as src,
            open(target, "wb") as dst,
        ):
            copied = 0
            while chunk := src.read(1 << 20):
                copied += len(chunk)
                if copied > max_member_bytes:
                    raise ValueError("zip member larger than the configured limit")
                dst.write(chunk)
        return target
    if item.kind == "s3":
        store.fetch(item.key, target)
        return target
    raise ValueError(f"cannot read an input of kind {item.kind}")
