"""Whether an image's pixels may carry burned-in text, from its header alone.

The header cannot clear an image (a device may write Burned In Annotation NO, or
nothing); it can only put one at risk. At risk, whatever Burned In Annotation says:
Secondary Capture, video and visible-light photographs (the VL family) by SOP Class,
images whose header says a label is in them (a whole slide's LABEL and OVERVIEW images,
Specimen Label in Image YES), and the modalities whose images carry burned-in text in
practice (:data:`SCREENED_MODALITIES`: ultrasound, projection radiography, mammography,
angiography and fluoroscopy, endoscopy, photographs, secondary and other captures).
CT, MR, PT, NM and the others follow Burned In Annotation: YES is at risk.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from src.ingestion.annex_e.safety_net import _text, _value
from src.ingestion.encoding.dictionary import uid_registry

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

#: Modalities screened whatever the header says (#29): their devices write annotations
#: into the pixels and often say NO, or nothing.
SCREENED_MODALITIES = frozenset(
    {"US", "CR", "DX", "MG", "XA", "RF", "ES", "XC", "SC", "OT", "IO", "PX", "GM", "OP"}
)


def burned_in_risk(ds: Dataset) -> bool:
    """Whether the pixels may carry burned-in text (:func:`burned_in_risk_of`)."""
    return burned_in_risk_of(
        _value(ds, 0x00080016),
        _value(ds, 0x00280301),
        _value(ds, 0x00080060),
        _multi(ds, 0x00080008),
        _value(ds, 0x00480010),
    )


def _multi(ds: Dataset, tag: int) -> str:
    """A multi-valued text value joined with backslashes, as the byte engine reads it."""
    from pydicom.multival import MultiValue

    from src.ingestion.parsing.access import peek

    elem = peek(ds, tag)
    if elem is None or elem.VR == "SQ" or elem.value is None:
        return ""
    value = elem.value
    return "\\".join(map(str, value)) if isinstance(value, MultiValue | list) else _text(value)


def burned_in_risk_of(
    sop_class_uid: str,
    burned_in_annotation: str,
    modality: str,
    image_type: str = "",
    specimen_label_in_image: str = "",
) -> bool:
    """Whether the pixels may carry burned-in text.

    See the module docstring: the SOP Class, a declared label and the Modality can put
    an image at risk whatever Burned In Annotation says; otherwise its YES does.
    """
    if _at_risk_sop_class(sop_class_uid) or declares_text(image_type, specimen_label_in_image):
        return True
    if modality.upper() in SCREENED_MODALITIES:
        return True
    return burned_in_annotation.upper() == "YES"


def declares_text(image_type: str, specimen_label_in_image: str) -> bool:
    """Whether the header says the pixels hold a label: Image Type LABEL or OVERVIEW (a
    whole slide's label and overview images), or Specimen Label in Image YES."""
    kinds = {v.strip().upper() for v in image_type.split("\\")}
    return bool(kinds & {"LABEL", "OVERVIEW"}) or specimen_label_in_image.upper() == "YES"


def _at_risk_sop_class(uid: str) -> bool:
    entry = uid_registry().get(uid)
    name = str(entry[0]) if entry else ""
    if "Whole Slide" in name:  # its tiles: at risk only as LABEL or OVERVIEW (declared)
        return False
    return any(kind in name for kind in ("Secondary Capture", "Video", "VL "))


def says_text(ds: Dataset) -> bool:
    """Whether the header says a label is in the image (:func:`declares_text`): an image
    the detector must find text in before it can be called clean. (Burned In Annotation
    YES is not such a statement: devices write it for frames that carry no text.)"""
    return declares_text(_multi(ds, 0x00080008), _value(ds, 0x00480010))


__all__ = [
    "SCREENED_MODALITIES",
    "burned_in_risk",
    "burned_in_risk_of",
    "declares_text",
    "says_text",
]
