"""The byte-level element reader against annotated bytes (PS3.5 section 7).

Each fixture is written out byte by byte with what PS3.5 says each field is, as
pydicom's and pynetdicom's suites do; the expectations are read off the annotation, not
from the reader.
"""

from __future__ import annotations

import pytest

from src.errors import InvalidDICOMError
from src.ingestion.encoding.elements import (
    NotHandled,
    element_at,
    element_header,
    elements_of,
    items,
)
from src.ingestion.encoding.structure import StructureWalker

# (0010,0010) PN, explicit VR little endian, 2-byte length (PS3.5 7.1.2, Table 7.1-2)
PATIENT_NAME_EXPLICIT = (
    bytes.fromhex(
        "1000 1000"  # tag (0010,0010), group then element, little endian
        "504e"  # VR "PN"
        "0800"  # value length 8
    )
    + b"Doe^John"
)
# (7FE0,0010) OB, explicit VR: 2 reserved bytes then a 4-byte length (Table 7.1-1)
PIXEL_DATA_OB = bytes.fromhex(
    "e07f 1000"  # tag (7FE0,0010)
    "4f42"  # VR "OB"
    "0000"  # reserved
    "04000000"  # value length 4
    "01020304"  # value
)
# (0008,0060) CS, implicit VR little endian: tag then a 4-byte length (Table 7.1-3)
MODALITY_IMPLICIT = (
    bytes.fromhex(
        "0800 6000"  # tag (0008,0060)
        "02000000"  # value length 2
    )
    + b"CT"
)
# (0010,0020) LO, explicit VR big endian (PS3.5 7.3, retired but still read)
PATIENT_ID_BIG = (
    bytes.fromhex(
        "0010 0020"  # tag (0010,0020), big endian
        "4c4f"  # VR "LO"
        "0004"  # value length 4, big endian
    )
    + b"MRN1"
)
# (0008,1140) SQ of undefined length holding one undefined-length item (7.5.2)
REFERENCED_IMAGES_UNDEFINED = (
    bytes.fromhex(
        "0800 4011"  # tag (0008,1140) Referenced Image Sequence
        "5351 0000"  # VR "SQ", reserved
        "ffffffff"  # undefined length
        "feff 00e0 ffffffff"  # Item, undefined length
        "0800 5011 5549 0600"  # (0008,1150) UI, length 6
    )
    + b"1.2.3\x00"
    + bytes.fromhex(
        "feff 0de0 00000000"  # Item Delimitation Item
        "feff dde0 00000000"  # Sequence Delimitation Item
    )
)


def test_an_explicit_short_header() -> None:
    assert element_header(PATIENT_NAME_EXPLICIT, 0, len(PATIENT_NAME_EXPLICIT), False) == (
        0x00100010,
        b"PN",
        8,
        8,
    )


def test_an_explicit_long_header_skips_the_reserved_bytes() -> None:
    assert element_header(PIXEL_DATA_OB, 0, len(PIXEL_DATA_OB), False) == (
        0x7FE00010,
        b"OB",
        4,
        12,
    )


def test_an_implicit_header_has_no_written_vr() -> None:
    assert element_header(MODALITY_IMPLICIT, 0, len(MODALITY_IMPLICIT), True) == (
        0x00080060,
        None,
        2,
        8,
    )
    # element_at gives it the dictionary's VR
    assert element_at(MODALITY_IMPLICIT, 0, len(MODALITY_IMPLICIT), True).vr == b"CS"


def test_a_big_endian_header() -> None:
    assert element_header(PATIENT_ID_BIG, 0, len(PATIENT_ID_BIG), False, little=False) == (
        0x00100020,
        b"LO",
        4,
        8,
    )


def test_an_explicit_header_without_a_vr_reads_as_implicit() -> None:
    # (0008,0060) written implicitly in a file whose meta says explicit: the two bytes
    # after the tag ("\x02\x00") are no VR, so the four are the length.
    assert element_header(MODALITY_IMPLICIT, 0, len(MODALITY_IMPLICIT), False) == (
        0x00080060,
        None,
        2,
        8,
    )
    with pytest.raises(NotHandled):  # not for the byte engine
        element_at(MODALITY_IMPLICIT, 0, len(MODALITY_IMPLICIT), False)


def test_item_tags_have_no_vr_even_in_explicit_data() -> None:
    item = bytes.fromhex("feff 00e0 10000000")  # Item, length 16
    assert element_header(item, 0, 8, False) == (0xFFFEE000, None, 16, 8)


@pytest.mark.parametrize("cut", [0, 4, 7])
def test_a_cut_header_is_none(cut: int) -> None:
    assert element_header(PATIENT_NAME_EXPLICIT, 0, cut, False) is None


def test_a_long_header_cut_after_the_reserved_bytes_is_none() -> None:
    assert element_header(PIXEL_DATA_OB, 0, 10, False) is None


def test_an_undefined_length_sequence_ends_after_its_delimiter() -> None:
    el = element_at(REFERENCED_IMAGES_UNDEFINED, 0, len(REFERENCED_IMAGES_UNDEFINED), False)
    assert (el.tag, el.vr, el.value_start, el.undefined) == (0x00081140, b"SQ", 12, True)
    assert el.value_end == len(REFERENCED_IMAGES_UNDEFINED)
    # One item: its data set starts after the item header (12 + 8) and ends before its
    # delimiter (the 14-byte UI element).
    assert items(REFERENCED_IMAGES_UNDEFINED, el, False) == [(20, 34)]


def test_elements_of_reads_a_data_set_in_order() -> None:
    modality = bytes.fromhex("0800 6000 4353 0200") + b"CT"  # (0008,0060) CS "CT"
    data = modality + PATIENT_NAME_EXPLICIT
    got = [(e.tag, e.vr, e.start, e.value_end) for e in elements_of(data, 0, len(data), False)]
    assert got == [(0x00080060, b"CS", 0, 10), (0x00100010, b"PN", 10, 26)]
    with pytest.raises(NotHandled):  # out of tag order: the pydicom path decides
        elements_of(PATIENT_NAME_EXPLICIT + modality, 0, len(data), False)


def test_the_structure_check_reads_the_same_header() -> None:
    walker = StructureWalker(PIXEL_DATA_OB, len(PIXEL_DATA_OB), "input", False, True)
    assert walker.header(0) == (0x7FE0, 0x0010, 4, 12)
    cut = StructureWalker(PIXEL_DATA_OB, 10, "input", False, True)
    with pytest.raises(InvalidDICOMError, match="truncated: inside an element header"):
        cut.header(0)
