"""The action report of a de-identification: what happened to each element, never values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from src.ingestion.annex_e.profile import Action

if TYPE_CHECKING:
    from pydicom.dataset import Dataset


@dataclass(frozen=True)
class ActionRecord:
    """What happened to one element. Holds no values, only where and what.

    Attributes
    ----------
    path : str
        Keyword path, for example ``"RequestAttributesSequence[0].RequestedProcedureID"``.
    tag : str
        ``"(gggg,eeee)"`` of the element itself.
    vr : str
        Its value representation.
    action : str
        ``"X"``, ``"Z"``, ``"D"``, ``"K"``, ``"C"`` or ``"U"``.
    reason : str
        Which rule decided: ``"E.1-1"``, ``"private"``, ``"curve"``, ``"overlay"``,
        ``"safety-net"``, ``"preserve_tags"``, ``"pseudonym"``, ``"group-length"``.
    """

    path: str
    tag: str
    vr: str
    action: str
    reason: str


@dataclass
class DeidentificationResult:
    """A de-identified dataset and the report of what was done (no PHI in the report).

    Attributes
    ----------
    dataset : pydicom.Dataset or None
        The de-identified dataset (for streamed files: the header, without pixel data);
        ``None`` when the caller asked the byte-level engine not to describe it.
    actions : list of ActionRecord
        One record per element visited, at every depth.
    patient_pseudonym : str
        The Patient ID written to the output.
    burned_in_annotation_risk : bool
        BurnedInAnnotation is YES, or absent in a US/SC/OT/XA/ES instance: the pixels may
        carry burned-in text, which this profile does not clean.
    graphics_review_required : bool
        Clean Graphics kept curves or overlays; their pixels need review.
    flags : list of str
        Parser flags (``no_file_meta``, ``deflated`` ...).
    """

    dataset: Dataset | None
    actions: list[ActionRecord] = field(default_factory=list)
    patient_pseudonym: str = ""
    burned_in_annotation_risk: bool = False
    graphics_review_required: bool = False
    flags: list[str] = field(default_factory=list)
    has_pixel_data: bool = False
    history_kept: bool = False
    #: AND mask applied to every 16-bit sample (embedded overlay bits zeroed), if any.
    pixel_mask: int | None = None
    unchanged_sequences: set[int] = field(default_factory=set, repr=False)
    #: Elements kept as they were and not listed in ``actions`` (the byte-level engine
    #: records only what changed).
    kept: int = 0
    #: BLAKE3 (hex) of the output file, computed from the bytes as they were written.
    output_blake3: str | None = None
    #: The byte engine's output top-level values, undecoded (``describe="header"``).
    header: Any = field(default=None, repr=False, compare=False)
    #: Builds :attr:`dataset` on demand where only the header was described.
    describe_output: Callable[[], Dataset] | None = field(default=None, repr=False, compare=False)

    @property
    def removed_tags(self) -> list[str]:
        """Paths of the elements whose original value did not survive (every action but K)."""
        return [a.path for a in self.actions if a.action != Action.KEEP]

    def report(self) -> dict[str, Any]:
        """The action report as plain data; it names tags and actions, never values."""
        counts: dict[str, int] = {"K": self.kept} if self.kept else {}
        for a in self.actions:
            counts[a.action] = counts.get(a.action, 0) + 1
        return {
            "patient_pseudonym": self.patient_pseudonym,
            "burned_in_annotation_risk": self.burned_in_annotation_risk,
            "graphics_review_required": self.graphics_review_required,
            "flags": list(self.flags),
            "action_counts": counts,
            "actions": [
                {"path": a.path, "tag": a.tag, "vr": a.vr, "action": a.action, "reason": a.reason}
                for a in self.actions
            ],
        }


#: The report's line for JPEG metadata segments removed from the pixel data.
JPEG_METADATA_REMOVED = ActionRecord("PixelData", "(7FE0,0010)", "OB", "C", "jpeg-metadata")


__all__ = ["JPEG_METADATA_REMOVED", "ActionRecord", "DeidentificationResult"]
