"""Region rules: where a device is known to burn text in, blank it (after CTP's pixel script).

A rules file is TOML. Each ``[[rule]]`` has a ``name``, a condition table ``when`` on
header values of the *original* instance, and ``boxes``: rectangles ``[x, y, width,
height]`` in pixels (columns from the left, rows from the top), applied to every frame::

    [[rule]]
    name = "acme-us-640x480-banner"
    boxes = [[0, 0, 640, 56]]
    [rule.when]
    Modality = "US"                       # equal (case-insensitive, either side trimmed)
    Manufacturer = { contains = "ACME" }  # contains / startswith / endswith / in / equals
    Rows = 480                            # numbers compare as numbers
    Columns = 640

Every condition of a rule must hold (an absent attribute never matches). A negative
``x``/``y`` counts from the right/bottom edge; a ``width``/``height`` of ``0`` extends to
that edge. The starter set shipped in ``src/pixels/data/regions.toml`` is loaded first;
a user's file (``pixel_regions`` in the profile, ``--pixel-regions`` on the command
line) adds to it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from src.errors import ConfigurationError
from src.pixels.detector import TextBox

_OPERATORS = ("equals", "contains", "startswith", "endswith", "in")


class RegionRulesError(ConfigurationError):
    """A rules file that cannot be read (names the rule and the field, never a value)."""


@dataclass(frozen=True)
class Condition:
    """One test on one attribute, by keyword."""

    keyword: str
    operator: str
    operand: Any

    def holds(self, header: Mapping[str, Any]) -> bool:
        value = header.get(self.keyword)
        if value is None or value == "":
            return False
        if isinstance(self.operand, int | float) and not isinstance(self.operand, bool):
            try:
                return float(value) == float(self.operand)
            except (TypeError, ValueError):
                return False
        text = str(value).strip().upper()
        if self.operator == "in":
            return text in {str(v).strip().upper() for v in self.operand}
        operand = str(self.operand).strip().upper()
        if self.operator == "contains":
            return operand in text
        if self.operator == "startswith":
            return text.startswith(operand)
        if self.operator == "endswith":
            return text.endswith(operand)
        return text == operand


@dataclass(frozen=True)
class RegionRule:
    """A named condition and the rectangles it blanks."""

    name: str
    conditions: tuple[Condition, ...]
    boxes: tuple[tuple[int, int, int, int], ...]

    def matches(self, header: Mapping[str, Any]) -> bool:
        return bool(self.conditions) and all(c.holds(header) for c in self.conditions)

    def rectangles(self, rows: int, columns: int, frame: int) -> list[TextBox]:
        """The rule's boxes resolved against an image of ``rows`` x ``columns``."""
        out = []
        for x, y, width, height in self.boxes:
            left = x if x >= 0 else columns + x
            top = y if y >= 0 else rows + y
            right = columns if width == 0 else left + width
            bottom = rows if height == 0 else top + height
            left, top = max(0, left), max(0, top)
            right, bottom = min(columns, right), min(rows, bottom)
            if right > left and bottom > top:
                out.append(
                    TextBox(frame, left, top, right - left, bottom - top, f"rule:{self.name}")
                )
        return out


def _condition(rule: str, keyword: str, spec: Any) -> Condition:
    if isinstance(spec, Mapping):
        if len(spec) != 1 or next(iter(spec)) not in _OPERATORS:
            raise RegionRulesError(
                f"rule {rule}: condition on {keyword} needs one of {', '.join(_OPERATORS)}"
            )
        operator, operand = next(iter(spec.items()))
        if operator == "in" and not isinstance(operand, list):
            raise RegionRulesError(f"rule {rule}: 'in' on {keyword} needs a list")
        return Condition(keyword, operator, operand)
    if isinstance(spec, str | int | float) and not isinstance(spec, bool):
        return Condition(keyword, "equals", spec)
    raise RegionRulesError(f"rule {rule}: condition on {keyword} is not a string or number")


def _rule(entry: Mapping[str, Any], position: int) -> RegionRule:
    name = str(entry.get("name") or f"#{position}")
    when = entry.get("when")
    if not isinstance(when, Mapping) or not when:
        raise RegionRulesError(f"rule {name}: 'when' must be a non-empty table")
    raw_boxes = entry.get("boxes")
    if not isinstance(raw_boxes, list) or not raw_boxes:
        raise RegionRulesError(f"rule {name}: 'boxes' must be a non-empty list")
    boxes = []
    for box in raw_boxes:
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in box)
            or box[2] < 0
            or box[3] < 0
        ):
            raise RegionRulesError(f"rule {name}: a box must be [x, y, width, height] integers")
        boxes.append((box[0], box[1], box[2], box[3]))
    conditions = tuple(_condition(name, str(k), v) for k, v in when.items())
    return RegionRule(name, conditions, tuple(boxes))


def parse_rules(text: str, source: str = "<rules>") -> list[RegionRule]:
    """Parse a rules document (TOML); raises :class:`RegionRulesError`."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegionRulesError(f"{source}: not valid TOML ({exc})") from None
    entries = document.get("rule", [])
    if not isinstance(entries, list):
        raise RegionRulesError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    return [_rule(entry, i) for i, entry in enumerate(entries, start=1)]


def starter_rules() -> list[RegionRule]:
    """The starter set shipped with the package."""
    text = resources.files("src.pixels").joinpath("data/regions.toml").read_text("utf-8")
    return parse_rules(text, "regions.toml")


class RegionRules:
    """The starter set plus any user files.

    Parameters
    ----------
    paths : iterable of path
        User rule files, added after the starter set.
    include_starter : bool
        Load the shipped starter set first.
    """

    def __init__(self, paths: Iterable[str | Path] = (), include_starter: bool = True) -> None:
        self.rules: list[RegionRule] = starter_rules() if include_starter else []
        for path in paths:
            try:
                text = Path(path).read_text("utf-8")
            except OSError as exc:
                raise RegionRulesError(
                    f"cannot read the region rules file ({exc.strerror})"
                ) from None
            self.rules.extend(parse_rules(text, Path(path).name))

    @property
    def keywords(self) -> frozenset[str]:
        """Every attribute keyword a condition reads."""
        return frozenset(c.keyword for r in self.rules for c in r.conditions)

    def boxes(
        self, header: Mapping[str, Any], rows: int, columns: int, frames: int
    ) -> list[TextBox]:
        """The rectangles of every matching rule, for every frame."""
        out = []
        for rule in self.rules:
            if rule.matches(header):
                for frame in range(frames):
                    out.extend(rule.rectangles(rows, columns, frame))
        return out


__all__ = [
    "Condition",
    "RegionRule",
    "RegionRules",
    "RegionRulesError",
    "parse_rules",
    "starter_rules",
]
