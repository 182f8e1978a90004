"""The byte-level structure walk refuses what pydicom reads quietly."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from src.errors import InvalidDICOMError
from src.ingestion.encoding.structure import check_structure

CT = Path(get_testdata_file("CT_small.dcm")).read_bytes()


def test_a_whole_file_walks_and_spans_cover_every_top_level_element():
    spans = check_structure(CT, "ct", start=132, implicit=False, little=True, has_meta=True)
    assert 0x7FE00010 in spans and 0x00100010 in spans
    _, last = spans[0x7FE00010]
    assert last <= len(CT)  # CT_small.dcm carries trailing padding after Pixel Data
    ordered = sorted(spans.values())
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ordered))


@pytest.mark.parametrize("cut", [200, 1000, len(CT) // 2, len(CT) - 1])
def test_every_cut_is_refused(cut):
    with pytest.raises(InvalidDICOMError, match=r"truncated|malformed|runs past"):
        check_structure(CT[:cut], "ct", start=132, implicit=False, little=True, has_meta=True)
