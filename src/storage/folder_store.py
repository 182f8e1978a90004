"""The folder store: a local directory with the :class:`~src.storage.store.Store` shape.

Writes go to a temporary file beside the target and are renamed into place, so a
reader never sees half a file. ``if_absent`` puts use ``renameat2(2)`` with
``RENAME_NOREPLACE`` (or ``link(2)`` where that is missing), which fails when the target
exists, so two writers of one key cannot both win. The writer's input id is kept
in a ``user.medpipe.owner`` extended attribute where the filesystem allows it.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from src.atomic import TMP_PREFIX, rename_noreplace
from src.storage.store import ObjectExistsError, QuarantineRecord, StoredObject, write_quarantine

_OWNER_XATTR = "user.medpipe.owner"


class FolderStore:
    """A folder as a store.

    Parameters
    ----------
    root : str
        The folder (created on first write).
    fsync : bool
        Flush each file to disk before its rename (needed where a caller acknowledges
        receipt, as a DICOM receiver does).
    """

    def __init__(self, root: str, *, fsync: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.uri = self.root
        self.fsync = fsync
        self._folders: set[str] = set()

    @classmethod
    def from_uri(cls, uri: str, **options: Any) -> FolderStore:
        fsync = bool(options.get("fsync", False))
        return cls(uri, fsync=fsync)

    def path(self, key: str) -> str:
        """The local path of ``key`` (refusing keys that would leave the root)."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") for p in parts) or "\x00" in key:
            raise ValueError("a store key must be a relative path without . or .. parts")
        return os.path.join(self.root, *parts)

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every file under the root whose key starts with ``prefix``, in key order."""
        yield from self._walk(self.root, "", prefix)

    def _walk(self, folder: str, base: str, prefix: str) -> Iterator[StoredObject]:
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return
        # A folder sorts as "name/", so keys come out in the order S3 lists them.
        entries.sort(key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        for entry in entries:
            key = f"{base}{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                if prefix.startswith(key + "/") or key.startswith(prefix) or not prefix:
                    yield from self._walk(entry.path, key + "/", prefix)
            elif (
                entry.is_file(follow_symlinks=False)
                and not entry.name.startswith(TMP_PREFIX)
                and key.startswith(prefix)
            ):
                st = entry.stat(follow_symlinks=False)
                yield StoredObject(key, st.st_size, f"{st.st_size}:{st.st_mtime_ns}")

    def open(self, key: str) -> IO[bytes]:
        return open(self.path(key), "rb")

    def fetch(self, key: str, path: str) -> None:
        with open(self.path(key), "rb") as src, open(path, "wb") as dst:
            _copy(src, dst)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self.path(key))

    def owner(self, key: str) -> str | None:
        """The input id recorded with ``key``, if the filesystem kept it."""
        try:
            return os.getxattr(self.path(key), _OWNER_XATTR).decode()
        except OSError:
            return None

    def _owner_of(self, key: str, candidate: str, owner: str) -> str | None:
        """Who wrote ``key``: its owner attribute, or, on a filesystem that keeps none,
        ``owner`` when the file holds exactly the ``candidate``'s bytes (outputs are
        deterministic: an input redone after a crash writes the same bytes again)."""
        found = self.owner(key)
        if found is None and owner and filecmp.cmp(self.path(key), candidate, shallow=False):
            return owner
        return found

    def put(
        self,
        key: str,
        source: str | bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        owner: str = "",
        consume: bool = False,
    ) -> None:
        target = self.path(key)
        folder = os.path.dirname(target)
        self._folder(folder)
        if consume and isinstance(source, str):
            try:
                moved = self._renamed(source, target, key, owner, if_absent)
            except FileNotFoundError:  # the folder went since it was made: once more
                self._folders.discard(folder)
                self._folder(folder)
                moved = self._renamed(source, target, key, owner, if_absent)
            if moved:
                if self.fsync:
                    _fsync_dir(folder)
                return
        tmp = self._moved(folder, source) if consume and isinstance(source, str) else None
        if tmp is None:
            tmp = self._stage(folder, source)
        try:
            if owner:
                with contextlib.suppress(OSError):
                    os.setxattr(tmp, _OWNER_XATTR, owner.encode())
            if if_absent:
                try:
                    os.link(tmp, target)
                except FileExistsError:
                    raise ObjectExistsError(key, self._owner_of(key, tmp, owner)) from None
            else:
                os.replace(tmp, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if self.fsync:
            _fsync_dir(folder)

    def quarantine(self, record: QuarantineRecord, original: str | bytes | None) -> None:
        write_quarantine(self, record, original)

    def _folder(self, folder: str) -> None:
        """Make ``folder`` once per store: a series' instances share it."""
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            if len(self._folders) > 100_000:
                self._folders.clear()
            self._folders.add(folder)

    def _renamed(self, source: str, target: str, key: str, owner: str, if_absent: bool) -> bool:
        """The commit as one rename of ``source`` (``False``: not possible here, so the
        caller takes the temporary-name path, with the same one-writer rule)."""
        if self.fsync:
            _fsync_file(source)
        if owner:
            with contextlib.suppress(OSError):
                os.setxattr(source, _OWNER_XATTR, owner.encode())
        if not if_absent:
            try:
                os.replace(source, target)
            except OSError as exc:
                if exc.errno == errno.EXDEV:
                    return False
                raise
            return True
        try:
            return rename_noreplace(source, target)
        except FileExistsError:
            raise ObjectExistsError(key, self._owner_of(key, source, owner)) from None

    def _moved(self, folder: str, source: str) -> str | None:
        """``source`` renamed to a temporary name in ``folder`` (None: another filesystem,
        so it is copied instead). The rename keeps the one-writer rules of :meth:`put`."""
        if self.fsync:
            _fsync_file(source)
        tmp = os.path.join(folder, f"{TMP_PREFIX}{os.getpid()}-{next(_MOVES)}")
        try:
            os.rename(source, tmp)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return None
            raise
        return tmp

    def _stage(self, folder: str, source: str | bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(source, bytes | bytearray | memoryview):
                    out.write(source)
                else:
                    with open(source, "rb") as src:
                        _copy(src, out)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp


_MOVES = itertools.count()


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _copy(src: IO[bytes], dst: IO[bytes]) -> None:
    """Copy in the kernel where it can (same filesystem), else in 1 MiB blocks."""
    try:
        size = os.fstat(src.fileno()).st_size
        offset = 0
        while offset < size:
            sent = os.copy_file_range(src.fileno(), dst.fileno(), size - offset)
            if sent == 0:
                break
            offset += sent
        if offset == size:
            return
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
            raise
    except AttributeError:
        pass
    src.seek(0)
    dst.seek(0)
    dst.truncate()
    shutil.copyfileobj(src, dst, 1 << 20)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["FolderStore"]
