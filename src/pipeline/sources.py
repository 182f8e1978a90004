"""Where inputs come from and where outputs go: local folders, zip archives and S3.

Inputs are found recursively and by content, not by extension: every regular file is an
input, and the worker decides whether it is DICOM. Symbolic links are never followed
out of the input tree, and a file is read only if it is still the file discovery saw
(same device and inode, opened without following a link): a file swapped for a link
during the run is refused, not read. Local zip archives are opened, once
:mod:`src.pipeline.archives` has found them safe, and each member becomes an input;
S3 inputs are listed through the S3 store, object by object.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from src.pipeline.archives import ArchiveLimits, unsafe_archive
from src.records.state import STATE_DIR

#: The prefix of medpipe's own temporary files (an interrupted atomic write).
TMP_PREFIX = ".medpipe-tmp-"


class InputChangedError(OSError):
    """The input is no longer the file discovery found (replaced by a link or another
    file, or not a regular file any more); it is not read."""


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
    #: The quarantine reason of a ``refused`` item.
    refused_as: str = "not-a-regular-file"
    #: ``st_dev`` and ``st_ino`` of a local file at discovery (0: not known).
    device: int = 0
    inode: int = 0
    mtime_ns: int = 0


def _inside(root: str, target: str) -> bool:
    root_real = os.path.realpath(root)
    return os.path.commonpath([root_real, os.path.realpath(target)]) == root_real


def holds_output(folder: str) -> bool:
    """Whether ``folder`` is a medpipe OUTPUT: it holds the ``.medpipe/`` state folder."""
    marker = os.path.join(folder, STATE_DIR)
    return os.path.isdir(marker) and not os.path.islink(marker)


def iter_local(
    root: str,
    exclude: str | None = None,
    limits: ArchiveLimits | None = None,
    outputs: list[str] | None = None,
) -> Iterator[InputItem]:
    """Walk ``root`` recursively, in sorted order, yielding every input it holds.

    Symbolic links that resolve outside ``root`` (and symlinked directories) are
    yielded as refused inputs, never opened; ``exclude`` (the OUTPUT folder when it
    lies inside INPUT) is skipped, and so is every other folder below ``root`` that holds
    a medpipe OUTPUT (:func:`holds_output`: its files, index and journal are de-identified
    already), each appended to ``outputs``; a zip archive beyond ``limits`` is refused whole.
    """
    limits = limits or ArchiveLimits()
    if os.path.isfile(root):
        base = os.path.dirname(root)
        yield from _file_items(base, root, limits)
        return
    excluded = os.path.realpath(exclude) if exclude else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if excluded and os.path.realpath(dirpath) == excluded:
            dirnames[:] = []
            continue
        if dirpath != root and holds_output(dirpath):
            dirnames[:] = []
            if outputs is not None:
                outputs.append(os.path.relpath(dirpath, root))
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
            if name.startswith(TMP_PREFIX):
                rel = os.path.relpath(full, root)
                why = "a medpipe temporary file (an interrupted write) is not read"
                yield InputItem("refused", rel, "tmp", 0, path=full, refusal=why)
                continue
            yield from _file_items(root, full, limits)


def _file_items(root: str, full: str, limits: ArchiveLimits) -> Iterator[InputItem]:
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
    # A link inside the tree is read through its target, which is then opened without
    # following any link and must be the file found here.
    path = os.path.realpath(full) if os.path.islink(full) else full
    # A name saying DICOM is taken at its word (no open here: the worker reads it once,
    # and a zip under such a name is refused naming what it is); any other is sniffed.
    if st.st_size > 4 and not rel.lower().endswith(_DICOM_SUFFIX) and _is_zip(path):
        yield from _zip_items(path, rel, fingerprint, st.st_size, limits)
        return
    yield InputItem(
        "file",
        rel,
        fingerprint,
        st.st_size,
        path=path,
        device=st.st_dev,
        inode=st.st_ino,
        mtime_ns=st.st_mtime_ns,
    )


def open_input(item: InputItem) -> IO[bytes]:
    """Open a local file input for reading, refusing anything but the file discovered.

    Raises
    ------
    InputChangedError
        When the path is now a link, a special file, or another file.
    OSError
        When it cannot be opened at all.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(item.path, flags | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputChangedError("replaced by a symbolic link after discovery") from exc
        raise
    st = os.fstat(fd)
    found = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    if not stat.S_ISREG(st.st_mode) or (
        item.inode and found != (item.device, item.inode, item.mtime_ns, item.size)
    ):
        os.close(fd)
        raise InputChangedError("replaced or changed after discovery")
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def original_for_quarantine(
    item: InputItem, copy: str, detail: str, limit: int
) -> Iterator[tuple[str | None, str]]:
    """The path to copy into quarantine for a refused input, and the record's detail.

    ``copy`` is the run's scratch copy (zip members, S3 objects); a local file is
    opened as :func:`open_input` opens it and copied through its descriptor, so a file
    swapped for a link since discovery is never copied. Above ``limit`` bytes only the
    reason is kept: the original stays where it came from.
    """
    if copy:
        size = os.path.getsize(copy)
        if size > limit:
            yield None, f"{detail}; the original ({size} bytes) is not copied"
        else:
            yield copy, detail
        return
    if item.kind != "file":
        yield None, detail
        return
    try:
        source = open_input(item)
    except InputChangedError as exc:
        yield None, f"{detail}; not copied: {exc}"
        return
    except OSError:
        yield None, detail
        return
    with source:
        size = os.fstat(source.fileno()).st_size
        if size > limit:
            yield None, f"{detail}; the original ({size} bytes) is not copied"
            return
        fds = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"
        yield f"{fds}/{source.fileno()}", detail


_DICOM_SUFFIX = (".dcm", ".dicom")


def _is_zip(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    # A DICOM file may hold anything in its preamble; only a plain zip counts.
    return head[:4] == b"PK\x03\x04" and head[128:132] != b"DICM"


def _zip_items(
    path: str, rel: str, fingerprint: str, size: int, limits: ArchiveLimits
) -> Iterator[InputItem]:
    try:
        with zipfile.ZipFile(path) as archive:
            infos = sorted(enumerate(archive.infolist()), key=lambda p: (p[1].filename, p[0]))
            unsafe = unsafe_archive(archive, size, limits)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        # It starts as a zip and is none (cut short, or its directory is damaged): its
        # true reason, not "not DICOM".
        why = f"zip archive cannot be read ({type(exc).__name__}); no member was opened"
        yield InputItem(
            "refused", rel, fingerprint, size, path=path, refusal=why, refused_as="corrupt-archive"
        )
        return
    if unsafe:
        why = f"zip archive not opened: {unsafe}"
        yield InputItem(
            "refused", rel, fingerprint, size, path=path, refusal=why, refused_as="unsafe-archive"
        )
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
    if item.kind not in ("zip", "s3"):
        raise ValueError(f"cannot read an input of kind {item.kind}")
    # The scratch copy holds PHI: private to this user, and gone on any failure.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        if item.kind == "zip":
            with (
                os.fdopen(fd, "wb") as dst,
                zipfile.ZipFile(item.path) as archive,
                archive.open(archive.infolist()[item.member_index]) as src,
            ):
                copied = 0
                while chunk := src.read(1 << 20):
                    copied += len(chunk)
                    if copied > max_member_bytes:
                        raise ValueError("zip member larger than the configured limit")
                    dst.write(chunk)
        else:
            os.close(fd)
            store.fetch(item.key, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        raise
    return target
