"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file: either the old file (or none) or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

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


@contextlib.contextmanager
def open_output(path: str | os.PathLike[str], atomic: bool, fsync: bool) -> Iterator[BinaryIO]:
    """Open an output: atomically (:func:`atomic_write`), or in place for a caller whose
    folder is its own (the partial file is removed on failure)."""
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
