"""The pydicom engine's walk: every element at every depth, as ``element_rules`` decides.

The decision is :func:`src.ingestion.annex_e.element_rules.decide`, the byte engine's
own (``every_structure``: this walk also handles directory records, File Meta elements
in a data set, curves that stay and text stored as OB/UN). The walk settles only what
depends on a value (a private creator, a kept text holding this patient's identifiers,
an unlisted UID, a Code Meaning) and applies the action: a sequence whose action is
``D`` is walked with every text, name, date and UID inside it dummied; one whose action
is ``C`` with its text cleaned of this dataset's identifiers.
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
from src.ingestion.annex_e.code_meanings import code_meaning_decision
from src.ingestion.annex_e.dummies import _DUMMY
from src.ingestion.annex_e.element_rules import (
    _CODE_VALUE,
    _CODING_SCHEME,
    _DATE_VRS,
    _DIRECTORY_RECORDS,
    _PATIENT_ID,
    _TEXT_VRS,
    CODED_STRING_EMPTIED,
    KEPT,
    KEPT_PRIVATE,
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
    pseudonym_as_text,
)
from src.ingestion.annex_e.free_text import _MAX_LEN, _clean_text
from src.ingestion.annex_e.iod_types import PathTypes
from src.ingestion.annex_e.profile import Action, CompiledRules, ConfidentialityProfile
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.annex_e.safety_net import _Identifiers, _text
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
    #: The rules decided for this object, by tag, VR, sequence path and mode.
    decided: dict[tuple[int, str, tuple[int, ...], int], Rule] = field(default_factory=dict)


#: A scanned text that holds none of this patient's identifiers: kept, as the rule says.
KEPT_AS_SCANNED = {"E.1-1": KEPT, "private": KEPT_PRIVATE}
#: An unlisted UID the standard defines.
KEPT_STANDARD_UID = Rule(Kind.COPY, Action.KEEP, "safety-net")


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
        drop_groups: set[int] | None = None
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
                vr = known
            path = prefix + _name(tag)
            rule = self._rule(tag, vr, ctx, mode)
            if rule.kind == Kind.OVERLAY:
                if drop_groups is None:
                    drop_groups = dropped_overlays(tags, rules)
                if tag >> 16 in drop_groups:
                    rule = REMOVE_OVERLAY
                else:
                    assert rule.then is not None
                    rule = rule.then
            if rule.kind == Kind.PRIVATE:
                creator = _text(ds[tag].value) if 0x0010 <= tag & 0xFFFF <= 0x00FF else ""
                rule = private_rule(tag, vr, creator, rules.safe_private, creators, used)
            rule = self._settle(ds, tag, vr, rule, ctx)
            kind, action, reason = rule.kind, rule.action, rule.reason
            if kind == Kind.COPY:
                # Kept as read: no decoding, and the writer can copy its bytes as they were.
                self._record(ctx, path, tag, vr, action, reason)
                continue
            if kind == Kind.REMOVE:
                del ds[tag]
                self._record(ctx, path, tag, vr, action, reason)
                continue
            elem = ds[tag]
            if kind == Kind.PSEUDONYM:
                pseudonym = ctx.pseudonym
                if _DIRECTORY_RECORDS in ctx.seq_path:
                    # The record's own patient, keyed as that patient's files are.
                    record_id = _text(_peek_value(ds, _PATIENT_ID))
                    pseudonym = ctx.pseudo.patient_id(f"id:{record_id}")
                if pseudonym_as_text(vr):
                    elem.value = pseudonym[: _MAX_LEN["PN"]]
                else:  # the element arrived with a foreign VR: that VR's dummy instead
                    elem.value = self._dummy(elem, vr, path, ctx)
                self._record(ctx, path, tag, vr, action, reason)
                continue
            if action == Action.CLEAN and reason in ("curve", "overlay"):
                ctx.graphics_kept = True
            self._apply(ds, elem, tag, vr, rule, path, ctx, depth, mode)
        if any(t >> 16 & 1 for t in tags):
            _drop_orphan_creators(ds)

    @staticmethod
    def _rule(tag: int, vr: str, ctx: _Context, mode: int) -> Rule:
        """:func:`~src.ingestion.annex_e.element_rules.decide`, once per tag, VR and place."""
        key = (tag, vr, ctx.seq_path, mode)
        rule = ctx.decided.get(key)
        if rule is None:
            rule = decide(
                tag,
                vr,
                ctx.seq_path,
                ctx.iod,
                ctx.rules,
                ctx.profile,
                ctx.preserve,
                mode,
                every_structure=True,
            )
            ctx.decided[key] = rule
        return rule

    @staticmethod
    def _settle(ds: Dataset, tag: int, vr: str, rule: Rule, ctx: _Context) -> Rule:
        """The value-dependent kinds, settled on this element's value."""
        kind = rule.kind
        if kind == Kind.SCAN:
            if not ctx.identifiers.found_in(ds.get_item(tag)):
                return KEPT_AS_SCANNED[rule.reason]
            # A kept text holding this patient's identifiers.
            return MISMATCH if _foreign_vr(tag, vr) else SCAN_FOUND
        if kind == Kind.UID_CHECK:  # an unlisted UID: kept when the standard defines it
            value = ds[tag].value
            values = value if isinstance(value, MultiValue | list) else [value]
            if all((not v) or str(v) in UID_dictionary for v in values):
                return KEPT_STANDARD_UID
            return rule
        if kind == Kind.CODED_STRING:
            # Coded strings hold enumerated or defined terms, not names: a dummy such as
            # "ANONYMIZED" would make the object invalid. Kept, unless it holds this
            # patient's identifiers; then emptied.
            return CODED_STRING_EMPTIED if ctx.identifiers.found_in(ds.get_item(tag)) else KEPT
        if kind == Kind.CODE_MEANING:
            # Kept only for a standard code, and then as the standard's own meaning.
            return code_meaning_decision(
                lambda: _text(ds[tag].value),
                _text(_peek_value(ds, _CODING_SCHEME)),
                _text(_peek_value(ds, _CODE_VALUE)),
            )
        return rule

    def _apply(
        self,
        ds: Dataset,
        elem: DataElement,
        tag: int,
        vr: str,
        rule: Rule,
        path: str,
        ctx: _Context,
        depth: int,
        mode: int,
    ) -> None:
        action, reason = rule.action, rule.reason
        if rule.kind == Kind.EMPTY_SEQUENCE:
            elem.value = DicomSequence([])
        elif rule.kind == Kind.WALK:
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
            elem.value = rule.value
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
            keep = ctx.rules.by_tag.get(_TIMEZONE_OFFSET) == Action.KEEP
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
