"""The attributes PS3.15 requires of a de-identified object, and its file meta.

Patient Identity Removed, De-identification Method and its Code Sequence (the profile and
each option, after any earlier de-identification's entries), Longitudinal Temporal
Information Modified; the File Meta Information rebuilt with only what PS3.10 defines.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from src import __version__
from src.ingestion.annex_e.profile import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    Code,
    ConfidentialityProfile,
)
from src.ingestion.annex_e.pseudonyms import Pseudonymizer

if TYPE_CHECKING:  # pydicom is imported by the pydicom path only
    from pydicom.dataset import Dataset

#: Implementation Class UID (0002,0012) of the files medpipe writes: a UUID-derived UID
#: (PS3.5 B.2), the same for every version; the version is in Implementation Version Name.
IMPLEMENTATION_CLASS_UID = "2.25." + str(
    uuid.uuid5(uuid.NAMESPACE_URL, "https://medpipe.invalid/implementation-class").int
)
IMPLEMENTATION_VERSION_NAME = f"MEDPIPE_{__version__}"[:16]

#: File Meta Information Version, Media Storage SOP Class and Instance, Transfer Syntax,
#: Implementation Class UID and Version Name (rewritten); the group length is recomputed.
_FILE_META_KEPT = frozenset(
    {0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
)


def marker_values(
    profile: ConfidentialityProfile, pixels_at_risk: bool
) -> tuple[str, list[str], list[Code], str]:
    """Patient Identity Removed, De-identification Method, the Code Sequence's codes and
    Longitudinal Temporal Information Modified, for a dataset without earlier history."""
    codes = [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in profile.enabled_options()]
    if profile.retain_longitudinal_modified_dates:
        longitudinal = "MODIFIED"
    elif profile.retain_longitudinal_full_dates:
        longitudinal = "UNMODIFIED"
    else:
        longitudinal = "REMOVED"
    return "NO" if pixels_at_risk else "YES", profile.method_description(), codes, longitudinal


def _values(ds: Dataset, keyword: str) -> list[object]:
    """The values of a text attribute as a list (empty when absent or empty)."""
    from pydicom.multival import MultiValue

    value = ds.get(keyword)
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MultiValue) else [value]


def _code_item(code: Code) -> Dataset:
    """A De-identification Method Code Sequence item for ``code``."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def mark(ds: Dataset, profile: ConfidentialityProfile, pixels_at_risk: bool = False) -> bool:
    """Set the attributes PS3.15 requires; returns whether an earlier history was kept.

    A dataset de-identified before keeps its De-identification Method values and Code
    Sequence items; ours are appended, so the history survives.

    PS3.3 C.7.1.1 defines Patient Identity Removed as the identity removed from the
    Attributes *and* the Pixel Data. An image whose pixels may carry burned-in text
    (``pixels_at_risk``) and were neither cleaned nor verified text-free is therefore
    marked NO, so that nothing downstream (``medpipe send`` among them) treats it as
    safe to share.
    """
    from pydicom.sequence import Sequence as DicomSequence

    removed, ours, codes, longitudinal = marker_values(profile, pixels_at_risk)
    ds.PatientIdentityRemoved = removed
    earlier = [str(v) for v in _values(ds, "DeidentificationMethod") if str(v) not in ours]
    ds.DeidentificationMethod = earlier + ours
    kept = [
        item
        for item in ds.get("DeidentificationMethodCodeSequence") or []
        if (item.get("CodingSchemeDesignator"), item.get("CodeValue"))
        not in {(c.scheme, c.value) for c in codes}
    ]
    items = list(kept)
    for code in codes:
        items.append(_code_item(code))
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
    ds.LongitudinalTemporalInformationModified = longitudinal
    return bool(earlier or kept)


def rebuild_file_meta(ds: Dataset, retain_uids: bool, pseudo: Pseudonymizer) -> None:
    """Keep only the File Meta elements PS3.10 defines and the writer needs."""
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        return
    for tag in list(meta.keys()):
        # Only what PS3.10 defines and the writer needs survives: AE titles,
        # presentation addresses, RTV sources, private information and anything
        # unknown in group 0002 can name a site or carry anything.
        if int(tag) not in _FILE_META_KEPT:
            del meta[tag]
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    elif "MediaStorageSOPInstanceUID" in meta and not retain_uids:
        meta.MediaStorageSOPInstanceUID = pseudo.uid(str(meta.MediaStorageSOPInstanceUID))
    from pydicom.uid import UID

    meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


def _encode_element(ds: Dataset, tag: int, implicit: bool, little: bool) -> bytes:
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_data_element

    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    write_data_element(buffer, ds[tag])
    return buffer.getvalue()


#: CID 7050: the pixels were examined and any burned-in identifying text removed.
CLEAN_PIXEL_DATA_CODE = Code("113101", "DCM", "Clean Pixel Data Option")


def mark_clean_pixels(ds: Dataset) -> None:
    """Record that Clean Pixel Data was applied to an image (PS3.15 E.3.1).

    Burned In Annotation becomes NO; the Clean Pixel Data code joins the De-identification
    Method Code Sequence and its meaning the De-identification Method; Patient Identity
    Removed becomes YES, since the pixels were the only reason it was NO.
    """
    from pydicom.sequence import Sequence as DicomSequence

    code = CLEAN_PIXEL_DATA_CODE
    ds.BurnedInAnnotation = "NO"
    ds.PatientIdentityRemoved = "YES"
    methods = [str(v) for v in _values(ds, "DeidentificationMethod")]
    if code.meaning not in methods:
        ds.DeidentificationMethod = [*methods, code.meaning]
    items = list(ds.get("DeidentificationMethodCodeSequence") or [])
    if not any(
        (i.get("CodeValue"), i.get("CodingSchemeDesignator")) == (code.value, code.scheme)
        for i in items
    ):
        items.append(_code_item(code))
    ds.DeidentificationMethodCodeSequence = DicomSequence(items)
