"""Private attributes: removed, or kept under Retain Safe Private (Table E.3.10-1) only
under their matching private creator."""

from __future__ import annotations

from pydicom.dataset import Dataset

from src.ingestion.annex_e.profile import Action, CompiledRules
from src.ingestion.annex_e.safety_net import _text


def private_action(
    ds: Dataset, tag: int, rules: CompiledRules, creators_kept: dict[int, str]
) -> tuple[Action, str]:
    """Remove a private element, or keep it under Retain Safe Private when Table
    E.3.10-1 lists it under its own private creator (the creator element is kept too)."""
    if rules.private != Action.CLEAN:
        return Action.REMOVE, "private"
    group, element = tag >> 16, tag & 0xFFFF
    if 0x0010 <= element <= 0x00FF:
        creator = _text(ds[tag].value)
        if any(c == creator and g == group for c, g, _ in rules.safe_private):
            creators_kept[tag] = creator
            return Action.KEEP, "private"
        return Action.REMOVE, "private"
    if element < 0x1000:
        return Action.REMOVE, "private"
    creator_tag = (group << 16) | (element >> 8)
    if creator_tag not in ds:
        return Action.REMOVE, "private"
    creator = _text(ds[creator_tag].value)
    if (creator, group, element & 0xFF) in rules.safe_private:
        return Action.KEEP, "private"
    return Action.REMOVE, "private"


def drop_orphan_creators(ds: Dataset) -> None:
    """Remove private creator elements whose block no longer holds any element."""
    present = list(ds.keys())
    used = {(t >> 16, (t & 0xFFFF) >> 8) for t in present if t >> 16 & 1 and (t & 0xFFFF) >= 0x1000}
    for tag in present:
        group, element = tag >> 16, tag & 0xFFFF
        if group & 1 and 0x0010 <= element <= 0x00FF and (group, element) not in used:
            del ds[tag]


__all__ = ["drop_orphan_creators", "private_action"]
