"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file: either the old file (or none) or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

TMP_PREFIX = ".medpipe-tmp-"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file for writing that replaces ``path`` only on success.

    Parameters
    ----------
    path : path
        The final file; its folder is created.
    fsync : bool
        Flush the data to disk before the rename.

    Yields
    ------
    BinaryIO
        The open temporary file.
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
    except FileNotFoundError:  # the folder is created on first use
        Path(folder).mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


#: The integrity hash of every output (index column ``output_blake3``): BLAKE3, 32 bytes,
#: hex. A cryptographic hash at memory speed, computed from the bytes as they are written.
DIGEST_ALGORITHM = "blake3"


def new_digest() -> Any:
    """A fresh :data:`DIGEST_ALGORITHM` hasher (``update``, ``hexdigest``)."""
    from blake3 import blake3

    return blake3()


class DigestingWriter:
    """A binary file whose every write also feeds ``digest`` (writes are sequential)."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self._raw = raw
        self.digest = digest

    def write(self, data: Any) -> int:
        n = self._raw.write(data)
        self.digest.update(data)
        return n

    def __getattr__(self, name: str) -> Any:  # flush, fileno, tell, seek of the real file
        return getattr(self._raw, name)


@contextlib.contextmanager
def open_output(
    path: str | os.PathLike[str], atomic: bool, fsync: bool, digest: Any = None
) -> Iterator[BinaryIO]:
    """Open an output: atomically (:func:`atomic_write`), or in place for a caller whose
    folder is its own (the partial file is removed on failure); a writable binary
    object is written as it is. With ``digest`` (a :func:`new_digest`), every byte
    written also feeds it."""
    with _open_output(path, atomic, fsync) as fh:
        yield fh if digest is None else DigestingWriter(fh, digest)  # type: ignore[misc]


@contextlib.contextmanager
def _open_output(path: str | os.PathLike[str], atomic: bool, fsync: bool) -> Iterator[BinaryIO]:
    if hasattr(path, "write"):  # a buffer in memory (Clean Pixel Data's): written as is
        yield path  # type: ignore[misc]
        return
    if atomic:
        with atomic_write(path, fsync=fsync) as fh:
            yield fh
        return
    try:
        with open(path, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, fsync=fsync) as fh:
        fh.write(data)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAMEAT2: list[Any] = []


def rename_noreplace(source: str, target: str) -> bool:
    """Rename ``source`` to ``target`` unless ``target`` exists, in one system call.

    ``renameat2(2)`` with ``RENAME_NOREPLACE`` (Linux 3.15, glibc 2.28): a commit that
    cannot overwrite another writer's file, without the link and unlink it would take
    otherwise.

    Returns
    -------
    bool
        ``False`` when this system or filesystem cannot do it (the caller links instead).

    Raises
    ------
    FileExistsError
        When ``target`` exists (``source`` is left where it was).
    """
    if not _RENAMEAT2:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        _RENAMEAT2.append(getattr(libc, "renameat2", None))
    call = _RENAMEAT2[0]
    if call is None:
        return False
    import ctypes

    if call(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE):
        code = ctypes.get_errno()
        if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV, errno.ENOTSUP):
            return False
        raise OSError(code, os.strerror(code), target)
    return True
