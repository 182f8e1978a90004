"""The DICOM data dictionary and UID registry, pydicom's own, without importing pydicom.

Importing ``pydicom`` costs a quarter of a second (NumPy and its pixel handlers come
with it), more than de-identifying a hundred small files. The byte-level engine needs
only the dictionary, so this module loads pydicom's dictionary modules (``_dicom_dict``
and ``_uid_dict``, plain data) from the installed pydicom without running its package,
or takes them from ``sys.modules`` when pydicom is already imported. The lookups follow
:mod:`pydicom.datadict` exactly (repeating groups by their masks, private tags never).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

#: Every VR of PS3.5 Table 6.2-1, and those whose explicit header has a 32-bit length
#: (PS3.5 7.1.2): the same sets as :data:`pydicom.valuerep.VR` and
#: :data:`pydicom.valuerep.EXPLICIT_VR_LENGTH_32`, which a test holds them to. They are
#: spelled out here only because importing :mod:`pydicom.valuerep` imports all of pydicom.
VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI "
    "UL UN UR US UT UV".split()
)
EXPLICIT_VR_LENGTH_32 = frozenset("OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def _module(name: str) -> ModuleType:
    loaded = sys.modules.get(f"pydicom.{name}")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("pydicom")  # finds the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pydicom is not installed")
    parts = name.split(".")
    root = next(iter(spec.submodule_search_locations))
    path = os.path.join(root, *parts[:-1], f"{parts[-1]}.py")
    alias = "src.ingestion._pydicom_" + name.replace(".", "_")
    module_spec = importlib.util.spec_from_file_location(alias, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"pydicom.{name} not found")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


@functools.cache
def _dictionaries() -> tuple[dict[int, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    data = _module("_dicom_dict")
    return data.DicomDictionary, data.RepeatersDictionary


@functools.cache
def _masks() -> tuple[tuple[str, int, int], ...]:
    return tuple(
        (
            mask,
            int(mask.replace("x", "0"), 16),
            int("".join("F0"[c == "x"] for c in mask), 16),
        )
        for mask in _dictionaries()[1]
    )


@functools.cache
def _keywords() -> dict[str, int]:
    return {entry[4]: tag for tag, entry in _dictionaries()[0].items()}


@functools.lru_cache(maxsize=16384)
def entry(tag: int) -> tuple[str, ...] | None:
    """``(VR, VM, name, retired, keyword)`` as :func:`pydicom.datadict.get_entry` (or None)."""
    main, repeaters = _dictionaries()
    found = main.get(tag)
    if found is not None:
        return found
    if not (tag >> 16) & 1:
        for mask, value, care in _masks():
            if (tag ^ value) & care == 0:
                return repeaters[mask]
    return None


def dictionary_has_tag(tag: int) -> bool:
    """Whether ``tag`` is in the main dictionary (repeaters not), as pydicom says."""
    return tag in _dictionaries()[0]


def dictionary_vr(tag: int) -> str | None:
    """The dictionary VR (``"US or SS"`` for a choice), or None when unknown."""
    found = entry(tag)
    return found[0] if found is not None else None


def keyword_for_tag(tag: int) -> str:
    """The keyword, or ``""`` when unknown."""
    found = entry(tag)
    return found[4] if found is not None else ""


def description(tag: int) -> str:
    """The attribute's name, or ``""`` when unknown."""
    found = entry(tag)
    return found[2] if found is not None else ""


def tag_for_keyword(keyword: str) -> int | None:
    """The tag of a keyword of the main dictionary, or None."""
    return _keywords().get(keyword)


@functools.cache
def uid_registry() -> dict[str, tuple[Any, ...]]:
    """pydicom's UID registry (PS3.6 Annex A): ``{uid: (name, type, info, retired, keyword)}``."""
    registry: dict[str, tuple[Any, ...]] = _module("_uid_dict").UID_dictionary
    return registry


def sr_concepts() -> dict[str, dict[str, dict[str, tuple[str, list[int]]]]]:
    """pydicom's SR concepts (PS3.16): ``{scheme: {name: {code: (meaning, cids)}}}``."""
    concepts: dict[str, Any] = _module("sr._concepts_dict").concepts
    return concepts


__all__ = [
    "EXPLICIT_VR_LENGTH_32",
    "VRS",
    "description",
    "dictionary_has_tag",
    "dictionary_vr",
    "entry",
    "keyword_for_tag",
    "sr_concepts",
    "tag_for_keyword",
    "uid_registry",
]
