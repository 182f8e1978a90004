"""Why an attribute gets the action it gets: the compiled rule, read back for people.

``medpipe explain TAG [profile flags]`` prints this. The rule comes from the same place
the engines take it (:func:`src.ingestion.annex_e.element_rules.decide` over
:func:`src.ingestion.annex_e.profile.compile_rules`), so the explanation cannot drift from what
is done: the table row and its options, the IOD Type that resolves a combined code, the
masks for curves, overlays and private groups, the pseudonym for Patient Name and ID,
and the safety net for what Table E.1-1 does not list.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom._dicom_dict import RepeatersDictionary
from pydicom.datadict import dictionary_description, dictionary_has_tag, tag_for_keyword

from src.ingestion.annex_e.element_rules import Kind, Rule, _Mode, _tag_text, decide
from src.ingestion.annex_e.iod_types import types_for_sop_class
from src.ingestion.annex_e.profile import (
    Action,
    ConfidentialityProfile,
    TableRow,
    compile_rules,
    effective_code,
    load_table_e1_1,
    parse_tag,
)
from src.ingestion.encoding.elements import implicit_vr

ACTION_NAMES = {
    Action.REMOVE: "X (removed)",
    Action.ZERO: "Z (emptied)",
    Action.DUMMY: "D (replaced by a dummy)",
    Action.KEEP: "K (kept)",
    Action.CLEAN: "C (cleaned)",
    Action.UID: "U (replaced by a keyed UID)",
}
#: The contexts explained: top level, any sequence, SR content dummied or cleaned.
CONTEXTS = (
    ("at the top level", (), _Mode.NORMAL),
    ("inside a sequence", (0x00081140,), _Mode.NORMAL),
    ("inside content whose sequence is D (SR content)", (0x0040A730,), _Mode.DUMMY),
    ("inside content whose sequence is C", (0x0040A730,), _Mode.CLEAN),
)


@dataclass(frozen=True)
class Decision:
    """The action in one context and why."""

    context: str
    action: str
    why: str


@dataclass(frozen=True)
class Explanation:
    """What happens to one attribute under one profile."""

    tag: int
    name: str
    vr: str
    row: TableRow | None
    code: str | None  # the row's code after the profile's options
    decisions: tuple[Decision, ...]

    def render(self) -> str:
        """The explanation as lines of text."""
        lines = [f"{_tag_text(self.tag)} {self.name} (VR {self.vr})"]
        if self.row is not None:
            options = {k: v for k, v in self.row.options.items() if v}
            listed = ", ".join(f"{k}: {v}" for k, v in options.items()) or "none"
            lines.append(
                f"  Table E.1-1 row {self.row.tag_text} {self.row.name}: basic {self.row.basic}; "
                f"option codes {listed}; with this profile: {self.code}"
            )
        else:
            lines.append("  Table E.1-1 does not list it")
        for d in self.decisions:
            lines.append(f"  {d.context}: {d.action}")
            lines.append(f"    because {d.why}")
        return "\n".join(lines)


def parse_attribute(text: str) -> int:
    """A keyword (``PatientName``) or a tag (``(0010,0010)``, ``00100010``) as an int."""
    tag = tag_for_keyword(text.strip())
    if tag is not None:
        return int(tag)
    for mask, entry in RepeatersDictionary.items():  # OverlayData, CurveData ...
        if entry[4] == text.strip():
            return int(mask.replace("x", "0"), 16)
    try:
        return parse_tag(text)
    except ValueError:
        raise ValueError(f"not a DICOM keyword or tag: {text!r}") from None


def explain(
    attribute: str | int,
    profile: ConfidentialityProfile | None = None,
    *,
    sop_class_uid: str | None = None,
    vr: str | None = None,
) -> Explanation:
    """Explain the action for ``attribute`` under ``profile``.

    Parameters
    ----------
    attribute : str or int
        A keyword or a tag.
    profile : ConfidentialityProfile, optional
        Defaults to the Basic Profile with Modified Dates.
    sop_class_uid : str, optional
        Resolves combined codes (``X/Z/D``) by the attribute's Type in that IOD.
    vr : str, optional
        The VR the element arrives with (default: its dictionary VR).
    """
    profile = profile or ConfidentialityProfile()
    tag = attribute if isinstance(attribute, int) else parse_attribute(attribute)
    the_vr = vr or implicit_vr(tag).decode()
    rules = compile_rules(profile)
    iod = types_for_sop_class(sop_class_uid) if sop_class_uid else None
    row = _row(tag)
    code = effective_code(row.basic, row.options, profile) if row is not None else None
    decisions = []
    for label, path, mode in CONTEXTS:
        rule = decide(tag, the_vr, path, iod, rules, profile, frozenset(), mode)
        decisions.append(Decision(label, _action(rule), _why(rule, tag, code, sop_class_uid)))
    name = dictionary_description(tag) if dictionary_has_tag(tag) else "(not in the dictionary)"
    if row is not None and not dictionary_has_tag(tag):
        name = row.name
    return Explanation(tag, name, the_vr, row, code, tuple(decisions))


def _row(tag: int) -> TableRow | None:
    group, element = tag >> 16, tag & 0xFFFF
    for row in load_table_e1_1():
        if row.tag == tag:
            return row
    masks = {"(50xx,xxxx)": 0x5000 <= group <= 0x50FF, "(gggg,eeee)": bool(group & 1)}
    masks["(60xx,3000)"] = 0x6000 <= group <= 0x60FF and element == 0x3000
    masks["(60xx,4000)"] = 0x6000 <= group <= 0x60FF and element == 0x4000
    for row in load_table_e1_1():
        if row.tag is None and masks.get(row.tag_text):
            return row
    return None


def _action(rule: Rule) -> str:
    kind = rule.kind
    if kind == Kind.SCAN:
        return "K (kept), or C if it holds this patient's identifiers"
    if kind == Kind.UID_CHECK:
        return "K (kept) for a UID the standard defines, else U (replaced by a keyed UID)"
    if kind == Kind.PRIVATE:
        return "K (kept) only under its own private creator per Table E.3.10-1, else X"
    if kind == Kind.OVERLAY and rule.then is not None:
        return (
            f"X with its whole group when the group holds Overlay Data; else {_action(rule.then)}"
        )
    if kind == Kind.CODE_MEANING:
        return "K as the standard's meaning of its code, C to it, or D for a local code"
    if kind == Kind.CODED_STRING:
        return "K (kept), or Z if it holds this patient's identifiers"
    if kind == Kind.WALK:
        return f"{ACTION_NAMES[rule.action]}; its items follow these rules"
    if kind == Kind.NOT_HANDLED and rule.reason == "file-meta":
        return ACTION_NAMES[rule.action]
    if kind == Kind.NOT_HANDLED:
        return "decided from the value (see the reason)"
    return ACTION_NAMES[rule.action]


_WHY = {
    "preserve_tags": "the caller preserved it",
    "group-length": "group lengths are removed (they would be wrong after editing)",
    "padding": "Data Set Trailing Padding can hold anything",
    "pseudonym": "Patient Name and Patient ID become the keyed patient pseudonym",
    "private": "private attributes follow the (gggg,eeee) row and Retain Safe Private",
    "curve": "curves follow the (50xx,xxxx) row",
    "overlay": "overlays follow the (60xx,3000) and (60xx,4000) rows",
    "safety-net": "Table E.1-1 does not list it: the safety net (names dummied, free text "
    "removed, dates by the longitudinal option, non-standard UIDs replaced, unknown public "
    "attributes removed)",
    "vr-mismatch": "it is to be cleaned but arrived with a VR its dictionary entry does not "
    "allow: a dummy instead",
    "file-meta": "the File Meta Information is rebuilt with only what PS3.10 defines; the "
    "Media Storage SOP Instance UID is the new SOP Instance UID",
    "directory": "directory records keep their keys (present stays present)",
    "history": "an earlier de-identification's method is kept and ours appended",
    "enclosing": "it is text inside a sequence whose own rule is stricter (D or C): it "
    "follows the sequence's rule",
    "timezone": "Modified Dates (C): the offset tells the region the patient was scanned in and "
    "no shifted date needs it, so it is removed, and every DT loses its UTC offset with it "
    "(PS3.15 E.3.6 allows it cleaned consistently or removed; Retain Full Dates keeps both)",
    "U*": "its row's code allows U*: the references are kept, every UID inside replaced by "
    "the keyed mapping of the referenced files' own UIDs (--no-keep-image-references: "
    "the choice by IOD Type instead)",
}


def _why(rule: Rule, tag: int, code: str | None, sop_class_uid: str | None) -> str:
    reason = rule.reason
    if rule.kind in (Kind.CODE_MEANING, Kind.CODED_STRING):
        return (
            "SR content keeps its coded structure: coded strings hold defined terms, and a "
            "Code Meaning is kept only as the standard's own meaning of a standard code"
        )
    if rule.kind == Kind.OVERLAY and rule.then is not None and rule.then.reason != "overlay":
        return f"{_WHY['overlay']}; else {_why(rule.then, tag, code, sop_class_uid)}"
    if reason.startswith("E.1-1 Type"):
        kind = reason.split()[-1]
        return (
            f"its combined code {code} is resolved by its Type {kind} in the IOD of {sop_class_uid}"
        )
    if reason == "E.1-1":
        if code is None:
            return "Table E.1-1 does not list it and the safety net keeps it"
        if "/" in code:
            how = "by the IOD Type (give --sop-class)" if sop_class_uid is None else ""
            return f"its row's code {code}, the most protective choice {how}".rstrip()
        return f"its row's code {code} after the profile's options"
    return _WHY.get(reason, reason)


__all__ = ["ACTION_NAMES", "Decision", "Explanation", "explain", "parse_attribute"]
