"""Where bytes live: one small protocol, a folder store and an S3 store, chosen by URI.

Every shell (``medpipe run``, ``medpipe deidentify``, the Lambda pass, the receiver)
writes outputs and quarantines inputs through a :class:`Store`, so there is one output
layout and one quarantine layout:

``<pseudonym>/<study uid>/<series uid>/<sop uid>.dcm``
    A de-identified instance, written once: :meth:`Store.put` with ``if_absent=True``
    refuses to overwrite, which is how a second instance with the same SOP Instance UID
    is detected (:func:`commit_instance`).
``quarantine/<input id>.bin`` and ``quarantine/<input id>.reason.json``
    The original bytes, unchanged, and the reason (:meth:`Store.quarantine`).

Back-ends are registered by URI scheme and imported lazily, as pydicom's pixel-data
plugins are: :func:`open_store` names the package to install when one is missing.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any, Protocol, runtime_checkable

from src.errors import ConfigurationError, PipelineError

QUARANTINE_PREFIX = "quarantine"


class ObjectExistsError(PipelineError):
    """An ``if_absent`` put found the key taken.

    ``owner`` is the input id recorded with the existing object, when the store keeps one.
    """

    def __init__(self, key_id: str, owner: str | None = None) -> None:
        self.owner = owner
        super().__init__(f"an object already exists at {key_id}", details={"owner": owner})


class DuplicateInstanceError(PipelineError):
    """Another input already produced this SOP Instance UID's output."""


@dataclass(frozen=True)
class StoredObject:
    """One listed object: its key under the store's root, size and a change token."""

    key: str
    size: int
    fingerprint: str


@dataclass(frozen=True)
class QuarantineRecord:
    """The reason file written beside a quarantined input.

    ``source`` is the input's original relative path or object key: quarantine is the raw
    zone and this is the only place that name is written.
    """

    input_id: str
    reason: str
    detail: str
    stage: str
    source: str
    copied: bool = True

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1, ensure_ascii=False).encode("utf-8")


@runtime_checkable
class Store(Protocol):
    """What the pipeline needs from a place that holds bytes."""

    uri: str

    def list(self, prefix: str = "") -> Iterator[StoredObject]:
        """Every object under ``prefix``, in key order."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """A seekable binary file with the object's bytes (close it when done)."""
        ...

    def fetch(self, key: str, path: str) -> None:
        """Copy the object's bytes into the local file ``path`` (one read of the object)."""
        ...

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
        """Write ``source`` (a local path or bytes) at ``key`` atomically.

        With ``if_absent`` an existing object is left alone and
        :class:`ObjectExistsError` is raised; ``owner`` (an input id) is recorded with the
        object where the store can. With ``consume`` the caller gives ``source`` (a local
        path) up: a store on the same filesystem may move it into place instead of copying
        it (the caller removes whatever is left of it).
        """
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds an object."""
        ...

    def quarantine(self, record: QuarantineRecord, original: str | bytes | None) -> None:
        """Put the original bytes (unchanged) and the reason under ``quarantine/``."""
        ...


def quarantine_keys(input_id: str) -> tuple[str, str]:
    """The two keys of a quarantined input: its bytes and its reason."""
    return (
        f"{QUARANTINE_PREFIX}/{input_id}.bin",
        f"{QUARANTINE_PREFIX}/{input_id}.reason.json",
    )


def write_quarantine(store: Store, record: QuarantineRecord, original: str | bytes | None) -> None:
    """The one quarantine writer: bytes first, then the reason that points at them."""
    data_key, reason_key = quarantine_keys(record.input_id)
    copied = original is not None and (not isinstance(original, str) or _readable(original))
    if copied and original is not None:
        store.put(data_key, original, content_type="application/octet-stream")
    if copied != record.copied:
        record = QuarantineRecord(**{**asdict(record), "copied": copied})
    store.put(reason_key, record.to_json(), content_type="application/json")


def _readable(path: str) -> bool:
    """Whether the original can be read at all (an unreadable input is quarantined by its
    reason alone; a store that cannot be written still raises)."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def commit_instance(store: Store, key: str, staged: str, owner: str, *, claimed: bool) -> bool:
    """Write a de-identified instance once; the second writer of a SOP Instance UID loses.

    Parameters
    ----------
    store : Store
    key : str
        The output key (``<pseudonym>/<study>/<series>/<sop>.dcm``).
    staged : str
        Local file with the de-identified bytes.
    owner : str
        The input id of the instance being written.
    claimed : bool
        The caller knows (from its journal) that ``owner`` already owns ``key``: a re-run
        of a changed input replaces its own output.

    Returns
    -------
    bool
        ``True`` when written, ``False`` when the same input had already written it (a
        duplicate event: harmless).

    Raises
    ------
    DuplicateInstanceError
        If another input owns ``key``.
    """
    if claimed:
        store.put(key, staged, content_type="application/dicom", owner=owner, consume=True)
        return True
    try:
        store.put(
            key,
            staged,
            content_type="application/dicom",
            if_absent=True,
            owner=owner,
            consume=True,
        )
    except ObjectExistsError as exc:
        if exc.owner is not None and exc.owner == owner:
            return False
        raise DuplicateInstanceError(
            "another input already wrote this SOP Instance UID", details={"key": key}
        ) from None
    return True


_REGISTRY: dict[str, tuple[str, str]] = {
    "file": ("src.storage.folder_store:FolderStore", ""),
    "s3": ("src.storage.s3_store:S3Store", "boto3"),
}


def register_store(scheme: str, target: str, package: str = "") -> None:
    """Add a back-end: ``target`` is ``"module:Class"``, imported on first use.

    ``package`` names what to install when the import fails.
    """
    _REGISTRY[scheme] = (target, package)


def open_store(uri: str, **options: Any) -> Store:
    """Open the store for ``uri``: a folder path, ``file://`` or ``s3://bucket/prefix``.

    Parameters
    ----------
    uri : str
    **options
        Passed to the back-end (for S3: ``region_name``, ``endpoint_url``, ``s3_client``).

    Raises
    ------
    ConfigurationError
        For an unknown scheme or a back-end whose package is missing.

    Examples
    --------
    >>> import tempfile
    >>> store = open_store(tempfile.mkdtemp())
    >>> store.put("a/b.txt", b"hi"); store.exists("a/b.txt")
    True
    """
    scheme, _, rest = uri.partition("://")
    if not rest:
        scheme, rest = "file", uri
    if scheme not in _REGISTRY:
        raise ConfigurationError(f"no storage back-end for {scheme}:// URIs")
    target, package = _REGISTRY[scheme]
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install {package}" if package else ""
        raise ConfigurationError(f"the {scheme}:// store is unavailable{hint}") from exc
    factory = getattr(module, class_name)
    store: Store = factory.from_uri(uri if scheme != "file" else rest, **options)
    return store


__all__ = [
    "QUARANTINE_PREFIX",
    "DuplicateInstanceError",
    "ObjectExistsError",
    "QuarantineRecord",
    "Store",
    "StoredObject",
    "commit_instance",
    "open_store",
    "quarantine_keys",
    "register_store",
    "write_quarantine",
]
