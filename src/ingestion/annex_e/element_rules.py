"""The compiled rule for an element, decided once per tag, VR and sequence path.

One procedure, :func:`decide`, for both engines: ``preserve_tags``, group lengths and
padding, private elements, curves and overlays, combined codes by IOD Type, Table E.1-1,
then the safety net for unlisted attributes. The byte engine keeps its answers in a dict
keyed by ``(tag, VR)``, one dict per sequence path of the object's IOD; the pydicom walk
(:mod:`src.ingestion.engines.walk`) keeps them per object. What depends on a value (a
private creator, a kept text that may hold this patient's identifiers, an unlisted UID
that may be a standard one, a Code Meaning) is a kind of its own, settled by each engine
per element.
``medpipe explain`` prints these rules (:mod:`src.ingestion.annex_e.explain`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from src.ingestion.annex_e.dummies import _CODE_STRUCTURE
from src.ingestion.annex_e.iod_types import PathTypes, resolve
from src.ingestion.annex_e.profile import (
    _PROTECTION_ORDER,
    Action,
    CompiledRules,
    ConfidentialityProfile,
)
from src.ingestion.encoding.dictionary import dictionary_has_tag, keyword_for_tag
from src.ingestion.encoding.elements import MAX_DEPTH
from src.ingestion.encoding.vrs import _foreign_vr, _text_dictionary_vr

#: Deepest sequence nesting accepted; deeper input is refused rather than half-cleaned.
#: Sequence nesting deeper than this is refused (one limit for both engines and the
#: structure check: :data:`src.ingestion.encoding.elements.MAX_DEPTH`).
MAX_SEQUENCE_DEPTH = MAX_DEPTH
_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})
_FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC"})
# Text the table keeps is still searched for the patient's own identifiers.
_SCANNED_TEXT_VRS = frozenset({"LO", "SH", "LT", "ST", "UT", "UC", "CS"})
_DATE_VRS = frozenset({"DA", "DT"})
_TRAILING_PADDING = 0xFFFCFFFC
_PATIENT_ID = 0x00100020
_PATIENT_NAME = 0x00100010


def _tag_text(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


@functools.lru_cache(maxsize=65536)
def _name(tag: int) -> str:
    return keyword_for_tag(tag) or _tag_text(tag)


class _Mode:
    NORMAL = 0
    DUMMY = 1  # inside a sequence whose action is D
    CLEAN = 2  # inside a sequence whose action is C


_CODE_MEANING = 0x00080104
_DIRECTORY_RECORDS = 0x00041220


def iod_action(
    tag: int, vr: str, code: str, iod: PathTypes, seq_path: tuple[int, ...], rules: CompiledRules
) -> tuple[Action, str]:
    """A combined code resolved by the attribute's Type at this path of this IOD."""
    kind = iod.get(seq_path, {}).get(tag)
    single = resolve(code, kind) if kind is not None else None
    if single is None:  # not defined here by the IOD: the most protective choice
        return rules.by_tag[tag], "E.1-1"
    if single == "U*":  # a sequence of references: kept, its UIDs replaced inside
        return (Action.KEEP if vr == "SQ" else Action.UID), f"E.1-1 Type {kind}"
    return Action(single), f"E.1-1 Type {kind}"


#: The markers the byte engine writes itself, in place of whatever the input held there;
#: an earlier De-identification Method and its Code Sequence are walked first and kept
#: inside ours (:func:`src.ingestion.engines.part10_bytes.earlier_history`).
HISTORY_TAGS = frozenset({0x00120063, 0x00120064})
MARKER_TAGS = frozenset({0x00120062, 0x00280303}) | HISTORY_TAGS
_TEXT_FOR_PSEUDONYM = frozenset({"PN", "LO", "SH", "LT", "ST", "UT", "UC"})
#: Text a C action cleans of this patient's identifiers (the others keep their value).
CLEANED_AS_TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "CS", "AE", "UR"})


class Kind(IntEnum):
    """What the engine does with an element."""

    COPY = 0  # kept: its bytes copied
    SCAN = 1  # kept, unless it holds this patient's identifiers (then: pydicom path)
    REMOVE = 2
    UID_CHECK = 3  # unlisted UID: kept when standard, else replaced
    VALUE = 4  # its value replaced by ``action``
    PSEUDONYM = 5  # Patient ID or Name at the top level
    WALK = 6  # a sequence walked item by item
    EMPTY_SEQUENCE = 7
    PRIVATE = 8  # kept only under Retain Safe Private and its creator
    NOT_HANDLED = 9  # the pydicom path decides (rare structures)
    OVERLAY = 10  # (60xx,eeee): the group may go whole; else ``then``
    CODE_MEANING = 11  # in SR content: kept only as a standard code's own meaning
    CODED_STRING = 12  # a CS in dummied content: kept, emptied if it holds identifiers


@dataclass(frozen=True, slots=True, eq=False)
class Rule:
    """The decision for one element: what to do, the action recorded, and why.

    Compared and hashed by identity: the engine keys its caches by the rule objects
    of its tables, which live as long as the engine.
    """

    kind: Kind
    action: Action
    reason: str
    #: For ``OVERLAY``: the rule when the group stays and the element is not its data
    #: or comments.
    then: Rule | None = None
    #: For a Code Meaning replaced by the standard's: that meaning.
    value: str = ""


def decide(
    tag: int,
    vr: str,
    seq_path: tuple[int, ...],
    iod: PathTypes | None,
    rules: CompiledRules,
    profile: ConfidentialityProfile,
    preserve: frozenset[int],
    mode: int = _Mode.NORMAL,
    *,
    every_structure: bool = False,
) -> Rule:
    """The rule for ``tag`` with ``vr`` inside the sequences ``seq_path`` (outermost first).

    Both engines ask this one procedure; each settles only the kinds that depend on a
    value (``SCAN``, ``UID_CHECK``, ``PRIVATE``, ``OVERLAY``, ``CODE_MEANING``,
    ``CODED_STRING``, ``PSEUDONYM``).

    Parameters
    ----------
    mode : int
        :class:`_Mode`: inside a sequence whose action is D or C (SR content), unlisted
        text is dummied or cleaned.
    every_structure : bool
        The caller handles every structure (the pydicom walk): File Meta elements inside
        a data set, directory records, curves that stay and text stored as OB/UN (which it
        decodes first and asks about under the text's own VR). Otherwise (the byte walk)
        these are ``NOT_HANDLED`` and the file goes to the pydicom engine.

    Returns
    -------
    Rule
        The action and its reason are those the action report records.
    """
    group, element = tag >> 16, tag & 0xFFFF
    in_directory = _DIRECTORY_RECORDS in seq_path
    if not every_structure:
        if group == 0x0002:  # in a data set: only the pydicom path knows what to make of it
            action = Action.UID if tag == 0x00020003 else Action.KEEP
            return Rule(Kind.NOT_HANDLED, action, "file-meta")
        if in_directory or tag == _DIRECTORY_RECORDS:
            return Rule(Kind.NOT_HANDLED, Action.KEEP, "directory")
        if vr in ("OB", "UN") and _text_dictionary_vr(tag) is not None:
            return Rule(Kind.NOT_HANDLED, Action.KEEP, "opaque-text")
    if tag in preserve:
        return Rule(Kind.COPY, Action.KEEP, "preserve_tags")
    if element == 0 and group != 0x0002:
        return Rule(Kind.REMOVE, Action.REMOVE, "group-length")
    if tag == _TRAILING_PADDING:
        return Rule(Kind.REMOVE, Action.REMOVE, "padding")
    if group & 1:
        if rules.private != Action.CLEAN:
            return Rule(Kind.REMOVE, Action.REMOVE, "private")
        return Rule(Kind.PRIVATE, Action.KEEP, "private")
    if 0x5000 <= group <= 0x50FF:
        if rules.curves == Action.REMOVE:
            return Rule(Kind.REMOVE, Action.REMOVE, "curve")
        if not every_structure:
            return Rule(Kind.NOT_HANDLED, Action.KEEP, "curve")
        return _value_rule(rules.curves, "curve", tag, vr, seq_path)
    if 0x6000 <= group <= 0x60FF:
        if element in (0x3000, 0x4000):
            action = rules.overlay_data if element == 0x3000 else rules.overlay_comments
            then = _value_rule(action, "overlay", tag, vr, seq_path)
        else:
            then = _listed(tag, vr, seq_path, iod, rules, profile, mode)
        return Rule(Kind.OVERLAY, Action.REMOVE, "overlay", then)
    return _listed(tag, vr, seq_path, iod, rules, profile, mode)


def _listed(
    tag: int,
    vr: str,
    seq_path: tuple[int, ...],
    iod: PathTypes | None,
    rules: CompiledRules,
    profile: ConfidentialityProfile,
    mode: int,
) -> Rule:
    """Combined codes by IOD Type, Table E.1-1, then the safety net."""
    reason = "E.1-1"
    if tag in rules.references:
        return _value_rule(Action.KEEP if vr == "SQ" else Action.UID, "U*", tag, vr, seq_path)
    if tag in rules.combined and iod is not None:
        action, reason = iod_action(tag, vr, rules.combined[tag], iod, seq_path, rules)
    elif tag in rules.by_tag:
        action = rules.by_tag[tag]
        # Inside a sequence whose own rule is stricter (D or C, as a presentation state's
        # Graphic Annotation Sequence), a listed text value follows the sequence's rule.
        enclosing = _ENCLOSING.get(mode)
        if enclosing and vr in _TEXT_VRS | {"PN"} and _stricter(enclosing, action):
            action, reason = enclosing, "enclosing"
    else:
        if vr != "SQ" and mode != _Mode.NORMAL and tag == _CODE_MEANING:
            return Rule(Kind.CODE_MEANING, Action.KEEP, "E.1-1")
        if vr != "SQ" and mode != _Mode.NORMAL and tag in _CODE_STRUCTURE:
            action, reason = Action.KEEP, "E.1-1"
        else:
            action, reason = unlisted_action(tag, vr, profile, mode)
        if action == Action.UID and reason == "check":
            return Rule(Kind.UID_CHECK, Action.UID, "safety-net")
        if reason == "coded-string":
            return Rule(Kind.CODED_STRING, Action.KEEP, "E.1-1")
    if tag == _TIMEZONE_OFFSET and action == Action.CLEAN:  # PS3.15 E.3.6: removed
        return Rule(Kind.REMOVE, Action.REMOVE, "timezone")
    if reason == "E.1-1" and _DIRECTORY_RECORDS in seq_path:
        # A directory record holds the keys of its patient, study, series or instance,
        # nearly all of Type 1 or 2: present stays present.
        action = _IN_DIRECTORY.get(action, action)
    if (
        action == Action.KEEP
        and reason == "E.1-1"
        and vr in _SCANNED_TEXT_VRS
        and tag not in rules.by_tag
        and tag not in _CODE_STRUCTURE
    ):
        return Rule(Kind.SCAN, action, reason)
    return _value_rule(action, reason, tag, vr, seq_path)


#: Timezone Offset From UTC: under Modified Dates (C) it goes, with every DT's offset.
_TIMEZONE_OFFSET = 0x00080201
_ENCLOSING = {_Mode.DUMMY: Action.DUMMY, _Mode.CLEAN: Action.CLEAN}


def _stricter(a: Action, b: Action) -> bool:
    """Whether ``a`` protects more than ``b`` (the profile's order of protection)."""
    return _PROTECTION_ORDER.index(a) < _PROTECTION_ORDER.index(b)


_IN_DIRECTORY = {Action.REMOVE: Action.ZERO, Action.ZERO: Action.DUMMY}


def _value_rule(action: Action, reason: str, tag: int, vr: str, seq_path: tuple[int, ...]) -> Rule:
    """The rule for an element whose action is decided."""
    if action == Action.CLEAN and _foreign_vr(tag, vr):
        action, reason = Action.DUMMY, "vr-mismatch"
    if action == Action.KEEP and vr != "SQ":
        return Rule(Kind.COPY, action, reason)
    if action == Action.REMOVE:
        return Rule(Kind.REMOVE, action, reason)
    if tag in (_PATIENT_ID, _PATIENT_NAME) and (not seq_path or _DIRECTORY_RECORDS in seq_path):
        # At the top level, or a directory record's own patient (keyed as that
        # patient's files are: the walk settles which pseudonym).
        return Rule(Kind.PSEUDONYM, Action.DUMMY, "pseudonym")
    if vr == "SQ":
        if action == Action.ZERO:
            return Rule(Kind.EMPTY_SEQUENCE, action, reason)
        return Rule(Kind.WALK, action, reason)
    return Rule(Kind.VALUE, action, reason)


def unlisted_action(
    tag: int, vr: str, profile: ConfidentialityProfile, mode: int
) -> tuple[Action, str]:
    """The safety net for an attribute Table E.1-1 does not list (both engines use it).

    Two answers depend on the value and are the caller's to settle: ``(U, "check")``,
    an unlisted UID kept when the standard defines it, and ``(K, "coded-string")``, a
    CS in dummied content kept unless it holds this patient's identifiers.
    """
    if vr == "SQ":
        return (Action.DUMMY if mode == _Mode.DUMMY else Action.KEEP), "E.1-1"
    if not dictionary_has_tag(tag) and (tag >> 16) != 0x0002:
        return Action.REMOVE, "safety-net"
    if vr == "PN":
        return Action.DUMMY, "safety-net"
    if vr in _DATE_VRS:
        if profile.retain_longitudinal_full_dates:
            return Action.KEEP, "safety-net"
        if profile.retain_longitudinal_modified_dates:
            return Action.CLEAN, "safety-net"
        return Action.ZERO, "safety-net"
    if vr == "UI":
        keyword = keyword_for_tag(tag)
        if profile.retain_uids or keyword.endswith(("ClassUID", "SyntaxUID")):
            return Action.KEEP, "safety-net"
        return Action.UID, "check"
    if mode == _Mode.DUMMY and vr == "CS":
        return Action.KEEP, "coded-string"
    if mode == _Mode.DUMMY and vr in _TEXT_VRS | {"PN"}:
        return Action.DUMMY, "safety-net"
    if mode == _Mode.CLEAN and vr in _TEXT_VRS:
        return Action.CLEAN, "safety-net"
    if vr in _FREE_TEXT_VRS:
        return Action.REMOVE, "safety-net"
    return Action.KEEP, "E.1-1"


def pseudonym_as_text(vr: str) -> bool:
    """Whether a Patient ID or Name with this VR takes the pseudonym (else its dummy)."""
    return vr in _TEXT_FOR_PSEUDONYM


_REMOVE_PRIVATE = Rule(Kind.REMOVE, Action.REMOVE, "private")
REMOVE_OVERLAY = Rule(Kind.REMOVE, Action.REMOVE, "overlay")
KEPT_PRIVATE = Rule(Kind.COPY, Action.KEEP, "private")
KEPT_PRIVATE_TEXT = Rule(Kind.SCAN, Action.KEEP, "private")
#: A kept text holding this patient's identifiers: cleaned (or, under a foreign VR, dummied).
SCAN_FOUND = Rule(Kind.VALUE, Action.CLEAN, "safety-net")
MISMATCH = Rule(Kind.VALUE, Action.DUMMY, "vr-mismatch")


KEPT = Rule(Kind.COPY, Action.KEEP, "E.1-1")
CODED_STRING_EMPTIED = Rule(Kind.VALUE, Action.ZERO, "safety-net")
_CODE_VALUE, _CODING_SCHEME = 0x00080100, 0x00080102


def dropped_overlays(tags: Iterable[int], rules: CompiledRules) -> set[int]:
    """The overlay groups among one data set's ``tags`` that go whole (their data goes)."""
    if rules.overlay_data != Action.REMOVE:
        return set()
    return {
        tag >> 16
        for tag in tags
        if 0x6000 <= tag >> 16 <= 0x601E and not tag >> 16 & 1 and tag & 0xFFFF == 0x3000
    }


def private_rule(
    tag: int,
    vr: str,
    value: str,
    safe: frozenset[tuple[str, int, int]],
    creators: dict[int, str],
    used: set[tuple[int, int]],
) -> Rule:
    """Retain Safe Private: kept only under its own creator (Table E.3.10-1).

    ``value`` is a creator element's decoded value (unused for others); ``creators``
    collects this data set's creators and ``used`` the blocks that keep an element.
    A kept element that holds text is ``SCAN``, like any kept text.
    """
    group, element = tag >> 16, tag & 0xFFFF
    keep = KEPT_PRIVATE_TEXT if vr in _SCANNED_TEXT_VRS else KEPT_PRIVATE
    if 0x0010 <= element <= 0x00FF:
        creators[tag] = value
        if any(c == value and g == group for c, g, _ in safe):
            return keep
        return _REMOVE_PRIVATE
    if element < 0x1000:
        return _REMOVE_PRIVATE
    creator = creators.get((group << 16) | (element >> 8))
    if creator is None or (creator, group, element & 0xFF) not in safe:
        return _REMOVE_PRIVATE
    used.add((group, element >> 8))
    return keep


__all__ = [
    "CODED_STRING_EMPTIED",
    "HISTORY_TAGS",
    "KEPT",
    "KEPT_PRIVATE",
    "MARKER_TAGS",
    "MISMATCH",
    "REMOVE_OVERLAY",
    "SCAN_FOUND",
    "Kind",
    "Rule",
    "decide",
    "dropped_overlays",
    "private_rule",
    "pseudonym_as_text",
    "unlisted_action",
]
