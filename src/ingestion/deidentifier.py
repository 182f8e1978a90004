"""De-identification to DICOM PS3.15 Annex E (Application Level Confidentiality Profile).

The rules are the standard's Table E.1-1 and Table E.3.10-1, loaded from package data
(:mod:`src.ingestion.annex_e.profile`). The core is a pure function of (dataset, profile, key):
it never touches the network or storage, so it runs the same in a Lambda, a process pool
or a notebook.

What happens to an element, in order:

1. ``preserve_tags`` (the documented argument) keep an element as it is.
2. Group lengths ``(gggg,0000)`` are removed (they would be wrong after editing).
3. Private elements (odd groups) are removed; with Retain Safe Private only the
   attributes of Table E.3.10-1 survive, and only under their matching private creator.
4. Curves ``(50xx,xxxx)`` and overlays ``(60xx,3000)``/``(60xx,4000)`` follow their
   mask rows; removing overlay data removes that overlay's whole group.
5. Listed attributes follow their Table E.1-1 code, after the profile's options.
6. Unlisted attributes are kept, with a safety net for what the table cannot foresee:
   person names get a dummy, free text (LT/ST/UT/UC) is removed, dates follow the
   longitudinal option, non-standard UIDs are replaced, unknown public tags are removed.

All of this applies at every depth of nested sequences. A sequence whose action is ``D``
(Content Sequence, for example) is kept with every free-text, name, date and UID value
inside it replaced by a dummy; one whose action is ``C`` is kept with its text cleaned of
the identifiers found in the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from src.errors import InvalidDICOMError
from src.ingestion.annex_e.action_report import ActionRecord, DeidentificationResult
from src.ingestion.annex_e.element_rules import MAX_SEQUENCE_DEPTH
from src.ingestion.annex_e.profile import (
    ConfidentialityProfile,
    compile_rules,
    parse_tag,
)
from src.ingestion.annex_e.pseudonyms import KeyMaterial, Pseudonymizer, key_material, resolve_key
from src.ingestion.encoding.dictionary import tag_for_keyword
from src.ingestion.engines.byte_engine import ByteEngine, NotHandled
from src.ingestion.engines.plan import Plan

if TYPE_CHECKING:  # the pydicom path is imported when it is first needed
    from pydicom.dataset import Dataset

    from src.ingestion.dicom_parser import DICOMParser
    from src.ingestion.engines.pydicom_engine import PydicomEngine


def _parse_preserve(items: Iterable[str | int] | None) -> frozenset[int]:
    out: set[int] = set()
    for item in items or ():
        if isinstance(item, int):
            out.add(item)
            continue
        tag = tag_for_keyword(item)
        if tag is None:
            try:
                tag = parse_tag(item)
            except ValueError as exc:
                raise ValueError(f"preserve_tags: unknown keyword or tag {item!r}") from exc
        out.add(tag)
    return frozenset(out)


class Deidentifier:
    """Remove PHI from DICOM datasets and files, per PS3.15 Annex E (edition 2026d).

    Parameters
    ----------
    preserve_tags : list of str, optional
        Keywords or tags (``"(0008,103E)"``, ``"0008103E"``) kept as they are, on top of
        the profile. ``None`` keeps what the profile keeps: every diagnostic attribute
        that Table E.1-1 does not list.
    profile : ConfidentialityProfile, optional
        The options; defaults to the Basic Profile with Modified Dates.
    key : bytes or str, optional
        The secret for keyed pseudonyms. Without it: ``MEDPIPE_DEID_KEY``, then the key file
        (``MEDPIPE_KEY_FILE`` or ``~/.config/medpipe/deid.key``, created once).
    key_file : path, optional
        Read the key from this file.
    uid_root : str, optional
        Overrides ``profile.uid_root``.
    parser : DICOMParser, optional
        Reads input files (limits such as the deflate ceiling live there).
    fsync : bool
        Flush each output to disk before its atomic rename (survives power loss, costs
        milliseconds per file). The rename alone already guarantees no half-written file.
    engine : {"auto", "pydicom"}
        ``"auto"`` (default) de-identifies files with the byte-level engine
        (:mod:`src.ingestion.engines.byte_engine`), which gives the pydicom path
        (:mod:`src.ingestion.engines.pydicom_engine`) what it does not handle; ``"pydicom"``
        always takes the pydicom path, the reference the byte-level engine is tested
        against.

    Notes
    -----
    The shells resolve the key (:func:`~src.ingestion.annex_e.pseudonyms.resolve_key`) and pass
    it in. Only a ``Deidentifier()`` built without ``key`` looks further, through the
    documented default: ``MEDPIPE_DEID_KEY``, then the key file, created once.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> import pydicom
    >>> ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    >>> clean, removed = Deidentifier(key=b"an example key 1234").deidentify_dataset(
    ...     ds, patient_id="ANON12345")
    >>> clean.PatientID, clean.PatientIdentityRemoved
    ('ANON12345', 'YES')
    """

    def __init__(
        self,
        preserve_tags: list[str] | None = None,
        *,
        profile: ConfidentialityProfile | None = None,
        key: bytes | str | None = None,
        key_file: str | os.PathLike[str] | None = None,
        uid_root: str | None = None,
        parser: DICOMParser | None = None,
        fsync: bool = False,
        engine: str = "auto",
    ) -> None:
        if engine not in ("auto", "pydicom"):
            raise ValueError("engine must be 'auto' or 'pydicom'")
        base = profile or ConfidentialityProfile()
        if uid_root is not None:
            base = ConfidentialityProfile(**{**base.__dict__, "uid_root": uid_root})
        self.profile = base
        self.fsync = fsync
        self.preserve_tags = _parse_preserve(preserve_tags)
        self.key_material = _key_material(key, key_file)
        self._pseudo = Pseudonymizer(self.key_material.key, base.uid_root, base.max_date_shift_days)
        self._rules = compile_rules(base)
        self._parser = parser
        self._reference: PydicomEngine | None = None
        self._bytes: ByteEngine | None = None
        if engine == "auto":
            self._bytes = ByteEngine(self._rules, base, self._pseudo, self.preserve_tags)

    @property
    def _pydicom(self) -> PydicomEngine:
        """The pydicom path, built (and pydicom imported) when first needed."""
        if self._reference is None:
            from src.ingestion.dicom_parser import DICOMParser
            from src.ingestion.engines.pydicom_engine import PydicomEngine

            self._reference = PydicomEngine(
                self._rules,
                self.profile,
                self._pseudo,
                self.preserve_tags,
                self._parser or DICOMParser(),
                self.fsync,
            )
        return self._reference

    def deidentify_dataset(
        self, dataset: Dataset, patient_id: str | None = None
    ) -> tuple[Dataset, list[str]]:
        """Remove PHI from a dataset, in place.

        Parameters
        ----------
        dataset : pydicom.Dataset
            Modified in place and returned.
        patient_id : str, optional
            The patient pseudonym to write; by default a keyed pseudonym of the original
            Patient ID, the same in every file.

        Returns
        -------
        (pydicom.Dataset, list of str)
            The dataset and the paths of the elements removed or replaced.

        Raises
        ------
        DeidentificationError
            If the dataset cannot be de-identified safely (nesting too deep, for example).
        """
        result = self.deidentify(dataset, patient_id)
        return dataset, result.removed_tags

    def deidentify_file(
        self,
        input_path: str | os.PathLike[str],
        output_path: str | os.PathLike[str],
        patient_id: str | None = None,
    ) -> list[str]:
        """De-identify a file and write the result atomically.

        The header is read with pixel data deferred and the pixel bytes are copied
        through unchanged, so a multi-gigabyte file needs little memory and compressed
        transfer syntaxes pass through as they are.

        Parameters
        ----------
        input_path, output_path : path
        patient_id : str, optional
            As for :meth:`deidentify_dataset`.

        Returns
        -------
        list of str
            The paths of the elements removed or replaced.

        Raises
        ------
        InvalidDICOMError
            If the input is not readable DICOM (nothing is written).
        DeidentificationError
            If it cannot be de-identified safely (nothing is written).
        """
        with self.plan_file(input_path, patient_id, describe=False, original=False) as plan:
            return plan.write(output_path).removed_tags

    def deidentify(
        self,
        dataset: Dataset,
        patient_id: str | None = None,
        *,
        flags: Iterable[str] = (),
    ) -> DeidentificationResult:
        """De-identify ``dataset`` in place and return it with the action report.

        ``flags`` are the parser's (:class:`~src.ingestion.dicom_parser.ParsedDataset`),
        carried into the result.
        """
        return self._pydicom.deidentify(dataset, patient_id, flags=flags)

    def deidentify_file_with_report(
        self,
        input_path: str | os.PathLike[str],
        output_path: str | os.PathLike[str],
        patient_id: str | None = None,
        *,
        atomic: bool = True,
        checksum: bool = False,
    ) -> DeidentificationResult:
        """As :meth:`deidentify_file`, returning the full :class:`DeidentificationResult`.

        Parameters
        ----------
        atomic : bool
            Write through a temporary file and rename (default). A caller that writes
            into its own private staging area and renames afterwards can skip it.
        checksum : bool
            Compute ``result.output_blake3`` while writing (where the bytes pass through
            this process), so that the caller need not read the output again.
        """
        with self.plan_file(input_path, patient_id, original=False) as plan:
            return plan.write(output_path, atomic=atomic, checksum=checksum)

    def deidentify_stream(
        self,
        fp: IO[bytes],
        output_path: str | os.PathLike[str],
        patient_id: str | None = None,
        *,
        source: str = "<stream>",
        atomic: bool = True,
        describe: bool = True,
        checksum: bool = False,
    ) -> DeidentificationResult:
        """As :meth:`deidentify_file_with_report`, reading from a seekable binary file.

        ``source`` labels error messages (a keyed id or a path the caller chose, never a
        PHI value). ``describe=False`` leaves ``result.dataset`` empty on the byte-level
        path (for callers that need only the file and the report); ``checksum=True``
        computes ``result.output_blake3`` as the file is written, where it can.
        """
        with self.plan_stream(
            fp, patient_id, source=source, describe=describe, original=False
        ) as plan:
            return plan.write(output_path, atomic=atomic, checksum=checksum)

    def plan_file(
        self,
        input_path: str | os.PathLike[str],
        patient_id: str | None = None,
        *,
        describe: bool | str = True,
        original: bool = True,
    ) -> Plan:
        """As :meth:`plan_stream`, opening ``input_path`` (closed with the plan)."""
        source = os.fspath(input_path)
        try:
            fp = open(source, "rb")  # noqa: SIM115 - closed with the plan
        except OSError as exc:
            raise InvalidDICOMError(source, f"cannot open file ({type(exc).__name__})") from exc
        try:
            plan = self.plan_stream(
                fp, patient_id, source=source, describe=describe, original=original
            )
        except BaseException:
            fp.close()
            raise
        plan.on_close(fp.close)
        return plan

    def plan_stream(
        self,
        fp: IO[bytes],
        patient_id: str | None = None,
        *,
        source: str = "<stream>",
        describe: bool | str = True,
        original: bool = True,
    ) -> Plan:
        """Read and decide one input without writing anything: the first of two phases.

        A caller that checks the original before any output exists (the instance
        pipeline validates its metadata) reads ``plan.original``, then calls
        ``plan.write(output_path)``; raising in between writes nothing.

        Parameters
        ----------
        fp : binary file
            Seekable; it must stay open until the plan is written or closed.
        patient_id : str, optional
            As for :meth:`deidentify_file`.
        source : str
            Labels error messages (never a PHI value).
        describe : bool or ``"header"``
            Give the written result its ``dataset`` (the output's header); with
            ``"header"``, the byte engine gives ``result.header`` (raw values) and
            ``result.describe_output()`` instead, and builds no dataset unless asked.
        original : bool
            Give the plan the original's header (``plan.original``, built on first use;
            the byte engine also gives ``plan.header``, its raw values).

        Returns
        -------
        Plan
            A context manager; close it (or write it) to release the input's buffer.

        Raises
        ------
        InvalidDICOMError
            When the input cannot be read as DICOM.
        DeidentificationError
            When it cannot be de-identified safely.
        """
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        fp.seek(0)
        if self._bytes is not None:
            try:
                return self._bytes.plan(
                    fp, size, patient_id, original=original, fsync=self.fsync, describe=describe
                )
            except NotHandled:
                fp.seek(0)  # nothing was written: the pydicom path takes the file
        return self._pydicom.plan(fp, size, patient_id, source=source)


def _key_material(key: bytes | str | None, key_file: str | os.PathLike[str] | None) -> KeyMaterial:
    """The key given, or (for ``Deidentifier()`` without one) the documented default."""
    if key is not None:
        return key_material(key)
    return resolve_key(None, key_file)


__all__ = [
    "MAX_SEQUENCE_DEPTH",
    "ActionRecord",
    "DeidentificationResult",
    "Deidentifier",
]
