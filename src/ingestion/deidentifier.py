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
import functools
import logging
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from io import BytesIO
from typing import IO, Any

import pydicom
from pydicom import config as pydicom_config
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from src import __version__
from src.atomic import atomic_write
from src.errors import DeidentificationError, InvalidDICOMError
from src.ingestion.dicom_parser import (
    DICOMParser,
    peek,
)
from src.ingestion.profile import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    Action,
    CompiledRules,
    ConfidentialityProfile,
    compile_rules,
    parse_tag,
)
from src.ingestion.pseudonyms import Pseudonymizer, resolve_key

logger = logging.getLogger(__name__)

#: Deepest sequence nesting accepted; deeper input is refused rather than half-cleaned.
MAX_SEQUENCE_DEPTH = 64

_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
# Text the table keeps is still searched for the patient's own identifiers.
_SCANNED_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC"})
_DATE_VRS = frozenset({"DA", "DT"})
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_MAX_LEN = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "ST": 1024, "PN": 64, "UC": 0, "LT": 10240}
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY: dict[str, Any] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "PN": "ANONYMIZED",
    "SH": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "TM": "000000",
    "UC": _DUMMY_TEXT,
    "UR": "urn:anonymized",
    "UT": _DUMMY_TEXT,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": BaseTag(0),
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}
# Inside a dummied or cleaned sequence (SR content), these carry the coded structure.
_CODE_STRUCTURE = frozenset(
    tag_for_keyword(k) or 0
    for k in (
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ValueType",
        "RelationshipType",
        "ContinuityOfContent",
        "TemplateIdentifier",
        "MappingResource",
        "MappingResourceName",
        "ContextIdentifier",
        "ContextUID",
        "MeasurementUnitsCodeSequence",
        "GraphicType",
        "TemporalRangeType",
        "ReferencedFrameNumber",
    )
)
# Patient Identity Removed, De-identification Method (+ Code Sequence), Longitudinal
# Temporal Information Modified: constant for a profile, so encoded once.
_MARKER_TAGS = frozenset({0x00120062, 0x00120063, 0x00120064, 0x00280303})
_TRAILING_PADDING = 0xFFFCFFFC
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010
_SOP_INSTANCE_UID = 0x00080018
_BURNED_IN_RISK_MODALITIES = frozenset({"US", "SC", "OT", "XA", "ES"})
_IDENTIFIER_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "AccessionNumber",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
    "PatientBirthDate",
)
_IDENTIFIER_TAGS = tuple(t for t in map(tag_for_keyword, _IDENTIFIER_KEYWORDS) if t is not None)
_DATE_PATTERN = re.compile(
    r"\b(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|(19|20)\d{6})\b"
)
_LONG_NUMBER = re.compile(r"\d[\d\s-]{4,}\d")


@dataclass(frozen=True)
class ActionRecord:
    """What happened to one element. Holds no values, only where and what.

    Attributes
    ----------
    path : str
        Keyword path, for example ``"RequestAttributesSequence[0].RequestedProcedureID"``.
    tag : str
        ``"(gggg,eeee)"`` of the element itself.
    vr : str
        Its value representation.
    action : str
        ``"X"``, ``"Z"``, ``"D"``, ``"K"``, ``"C"`` or ``"U"``.
    reason : str
        Which rule decided: ``"E.1-1"``, ``"private"``, ``"curve"``, ``"overlay"``,
        ``"safety-net"``, ``"preserve_tags"``, ``"pseudonym"``, ``"group-length"``.
    """

    path: str
    tag: str
    vr: str
    action: str
    reason: str


@dataclass
class DeidentificationResult:
    """A de-identified dataset and the report of what was done (no PHI in the report).

    Attributes
    ----------
    dataset : pydicom.Dataset
        The de-identified dataset (for streamed files: the header, without pixel data).
    actions : list of ActionRecord
        One record per element visited, at every depth.
    patient_pseudonym : str
        The Patient ID written to the output.
    burned_in_annotation_risk : bool
        BurnedInAnnotation is YES, or absent in a US/SC/OT/XA/ES instance: the pixels may
        carry burned-in text, which this profile does not clean.
    graphics_review_required : bool
        Clean Graphics kept curves or overlays; their pixels need review.
    flags : list of str
        Parser flags (``no_file_meta``, ``deflated`` ...).
    """

    dataset: Dataset
    actions: list[ActionRecord] = field(default_factory=list)
    patient_pseudonym: str = ""
    burned_in_annotation_risk: bool = False
    graphics_review_required: bool = False
    flags: list[str] = field(default_factory=list)
    has_pixel_data: bool = False
    unchanged_sequences: set[int] = field(default_factory=set, repr=False)

    @property
    def removed_tags(self) -> list[str]:
        """Paths of the elements whose original value did not survive (every action but K)."""
        return [a.path for a in self.actions if a.action != Action.KEEP]

    def report(self) -> dict[str, Any]:
        """The action report as plain data; it names tags and actions, never values."""
        counts: dict[str, int] = {}
        for a in self.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        return {
            "patient_pseudonym": self.patient_pseudonym,
            "burned_in_annotation_risk": self.burned_in_annotation_risk,
            "graphics_review_required": self.graphics_review_required,
            "flags": list(self.flags),
            "action_counts": counts,
            "actions": [
                {"path": a.path, "tag": a.tag, "vr": a.vr, "action": a.action, "reason": a.reason}
                for a in self.actions
            ],
        }


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@functools.lru_cache(maxsize=65536)
def _name(tag: int) -> str:
    return keyword_for_tag(tag) or _tag_text(tag)


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


class _Mode:
    NORMAL = 0
    DUMMY = 1  # inside a sequence whose action is D
    CLEAN = 2  # inside a sequence whose action is C


@dataclass
class _Context:
    rules: CompiledRules
    profile: ConfidentialityProfile
    pseudo: Pseudonymizer
    preserve: frozenset[int]
    offset: timedelta | None
    pseudonym: str
    identifiers: _Identifiers
    actions: list[ActionRecord] = field(default_factory=list)
    graphics_kept: bool = False
    changes: int = 0
    unchanged_sequences: set[int] = field(default_factory=set)


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
    ) -> None:
        base = profile or ConfidentialityProfile()
        self.fsync = fsync
        self._marker_cache: dict[tuple[int, bool, bool], bytes] = {}
        if uid_root is not None:
            base = ConfidentialityProfile(**{**base.__dict__, "uid_root": uid_root})
        self.profile = base
        self.preserve_tags = _parse_preserve(preserve_tags)
        self.key_material = resolve_key(key, key_file)
        self._pseudo = Pseudonymizer(self.key_material.key, base.uid_root, base.max_date_shift_days)
        self._rules = compile_rules(base)
        self._parser = parser or DICOMParser()

    # -- documented API -----------------------------------------------------------

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
        return self.deidentify_file_with_report(input_path, output_path, patient_id).removed_tags

    # -- richer API ---------------------------------------------------------------

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
        )
        burned_in = _burned_in_risk(dataset)
        try:
            self._walk(dataset, ctx, "", 0, _Mode.NORMAL)
        except RecursionError as exc:
            raise DeidentificationError("sequence nesting too deep to de-identify") from exc
        except DeidentificationError:
            raise
        except Exception as exc:
            # pydicom's messages quote the offending value; report only the error's type.
            raise DeidentificationError(
                f"an element could not be decoded or replaced ({type(exc).__name__})"
            ) from exc
        self._file_meta(dataset)
        self._mark(dataset)
        return DeidentificationResult(
            dataset=dataset,
            actions=ctx.actions,
            patient_pseudonym=pseudonym,
            burned_in_annotation_risk=burned_in,
            graphics_review_required=ctx.graphics_kept,
            unchanged_sequences=ctx.unchanged_sequences,
            flags=list(flags),
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
        source = os.fspath(input_path)
        try:
            fp = open(source, "rb")  # noqa: SIM115 - closed below, spans the write
        except OSError as exc:
            raise InvalidDICOMError(source, f"cannot open file ({type(exc).__name__})") from exc
        with fp:
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
    ) -> DeidentificationResult:
        """As :meth:`deidentify_file_with_report`, reading from a seekable binary file.

        ``source`` labels error messages (a keyed id or a path the caller chose, never a
        PHI value).
        """
        fp.seek(0, os.SEEK_END)
        size = fp.tell()
        fp.seek(0)
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
            self._save_whole(dataset, output_path, atomic)
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
        self._save_streamed(
            header,
            output_path,
            fp,
            span,
            implicit,
            little,
            spans,
            result.unchanged_sequences,
            atomic,
        )
        return result

    # -- the walk -----------------------------------------------------------------

    def _walk(self, ds: Dataset, ctx: _Context, prefix: str, depth: int, mode: int) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise DeidentificationError(
                f"sequence nesting deeper than {MAX_SEQUENCE_DEPTH} at {prefix or 'top level'}"
            )
        rules = ctx.rules
        tags = list(map(int, ds.keys()))  # plain ints: C-level set and dict lookups
        drop_groups = set()
        for tag in tags:
            group = tag >> 16
            is_overlay_data = (
                0x6000 <= group <= 0x601E and not group & 1 and (tag & 0xFFFF) == 0x3000
            )
            if is_overlay_data and rules.overlay_data == Action.REMOVE:
                drop_groups.add(group)
        creators_kept: dict[int, str] = {}
        for tag in tags:
            raw = ds.get_item(tag)
            if raw is None:
                continue
            vr = _vr_of(raw, tag)
            group = tag >> 16
            element = tag & 0xFFFF
            path = prefix + _name(tag)
            action: Action
            reason = "E.1-1"
            if tag in ctx.preserve:
                self._record(ctx, path, tag, vr, Action.KEEP, "preserve_tags")
                continue
            if element == 0 and group != 0x0002:
                del ds[tag]
                self._record(ctx, path, tag, vr, Action.REMOVE, "group-length")
                continue
            if tag == _TRAILING_PADDING:
                # Padding is defined as meaningless bytes, so it can carry anything.
                del ds[tag]
                self._record(ctx, path, tag, vr, Action.REMOVE, "padding")
                continue
            if group & 1:
                action, reason = self._private_action(ds, tag, ctx, creators_kept)
            elif group in drop_groups:
                action, reason = Action.REMOVE, "overlay"
            elif 0x5000 <= group <= 0x50FF:
                action, reason = rules.curves, "curve"
            elif 0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000):
                action = rules.overlay_data if element == 0x3000 else rules.overlay_comments
                reason = "overlay"
            elif tag in rules.by_tag:
                action = rules.by_tag[tag]
            else:
                action, reason = self._unlisted_action(ds, tag, vr, mode, ctx)
            if (
                action == Action.KEEP
                and reason == "E.1-1"
                and vr in _SCANNED_TEXT_VRS
                and tag not in rules.by_tag
                and ctx.identifiers.found_in(ds.get_item(tag))
            ):
                # An attribute the table does not list, holding this patient's identifiers.
                action, reason = Action.CLEAN, "safety-net"
            if action == Action.CLEAN and _foreign_vr(tag, vr):
                # Cleaning follows the attribute's VR (a date is shifted, a text scrubbed);
                # a value that arrived under another VR cannot be trusted: a dummy instead.
                action, reason = Action.DUMMY, "vr-mismatch"
            if action == Action.KEEP and vr != "SQ":
                # Kept as read: no decoding, and the writer can copy its bytes as they were.
                self._record(ctx, path, tag, vr, action, reason)
                continue
            if action == Action.REMOVE:
                del ds[tag]
                self._record(ctx, path, tag, vr, action, reason)
                continue
            elem = ds[tag]
            if tag in (_PATIENT_ID, _PATIENT_NAME) and depth == 0:
                if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC"):
                    elem.value = ctx.pseudonym[: _MAX_LEN["PN"]]
                else:  # the element arrived with a foreign VR: that VR's dummy instead
                    elem.value = self._dummy(elem, vr, path, ctx)
                self._record(ctx, path, tag, vr, Action.DUMMY, "pseudonym")
                continue
            if action == Action.CLEAN and reason in ("curve", "overlay"):
                ctx.graphics_kept = True
            self._apply(ds, elem, tag, vr, action, reason, path, ctx, depth, mode)
        if creators_kept or any(t >> 16 & 1 for t in tags):
            _drop_orphan_creators(ds)

    def _private_action(
        self, ds: Dataset, tag: int, ctx: _Context, creators_kept: dict[int, str]
    ) -> tuple[Action, str]:
        rules = ctx.rules
        if rules.private != Action.CLEAN:
            return Action.REMOVE, "private"
        group, element = tag >> 16, tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            creator = _text(ds[tag].value)
            if any(c == creator and g == group for c, g, _ in rules.safe_private):
                creators_kept[tag] = creator
                return Action.KEEP, "private"
            return Action.REMOVE, "private"
        if element < 0x1000:
            return Action.REMOVE, "private"
        creator_tag = (group << 16) | (element >> 8)
        if creator_tag not in ds:
            return Action.REMOVE, "private"
        creator = _text(ds[creator_tag].value)
        if (creator, group, element & 0xFF) in rules.safe_private:
            return Action.KEEP, "private"
        return Action.REMOVE, "private"

    def _unlisted_action(
        self, ds: Dataset, tag: int, vr: str, mode: int, ctx: _Context
    ) -> tuple[Action, str]:
        if vr == "SQ":
            return (Action.DUMMY if mode == _Mode.DUMMY else Action.KEEP), "E.1-1"
        if mode != _Mode.NORMAL and tag in _CODE_STRUCTURE:
            return Action.KEEP, "E.1-1"
        if not dictionary_has_tag(tag) and (tag >> 16) != 0x0002:
            return Action.REMOVE, "safety-net"
        if vr == "PN":
            return Action.DUMMY, "safety-net"
        if vr in _DATE_VRS:
            if ctx.profile.retain_longitudinal_full_dates:
                return Action.KEEP, "safety-net"
            if ctx.offset is not None:
                return Action.CLEAN, "safety-net"
            return Action.ZERO, "safety-net"
        if vr == "UI":
            keyword = keyword_for_tag(tag)
            if ctx.profile.retain_uids or keyword.endswith(("ClassUID", "SyntaxUID")):
                return Action.KEEP, "safety-net"
            value = ds[tag].value
            values = value if isinstance(value, MultiValue | list) else [value]
            if all((not v) or str(v) in UID_dictionary for v in values):
                return Action.KEEP, "safety-net"
            return Action.UID, "safety-net"
        if mode == _Mode.DUMMY and vr in _TEXT_VRS | {"PN"}:
            return Action.DUMMY, "safety-net"
        if mode == _Mode.CLEAN and vr in _TEXT_VRS:
            return Action.CLEAN, "safety-net"
        if vr in _FREE_TEXT_VRS:
            return Action.REMOVE, "safety-net"
        return Action.KEEP, "E.1-1"

    def _apply(
        self,
        ds: Dataset,
        elem: DataElement,
        tag: int,
        vr: str,
        action: Action,
        reason: str,
        path: str,
        ctx: _Context,
        depth: int,
        mode: int,
    ) -> None:
        if action == Action.REMOVE:
            del ds[tag]
        elif vr == "SQ":
            if action == Action.ZERO:
                elem.value = DicomSequence([])
            else:
                child = {Action.DUMMY: _Mode.DUMMY, Action.CLEAN: _Mode.CLEAN}.get(action, mode)
                before = ctx.changes
                for index, item in enumerate(elem.value):
                    self._walk(item, ctx, f"{path}[{index}].", depth + 1, child)
                if depth == 0 and action == Action.KEEP and ctx.changes == before:
                    # Nothing inside changed: the writer may copy the original bytes.
                    ctx.unchanged_sequences.add(tag)
        elif action == Action.ZERO:
            elem.value = elem.empty_value
        elif action == Action.DUMMY:
            elem.value = self._dummy(elem, vr, path, ctx)
        elif action == Action.UID:
            # A UID attribute that arrived with another VR gets that VR's dummy instead.
            if vr == "UI":
                elem.value = self._map_uids(elem.value, ctx)
            else:
                elem.value = self._dummy(elem, vr, path, ctx)
        elif action == Action.CLEAN:
            self._clean(elem, vr, path, ctx)
        self._record(ctx, path, tag, vr, action, reason)

    def _dummy(self, elem: DataElement, vr: str, path: str, ctx: _Context) -> Any:
        if vr == "UI":
            original = _text(elem.value) or f"dummy:{path}"
            return ctx.pseudo.uid(original)
        if vr in ("DA", "DT") and ctx.offset is not None and not elem.is_empty:
            return self._shift(elem.value, vr, ctx.offset)
        return _DUMMY.get(vr, b"\x00\x00")

    def _map_uids(self, value: Any, ctx: _Context) -> Any:
        if isinstance(value, MultiValue | list):
            return [ctx.pseudo.uid(str(v)) if v else v for v in value]
        return ctx.pseudo.uid(str(value)) if value else value

    def _shift(self, value: Any, vr: str, offset: timedelta) -> Any:
        shift = self._pseudo.shift_date if vr == "DA" else self._pseudo.shift_datetime
        if isinstance(value, MultiValue | list):
            return [shift(str(v), offset) if v else v for v in value]
        return shift(str(value), offset) if value else value

    def _clean(self, elem: DataElement, vr: str, path: str, ctx: _Context) -> None:
        if elem.is_empty:
            return
        if vr in _DATE_VRS:
            if ctx.offset is not None:
                elem.value = self._shift(elem.value, vr, ctx.offset)
            else:
                elem.value = elem.empty_value
        elif vr == "TM":
            return
        elif vr == "PN":
            elem.value = _DUMMY["PN"]
        elif vr == "UI":
            elem.value = self._map_uids(elem.value, ctx)
        elif vr in _TEXT_VRS:
            if isinstance(elem.value, MultiValue | list):
                elem.value = [_clean_text(str(v), ctx.identifiers, vr) for v in elem.value]
            else:
                elem.value = _clean_text(str(elem.value), ctx.identifiers, vr)

    @staticmethod
    def _record(
        ctx: _Context, path: str, tag: int, vr: str, action: Action | str, reason: str
    ) -> None:
        ctx.actions.append(ActionRecord(path, _tag_text(tag), vr, str(action), reason))
        if action != Action.KEEP:
            ctx.changes += 1

    # -- attributes the standard requires -------------------------------------------

    def _mark(self, ds: Dataset) -> None:
        profile = self.profile
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = profile.method_description()
        codes = [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in profile.enabled_options()]
        items = []
        for code in codes:
            item = Dataset()
            item.CodeValue = code.value
            item.CodingSchemeDesignator = code.scheme
            item.CodeMeaning = code.meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = DicomSequence(items)
        if profile.retain_longitudinal_modified_dates:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        elif profile.retain_longitudinal_full_dates:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"

    def _file_meta(self, ds: Dataset) -> None:
        meta = getattr(ds, "file_meta", None)
        if meta is None:
            return
        for tag in list(meta.keys()):
            if int(tag) in (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102):
                del meta[tag]
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta and not self.profile.retain_uids:
            meta.MediaStorageSOPInstanceUID = self._pseudo.uid(str(meta.MediaStorageSOPInstanceUID))
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"MEDPIPE_{__version__}"[:16]

    # -- writing ------------------------------------------------------------------

    def _marker_bytes(self, ds: Dataset, tag: int, implicit: bool, little: bool) -> bytes:
        """The encoded de-identification markers: the same for every file of a profile."""
        key = (tag, implicit, little)
        cached = self._marker_cache.get(key)
        if cached is None:
            buffer = DicomBytesIO()
            buffer.is_implicit_VR = implicit
            buffer.is_little_endian = little
            write_data_element(buffer, ds[tag])
            cached = self._marker_cache[key] = buffer.getvalue()
        return cached

    def _save_whole(
        self, dataset: Dataset, output_path: str | os.PathLike[str], atomic: bool
    ) -> None:
        dataset.preamble = b"\x00" * 128  # never copied: it may hold anything
        try:
            _ensure_file_meta(dataset, self._parser.get_transfer_syntax(dataset))
            with _output(output_path, atomic, self.fsync) as out:
                dataset.save_as(out, enforce_file_format=True)
        except (ValueError, TypeError, AttributeError, OSError, struct.error) as exc:
            raise DeidentificationError(
                f"cannot encode the de-identified dataset ({type(exc).__name__})"
            ) from exc

    def _save_streamed(
        self,
        header: Dataset,
        output_path: str | os.PathLike[str],
        source: IO[bytes],
        span: _PixelSpan | None,
        implicit: bool,
        little: bool,
        spans: dict[int, tuple[RawDataElement | None, int, int]],
        unchanged: set[int],
        atomic: bool,
    ) -> None:
        """Write the header (kept elements copied as bytes), then the pixel data, then the
        elements that followed it."""
        _ensure_file_meta(header, _ts_for(implicit, little))
        meta = header.file_meta
        out_ts = pydicom.uid.UID(meta.TransferSyntaxUID)
        out_implicit = out_ts.is_implicit_VR if out_ts.is_transfer_syntax else implicit
        out_little = out_ts.is_little_endian if out_ts.is_transfer_syntax else little
        if (out_implicit, out_little) != (implicit, little):
            spans = {}  # encoded differently from what the meta says: re-encode everything
            for elem in header:
                _ = elem.value
        charset = header.get("SpecificCharacterSet")
        body = DicomBytesIO()
        body.is_little_endian = out_little
        body.is_implicit_VR = out_implicit
        tail = Dataset()
        try:
            source.seek(0)
            original = source.read(max((end for _, _, end in spans.values()), default=0))
            for tag in sorted(header.keys()):
                if tag >= 0x7FE00008:
                    tail.add(header.get_item(tag))
                    continue
                item: Any = header.get_item(tag)
                known = spans.get(tag)
                if known is not None and (item is known[0] or tag in unchanged):
                    body.write(original[known[1] : known[2]])
                elif tag in _MARKER_TAGS:
                    body.write(self._marker_bytes(header, tag, out_implicit, out_little))
                else:
                    write_data_element(body, header[tag], charset)
            with _output(output_path, atomic, self.fsync) as out:
                # The preamble may hold anything (a TIFF header, text): never copied.
                out.write(b"\x00" * 128)
                out.write(b"DICM")
                meta_io = DicomBytesIO()
                meta_io.is_little_endian = True
                meta_io.is_implicit_VR = False
                write_file_meta_info(meta_io, meta, enforce_standard=True)
                out.write(meta_io.getvalue())
                out.write(body.getvalue())
                if span is not None:
                    _write_pixel_header(out, span, header, out_implicit, out_little)
                    source.seek(span.value_start)
                    _copy_exact(source, out, span.value_end - span.value_start)
                if len(tail):
                    writer = DicomFileLike(out)
                    writer.is_little_endian = out_little
                    writer.is_implicit_VR = out_implicit
                    write_dataset(writer, tail, charset)
        except (ValueError, TypeError, AttributeError, OSError, struct.error) as exc:
            raise DeidentificationError(
                f"cannot encode the de-identified dataset ({type(exc).__name__})"
            ) from exc


# -- helpers --------------------------------------------------------------------------


def _raw_spans(
    ds: Dataset, ranges: dict[int, tuple[int, int]], implicit: bool, little: bool
) -> dict[int, tuple[RawDataElement | None, int, int]]:
    """Byte ranges of the top-level elements, with the raw element still in ``ds``.

    The ranges come from the parser's structure walk. An element is listed only when it
    is encoded like the dataset; when any raw element is not (a file whose meta says
    Explicit VR but whose data is implicit), sequences are not listed at all.
    """
    spans: dict[int, tuple[RawDataElement | None, int, int]] = {}
    mixed = False
    for tag, (first, last) in ranges.items():
        raw = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            if raw.is_implicit_VR != implicit or raw.is_little_endian != little:
                mixed = True
                continue
            spans[tag] = (raw, first, last)
        elif raw is not None:
            spans[tag] = (None, first, last)
    if mixed:
        spans = {tag: item for tag, item in spans.items() if item[0] is not None}
    return spans


@functools.lru_cache(maxsize=4096)
def _dictionary_vrs(tag: int) -> frozenset[str]:
    if not dictionary_has_tag(tag):
        return frozenset()
    return frozenset(str(dictionary_VR(tag)).split(" or "))


def _foreign_vr(tag: int, vr: str) -> bool:
    """Whether a known attribute arrived with a VR its dictionary entry does not allow."""
    allowed = _dictionary_vrs(tag)
    return bool(allowed) and vr not in allowed and vr != "UN"


def _vr_of(elem: DataElement | RawDataElement, tag: int) -> str:
    """The element's VR, from the element when it says, else from the dictionary."""
    vr = elem.VR
    if vr and vr != "UN":
        return str(vr)
    if dictionary_has_tag(tag):
        return str(dictionary_VR(tag)).split(" or ")[0]
    return str(vr or "UN")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    return str(value).strip(" \x00")


def _value(ds: Dataset, tag: int) -> str:
    elem = peek(ds, tag)
    return "" if elem is None or elem.VR == "SQ" else _text(elem.value)


def _patient_key(ds: Dataset) -> str:
    """The original patient identity used to key the pseudonym and the date offset."""
    pid = _value(ds, 0x00100020)
    if pid:
        issuer = _value(ds, 0x00100021)
        return f"id:{issuer}:{pid}" if issuer else f"id:{pid}"
    name = _value(ds, 0x00100010)
    birth = _value(ds, 0x00100030)
    if name or birth:
        return f"name:{name}:{birth}"
    return f"study:{_value(ds, 0x0020000D)}"


class _Identifiers:
    """This dataset's identifying strings, decoded only if some text is to be cleaned.

    The raw elements (or the values of decoded ones) are captured before the walk edits
    anything, so the strings are the originals whenever they are finally needed.
    """

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._captured: list[Any] = []
        for tag in _IDENTIFIER_TAGS:
            item = ds.get_item(tag)
            if item is None:
                continue
            self._captured.append(item if isinstance(item, RawDataElement) else item.value)
        self._strings: list[str] | None = None
        self._needles: tuple[tuple[str, ...], tuple[bytes, ...]] | None = None

    def __iter__(self) -> Iterator[str]:
        if self._strings is None:
            self._strings = self._decode()
        return iter(self._strings)

    def found_in(self, elem: DataElement | RawDataElement | None) -> bool:
        """Whether a kept text element holds one of these identifiers as a whole word.

        Raw values are searched as bytes, so a clean value is never decoded. Plain
        substring search: a regex per file would cost more than the whole walk.
        """
        if elem is None or elem.value is None:
            return False
        if self._needles is None:
            words = {w.lower() for w in self if len(w) >= 3 and not (w.isdigit() and len(w) < 6)}
            self._needles = (
                tuple(words),
                tuple({w.encode(e, "ignore") for w in words for e in ("utf-8", "latin-1")}),
            )
        value = elem.value
        if isinstance(value, bytes):
            return _contains_word(value.lower(), self._needles[1])
        return _contains_word(str(value).lower(), self._needles[0])

    def _decode(self) -> list[str]:
        from pydicom.dataelem import convert_raw_data_element

        found: set[str] = set()
        for item in self._captured:
            value = item
            if isinstance(item, RawDataElement):
                try:
                    value = convert_raw_data_element(
                        item, encoding=self._ds._character_set, ds=self._ds
                    ).value
                except Exception:  # noqa: S112 - an undecodable value cleans nothing
                    continue
            if isinstance(value, DicomSequence):
                continue
            values = value if isinstance(value, MultiValue | list) else [value]
            for v in values:
                text = _text(v)
                if len(text) >= 2:
                    found.add(text)
                    for part in re.split(r"[\^=\s,]+", text):
                        if len(part) >= 2:
                            found.add(part)
        return sorted(found, key=len, reverse=True)


def _contains_word(haystack: Any, needles: tuple[Any, ...]) -> bool:
    """Whether any needle occurs in ``haystack`` not flanked by letters or digits."""
    for needle in needles:
        if not needle:
            continue
        start = haystack.find(needle)
        while start != -1:
            end = start + len(needle)
            before = haystack[start - 1 : start] if start else haystack[:0]
            after = haystack[end : end + 1]
            if not before.isalnum() and not after.isalnum():
                return True
            start = haystack.find(needle, start + 1)
    return False


def _clean_text(text: str, identifiers: Iterable[str], vr: str) -> str:
    """Remove identifiers of this dataset, dates and long numbers from free text."""
    out = text
    for ident in identifiers:
        out = re.sub(re.escape(ident), "", out, flags=re.IGNORECASE)
    out = _DATE_PATTERN.sub("", out)
    out = _LONG_NUMBER.sub("", out)
    out = re.sub(r"\s{2,}", " ", out).strip(" ,;:-^")
    limit = _MAX_LEN.get(vr)
    if limit:
        out = out[:limit]
    if vr == "CS":
        out = re.sub(r"[^A-Z0-9 _]", "", out.upper())
    return out


def _burned_in_risk(ds: Dataset) -> bool:
    burned = _value(ds, 0x00280301).upper()
    if burned == "YES":
        return True
    if burned == "NO":
        return False
    return _value(ds, 0x00080060).upper() in _BURNED_IN_RISK_MODALITIES


def _drop_orphan_creators(ds: Dataset) -> None:
    """Remove private creator elements whose block no longer holds any element."""
    present = list(ds.keys())
    used = {(t >> 16, (t & 0xFFFF) >> 8) for t in present if t >> 16 & 1 and (t & 0xFFFF) >= 0x1000}
    for tag in present:
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1 and 0x0010 <= element <= 0x00FF and (group, element) not in used:
            del ds[tag]


def _encoding(ds: Dataset) -> tuple[bool, bool]:
    implicit, little = ds.original_encoding
    if implicit is None or little is None:
        return True, True
    return bool(implicit), bool(little)


def _ts_for(implicit: bool, little: bool) -> str:
    if implicit:
        return pydicom.uid.ImplicitVRLittleEndian
    return pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian


def _ensure_file_meta(ds: Dataset, transfer_syntax: str) -> None:
    """Give ``ds`` complete File Meta Information, matching its SOP Class and Instance."""
    meta = getattr(ds, "file_meta", None)
    if meta is None or not isinstance(meta, FileMetaDataset):
        new = FileMetaDataset()
        if meta is not None:
            for elem in meta:
                new.add(elem)
        ds.file_meta = new
        meta = new
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = pydicom.uid.UID(transfer_syntax)
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    elif not meta.get("MediaStorageSOPClassUID"):
        raise DeidentificationError(
            "SOP Class UID (0008,0016) is missing: cannot write a conformant DICOM file"
        )
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"MEDPIPE_{__version__}"[:16]


@dataclass(frozen=True)
class _PixelSpan:
    """Where the pixel data element's value lies in the input file."""

    tag: int
    value_start: int
    value_end: int
    undefined_length: bool


_VR_CODES = frozenset(
    v.encode()
    for v in (
        "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC "
        "UI UL UN UR US UT UV"
    ).split()
)


def _pixel_span(fp: IO[bytes], start: int, size: int, little: bool, source: str) -> _PixelSpan:
    """Locate the value of the pixel data element that starts at ``start``.

    The element's own encoding is detected (some files say Explicit VR in their meta
    but encode the dataset implicitly, which pydicom also tolerates).
    """
    endian = "<" if little else ">"
    fp.seek(start)
    head = fp.read(12)
    if len(head) < 8:
        raise InvalidDICOMError(source, "truncated: inside the pixel data element header")
    group, element = struct.unpack(endian + "HH", head[:4])
    tag = (group << 16) | element
    if head[4:6] in _VR_CODES:
        if head[4:6] in _LONG_VRS:
            if len(head) < 12:
                raise InvalidDICOMError(source, "truncated: inside the pixel data element header")
            (length,) = struct.unpack(endian + "L", head[8:12])
            value_start = start + 12
        else:
            (length,) = struct.unpack(endian + "H", head[6:8])
            value_start = start + 8
    else:
        (length,) = struct.unpack(endian + "L", head[4:8])
        value_start = start + 8
    if length != 0xFFFFFFFF:
        end = value_start + length
        if end > size:
            raise InvalidDICOMError(source, "truncated: mid pixel data")
        return _PixelSpan(tag, value_start, end, False)
    pos = value_start
    while True:
        fp.seek(pos)
        item = fp.read(8)
        if len(item) < 8:
            raise InvalidDICOMError(source, "truncated: encapsulated pixel data without delimiter")
        group, element, item_length = struct.unpack(endian + "HHL", item)
        if (group, element) == (0xFFFE, 0xE0DD):
            return _PixelSpan(tag, value_start, pos + 8, True)
        if (group, element) != (0xFFFE, 0xE000) or item_length == 0xFFFFFFFF:
            raise InvalidDICOMError(source, "malformed encapsulated pixel data")
        pos += 8 + item_length
        if pos > size:
            raise InvalidDICOMError(source, "truncated: mid pixel data fragment")


def _write_pixel_header(
    out: IO[bytes], span: _PixelSpan, header: Dataset, implicit: bool, little: bool
) -> None:
    """Write the pixel data element's tag and length in the output encoding."""
    endian = "<" if little else ">"
    length = 0xFFFFFFFF if span.undefined_length else span.value_end - span.value_start
    out.write(struct.pack(endian + "HH", span.tag >> 16, span.tag & 0xFFFF))
    if implicit:
        out.write(struct.pack(endian + "L", length))
        return
    if span.tag == 0x7FE00008:
        vr = b"OF"
    elif span.tag == 0x7FE00009:
        vr = b"OD"
    elif span.undefined_length or int(header.get("BitsAllocated", 16) or 16) <= 8:
        vr = b"OB"
    else:
        vr = b"OW"
    out.write(vr + b"\x00\x00" + struct.pack(endian + "L", length))


_MAX_TAIL_BYTES = 64 * 1024 * 1024


def _read_tail(
    fp: IO[bytes], start: int, size: int, implicit: bool, little: bool, source: str
) -> Dataset:
    """Parse the (small) elements that follow the pixel data, such as trailing padding."""
    if size - start > _MAX_TAIL_BYTES:
        raise InvalidDICOMError(source, "more than 64 MiB of elements after the pixel data")
    fp.seek(start)
    data = fp.read(size - start)
    try:
        tail = read_dataset(BytesIO(data), implicit, little)
        for elem in tail:
            _ = elem.value
    except (EOFError, ValueError, TypeError, KeyError, NotImplementedError, struct.error) as exc:
        raise InvalidDICOMError(source, "malformed elements after the pixel data") from exc
    return tail


@contextlib.contextmanager
def _output(path: str | os.PathLike[str], atomic: bool, fsync: bool) -> Iterator[IO[bytes]]:
    """Open the output: atomically (temp file and rename) or in place, removed on failure."""
    if atomic:
        with atomic_write(path, fsync=fsync) as fh:
            yield fh
        return
    try:
        with open(path, "wb") as fh:
            yield fh
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise


def _copy_exact(src: IO[bytes], dst: IO[bytes], length: int, chunk: int = 1 << 20) -> None:
    remaining = length
    while remaining > 0:
        data = src.read(min(chunk, remaining))
        if not data:
            raise DeidentificationError("input changed while it was being copied")
        dst.write(data)
        remaining -= len(data)


# pydicom keeps unknown VRs as UN; make sure known tags get their dictionary VR back.
pydicom_config.replace_un_with_known_vr = True
