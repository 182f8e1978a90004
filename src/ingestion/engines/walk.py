"""The walk: one decision per element, at every depth, from the compiled rules.

What happens to an element, in order: ``preserve_tags`` keep it; group lengths and
trailing padding go; private elements follow Retain Safe Private (Table E.3.10-1, under
their creator); curves and overlays follow their mask rows; listed attributes follow
their Table E.1-1 code after the options; unlisted ones get the safety net. A sequence
whose action is ``D`` is walked with every text, name, date and UID inside it dummied;
one whose action is ``C`` with its text cleaned of this dataset's identifiers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from pydicom._uid_dict import UID_dictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence

from src.errors import DeidentificationError
from src.ingestion.annex_e.action_report import ActionRecord
from src.ingestion.annex_e.codes import standard_meaning
from src.ingestion.annex_e.dummies import _CODE_STRUCTURE, _DUMMY, _DUMMY_TEXT
from src.ingestion.annex_e.element_rules import (
    _CODE_MEANING,
    _DATE_VRS,
    _DIRECTORY_RECORDS,
    _PATIENT_ID,
    _PATIENT_NAME,
    _SCANNED_TEXT_VRS,
    _TEXT_VRS,
    _TRAILING_PADDING,
    MAX_SEQUENCE_DEPTH,
    _Mode,
    _name,
    _tag_text,
    iod_action,
    private_rule,
    unlisted_action,
)
from src.ingestion.annex_e.iod_types import PathTypes
from src.ingestion.annex_e.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.annex_e.safety_net import _MAX_LEN, _clean_text, _Identifiers, _text
from src.ingestion.encoding.vrs import _decode_opaque, _foreign_vr, _text_dictionary_vr, _vr_of
from src.ingestion.parsing.access import peek


def _drop_orphan_creators(ds: Dataset) -> None:
    """Remove private creator elements whose block no longer holds any element."""
    present = list(ds.keys())
    used = {(t >> 16, (t & 0xFFFF) >> 8) for t in present if t >> 16 & 1 and (t & 0xFFFF) >= 0x1000}
    for tag in present:
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1 and 0x0010 <= element <= 0x00FF and (group, element) not in used:
            del ds[tag]


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
    #: The object's IOD Types for combined codes (None: unknown SOP Class).
    iod: PathTypes | None = None
    #: Tags of the sequences enclosing the element being decided, outermost first.
    seq_path: tuple[int, ...] = ()
    #: Python codec of the object's Specific Character Set (for text stored as OB/UN).
    encoding: str = "latin-1"


_TIMEZONE_OFFSET = 0x00080201


def _valid_number_string(text: str, vr: str) -> bool:
    """Whether ``text`` is a valid IS or DS value (always true for other VRs)."""
    if vr not in ("IS", "DS"):
        return True
    parse = int if vr == "IS" else float
    try:
        for part in text.split("\\"):
            if part.strip():
                parse(part.strip())
    except ValueError:
        return False
    return True


def _peek_value(ds: Dataset, tag: int) -> Any:
    elem = peek(ds, tag)
    return None if elem is None else elem.value


class DatasetWalker:
    """Applies compiled rules to datasets; holds no per-file state (that is the context).

    Parameters
    ----------
    pseudo : Pseudonymizer
        The keyed pseudonyms (UIDs, date shifts).
    """

    def __init__(self, pseudo: Pseudonymizer) -> None:
        self.pseudo = pseudo

    def walk(self, ds: Dataset, ctx: _Context, prefix: str, depth: int, mode: int) -> None:
        """Apply the rules to every element of ``ds`` (and, through sequences, below it)."""
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
        creators: dict[int, str] = {}
        used: set[tuple[int, int]] = set()
        for tag in tags:
            raw = ds.get_item(tag)
            if raw is None:
                continue
            vr = _vr_of(raw, tag)
            if vr in ("OB", "UN") and (known := _text_dictionary_vr(tag)) is not None:
                # Text stored with a non-text VR is decided (and written) as what it is.
                value = _decode_opaque(ds[tag].value, ctx.encoding)
                if not _valid_number_string(value, known):
                    value = ""  # bytes that are no IS/DS number: nothing diagnostic to keep
                ds[tag] = DataElement(tag, known, value)
                raw, vr = ds.get_item(tag), known
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
                # The byte engine's own decision (Table E.3.10-1 under its creator).
                action, reason = Action.REMOVE, "private"
                if rules.private == Action.CLEAN:
                    creator = _text(ds[tag].value) if 0x0010 <= element <= 0x00FF else ""
                    rule = private_rule(tag, vr, creator, rules.safe_private, creators, used)
                    action, reason = rule.action, rule.reason
            elif group in drop_groups:
                action, reason = Action.REMOVE, "overlay"
            elif 0x5000 <= group <= 0x50FF:
                action, reason = rules.curves, "curve"
            elif 0x6000 <= group <= 0x60FF and element in (0x3000, 0x4000):
                action = rules.overlay_data if element == 0x3000 else rules.overlay_comments
                reason = "overlay"
            elif tag in rules.combined and ctx.iod is not None:
                action, reason = self._iod_action(tag, vr, rules.combined[tag], ctx)
            elif tag in rules.by_tag:
                action = rules.by_tag[tag]
            else:
                action, reason = self._unlisted_action(ds, tag, vr, mode, ctx)
            if _DIRECTORY_RECORDS in ctx.seq_path and reason == "E.1-1":
                # A directory record holds the keys of its patient, study, series or
                # instance, nearly all of Type 1 or 2: present stays present.
                action = {Action.REMOVE: Action.ZERO, Action.ZERO: Action.DUMMY}.get(action, action)
            if (
                action == Action.KEEP
                and reason in ("E.1-1", "private")
                and vr in _SCANNED_TEXT_VRS
                and tag not in rules.by_tag
                and tag not in _CODE_STRUCTURE  # coding scheme designators, code values
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
            in_record = _DIRECTORY_RECORDS in ctx.seq_path
            if tag in (_PATIENT_ID, _PATIENT_NAME) and (depth == 0 or in_record):
                pseudonym = ctx.pseudonym
                if in_record:  # the record's own patient, keyed as that patient's files are
                    record_id = _text(_peek_value(ds, _PATIENT_ID))
                    pseudonym = ctx.pseudo.patient_id(f"id:{record_id}")
                if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC"):
                    elem.value = pseudonym[: _MAX_LEN["PN"]]
                else:  # the element arrived with a foreign VR: that VR's dummy instead
                    elem.value = self._dummy(elem, vr, path, ctx)
                self._record(ctx, path, tag, vr, Action.DUMMY, "pseudonym")
                continue
            if action == Action.CLEAN and reason in ("curve", "overlay"):
                ctx.graphics_kept = True
            self._apply(ds, elem, tag, vr, action, reason, path, ctx, depth, mode)
        if any(t >> 16 & 1 for t in tags):
            _drop_orphan_creators(ds)

    @staticmethod
    def _iod_action(tag: int, vr: str, code: str, ctx: _Context) -> tuple[Action, str]:
        assert ctx.iod is not None
        return iod_action(tag, vr, code, ctx.iod, ctx.seq_path, ctx.rules)

    def _unlisted_action(
        self, ds: Dataset, tag: int, vr: str, mode: int, ctx: _Context
    ) -> tuple[Action, str]:
        if vr == "SQ":
            return (Action.DUMMY if mode == _Mode.DUMMY else Action.KEEP), "E.1-1"
        if mode != _Mode.NORMAL and tag == _CODE_MEANING:
            # Kept only for a standard code, and then as the standard's own meaning.
            scheme, value = _text(_peek_value(ds, 0x00080102)), _text(_peek_value(ds, 0x00080100))
            meaning = standard_meaning(scheme, value)
            if meaning is None:
                return Action.DUMMY, "code-meaning"
            if _text(ds[tag].value) == meaning:
                return Action.KEEP, "E.1-1"
            return Action.CLEAN, "standard-code"
        if mode != _Mode.NORMAL and tag in _CODE_STRUCTURE:
            return Action.KEEP, "E.1-1"
        action, reason = unlisted_action(tag, vr, ctx.profile, mode)
        if reason == "check":  # an unlisted UID: kept when the standard defines it
            value = ds[tag].value
            values = value if isinstance(value, MultiValue | list) else [value]
            if all((not v) or str(v) in UID_dictionary for v in values):
                return Action.KEEP, "safety-net"
            return Action.UID, "safety-net"
        if reason == "coded-string":
            # Coded strings hold enumerated or defined terms, not names: a dummy such as
            # "ANONYMIZED" would make the object invalid. Kept, unless it holds this
            # patient's identifiers; then emptied.
            if ctx.identifiers.found_in(ds.get_item(tag)):
                return Action.ZERO, "safety-net"
            return Action.KEEP, "E.1-1"
        return action, reason

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
                outer = ctx.seq_path
                ctx.seq_path = (*outer, tag)
                try:
                    for index, item in enumerate(elem.value):
                        self.walk(item, ctx, f"{path}[{index}].", depth + 1, child)
                finally:
                    ctx.seq_path = outer
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
        elif action == Action.CLEAN and reason == "standard-code":
            scheme, value = _text(_peek_value(ds, 0x00080102)), _text(_peek_value(ds, 0x00080100))
            elem.value = standard_meaning(scheme, value) or _DUMMY_TEXT
        elif action == Action.CLEAN:
            self._clean(elem, vr, path, ctx)
        self._record(ctx, path, tag, vr, action, reason)

    def _dummy(self, elem: DataElement, vr: str, path: str, ctx: _Context) -> Any:
        if vr == "UI":
            original = _text(elem.value) or f"dummy:{path}"
            return ctx.pseudo.uid(original)
        if vr in ("DA", "DT") and ctx.offset is not None and not elem.is_empty:
            return self._shift(elem.value, vr, ctx.offset, ctx)
        dummy = _DUMMY.get(vr, b"\x00\x00")
        if (
            isinstance(elem.value, MultiValue)
            and len(elem.value) > 1
            and not isinstance(dummy, bytes)
        ):
            return [dummy] * len(elem.value)  # the value multiplicity the attribute had
        return dummy

    def _map_uids(self, value: Any, ctx: _Context) -> Any:
        if isinstance(value, MultiValue | list):
            return [ctx.pseudo.uid(str(v)) if v else v for v in value]
        return ctx.pseudo.uid(str(value)) if value else value

    def _shift(self, value: Any, vr: str, offset: timedelta, ctx: _Context) -> Any:
        if vr == "DA":
            shift = self.pseudo.shift_date
        else:
            # A DT's UTC offset goes when Timezone Offset From UTC goes.
            keep = ctx.rules.by_tag.get(_TIMEZONE_OFFSET) in (Action.KEEP, Action.CLEAN)
            shift = functools.partial(self.pseudo.shift_datetime, keep_utc_offset=keep)
        if isinstance(value, MultiValue | list):
            return [shift(str(v), offset) if v else v for v in value]
        return shift(str(value), offset) if value else value

    def _clean(self, elem: DataElement, vr: str, path: str, ctx: _Context) -> None:
        if elem.is_empty:
            return
        if vr in _DATE_VRS:
            if ctx.offset is not None:
                elem.value = self._shift(elem.value, vr, ctx.offset, ctx)
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
