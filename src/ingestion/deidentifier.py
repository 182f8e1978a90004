"""De-identification to DICOM PS3.15 Annex E (Application Level Confidentiality Profile).

The rules are the standard's Table E.1-1 and Table E.3.10-1, loaded from package data
(:mod:`src.ingestion.profile`). The core is a pure function of (dataset, profile, key):
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

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from src.errors import DeidentificationError, InvalidDICOMError
from src.ingestion.action_report import ActionRecord, DeidentificationResult
from src.ingestion.byte_engine import ByteEngine, NotHandled
from src.ingestion.dicom_parser import DICOMParser
from src.ingestion.embedded_overlays import embedded_overlay_bits, sample_mask
from src.ingestion.iod_types import types_for_sop_class
from src.ingestion.markers import _encode_element, mark, rebuild_file_meta
from src.ingestion.part10 import (
    _PIXEL_TAGS,
    _encoding,
    _pixel_span,
    _raw_spans,
    _read_tail,
    save_streamed,
    save_whole,
)
from src.ingestion.profile import (
    Action,
    ConfidentialityProfile,
    compile_rules,
    parse_tag,
)
from src.ingestion.pseudonyms import Pseudonymizer, resolve_key
from src.ingestion.safety_net import _burned_in_risk, _Identifiers, _patient_key, _value
from src.ingestion.walk import MAX_SEQUENCE_DEPTH, DatasetWalker, _Context, _Mode


def _encoding_of(dataset: Dataset) -> str:
    """The first Python codec of the dataset's Specific Character Set."""
    codecs = dataset._character_set
    first = codecs[0] if isinstance(codecs, list) and codecs else codecs
    return str(first or "latin-1")


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
        base = profile or ConfidentialityProfile()
        self.fsync = fsync
        self._marker_cache: dict[tuple[int, bool, bool, str], bytes] = {}
        if uid_root is not None:
            base = ConfidentialityProfile(**{**base.__dict__, "uid_root": uid_root})
        self.profile = base
        self.preserve_tags = _parse_preserve(preserve_tags)
        self.key_material = resolve_key(key, key_file)
        self._pseudo = Pseudonymizer(self.key_material.key, base.uid_root, base.max_date_shift_days)
        self._rules = compile_rules(base)
        self._parser = parser or DICOMParser()
        self._walker = DatasetWalker(self._pseudo)
        if engine not in ("auto", "pydicom"):
            raise ValueError("engine must be 'auto' or 'pydicom'")
        self._bytes: ByteEngine | None = None
        if engine == "auto":
            self._bytes = ByteEngine(self._rules, base, self._pseudo, self.preserve_tags)

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
        return result.dataset, result.removed_tags

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
        with _open(input_path) as (fp, source):
            return self.deidentify_stream(
                fp, output_path, patient_id, source=source, describe=False
            ).removed_tags

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
        original_key = _patient_key(dataset)
        pseudonym = patient_id if patient_id is not None else self._pseudo.patient_id(original_key)
        offset = None
        if self.profile.retain_longitudinal_modified_dates:
            offset = self._pseudo.date_offset(original_key)
        identifiers = _Identifiers(dataset)
        ctx = _Context(
            rules=self._rules,
            profile=self.profile,
            pseudo=self._pseudo,
            preserve=self.preserve_tags,
            offset=offset,
            pseudonym=pseudonym,
            identifiers=identifiers,
            iod=types_for_sop_class(_value(dataset, 0x00080016)),
            encoding=_encoding_of(dataset),
        )
        burned_in = _burned_in_risk(dataset)
        embedded = embedded_overlay_bits(dataset)
        try:
            self._walker.walk(dataset, ctx, "", 0, _Mode.NORMAL)
        except RecursionError as exc:
            raise DeidentificationError("sequence nesting too deep to de-identify") from exc
        except DeidentificationError:
            raise
        except Exception as exc:
            # pydicom's messages quote the offending value; report only the error's type.
            raise DeidentificationError(
                f"an element could not be decoded or replaced ({type(exc).__name__})"
            ) from exc
        pixel_mask = self._embedded_overlays(dataset, embedded, ctx)
        rebuild_file_meta(dataset, self.profile.retain_uids, self._pseudo)
        history = mark(dataset, self.profile, pixels_at_risk=burned_in)
        return DeidentificationResult(
            dataset=dataset,
            actions=ctx.actions,
            patient_pseudonym=pseudonym,
            burned_in_annotation_risk=burned_in,
            graphics_review_required=ctx.graphics_kept,
            unchanged_sequences=ctx.unchanged_sequences,
            flags=list(flags),
            history_kept=history,
            pixel_mask=pixel_mask,
        )

    def deidentify_file_with_report(
        self,
        input_path: str | os.PathLike[str],
        output_path: str | os.PathLike[str],
        patient_id: str | None = None,
        *,
        before: Callable[[Dataset], None] | None = None,
        atomic: bool = True,
    ) -> DeidentificationResult:
        """As :meth:`deidentify_file`, returning the full :class:`DeidentificationResult`.

        Parameters
        ----------
        before : callable, optional
            Called with the original dataset (without pixel data) before anything is
            changed; it may veto the file by raising, and then nothing is written. The
            pipeline uses it to extract and validate metadata without a second parse.
        atomic : bool
            Write through a temporary file and rename (default). A caller that writes
            into its own private staging area and renames afterwards can skip it.
        """
        with _open(input_path) as (fp, source):
            return self.deidentify_stream(
                fp, output_path, patient_id, source=source, before=before, atomic=atomic
            )

    def deidentify_stream(
        self,
        fp: IO[bytes],
        output_path: str | os.PathLike[str],
        patient_id: str | None = None,
        *,
        source: str = "<stream>",
        before: Callable[[Dataset], None] | None = None,
        atomic: bool = True,
        describe: bool = True,
    ) -> DeidentificationResult:
        """As :meth:`deidentify_file_with_report`, reading from a seekable binary file.

        ``source`` labels error messages (a keyed id or a path the caller chose, never a
        PHI value). ``describe=False`` leaves ``result.dataset`` empty on the byte-level
        path (for callers that need only the file and the report).
        """
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        fp.seek(0)
        if self._bytes is not None:
            try:
                return self._bytes.run(
                    fp,
                    size,
                    output_path,
                    patient_id,
                    before=before,
                    atomic=atomic,
                    fsync=self.fsync,
                    describe=describe,
                )
            except NotHandled:
                fp.seek(0)  # nothing was written: the pydicom path takes the file
        parsed = self._parser.read_header(fp, source, decode=False)
        if parsed.read_whole:
            # Headerless and deflated data are read whole (the parser bounds inflation).
            fp.seek(0)
            whole = self._parser.read_stream(fp, source)
            dataset = whole.dataset
            if before is not None:
                before(dataset)
            has_pixels = bool(set(dataset.keys()) & _PIXEL_TAGS)
            result = self.deidentify(dataset, patient_id, flags=whole.flags)
            result.has_pixel_data = has_pixels
            save_whole(
                dataset,
                output_path,
                atomic,
                self.fsync,
                self._parser.get_transfer_syntax(dataset),
                result.pixel_mask,
            )
            return result
        header = parsed.dataset
        pixel_start = fp.tell()
        implicit, little = _encoding(header)
        spans = _raw_spans(header, parsed.spans, implicit, little)
        span = None
        if pixel_start < size:
            span = _pixel_span(fp, pixel_start, size, little, source)
            if span.value_end < size:
                tail = _read_tail(fp, span.value_end, size, implicit, little, source)
                for elem in tail:
                    header.add(elem)
        if before is not None:
            before(header)
        result = self.deidentify(header, patient_id, flags=parsed.flags)
        result.has_pixel_data = span is not None
        save_streamed(
            header,
            output_path,
            fp,
            span,
            implicit,
            little,
            spans,
            result.unchanged_sequences,
            atomic,
            self.fsync,
            self._marker_bytes if not result.history_kept else _encode_element,
            result.pixel_mask,
        )
        return result

    def _embedded_overlays(
        self, ds: Dataset, embedded: dict[int, int], ctx: _Context
    ) -> int | None:
        """Overlays in the pixels' high bits: zeroed (and their groups removed) when the
        profile removes overlays; kept and flagged for review under Clean Graphics."""
        if not embedded:
            return None
        if self._rules.overlay_data != Action.REMOVE:
            ctx.graphics_kept = True
            return None
        for group in embedded:
            for tag in [int(e.tag) for e in ds if e.tag >> 16 == group]:
                del ds[tag]
            self._walker._record(
                ctx, f"({group:04X},xxxx)", group << 16, "OW", Action.REMOVE, "overlay"
            )
        return sample_mask(embedded)

    def _marker_bytes(self, ds: Dataset, tag: int, implicit: bool, little: bool) -> bytes:
        """The encoded de-identification markers: the same for every file of a profile
        (unless the file carried an earlier history: then :func:`_encode_element`).
        Patient Identity Removed is YES or NO by the pixels' risk, so it is keyed too."""
        value = str(ds[tag].value) if tag == _PATIENT_IDENTITY_REMOVED else ""
        key = (tag, implicit, little, value)
        cached = self._marker_cache.get(key)
        if cached is None:
            cached = self._marker_cache[key] = _encode_element(ds, tag, implicit, little)
        return cached


_PATIENT_IDENTITY_REMOVED = 0x00120062


@contextlib.contextmanager
def _open(path: str | os.PathLike[str]) -> Iterator[tuple[IO[bytes], str]]:
    source = os.fspath(path)
    try:
        fp = open(source, "rb")  # noqa: SIM115 - closed below, spans the write
    except OSError as exc:
        raise InvalidDICOMError(source, f"cannot open file ({type(exc).__name__})") from exc
    with fp:
        yield fp, source


__all__ = [
    "MAX_SEQUENCE_DEPTH",
    "ActionRecord",
    "DeidentificationResult",
    "Deidentifier",
]
