"""Extract typed, structured metadata from a pydicom dataset.

Values come out typed: ``int`` for IS/US/SS/UL/SL, ``float`` for DS/FL/FD, ``list`` for
multi-valued elements, dates as ``YYYYMMDD`` (ACR-NEMA ``YYYY.MM.DD`` is normalised),
person names as ``str`` decoded through the dataset's Specific Character Set. Absent or
empty elements are ``None``; Patient ID, a Type 2 attribute, is ``""`` when absent.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from src.ingestion.encoding.dictionary import dictionary_vr, tag_for_keyword
from src.ingestion.engines.value_actions import split

if TYPE_CHECKING:  # pydicom is imported by the Dataset path only, when it runs
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset

# (section, output key, DICOM keyword)
_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("patient", "patient_id", "PatientID"),
    ("patient", "patient_name", "PatientName"),
    ("patient", "patient_birth_date", "PatientBirthDate"),
    ("patient", "patient_sex", "PatientSex"),
    ("patient", "patient_age", "PatientAge"),
    ("study", "study_instance_uid", "StudyInstanceUID"),
    ("study", "study_date", "StudyDate"),
    ("study", "study_time", "StudyTime"),
    ("study", "study_description", "StudyDescription"),
    ("study", "accession_number", "AccessionNumber"),
    ("series", "series_instance_uid", "SeriesInstanceUID"),
    ("series", "series_number", "SeriesNumber"),
    ("series", "modality", "Modality"),
    ("series", "series_description", "SeriesDescription"),
    ("series", "body_part_examined", "BodyPartExamined"),
    ("image", "sop_instance_uid", "SOPInstanceUID"),
    ("image", "sop_class_uid", "SOPClassUID"),
    ("image", "instance_number", "InstanceNumber"),
    ("image", "rows", "Rows"),
    ("image", "columns", "Columns"),
    ("image", "bits_allocated", "BitsAllocated"),
    ("image", "number_of_frames", "NumberOfFrames"),
    ("image", "pixel_spacing", "PixelSpacing"),
    ("image", "photometric_interpretation", "PhotometricInterpretation"),
    ("image", "image_position_patient", "ImagePositionPatient"),
    ("image", "image_orientation_patient", "ImageOrientationPatient"),
    ("image", "rescale_intercept", "RescaleIntercept"),
    ("image", "rescale_slope", "RescaleSlope"),
    ("image", "window_center", "WindowCenter"),
    ("image", "window_width", "WindowWidth"),
    ("image", "image_type", "ImageType"),
    ("image", "frame_of_reference_uid", "FrameOfReferenceUID"),
    ("image", "spacing_between_slices", "SpacingBetweenSlices"),
    ("image", "temporal_position_index", "TemporalPositionIndex"),
    ("acquisition", "acquisition_date", "AcquisitionDate"),
    ("acquisition", "acquisition_time", "AcquisitionTime"),
    ("acquisition", "acquisition_number", "AcquisitionNumber"),
    ("acquisition", "manufacturer", "Manufacturer"),
    ("acquisition", "manufacturer_model_name", "ManufacturerModelName"),
    ("acquisition", "slice_thickness", "SliceThickness"),
    ("acquisition", "kvp", "KVP"),
    ("acquisition", "exposure_time", "ExposureTime"),
    ("acquisition", "repetition_time", "RepetitionTime"),
    ("acquisition", "echo_time", "EchoTime"),
    ("acquisition", "magnetic_field_strength", "MagneticFieldStrength"),
    ("acquisition", "convolution_kernel", "ConvolutionKernel"),
    ("acquisition", "contrast_bolus_agent", "ContrastBolusAgent"),
)

_LIST_KEYS = {
    "pixel_spacing",
    "image_position_patient",
    "image_orientation_patient",
    "image_type",
    "convolution_kernel",
}


def _scalar(value: Any, vr: str) -> Any:
    """A decoded pydicom value as a plain one (the Dataset path's)."""
    from pydicom.valuerep import IS, DSdecimal, DSfloat, PersonName

    if isinstance(value, PersonName):
        text = str(value)
        return text or None
    if isinstance(value, IS):
        return int(value)
    if isinstance(value, DSfloat | DSdecimal):
        return float(value)
    if isinstance(value, bytes):
        return None
    return _text_scalar(value, vr)


def _text_scalar(value: Any, vr: str) -> Any:
    """A text value as the index holds it (both paths)."""
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if vr == "DA" and len(text) == 10 and text[4] == "." and text[7] == ".":
            text = text.replace(".", "")
        if vr == "TM" and ":" in text:
            text = text.replace(":", "")
        return text
    return value


_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UI"})
_BINARY = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "FL": "f", "FD": "d"}
_CODECS = {"": "latin-1", "ISO_IR 6": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}
_NOT_FAST = object()
#: Distinct decoded values kept per extractor before the memo starts again.
_DECODED_LIMIT = 20_000


@functools.lru_cache(maxsize=1024)
def _tag(keyword: str) -> int | None:
    return tag_for_keyword(keyword)


def _codec(dataset: Dataset) -> str | None:
    """The codec raw text can be decoded with directly, or None (pydicom decodes it)."""
    raw = dataset._dict.get(0x00080005)  # type: ignore[call-overload]
    if raw is None:
        return "latin-1"
    value = raw.value
    if isinstance(value, bytes):
        value = value.decode("latin-1").strip(" \x00")
    return _CODECS.get(value) if isinstance(value, str) else None


def _fast(raw: RawDataElement, codec: str) -> Any:
    """A raw value decoded as pydicom would, for the plain VRs (else ``_NOT_FAST``)."""
    if not raw.is_little_endian:
        return _NOT_FAST
    return _decode(raw.tag, raw.VR, raw.value, codec)


def _decode(tag: int, vr: str | None, data: Any, codec: str) -> Any:
    """Little-endian value bytes decoded as pydicom would, for the plain VRs (else
    ``_NOT_FAST``); ``vr`` None means the dictionary's (Implicit VR)."""
    if vr is None:  # implicit: the dictionary's VR, unless it offers a choice
        vr = _dictionary_vr(tag)
    if vr is None or data is None:
        return _NOT_FAST
    try:
        if vr in _TEXT_VRS:
            values = split(bytes(data), vr, codec if vr in _CHARSET_VRS else "latin-1")
            if values == [""]:
                return None
            # A name as str(PersonName): trailing spaces already gone, leading ones kept.
            pn = vr == "PN"
            items = [(v or None) if pn else _text_scalar(v, vr) for v in values]
        elif vr in ("IS", "DS"):
            values = bytes(data).decode("latin-1").rstrip(" \x00").split("\\")
            if values == [""]:
                return None
            parse = int if vr == "IS" else float
            items = [parse(v) for v in values]
        elif vr in _BINARY:
            fmt = _BINARY[vr]
            count = len(data) // struct.calcsize(fmt)
            if not count:
                return None
            items = list(
                struct.unpack(f"<{count}{fmt}", bytes(data)[: count * struct.calcsize(fmt)])
            )
        else:
            return _NOT_FAST
    except (ValueError, UnicodeDecodeError, struct.error):
        return _NOT_FAST
    return items[0] if len(items) == 1 else items


_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST"})


@functools.lru_cache(maxsize=1024)
def _dictionary_vr(tag: int) -> str | None:
    vr = dictionary_vr(tag)
    return None if vr is None or " or " in vr else vr


def convert_value(
    dataset: Dataset,
    keyword: str,
    memo: dict[int, Any] | None = None,
    *,
    codec: str | None = None,
) -> Any:
    """Return ``dataset.<keyword>`` as a plain Python value, or ``None`` when absent or empty.

    Parameters
    ----------
    dataset : pydicom.Dataset
    keyword : str
        A DICOM keyword such as ``"PixelSpacing"``.
    memo : dict, optional
        Decoded elements by the identity of their raw form, shared between calls on
        datasets that hold the same raw elements (an original and its de-identified
        copy), so each raw element is decoded once.
    codec : str, optional
        The Python codec of the dataset's character set when its bytes decode directly
        (ASCII, Latin-1, UTF-8): plain raw values are then decoded here, as pydicom
        would, without building an element.

    Returns
    -------
    int, float, str, list or None
    """
    from pydicom.dataelem import RawDataElement
    from pydicom.multival import MultiValue

    from src.ingestion.parsing.access import peek

    tag = _tag(keyword)
    if tag is None:
        return None
    raw = dataset._dict.get(tag)  # type: ignore[call-overload]  # an int: no Tag() per call
    if codec is not None and isinstance(raw, RawDataElement):
        key = ~id(raw)  # the direct decoding's memo: negative keys, beside pydicom's
        known = memo.get(key) if memo is not None else None
        if known is not None and known[0] is raw:
            return list(known[1]) if isinstance(known[1], list) else known[1]
        fast = _fast(raw, codec)
        if fast is not _NOT_FAST:
            if memo is not None:
                memo[key] = (raw, fast)  # raw kept: its id stays unique
            return fast
    # Only raw elements are memoised: they are never edited in place, decoded ones may be.
    cacheable = memo is not None and isinstance(raw, RawDataElement)
    if cacheable and id(raw) in memo:  # type: ignore[operator]
        elem = memo[id(raw)][1]  # type: ignore[index]
    else:
        elem = peek(dataset, tag)
        if cacheable:
            memo[id(raw)] = (raw, elem)  # type: ignore[index]  # raw kept: its id stays unique
    if elem is None or elem.VR == "SQ" or elem.is_empty:
        return None
    value = elem.value
    vr = str(elem.VR)
    if isinstance(value, MultiValue | list | tuple):
        items = [_scalar(v, vr) for v in value]
        return items or None
    return _scalar(value, vr)


class MetadataExtractor:
    """Extract the documented metadata sections from a dataset.

    Examples
    --------
    >>> from pydicom.data import get_testdata_file
    >>> from src.ingestion.dicom_parser import DICOMParser
    >>> ds = DICOMParser().parse_file(get_testdata_file("CT_small.dcm"))
    >>> MetadataExtractor().extract_metadata(ds)["series"]["modality"]
    'CT'
    """

    def __init__(self) -> None:
        self._fields = _FIELDS
        self._tags = [(s, k, t) for s, k, w in _FIELDS if (t := _tag(w)) is not None]
        self._decoded: dict[tuple[str, str | None, bytes, str], Any] = {}

    def extract_elements(
        self,
        elements: Mapping[int, tuple[str | None, bytes]],
        transfer_syntax_uid: str | None,
    ) -> dict[str, Any] | None:
        """The same metadata as :meth:`extract_metadata`, from raw top-level values.

        Parameters
        ----------
        elements : mapping
            ``tag -> (VR, little-endian value bytes)`` (VR ``None``: the dictionary's), as
            the byte engine's :class:`~src.ingestion.engines.raw_header.RawHeader` gives.
        transfer_syntax_uid : str or None

        Returns
        -------
        dict or None
            None when a value needs pydicom to decode (a character set other than ASCII,
            Latin-1 or UTF-8, an ambiguous VR): the caller then uses a Dataset. A
            differential test holds the two equal on every corpus file.
        """
        charset = elements.get(0x00080005)
        if charset is None:
            codec: str | None = "latin-1"
        else:
            codec = _CODECS.get(bytes(charset[1]).decode("latin-1").strip(" \x00"))
        if codec is None:
            return None
        out: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        decoded = self._decoded
        if len(decoded) > _DECODED_LIMIT:
            decoded.clear()
        for section, key, tag in self._tags:
            entry = elements.get(tag)
            value = None
            if entry is not None:
                # Most values repeat from file to file (and from an original to its
                # output): each distinct value is decoded once per process.
                memo = (key, entry[0], entry[1], codec)
                value = decoded.get(memo, _NOT_FAST)
                if value is _NOT_FAST:
                    value = _decode(tag, entry[0], entry[1], codec)
                    if value is _NOT_FAST:
                        return None
                    value = decoded[memo] = _shaped(key, value)
                if type(value) is list:
                    value = list(value)  # the caller's own: the cached one stays as decoded
            out[section][key] = value
        return _finish(out, transfer_syntax_uid)

    def extract_metadata(
        self, dataset: Dataset, *, memo: dict[int, Any] | None = None
    ) -> dict[str, Any]:
        """Extract comprehensive metadata.

        Parameters
        ----------
        dataset : pydicom.Dataset
        memo : dict, optional
            See :func:`convert_value`.

        Returns
        -------
        dict
            ``{"patient", "study", "series", "image", "acquisition"}``, each a dict of
            typed values (see the module docstring).
        """
        out: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        codec = _codec(dataset)
        for section, key, keyword in self._fields:
            value = convert_value(dataset, keyword, memo, codec=codec)
            out[section][key] = _shaped(key, value)
        meta = getattr(dataset, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        return _finish(out, str(ts) if ts else None)


_SECTIONS = ("patient", "study", "series", "image", "acquisition")


def _shaped(key: str, value: Any) -> Any:
    """Lists where the field is multi-valued, a single value elsewhere."""
    if key in _LIST_KEYS and value is not None and not isinstance(value, list):
        return [value]
    if key not in _LIST_KEYS and isinstance(value, list):
        return value[0] if len(value) == 1 else value
    return value


def _finish(out: dict[str, dict[str, Any]], transfer_syntax_uid: str | None) -> dict[str, Any]:
    if out["patient"]["patient_id"] is None:
        out["patient"]["patient_id"] = ""
    out["image"]["transfer_syntax_uid"] = transfer_syntax_uid or None
    return dict(out)
