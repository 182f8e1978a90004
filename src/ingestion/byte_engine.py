"""The byte-level engine: one pass over a Part 10 file's bytes, no ``Dataset`` built.

For Explicit and Implicit VR Little Endian (native or encapsulated pixel data) the file
is read into one buffer (mapped, when large), its element headers walked with
:mod:`src.ingestion.elements`, and each element looked up once in the compiled rules
(:mod:`src.ingestion.element_rules`). Runs of kept elements are copied as one slice,
replaced values come from :mod:`src.ingestion.value_actions`, and the pixel data is
copied in large blocks without being decoded. The report records only what changed.

What this engine does not handle (SR content to be dummied or cleaned, directory
records, overlays, text to be cleaned of identifiers, an earlier de-identification
history, unusual encodings) raises :class:`~src.ingestion.elements.NotHandled` before
anything is written, and the façade gives the file to the pydicom path, which is also
the oracle of the differential test.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset

from src.ingestion.action_report import ActionRecord, DeidentificationResult
from src.ingestion.codes import standard_meaning
from src.ingestion.element_rules import (
    CLEANED_AS_TEXT,
    MARKER_TAGS,
    Kind,
    Rule,
    decide,
    pseudonym_as_text,
)
from src.ingestion.elements import (
    LONG_VRS,
    PIXEL_TAGS,
    Element,
    NotHandled,
    element_at,
    items,
    read_part10,
)
from src.ingestion.iod_types import PathTypes, types_for_sop_class
from src.ingestion.part10_bytes import (
    dataset_of,
    file_meta_bytes,
    marker_elements,
    pixel_header,
    raw_dataset,
    rebuilt_meta,
    write_output,
)
from src.ingestion.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.pseudonyms import Pseudonymizer
from src.ingestion.safety_net import (
    _BYTE_SEARCHABLE,
    _IDENTIFIER_TAGS,
    _contains_word,
    _Identifiers,
    burned_in_risk_of,
)
from src.ingestion.value_actions import (
    ValueActions,
    clean_text,
    dummy,
    join,
    multiplicity,
    pad,
    split,
)
from src.ingestion.vrs import _foreign_vr
from src.ingestion.walk import MAX_SEQUENCE_DEPTH, _Mode, _name, _tag_text

_MAPPED_ABOVE = 16 * 1024 * 1024
_SHORT_HEADER = struct.Struct("<HH2sH")
_LONG_HEADER = struct.Struct("<HH2sHL")
_IMPLICIT_HEADER = struct.Struct("<HHL")
_ITEM = struct.Struct("<HHL")
_TIMEZONE_OFFSET = 0x00080201
_SOP_CLASS, _SOP_INSTANCE = 0x00080016, 0x00080018
_PATIENT_KEY_TAGS = (0x00100020, 0x00100021, 0x00100010, 0x00100030, 0x0020000D)


@dataclass
class _File:
    """The per-file state of one pass."""

    buf: Any
    implicit: bool
    codec: str
    iod: PathTypes | None
    pseudonym: str
    offset: timedelta | None
    identifiers: _Identifiers
    records: list[ActionRecord] = field(default_factory=list)
    kept: int = 0
    graphics: bool = False
    needles: tuple[bytes, ...] | None = None
    top: dict[int, tuple[str, bytes]] = field(default_factory=dict)  # output, for the index


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
        keep_offset = rules.by_tag.get(_TIMEZONE_OFFSET) in (Action.KEEP, Action.CLEAN)
        self.values = ValueActions(pseudo, keep_utc_offset=keep_offset)
        self._tables: dict[tuple[int, tuple[int, ...], int], dict[tuple[int, bytes], Rule]] = {}
        self._markers: dict[tuple[bool, bool], list[tuple[int, str, bytes, bytes]]] = {}

    def run(
        self,
        fp: IO[bytes],
        size: int,
        output_path: Any,
        patient_id: str | None,
        *,
        before: Callable[[Dataset], None] | None,
        atomic: bool,
        fsync: bool,
        describe: bool,
    ) -> DeidentificationResult:
        """De-identify the Part 10 file ``fp`` into ``output_path``.

        Raises
        ------
        NotHandled
            Before anything is written, when the file is for the pydicom path.
        """
        mapped = None
        if size > _MAPPED_ABOVE:
            try:
                mapped = mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError, AttributeError) as exc:
                raise NotHandled from exc
            buf: Any = mapped
        else:
            fp.seek(0)
            buf = fp.read()
        try:
            return self._run(buf, fp, output_path, patient_id, before, atomic, fsync, describe)
        finally:
            if mapped is not None:
                mapped.close()

    def _run(
        self,
        buf: Any,
        fp: IO[bytes],
        output_path: Any,
        patient_id: str | None,
        before: Callable[[Dataset], None] | None,
        atomic: bool,
        fsync: bool,
        describe: bool,
    ) -> DeidentificationResult:
        part = read_part10(buf)
        implicit = part.implicit
        top = _elements(buf, part.dataset_start, len(buf), implicit)
        by_tag = {e.tag: e for e in top}
        if any(
            g << 16 | 0x0102 in by_tag and g << 16 | 0x3000 not in by_tag
            for g in range(0x6000, 0x6020, 2)
        ):
            raise NotHandled  # an overlay in the pixels' high bits: masked by the pydicom path
        charset = _text_of(buf, by_tag.get(0x00080005), "latin-1")
        if charset not in _BYTE_SEARCHABLE:
            raise NotHandled
        codec = "utf-8" if charset == "ISO_IR 192" else "latin-1"
        text = {t: _text_of(buf, by_tag.get(t), codec) for t in _PATIENT_KEY_TAGS}
        if any("\\" in v for v in text.values()):
            raise NotHandled  # a multi-valued key: the pydicom path keys it as it always has
        sop_class = _text_of(buf, by_tag.get(_SOP_CLASS), codec)
        at_risk = burned_in_risk_of(
            sop_class,
            _text_of(buf, by_tag.get(0x00280301), codec),
            _text_of(buf, by_tag.get(0x00080060), codec),
        )
        key = _patient_key(text)
        pseudonym = patient_id if patient_id is not None else self.pseudo.patient_id(key)
        offset = None
        if self.profile.retain_longitudinal_modified_dates:
            offset = self.pseudo.date_offset(key)
        state = _File(
            buf,
            implicit,
            codec,
            types_for_sop_class(sop_class),
            pseudonym,
            offset,
            _Identifiers.of_values(_identifier_values(buf, by_tag, codec), charset),
        )
        markers = self._marker_elements(implicit, at_risk)
        pieces: list[Any] = []
        pixel = self._walk(state, top, (), "", 0, pieces, markers, describe)
        bits = state.top.get(0x00280100, ("US", b""))[1] if pixel is not None else b""
        if before is not None:  # after the walk: a file for the pydicom path is seen once
            before(dataset_of(buf, top, part, implicit))
        meta = rebuilt_meta(part, state.top, self.pseudo, self.profile.retain_uids)
        write_output(
            output_path,
            buf,
            fp,
            file_meta_bytes(meta),
            pieces,
            pixel_header(pixel, implicit, bits),
            pixel,
            atomic=atomic,
            fsync=fsync,
        )
        dataset = raw_dataset(state.top, meta, implicit) if describe else Dataset()
        result = DeidentificationResult(
            dataset=dataset,
            actions=state.records,
            patient_pseudonym=pseudonym,
            burned_in_annotation_risk=at_risk,
            graphics_review_required=state.graphics,
        )
        result.kept = state.kept
        result.has_pixel_data = pixel is not None
        return result

    def _marker_elements(
        self, implicit: bool, at_risk: bool
    ) -> list[tuple[int, str, bytes, bytes]]:
        key = (implicit, at_risk)
        found = self._markers.get(key)
        if found is None:
            found = self._markers[key] = marker_elements(self.profile, implicit, at_risk)
        return found

    def _table(
        self, iod: PathTypes | None, seq_path: tuple[int, ...], mode: int
    ) -> dict[tuple[int, bytes], Rule]:
        key = (id(iod), seq_path, mode)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
        return table

    def _walk(
        self,
        st: _File,
        elems: list[Element],
        seq_path: tuple[int, ...],
        prefix: str,
        depth: int,
        out: list[Any],
        markers: list[tuple[int, str, bytes, bytes]] | None,
        describe: bool,
        mode: int = _Mode.NORMAL,
    ) -> Element | None:
        """Write one data set's elements into ``out``; returns the top-level pixel data.

        ``markers`` (top level only) are written in their place in tag order.
        """
        if depth > MAX_SEQUENCE_DEPTH:
            raise NotHandled
        buf = st.buf
        table = self._table(st.iod, seq_path, mode)
        codes: dict[int, str] = {}  # this item's Coding Scheme Designator and Code Value
        top = not seq_path
        pending = list(markers or ())
        run = -1  # start of the current run of copied elements
        pixel = None
        creators: dict[int, str] = {}
        drop: set[int] | None = None  # overlay groups removed whole
        kept_creators: dict[int, int] = {}  # creator tag: index of its piece in ``out``
        used_blocks: set[tuple[int, int]] = set()
        for el in elems:
            tag = el.tag
            if top:
                while pending and pending[0][0] < tag:
                    if run >= 0:
                        out.append(memoryview(buf)[run : el.start])
                        run = -1
                    m_tag, m_vr, m_value, m_bytes = pending.pop(0)
                    out.append(m_bytes)
                    st.top[m_tag] = (m_vr, m_value)
                if tag in MARKER_TAGS:
                    if run >= 0:
                        out.append(memoryview(buf)[run : el.start])
                        run = -1
                    continue
                if tag in PIXEL_TAGS:
                    if pixel is not None:
                        raise NotHandled
                    if run >= 0:
                        out.append(memoryview(buf)[run : el.start])
                        run = -1
                    pixel = el
                    out.append(None)  # where the pixel data goes
                    continue
            vr_code = el.vr
            rule = table.get((tag, vr_code))
            if rule is None:
                rule = decide(
                    tag,
                    vr_code.decode(),
                    seq_path,
                    st.iod,
                    self.rules,
                    self.profile,
                    self.preserve,
                    mode,
                )
                table[(tag, vr_code)] = rule
            kind = rule.kind
            if kind == Kind.OVERLAY:
                if drop is None:
                    drop = _dropped_overlays(elems, self.rules)
                if tag >> 16 in drop:
                    rule = _REMOVE_OVERLAY
                else:
                    assert rule.then is not None
                    rule = rule.then
                    if rule.action == Action.CLEAN:
                        st.graphics = True
                kind = rule.kind
            if kind == Kind.PRIVATE:
                rule = self._private(st, el, creators, used_blocks)
                kind = rule.kind
                if kind == Kind.COPY and 0x10 <= (tag & 0xFFFF) <= 0xFF:
                    if run >= 0:
                        out.append(memoryview(buf)[run : el.start])
                        run = -1
                    kept_creators[tag] = len(out)
                    out.append(memoryview(buf)[el.start : el.value_end])
                    st.kept += 1
                    if top:
                        st.top[tag] = (vr_code.decode(), bytes(buf[el.value_start : el.value_end]))
                    continue
            if mode != _Mode.NORMAL:
                if tag in (_CODE_VALUE, _CODING_SCHEME):
                    codes[tag] = _text_of(buf, el, st.codec)
                elif kind == Kind.CODE_MEANING:
                    rule = _code_meaning(buf, el, st.codec, codes)
                    kind = rule.kind
                elif kind == Kind.CODED_STRING:
                    found = el.value_end > el.value_start and self._holds_identifier(st, el)
                    rule = _CODED_STRING_EMPTIED if found else _KEPT
                    kind = rule.kind
            if kind == Kind.SCAN:
                if el.value_end > el.value_start and self._holds_identifier(st, el):
                    rule = _SCAN_FOUND if not _foreign_vr(tag, vr_code.decode()) else _MISMATCH
                    kind = Kind.VALUE
                else:
                    kind = Kind.COPY
            if kind == Kind.COPY:
                if run < 0:
                    run = el.start
                st.kept += 1
                if top and describe:
                    st.top[tag] = (vr_code.decode(), _value_of(buf, el))
                elif top and tag in (_SOP_CLASS, _SOP_INSTANCE, 0x00280100):
                    st.top[tag] = (vr_code.decode(), bytes(buf[el.value_start : el.value_end]))
                continue
            if kind == Kind.NOT_HANDLED:
                raise NotHandled(rule.reason)
            vr = vr_code.decode()
            if kind == Kind.REMOVE:
                if run >= 0:
                    out.append(memoryview(buf)[run : el.start])
                    run = -1
                self._record(st, prefix, tag, vr, rule)
                continue
            if kind == Kind.WALK:
                child = {Action.DUMMY: _Mode.DUMMY, Action.CLEAN: _Mode.CLEAN}.get(
                    rule.action, mode
                )
                value = self._sequence(st, el, seq_path, prefix, depth, describe, child)
                if value is None:  # nothing inside changed: copied as it was
                    if rule.action != Action.KEEP:
                        self._record(st, prefix, tag, vr, rule)
                    if run < 0:
                        run = el.start
                    if top:
                        st.top[tag] = (vr, _value_of(buf, el))
                    continue
                if rule.action != Action.KEEP:
                    self._record(st, prefix, tag, vr, rule)
            elif kind == Kind.EMPTY_SEQUENCE:
                value = b""
                self._record(st, prefix, tag, vr, rule)
            elif kind == Kind.UID_CHECK:
                raw = bytes(buf[el.value_start : el.value_end])
                if all((not v) or v in UID_dictionary for v in split(raw, "UI")):
                    if run < 0:
                        run = el.start
                    st.kept += 1
                    if top:
                        st.top[tag] = (vr, raw)
                    continue
                value = self.values.uids(raw)
                self._record(st, prefix, tag, vr, rule)
            else:
                value = self._value(st, el, vr, rule)
                self._record(st, prefix, tag, vr, rule)
            if run >= 0:
                out.append(memoryview(buf)[run : el.start])
                run = -1
            out.append(_header(tag, vr_code, len(value), st.implicit) + value)
            if top:
                st.top[tag] = (vr, value)
        if run >= 0:
            out.append(memoryview(buf)[run : elems[-1].value_end])
        for m_tag, m_vr, m_value, m_bytes in pending:
            out.append(m_bytes)
            st.top[m_tag] = (m_vr, m_value)
        for creator_tag, index in kept_creators.items():
            if (creator_tag >> 16, creator_tag & 0xFF) not in used_blocks:
                out[index] = b""  # a creator whose block lost all its elements
        return pixel

    def _sequence(
        self,
        st: _File,
        el: Element,
        seq_path: tuple[int, ...],
        prefix: str,
        depth: int,
        describe: bool,
        mode: int,
    ) -> bytes | None:
        """The sequence's new value, or ``None`` when nothing inside it changed."""
        path = prefix + _name(el.tag)
        inner = (*seq_path, el.tag)
        changed = False
        encoded = []
        for index, (start, end) in enumerate(items(st.buf, el, st.implicit)):
            before = len(st.records)
            pieces: list[Any] = []
            elems = _elements(st.buf, start, end, st.implicit)
            self._walk(
                st, elems, inner, f"{path}[{index}].", depth + 1, pieces, None, describe, mode
            )
            body = b"".join(pieces)
            if len(st.records) != before or len(body) != end - start:
                changed = True
            encoded.append(_ITEM.pack(0xFFFE, 0xE000, len(body)) + body)
        return b"".join(encoded) if changed else None

    def _private(
        self, st: _File, el: Element, creators: dict[int, str], used: set[tuple[int, int]]
    ) -> Rule:
        """Retain Safe Private: kept only under its own creator (Table E.3.10-1)."""
        tag = el.tag
        group, element = tag >> 16, tag & 0xFFFF
        safe = self.rules.safe_private
        vr = el.vr.decode()
        keep = Rule(Kind.SCAN if vr in _SCANNED else Kind.COPY, Action.KEEP, "private")
        if 0x0010 <= element <= 0x00FF:
            creator = _decode(st.buf, el, "latin-1")
            creators[tag] = creator
            if any(c == creator and g == group for c, g, _ in safe):
                if keep.kind == Kind.SCAN and self._holds_identifier(st, el):
                    return _SCAN_FOUND
                return Rule(Kind.COPY, Action.KEEP, "private")
            return _REMOVE_PRIVATE
        if element < 0x1000:
            return _REMOVE_PRIVATE
        creator_tag = (group << 16) | (element >> 8)
        creator_value = creators.get(creator_tag)
        if creator_value is None or (creator_value, group, element & 0xFF) not in safe:
            return _REMOVE_PRIVATE
        used.add((group, element >> 8))
        return keep

    def _holds_identifier(self, st: _File, el: Element) -> bool:
        if st.needles is None:
            st.needles = st.identifiers.byte_needles()
        value = bytes(st.buf[el.value_start : el.value_end]).lower()
        return _contains_word(value, st.needles)

    def _value(self, st: _File, el: Element, vr: str, rule: Rule) -> bytes:
        """The replaced value for a ``VALUE`` or ``PSEUDONYM`` rule."""
        raw = bytes(st.buf[el.value_start : el.value_end])
        action = rule.action
        if rule.kind == Kind.PSEUDONYM:
            if pseudonym_as_text(vr):
                return pad(st.pseudonym[:64].encode(st.codec), vr)
            action = Action.DUMMY
        if action == Action.ZERO:
            return b""
        if action == Action.UID and vr == "UI":
            return self.values.uids(raw)
        if action in (Action.DUMMY, Action.UID):
            if vr == "UI":
                values = split(raw, "UI")
                if len(values) != 1 or not values[0]:
                    raise NotHandled  # the pydicom path keys these by path
                return join([self.pseudo.uid(values[0])], "UI")
            if vr in ("DA", "DT") and st.offset is not None and multiplicity(raw, vr):
                return self.values.dates(raw, vr, st.offset)
            return dummy(vr, raw)
        if action == Action.CLEAN and rule.reason == "standard-code":
            return join([rule.value], vr, st.codec)
        if action == Action.CLEAN:
            if not multiplicity(raw, vr):
                return raw
            if vr in ("DA", "DT"):
                return b"" if st.offset is None else self.values.dates(raw, vr, st.offset)
            if vr == "PN":
                return dummy("PN", b"")
            if vr == "UI":
                return self.values.uids(raw)
            if vr in CLEANED_AS_TEXT:
                return clean_text(raw, vr, st.codec, st.identifiers)
            return raw
        raise NotHandled(rule)  # pragma: no cover - every action is covered above

    @staticmethod
    def _record(st: _File, prefix: str, tag: int, vr: str, rule: Rule) -> None:
        st.records.append(
            ActionRecord(prefix + _name(tag), _tag_text(tag), vr, str(rule.action), rule.reason)
        )


_REMOVE_PRIVATE = Rule(Kind.REMOVE, Action.REMOVE, "private")
_REMOVE_OVERLAY = Rule(Kind.REMOVE, Action.REMOVE, "overlay")
#: A kept text holding this patient's identifiers: cleaned (or, under a foreign VR, dummied).
_SCAN_FOUND = Rule(Kind.VALUE, Action.CLEAN, "safety-net")
_MISMATCH = Rule(Kind.VALUE, Action.DUMMY, "vr-mismatch")


_KEPT = Rule(Kind.COPY, Action.KEEP, "E.1-1")
_CODED_STRING_EMPTIED = Rule(Kind.VALUE, Action.ZERO, "safety-net")
_CODE_MEANING_DUMMY = Rule(Kind.VALUE, Action.DUMMY, "code-meaning")
_CODE_VALUE, _CODING_SCHEME = 0x00080100, 0x00080102


def _code_meaning(buf: Any, el: Element, codec: str, codes: dict[int, str]) -> Rule:
    """Code Meaning in SR content: kept only as the standard's own meaning of the code."""
    meaning = standard_meaning(codes.get(_CODING_SCHEME, ""), codes.get(_CODE_VALUE, ""))
    if meaning is None:
        return _CODE_MEANING_DUMMY
    if _text_of(buf, el, codec) == meaning:
        return _KEPT
    return Rule(Kind.VALUE, Action.CLEAN, "standard-code", value=meaning)


def _dropped_overlays(elems: list[Element], rules: CompiledRules) -> set[int]:
    """The overlay groups of one data set that go whole (their Overlay Data goes)."""
    if rules.overlay_data != Action.REMOVE:
        return set()
    return {
        e.tag >> 16
        for e in elems
        if 0x6000 <= e.tag >> 16 <= 0x601E and not e.tag >> 16 & 1 and e.tag & 0xFFFF == 0x3000
    }


_SCANNED = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "CS"})


def _elements(buf: Any, pos: int, end: int, implicit: bool) -> list[Element]:
    """The elements of one data set, in ascending tag order (else: not handled)."""
    out = []
    last = -1
    while pos < end:
        el = element_at(buf, pos, end, implicit)
        if el.tag <= last or el.tag >> 16 == 0xFFFE:
            raise NotHandled
        last = el.tag
        out.append(el)
        pos = el.value_end
    return out


def _header(tag: int, vr: bytes, length: int, implicit: bool) -> bytes:
    if implicit:
        return _IMPLICIT_HEADER.pack(tag >> 16, tag & 0xFFFF, length)
    if vr in LONG_VRS:
        return _LONG_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, 0, length)
    if length > 0xFFFF:
        raise NotHandled
    return _SHORT_HEADER.pack(tag >> 16, tag & 0xFFFF, vr, length)


def _decode(buf: Any, el: Element, codec: str) -> str:
    try:
        return bytes(buf[el.value_start : el.value_end]).decode(codec).strip(" \x00")
    except UnicodeDecodeError as exc:
        raise NotHandled from exc


def _text_of(buf: Any, el: Element | None, codec: str) -> str:
    if el is None or el.vr == b"SQ" or el.undefined:
        return ""
    return _decode(buf, el, codec)


def _value_of(buf: Any, el: Element) -> bytes:
    """An element's value bytes (an undefined-length sequence without its delimiter)."""
    end = el.value_end - 8 if el.undefined else el.value_end
    return bytes(buf[el.value_start : end])


def _patient_key(text: dict[int, str]) -> str:
    """As :func:`src.ingestion.safety_net.patient_key`, from the decoded values."""
    pid = text[0x00100020]
    if pid:
        issuer = text[0x00100021]
        return f"id:{issuer}:{pid}" if issuer else f"id:{pid}"
    name, birth = text[0x00100010], text[0x00100030]
    if name or birth:
        return f"name:{name}:{birth}"
    return f"study:{text[0x0020000D]}"


def _identifier_values(buf: Any, by_tag: dict[int, Element], codec: str) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    for tag in _IDENTIFIER_TAGS:
        el = by_tag.get(tag)
        if el is None or el.vr == b"SQ" or el.undefined:
            continue
        vr = el.vr.decode()
        try:
            values = split(bytes(buf[el.value_start : el.value_end]), vr, codec)
        except UnicodeDecodeError:
            continue
        out.append((tag, values if len(values) > 1 else values[0]))
    return out


__all__ = ["ByteEngine", "NotHandled"]
