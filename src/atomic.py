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
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TMP_PREFIX)
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


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, fsync=fsync) as fh:
        fh.write(data)
