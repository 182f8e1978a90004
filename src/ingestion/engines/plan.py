"""The engines' two phases: plan (read and decide, nothing written), then write.

A caller that checks the original before anything is written (the instance pipeline
validates its metadata; a DICOM node could refuse it) reads :attr:`Plan.original`
between the two, instead of handing the engine a callback. Everything that sends a file
from the byte engine to the pydicom engine happens in the plan, so a file is planned
once by the engine that then writes it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import IO, TYPE_CHECKING

from src.ingestion.annex_e.action_report import DeidentificationResult

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from src.ingestion.engines.raw_header import RawHeader

WriteStep = Callable[[str | os.PathLike[str] | IO[bytes], bool, bool], DeidentificationResult]


class Plan:
    """One input, read and decided by an engine; no output exists yet.

    Use as a context manager (or call :meth:`close`): the plan holds the input's buffer,
    memory map or open file until it is written (writing closes it) or closed.

    Attributes
    ----------
    original : pydicom.Dataset or None
        The original's header without its pixel data, as read (``None`` when the caller
        asked for none). It is valid until :meth:`write`, which may edit it in place.
    engine : str
        ``"bytes"`` or ``"pydicom"``: which engine planned it (and will write it).
    header : RawHeader or None
        The byte engine's original top-level values, undecoded: what a caller that needs
        a few values reads instead of :attr:`original` (which is then never built).
    """

    def __init__(
        self,
        original: Dataset | Callable[[], Dataset] | None,
        engine: str,
        write: WriteStep,
        close: Callable[[], None] | None = None,
        *,
        header: RawHeader | None = None,
    ) -> None:
        self._original = original
        self.engine = engine
        self.header = header
        self._write: WriteStep | None = write
        self._closers: list[Callable[[], None]] = [close] if close is not None else []

    @property
    def original(self) -> Dataset | None:
        """The original's header as a pydicom Dataset, built on first use (see above)."""
        if callable(self._original):
            self._original = self._original()
        return self._original

    @original.setter
    def original(self, value: Dataset | None) -> None:
        self._original = value

    def on_close(self, close: Callable[[], None]) -> None:
        """Also call ``close`` when the plan is closed (after what it holds is released)."""
        self._closers.append(close)

    def write(
        self,
        output_path: str | os.PathLike[str] | IO[bytes],
        *,
        atomic: bool = True,
        checksum: bool = False,
    ) -> DeidentificationResult:
        """Write the de-identified output (once) and return its report.

        Parameters
        ----------
        output_path : str, os.PathLike or writable binary file
            A path, or a buffer in memory (written as it is: ``atomic`` does not apply).
        atomic : bool
            Write through a temporary file and rename.
        checksum : bool
            Compute ``result.output_blake3`` as the bytes are written, where they pass
            through this process.

        Raises
        ------
        RuntimeError
            When the plan was already written.
        """
        step, self._write = self._write, None
        if step is None:
            raise RuntimeError("a plan is written once")
        try:
            return step(output_path, atomic, checksum)
        finally:
            self.close()

    def close(self) -> None:
        """Release what the plan holds of the input (its buffer, memory map or file)."""
        self._write = None
        self.original = None
        closers, self._closers = self._closers, []
        for close in closers:
            close()

    def __enter__(self) -> Plan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


__all__ = ["Plan", "WriteStep"]
