"""PS3.15 Annex E Application Level Confidentiality Profile: options and the rule tables.

The rules are loaded at run time from the standard's own tables, shipped as package data
(``data/ps3.15_table_E.1-1.json`` and ``data/ps3.15_table_E.3.10-1.json``, edition
2026d); nothing here retypes them. Loading happens once per process (cached).

Action codes follow Table E.1-1: ``D`` dummy, ``Z`` zero length, ``X`` remove, ``K`` keep,
``C`` clean, ``U`` replace UID consistently. Combined codes (``X/Z``, ``X/D``, ``X/Z/D``,
``Z/D``, ``X/Z/U*``) are resolved by the attribute's Type where the profile knows it
(``attribute_types``: Type 1 → D or U, Type 2 → Z, Type 3 → X) and otherwise by the most
protective code they allow (X before Z before D before U).

The default profile is the Basic Profile with Retain Longitudinal Temporal Information
with Modified Dates: every date of a patient moves by one keyed offset, so intervals
survive and real dates do not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

_DATA = "data"
TABLE_E1_1 = "ps3.15_table_E.1-1.json"
TABLE_E3_10_1 = "ps3.15_table_E.3.10-1.json"


class Action(StrEnum):
    """The single actions of Table E.1-1."""

    DUMMY = "D"
    ZERO = "Z"
    REMOVE = "X"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


class Option(StrEnum):
    """The ten options of PS3.15 E.3, named as the table's ``options`` columns."""

    RETAIN_SAFE_PRIVATE = "retain_safe_private"
    RETAIN_UIDS = "retain_uids"
    RETAIN_DEVICE_IDENTITY = "retain_device_identity"
    RETAIN_INSTITUTION_IDENTITY = "retain_institution_identity"
    RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
    RETAIN_LONGITUDINAL_FULL_DATES = "retain_longitudinal_full_dates"
    RETAIN_LONGITUDINAL_MODIFIED_DATES = "retain_longitudinal_modified_dates"
    CLEAN_DESCRIPTORS = "clean_descriptors"
    CLEAN_STRUCTURED_CONTENT = "clean_structured_content"
    CLEAN_GRAPHICS = "clean_graphics"


class Code(NamedTuple):
    """A coded concept (CodeValue, CodingSchemeDesignator, CodeMeaning)."""

    value: str
    scheme: str
    meaning: str


#: CID 7050 De-identification Method codes.
BASIC_PROFILE_CODE = Code("113100", "DCM", "Basic Application Confidentiality Profile")
OPTION_CODES: dict[Option, Code] = {
    Option.CLEAN_STRUCTURED_CONTENT: Code("113104", "DCM", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: Code("113105", "DCM", "Clean Descriptors Option"),
    Option.RETAIN_LONGITUDINAL_FULL_DATES: Code(
        "113106", "DCM", "Retain Longitudinal Temporal Information Full Dates Option"
    ),
    Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: Code(
        "113107", "DCM", "Retain Longitudinal Temporal Information Modified Dates Option"
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: Code(
        "113108", "DCM", "Retain Patient Characteristics Option"
    ),
    Option.RETAIN_DEVICE_IDENTITY: Code("113109", "DCM", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: Code("113110", "DCM", "Retain UIDs Option"),
    Option.RETAIN_SAFE_PRIVATE: Code("113111", "DCM", "Retain Safe Private Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: Code("113112", "DCM", "Retain Institution Identity Option"),
    Option.CLEAN_GRAPHICS: Code("113103", "DCM", "Clean Graphics Option"),
}

# Most protective first: where a choice is left open, the earliest allowed code wins.
_PROTECTION_ORDER = (
    Action.REMOVE,
    Action.ZERO,
    Action.DUMMY,
    Action.UID,
    Action.CLEAN,
    Action.KEEP,
)
_TYPE_CHOICE = {"1": (Action.DUMMY, Action.UID), "2": (Action.ZERO,), "3": (Action.REMOVE,)}
_UID_ROOT_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


@dataclass(frozen=True)
class ConfidentialityProfile:
    """Which PS3.15 options apply, and how pseudonyms are formed.

    Parameters
    ----------
    retain_safe_private, retain_uids, retain_device_identity, retain_institution_identity, \
retain_patient_characteristics, retain_longitudinal_full_dates, \
retain_longitudinal_modified_dates, clean_descriptors, clean_structured_content, \
clean_graphics : bool
        The ten options of PS3.15 E.3. Only Modified Dates is on by default.
    uid_root : str
        Root of the replacement UIDs; ``"2.25"`` renders UUID-style decimal UIDs.
    attribute_types : Mapping[int, str]
        Known IOD Types (``"1"``, ``"2"``, ``"3"``) by tag, used to resolve combined
        action codes. Unknown attributes get the most protective allowed code.
    max_date_shift_days : int
        Upper bound of the keyed per-patient date offset (always at least one day back).
    clean_pixels : bool
        The Clean Pixel Data option (PS3.15 E.3.1): images at risk of burned-in text
        are searched and their text masked (:mod:`src.pixels`). Not a column of E.1-1:
        it changes no attribute rule, only pixels and the markers.
    pixel_regions : str
        A region rules file added to the shipped starter set (``""``: none).
    pixel_text : {"all", "phi"}
        Mask every text box found (default), or only text that matches this patient's
        identifiers or a PHI pattern.
    pixel_verify : {"detector", "tesseract"}
        Who looks again after Clean Pixel Data: the detector (default), or also
        Tesseract reading every whole frame at every orientation (Debian's
        ``tesseract-ocr``); text it reads quarantines the image.
    keep_image_references : bool
        Where Table E.1-1 allows ``U*`` (Referenced Image Sequence, Source Image
        Sequence: ``X/Z/U*``), keep the sequence with every UID inside replaced by the
        same keyed mapping as the referenced files' own UIDs (default), so that a
        derived image, a segmentation or a report still points to its sources. Off:
        the choice by IOD Type, the most protective where the Type is unknown.

    Examples
    --------
    >>> ConfidentialityProfile().enabled_options()
    [<Option.RETAIN_LONGITUDINAL_MODIFIED_DATES: 'retain_longitudinal_modified_dates'>]
    """

    retain_safe_private: bool = False
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    retain_longitudinal_full_dates: bool = False
    retain_longitudinal_modified_dates: bool = True
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    uid_root: str = "2.25"
    attribute_types: Mapping[int, str] = field(default_factory=dict, hash=False)
    max_date_shift_days: int = 3650
    clean_pixels: bool = False
    pixel_regions: str = ""
    pixel_text: str = "all"
    pixel_verify: str = "detector"
    keep_image_references: bool = True

    def __post_init__(self) -> None:
        if self.pixel_text not in ("all", "phi"):
            raise ValueError("pixel_text must be 'all' or 'phi'")
        if self.pixel_verify not in ("detector", "tesseract"):
            raise ValueError("pixel_verify must be 'detector' or 'tesseract'")
        if self.retain_longitudinal_full_dates and self.retain_longitudinal_modified_dates:
            raise ValueError(
                "choose one of retain_longitudinal_full_dates and "
                "retain_longitudinal_modified_dates"
            )
        if len(self.uid_root) > 40 or not _UID_ROOT_RE.match(self.uid_root):
            raise ValueError("uid_root must be a UID prefix of at most 40 characters")
        if self.max_date_shift_days < 1:
            raise ValueError("max_date_shift_days must be at least 1")

    @property
    def cleans_text(self) -> bool:
        """Whether a Clean option keeps text cleaned of *all* identifying information
        (PS3.15 E.3.5, E.3.6, E.3.7): then every person's and institution's name the
        instance holds is cleaned from it, not only the patient's."""
        return self.clean_descriptors or self.clean_structured_content or self.clean_graphics

    def enabled_options(self) -> list[Option]:
        """Return the options that are switched on, in the table's column order."""
        return [opt for opt in Option if getattr(self, opt.value)]

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> ConfidentialityProfile:
        """Build a profile from a mapping (a TOML table); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown profile settings: {', '.join(unknown)}")
        return cls(**dict(values))

    def as_dict(self) -> dict[str, Any]:
        """Return the profile as plain data (for ``medpipe config show`` and manifests)."""
        out: dict[str, Any] = {opt.value: getattr(self, opt.value) for opt in Option}
        out["uid_root"] = self.uid_root
        out["max_date_shift_days"] = self.max_date_shift_days
        out["clean_pixels"] = self.clean_pixels
        out["pixel_regions"] = self.pixel_regions
        out["pixel_text"] = self.pixel_text
        out["pixel_verify"] = self.pixel_verify
        out["keep_image_references"] = self.keep_image_references
        out["attribute_types"] = {f"{t:08X}": v for t, v in self.attribute_types.items()}
        return out

    def method_description(self) -> list[str]:
        """Values for De-identification Method (0012,0063): LO, at most 64 characters each."""
        names = [f"PS3.15 E.1-1 {table_edition()} Basic Profile"]
        names += [OPTION_CODES[o].meaning[:64] for o in self.enabled_options()]
        return names


def parse_tag(text: str) -> int:
    """Parse ``"(gggg,eeee)"`` or ``"ggggeeee"`` into an integer tag."""
    cleaned = text.strip().strip("()").replace(",", "").replace(" ", "")
    if not re.fullmatch(r"[0-9A-Fa-f]{8}", cleaned):
        raise ValueError(f"not a tag: {text!r}")
    return int(cleaned, 16)


@dataclass(frozen=True)
class TableRow:
    """One row of Table E.1-1 as loaded (``tag`` is None for the four masks)."""

    tag_text: str
    tag: int | None
    name: str
    keyword: str | None
    basic: str
    options: Mapping[str, str | None]


def _load_json(name: str) -> dict[str, Any]:
    with resources.files("src.ingestion").joinpath(_DATA, name).open("r", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def load_table_e1_1() -> tuple[TableRow, ...]:
    """Load PS3.15 Table E.1-1 (cached per process)."""
    rows = []
    for row in _load_json(TABLE_E1_1)["rows"]:
        text = row["tag"]
        try:
            tag: int | None = parse_tag(text)
        except ValueError:
            tag = None
        rows.append(TableRow(text, tag, row["name"], row["keyword"], row["basic"], row["options"]))
    return tuple(rows)


@cache
def load_safe_private() -> frozenset[tuple[str, int, int]]:
    """Load Table E.3.10-1 as ``(private creator, group, element byte)`` triples (cached)."""
    safe = set()
    for row in _load_json(TABLE_E3_10_1)["rows"]:
        group_text, elem_text = row["tag"].strip("()").split(",")
        safe.add((row["private_creator"].strip(), int(group_text, 16), int(elem_text[2:], 16)))
    return frozenset(safe)


@cache
def table_edition() -> str:
    """The standard's edition of the shipped tables, for example ``"2026d"``."""
    return str(_load_json(TABLE_E1_1)["edition"])


def choose(code: str, attribute_type: str | None) -> Action:
    """Resolve a (possibly combined) action code to one action.

    Parameters
    ----------
    code : str
        ``"X"``, ``"X/Z"``, ``"X/Z/U*"`` and so on.
    attribute_type : str or None
        The attribute's Type in the IOD (``"1"``, ``"2"``, ``"3"``), if known.

    Returns
    -------
    Action
    """
    allowed = [Action(part.rstrip("*")) for part in code.split("/")]
    if len(allowed) == 1:
        return allowed[0]
    if attribute_type in _TYPE_CHOICE:
        for wanted in _TYPE_CHOICE[attribute_type]:
            if wanted in allowed:
                return wanted
    for action in _PROTECTION_ORDER:
        if action in allowed:
            return action
    return allowed[0]  # pragma: no cover - every code holds one of the ordered actions


def effective_code(
    row_basic: str, row_options: Mapping[str, str | None], profile: ConfidentialityProfile
) -> str:
    """The row's code after the profile's options: the most protective option code wins."""
    candidates = [row_options.get(opt.value) for opt in profile.enabled_options()]
    chosen = [c for c in candidates if c]
    if not chosen:
        return row_basic
    return min(chosen, key=lambda c: _PROTECTION_ORDER.index(choose(c, None)))


@dataclass(frozen=True)
class CompiledRules:
    """The table resolved for one profile: what happens to each listed tag."""

    by_tag: Mapping[int, Action]
    curves: Action
    overlay_data: Action
    overlay_comments: Action
    private: Action
    safe_private: frozenset[tuple[str, int, int]]
    #: Tags whose effective code is still combined (``X/Z`` ...), with that code: the walk
    #: resolves them from the object's IOD Types (:mod:`src.ingestion.annex_e.iod_types`).
    combined: Mapping[int, str] = field(default_factory=dict)
    #: Sequences of references whose code allows ``U*``, kept with their UIDs replaced
    #: (``keep_image_references``).
    references: frozenset[int] = frozenset()


@cache
def compile_rules(profile: ConfidentialityProfile) -> CompiledRules:
    """Resolve Table E.1-1 for ``profile`` (cached per profile)."""
    by_tag: dict[int, Action] = {}
    combined: dict[int, str] = {}
    masks: dict[str, Action] = {}
    references: set[int] = set()
    for row in load_table_e1_1():
        code = effective_code(row.basic, row.options, profile)
        if row.tag is None:
            masks[row.tag_text] = choose(code, None)
            continue
        if profile.keep_image_references and "U*" in code.split("/"):
            # The U* branch: the sequence stays, each UID inside gets its own row's
            # action (Referenced SOP Instance UID: U, the same keyed mapping).
            by_tag[row.tag] = Action.KEEP
            references.add(row.tag)
            continue
        given = profile.attribute_types.get(row.tag)
        by_tag[row.tag] = choose(code, given)
        if "/" in code and given is None:
            combined[row.tag] = code
    return CompiledRules(
        by_tag=by_tag,
        curves=masks["(50xx,xxxx)"],
        overlay_data=masks["(60xx,3000)"],
        overlay_comments=masks["(60xx,4000)"],
        private=masks["(gggg,eeee)"],
        safe_private=load_safe_private(),
        combined=combined,
        references=frozenset(references),
    )
