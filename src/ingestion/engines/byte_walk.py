"""The byte-level walk: each element of a data set decided once and written as bytes.

One dict lookup per element, keyed by its tag and VR, in a table per sequence path and
mode filled from :func:`src.ingestion.annex_e.element_rules.decide`; kept elements are copied as
runs of bytes, replaced ones encoded from :mod:`src.ingestion.engines.value_actions`. At the top
level the markers go in their place and the pixel data is left for the writer.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from src.ingestion.annex_e.action_report import ActionRecord
from src.ingestion.annex_e.code_meanings import code_meaning_rule
from src.ingestion.annex_e.element_rules import (
    CODED_STRING_EMPTIED,
    KEPT,
    KEPT_PRIVATE,
    MARKER_TAGS,
    MAX_SEQUENCE_DEPTH,
    MISMATCH,
    REMOVE_OVERLAY,
    SCAN_FOUND,
    Kind,
    Rule,
    _Mode,
    _name,
    _tag_text,
    decide,
    dropped_overlays,
    private_rule,
)
from src.ingestion.annex_e.iod_types import PathTypes
from src.ingestion.annex_e.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.annex_e.safety_net import (
    _Identifiers,
    holds_word,
)
from src.ingestion.encoding.dictionary import uid_registry
from src.ingestion.encoding.elements import (
    PIXEL_TAGS,
    Element,
    NotHandled,
    decode_value,
    elements_of,
    encode_header,
    items,
    text_of,
    value_of,
)
from src.ingestion.encoding.vrs import _foreign_vr
from src.ingestion.engines.value_actions import (
    ValueActions,
    split,
)

_CACHE_LIMIT = 100_000
_ITEM = struct.Struct("<HHL")
#: Code Value and Coding Scheme Designator: what a Code Meaning in SR content is read with.
_CODE_TAGS = frozenset({0x00080100, 0x00080102})
#: Top-level values the writer needs even when the header is not described: the SOP
#: Class and Instance (for the file meta) and Bits Allocated (for the pixel data's VR).
_DESCRIBED = frozenset({0x00080016, 0x00080018, 0x00280100})


@dataclass
class FileState:
    """The per-file state of one pass (PHI: never logged)."""

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
    top: dict[int, tuple[str, Any]] = field(default_factory=dict)  # output, for the index


class ByteWalker:
    """Walks data sets for one profile's rules; the state of a file is a :class:`FileState`.

    Parameters
    ----------
    rules, profile, preserve
        The compiled rules, the profile and the ``preserve_tags``.
    values : ValueActions
        The value replacements (their caches span files).
    """

    def __init__(
        self,
        rules: CompiledRules,
        profile: ConfidentialityProfile,
        preserve: frozenset[int],
        values: ValueActions,
    ) -> None:
        self.rules = rules
        self.profile = profile
        self.preserve = preserve
        self.values = values
        self._tables: dict[tuple[int, tuple[int, ...], int], dict[tuple[int, bytes], Rule]] = {}
        self._records: dict[tuple[str, int, bytes, Rule], ActionRecord] = {}

    def _table(
        self, iod: PathTypes | None, seq_path: tuple[int, ...], mode: int
    ) -> dict[tuple[int, bytes], Rule]:
        key = (id(iod), seq_path, mode)
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = {}
        return table

    def walk(
        self,
        st: FileState,
        elems: list[Element],
        seq_path: tuple[int, ...],
        prefix: str,
        depth: int,
        out: list[Any],
        markers: list[tuple[int, str, bytes, bytes]] | None,
        describe: bool,
        mode: int = _Mode.NORMAL,
        replaced: frozenset[int] = MARKER_TAGS,
    ) -> Element | None:
        """Write one data set's elements into ``out``; returns the top-level pixel data.

        ``markers`` (top level only) are written in their place in tag order, instead of
        the input's elements with the tags ``replaced``.
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
        copy, remove = Kind.COPY, Kind.REMOVE
        for el in elems:
            tag = el[0]
            if top:
                while pending and pending[0][0] < tag:
                    if run >= 0:
                        out.append(memoryview(buf)[run : el.start])
                        run = -1
                    m_tag, m_vr, m_value, m_bytes = pending.pop(0)
                    out.append(m_bytes)
                    st.top[m_tag] = (m_vr, m_value)
                if tag in replaced:
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
            vr_code = el[1]
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
            if kind is copy and (not mode or tag not in _CODE_TAGS):  # the common case first
                if run < 0:
                    run = el[2]
                st.kept += 1
                if top:
                    if tag in _DESCRIBED:
                        st.top[tag] = (vr_code.decode(), value_of(buf, el))
                    elif describe:
                        st.top[tag] = ("", el)  # as it was: the original's raw element
                continue
            if kind is remove:
                if run >= 0:
                    out.append(memoryview(buf)[run : el[2]])
                    run = -1
                self._record(st, prefix, tag, vr_code, rule)
                continue
            if kind == Kind.OVERLAY:
                if drop is None:
                    drop = dropped_overlays((e.tag for e in elems), self.rules)
                if tag >> 16 in drop:
                    rule = REMOVE_OVERLAY
                else:
                    assert rule.then is not None
                    rule = rule.then
                    if rule.action == Action.CLEAN:
                        st.graphics = True
                kind = rule.kind
            if kind == Kind.PRIVATE:
                creator = ""
                if 0x10 <= tag & 0xFFFF <= 0xFF:
                    creator = decode_value(buf, el, "latin-1")
                rule = private_rule(
                    tag, vr_code.decode(), creator, self.rules.safe_private, creators, used_blocks
                )
                if rule.kind == Kind.SCAN and 0x10 <= tag & 0xFFFF <= 0xFF:
                    found = el.value_end > el.value_start and self._holds_identifier(st, el)
                    rule = SCAN_FOUND if found else KEPT_PRIVATE
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
                if tag in _CODE_TAGS:
                    codes[tag] = text_of(buf, el, st.codec)
                elif kind == Kind.CODE_MEANING:
                    rule = code_meaning_rule(buf, el, st.codec, codes)
                    kind = rule.kind
                elif kind == Kind.CODED_STRING:
                    found = el.value_end > el.value_start and self._holds_identifier(st, el)
                    rule = CODED_STRING_EMPTIED if found else KEPT
                    kind = rule.kind
            if kind == Kind.SCAN:
                if el.value_end > el.value_start and self._holds_identifier(st, el):
                    rule = SCAN_FOUND if not _foreign_vr(tag, vr_code.decode()) else MISMATCH
                    kind = Kind.VALUE
                else:
                    kind = Kind.COPY
            if kind == Kind.COPY:
                if run < 0:
                    run = el.start
                st.kept += 1
                if top:
                    if tag in _DESCRIBED:
                        st.top[tag] = (vr_code.decode(), value_of(buf, el))
                    elif describe:
                        st.top[tag] = ("", el)
                continue
            if kind == Kind.NOT_HANDLED:
                raise NotHandled(rule.reason)
            vr = vr_code.decode()
            if kind == Kind.REMOVE:
                if run >= 0:
                    out.append(memoryview(buf)[run : el.start])
                    run = -1
                self._record(st, prefix, tag, vr_code, rule)
                continue
            if kind == Kind.WALK:
                child = {Action.DUMMY: _Mode.DUMMY, Action.CLEAN: _Mode.CLEAN}.get(
                    rule.action, mode
                )
                value = self._sequence(st, el, seq_path, prefix, depth, describe, child)
                if value is None:  # nothing inside changed: copied as it was
                    if rule.action != Action.KEEP:
                        self._record(st, prefix, tag, vr_code, rule)
                    if run < 0:
                        run = el.start
                    if top and describe:
                        st.top[tag] = ("", el)
                    continue
                if rule.action != Action.KEEP:
                    self._record(st, prefix, tag, vr_code, rule)
            elif kind == Kind.EMPTY_SEQUENCE:
                value = b""
                self._record(st, prefix, tag, vr_code, rule)
            elif kind == Kind.UID_CHECK:
                raw = bytes(buf[el.value_start : el.value_end])
                registry = uid_registry()
                if all((not v) or v in registry for v in split(raw, "UI")):
                    if run < 0:
                        run = el.start
                    st.kept += 1
                    if top:
                        st.top[tag] = (vr, raw)
                    continue
                value = self.values.uids(raw)
                self._record(st, prefix, tag, vr_code, rule)
            else:
                value = self.values.replace(bytes(buf[el.value_start : el.value_end]), vr, rule, st)
                self._record(st, prefix, tag, vr_code, rule)
            if run >= 0:
                out.append(memoryview(buf)[run : el.start])
                run = -1
            out.append(encode_header(tag, vr_code, len(value), st.implicit) + value)
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
                if top:
                    st.top.pop(creator_tag, None)
        return pixel

    def _sequence(
        self,
        st: FileState,
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
            elems = elements_of(st.buf, start, end, st.implicit)
            self.walk(
                st, elems, inner, f"{path}[{index}].", depth + 1, pieces, None, describe, mode
            )
            body = b"".join(pieces)
            if len(st.records) != before or len(body) != end - start:
                changed = True
            encoded.append(_ITEM.pack(0xFFFE, 0xE000, len(body)) + body)
        return b"".join(encoded) if changed else None

    def _holds_identifier(self, st: FileState, el: Element) -> bool:
        value = bytes(st.buf[el.value_start : el.value_end]).lower()
        return holds_word(value, st.identifiers.byte_needles())

    def _record(self, st: FileState, prefix: str, tag: int, vr: bytes, rule: Rule) -> None:
        """Record a change. Records hold no values, so one object serves every file."""
        key = (prefix, tag, vr, rule)
        record = self._records.get(key)
        if record is None:
            record = ActionRecord(
                prefix + _name(tag), _tag_text(tag), vr.decode(), str(rule.action), rule.reason
            )
            if len(self._records) < _CACHE_LIMIT:
                self._records[key] = record
        st.records.append(record)


__all__ = ["ByteWalker", "FileState"]
