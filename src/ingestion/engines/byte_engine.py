"""The byte-level engine: one pass over a Part 10 file's bytes, no ``Dataset`` built.

For Explicit and Implicit VR Little Endian (native or encapsulated pixel data) the file
is read into one buffer (mapped, when large), its element headers walked with
:mod:`src.ingestion.encoding.elements`, and each element looked up once in the compiled rules
(:mod:`src.ingestion.annex_e.element_rules`). Runs of kept elements are copied as one slice,
replaced values come from :mod:`src.ingestion.engines.value_actions`, and the pixel data is
copied in large blocks without being decoded. The report records only what changed.

What this engine does not handle (Explicit VR Big Endian, Deflated, headerless data,
directory records, overlays held in the pixels' high bits, curves under Clean Graphics,
character sets whose bytes cannot be searched as they are, and anything malformed)
raises :class:`~src.ingestion.encoding.elements.NotHandled` before anything is written, and the
façade gives the file to the pydicom path (:mod:`src.ingestion.engines.pydicom_engine`), which
is also the oracle of the differential test.
"""

from __future__ import annotations

import contextlib
import mmap
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from src.ingestion.annex_e.action_report import JPEG_METADATA_REMOVED, DeidentificationResult
from src.ingestion.annex_e.element_rules import HISTORY_TAGS
from src.ingestion.annex_e.iod_types import types_for_sop_class
from src.ingestion.annex_e.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.annex_e.safety_net import (
    _Identifiers,
)
from src.ingestion.encoding.elements import (
    NotHandled,
    elements_of,
    read_part10,
)
from src.ingestion.encoding.jpeg_segments import (
    JPEG_SYNTAXES,
    VIDEO_SYNTAXES,
    strip_encapsulated,
)
from src.ingestion.encoding.structure import check_contents, encapsulates
from src.ingestion.engines.byte_walk import ByteWalker, FileState
from src.ingestion.engines.instance_facts import names_anywhere, read_facts
from src.ingestion.engines.part10_bytes import (
    dataset_of,
    earlier_history,
    file_meta_bytes,
    marker_elements,
    patient_identity_elements,
    pixel_header,
    raw_dataset,
    rebuilt_meta,
    write_output,
)
from src.ingestion.engines.plan import Plan
from src.ingestion.engines.raw_header import RawHeader, top_index
from src.ingestion.engines.value_actions import (
    ValueActions,
)

if TYPE_CHECKING:
    pass

_MAPPED_ABOVE = 16 * 1024 * 1024


def _nothing() -> None:
    return None


_TIMEZONE_OFFSET = 0x00080201


class ByteEngine:
    """Applies one profile's compiled rules to files, at the byte level.

    Parameters
    ----------
    rules, profile : CompiledRules, ConfidentialityProfile
    pseudo : Pseudonymizer
    preserve : frozenset of int
        The ``preserve_tags``.
    """

    def __init__(
        self,
        rules: CompiledRules,
        profile: ConfidentialityProfile,
        pseudo: Pseudonymizer,
        preserve: frozenset[int],
    ) -> None:
        self.rules = rules
        self.profile = profile
        self.pseudo = pseudo
        self.preserve = preserve
        keep_offset = rules.by_tag.get(_TIMEZONE_OFFSET) == Action.KEEP
        self.values = ValueActions(pseudo, keep_utc_offset=keep_offset)
        self._walker = ByteWalker(rules, profile, preserve, self.values)
        self._patients: dict[tuple[str, str], _Identifiers] = {}
        self._markers: dict[tuple[bool, bool], list[tuple[int, str, bytes, bytes]]] = {}

    def plan(
        self,
        fp: IO[bytes],
        size: int,
        patient_id: str | None,
        *,
        original: bool,
        fsync: bool,
        describe: bool | str,
    ) -> Plan:
        """Read and decide the Part 10 file ``fp``: the first phase (nothing written).

        Parameters
        ----------
        original : bool
            Give the plan the original's header (``Plan.original``, built on first use).
        describe : bool or ``"header"``
            Describe the output: ``True`` gives the result its ``dataset``;
            ``"header"`` only its raw :class:`RawHeader` (``result.header``) and a
            ``result.describe_output()`` that builds the dataset when asked.

        Raises
        ------
        NotHandled
            When the file is for the pydicom path.
        """
        mapped = None
        if size > _MAPPED_ABOVE:
            try:
                mapped = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError, AttributeError) as exc:
                raise NotHandled from exc
            buf: Any = mapped

            def close() -> None:
                # Slices still held by a traceback (declined mid-walk): closed when freed.
                with contextlib.suppress(BufferError):
                    mapped.close()

        else:
            fp.seek(0)
            buf = fp.read()
            close = _nothing
        try:
            return self._plan(buf, fp, patient_id, original, fsync, describe, close)
        except BaseException:
            close()
            raise

    def _plan(
        self,
        buf: Any,
        fp: IO[bytes],
        patient_id: str | None,
        want_original: bool,
        fsync: bool,
        describe: bool | str,
        close: Callable[[], None],
    ) -> Plan:
        part = read_part10(buf)
        implicit = part.implicit
        top = elements_of(buf, part.dataset_start, len(buf), implicit)
        # The same structural checks as the pydicom path's parser (PS3.5 7.1, 7.5, A.4),
        # inside the sequences the top-level walk stepped over: malformed input is
        # refused with its data reason, never written.
        check_contents(
            buf, "input", top, implicit=implicit, encapsulated=encapsulates(part.transfer_syntax)
        )
        by_tag = top_index(top)  # one index of the top level, for the facts and the writer
        facts = read_facts(buf, by_tag)
        pixel_value, at_risk = _pixel_stream(buf, by_tag, part.transfer_syntax, facts.at_risk)
        key = facts.patient_key
        pseudonym = patient_id if patient_id is not None else self.pseudo.patient_id(key)
        offset = None
        if self.profile.retain_longitudinal_modified_dates:
            offset = self.pseudo.date_offset(key)
        values = facts.identifiers
        if self.profile.cleans_text:
            values = values + names_anywhere(buf, top, implicit, facts.codec)
        state = FileState(
            buf,
            implicit,
            facts.codec,
            types_for_sop_class(facts.sop_class_uid),
            pseudonym,
            offset,
            self._identifiers(values, facts.charset),
        )
        history = [e for e in top if e.tag in HISTORY_TAGS]
        earlier: list[str] = []
        kept: list[bytes] = []
        if history:  # walked first, as the pydicom path walks them before marking
            walked: list[Any] = []
            self._walker.walk(state, history, (), "", 0, walked, None, False, replaced=frozenset())
            earlier, kept = earlier_history(b"".join(walked), implicit, facts.codec, self.profile)
        if earlier or kept:
            markers = marker_elements(self.profile, implicit, at_risk, earlier, kept, facts.codec)
        else:
            markers = self._marker_elements(implicit, at_risk)
        if 0x00100010 not in by_tag or 0x00100020 not in by_tag:
            added = patient_identity_elements(by_tag, pseudonym, implicit, facts.codec)
            markers = sorted([*markers, *added], key=lambda m: m[0])
        pieces: list[Any] = []
        pixel = self._walker.walk(state, top, (), "", 0, pieces, markers, bool(describe))
        bits = state.top.get(0x00280100, ("US", b""))[1] if pixel is not None else b""
        meta = rebuilt_meta(part, state.top, self.pseudo, self.profile.retain_uids)
        head = pixel_header(pixel, implicit, bits)
        built: list[Any] = []

        def original() -> Any:  # the pydicom view, built once and only when asked for
            if not built:
                built.append(dataset_of(buf, top, part, implicit))
            return built[0]

        header = RawHeader(buf, by_tag, implicit, part.meta)

        def describe_output() -> Any:
            return raw_dataset(state.top, meta, implicit, buf, built[0] if built else None)

        def write(output_path: Any, atomic: bool, checksum: bool) -> DeidentificationResult:
            digest = write_output(
                output_path,
                buf,
                fp,
                file_meta_bytes(meta),
                pieces,
                head,
                pixel,
                atomic=atomic,
                fsync=fsync,
                checksum=checksum,
                pixel_value=pixel_value,
            )
            dataset = describe_output() if describe is True else None
            result = DeidentificationResult(
                dataset=dataset,
                actions=state.records,
                patient_pseudonym=pseudonym,
                burned_in_annotation_risk=at_risk,
                graphics_review_required=state.graphics,
            )
            result.kept = state.kept
            result.history_kept = bool(earlier or kept)
            result.output_blake3 = digest
            result.has_pixel_data = pixel is not None
            if pixel_value is not None:
                result.actions.append(JPEG_METADATA_REMOVED)
            if describe:
                result.header = RawHeader(buf, state.top, implicit, meta)
                result.describe_output = describe_output
            return result

        return Plan(original if want_original else None, "bytes", write, close, header=header)

    def _marker_elements(
        self, implicit: bool, at_risk: bool
    ) -> list[tuple[int, str, bytes, bytes]]:
        key = (implicit, at_risk)
        found = self._markers.get(key)
        if found is None:
            found = self._markers[key] = marker_elements(self.profile, implicit, at_risk)
        return found

    def _identifiers(self, values: list[tuple[int, Any]], charset: str) -> _Identifiers:
        """This file's identifiers; the files of one patient share them."""
        key = (charset, repr(values))
        found = self._patients.get(key)
        if found is None:
            found = _Identifiers.of_values(values, charset)
            if len(self._patients) > 4096:
                self._patients.clear()
            self._patients[key] = found
        return found


def _pixel_stream(
    buf: Any, by_tag: dict[int, Any], transfer_syntax: str, at_risk: bool
) -> tuple[bytes | None, bool]:
    """The encapsulated pixel data without its JPEG metadata segments (None: unchanged),
    and whether the pixels are at risk: also for a video stream (its headers and SEI are
    not cleaned) and for JPEG metadata that an Extended Offset Table keeps in place."""
    if transfer_syntax in VIDEO_SYNTAXES:
        return None, True
    if transfer_syntax not in JPEG_SYNTAXES:
        return None, at_risk
    pixel = by_tag.get(0x7FE00010)
    if pixel is None or not pixel.undefined:
        return None, at_risk
    stripped = strip_encapsulated(bytes(buf[pixel.value_start : pixel.value_end]))
    if stripped is not None and 0x7FE00001 in by_tag:
        return None, True  # its offsets would move: the claim is not made instead
    return stripped, at_risk


__all__ = ["ByteEngine", "NotHandled"]
