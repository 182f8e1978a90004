"""The values written for a D (dummy) action, per VR, and the coded structure that a
dummied or cleaned sequence (SR content) keeps."""

from __future__ import annotations

from typing import Any

from src.ingestion.encoding.dictionary import tag_for_keyword

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY: dict[str, Any] = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "PN": "ANONYMIZED",
    "SH": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "TM": "000000",
    "UC": _DUMMY_TEXT,
    "UR": "urn:anonymized",
    "UT": _DUMMY_TEXT,
    "FL": 0.0,
    "FD": 0.0,
    "SL": 0,
    "SS": 0,
    "SV": 0,
    "UL": 0,
    "US": 0,
    "UV": 0,
    "AT": 0,
    "OB": b"\x00\x00",
    "OD": b"\x00" * 8,
    "OF": b"\x00" * 4,
    "OL": b"\x00" * 4,
    "OV": b"\x00" * 8,
    "OW": b"\x00\x00",
    "UN": b"\x00\x00",
}
# Inside a dummied or cleaned sequence (SR content), these carry the coded structure.
_CODE_STRUCTURE = frozenset(
    tag_for_keyword(k) or 0
    for k in (
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "LongCodeValue",
        "URNCodeValue",
        "ValueType",
        "RelationshipType",
        "ContinuityOfContent",
        "TemplateIdentifier",
        "MappingResource",
        "MappingResourceName",
        "ContextIdentifier",
        "ContextUID",
        "MeasurementUnitsCodeSequence",
        "GraphicType",
        "TemporalRangeType",
        "ReferencedFrameNumber",
    )
)
