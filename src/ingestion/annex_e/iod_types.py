"""IOD Types that resolve Table E.1-1's combined codes, by SOP Class (package data).

``data/iod_attribute_types.json`` (derived from the standard's Part 3 data; see the
README beside it) gives, per IOD, the Type of every attribute that has a combined code
(``X/Z``, ``X/D``, ``X/Z/D``, ``Z/D``, ``X/Z/U*``), at top level and inside sequences and
functional groups, and the ``resolve`` table: code → Type → action. Nothing is retyped:
this module only indexes it by SOP Class UID and by sequence path.

Where one path has several occurrences (an attribute from two modules), the strictest
Type wins. An unknown SOP Class, or an attribute at a path the IOD does not define, keeps
the most protective choice that the caller already has.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

IOD_TYPES_FILE = "iod_attribute_types.json"

#: Strictest first: when two modules define one attribute at one path.
_STRICTNESS = ("1", "1C", "2", "2C", "3")

#: ``(enclosing sequence tags, outermost first) -> {tag: Type}``
PathTypes = Mapping[tuple[int, ...], Mapping[int, str]]


def _tag(text: str) -> int:
    return int(text.strip("()").replace(",", ""), 16)


@cache
def _data() -> dict[str, Any]:
    files = resources.files("src.ingestion").joinpath("data", IOD_TYPES_FILE)
    with files.open("r", encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


@cache
def _by_sop_class() -> dict[str, str]:
    return {uid: iod for iod, entry in _data()["iods"].items() for uid in entry["sop_classes"]}


@cache
def _sop_class_names() -> dict[str, str]:
    return {
        uid: str(name)
        for entry in _data()["iods"].values()
        for uid, name in entry["sop_classes"].items()
    }


def sop_class_name(sop_class_uid: str) -> str | None:
    """The standard's name of a SOP Class (Part 3, as the package data holds it), or None.

    >>> sop_class_name("1.2.840.10008.5.1.4.1.1.2")
    'CT Image Storage'
    """
    return _sop_class_names().get(sop_class_uid)


@cache
def types_for_sop_class(sop_class_uid: str) -> PathTypes | None:
    """The Types of the combined-code attributes in the IOD of ``sop_class_uid``.

    Returns
    -------
    mapping or None
        ``{sequence path: {tag: Type}}``; ``None`` for a SOP Class the data does not know.

    Examples
    --------
    >>> ct = types_for_sop_class("1.2.840.10008.5.1.4.1.1.2")
    >>> ct[()][0x00080023]  # Content Date in the General Image module
    '2C'
    """
    iod = _by_sop_class().get(sop_class_uid.strip())
    if iod is None:
        return None
    out: dict[tuple[int, ...], dict[int, str]] = {}
    for tag_text, occurrences in _data()["iods"][iod]["attributes"].items():
        tag = _tag(tag_text)
        for occurrence in occurrences:
            path = tuple(_tag(t) for t in occurrence[0])
            kind = str(occurrence[1])
            at = out.setdefault(path, {})
            known = at.get(tag)
            if kind in _STRICTNESS and (
                known is None or _STRICTNESS.index(kind) < _STRICTNESS.index(known)
            ):
                at[tag] = kind
    return out


@cache
def resolution() -> Mapping[str, Mapping[str, str]]:
    """The data's ``resolve`` table: combined code → Type → ``X``, ``Z``, ``D`` or ``U*``."""
    table: dict[str, dict[str, str]] = _data()["resolve"]
    return table


def resolve(code: str, attribute_type: str) -> str | None:
    """The single code for a combined ``code`` at ``attribute_type`` (``None`` if unknown)."""
    return resolution().get(code, {}).get(attribute_type)


__all__ = ["PathTypes", "resolution", "resolve", "sop_class_name", "types_for_sop_class"]
