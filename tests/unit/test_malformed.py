"""Malformed input is refused with a data reason, in both engines and in ``validate``.

Each fixture is a real file (pydicom's test data, or one pydicom writes) with one
annotated change of bytes that breaks PS3.5, the change each mutation of the issue made:
native pixel data under a compressed transfer syntax (A.4), encapsulated pixel data under
a native one, an element longer than its sequence item (7.5), a US value of odd length
(6.2: US is 2 bytes a value). dcmdump is the independent reader: it rejects what it must.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from io import BytesIO
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from src.errors import InvalidDICOMError
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser
from src.instance.pipeline import InstancePipeline, InstanceRefusedError, Reason, schema_validation
from tests.conftest import medpipe

EXPLICIT = b"1.2.840.10008.1.2.1\x00"
RLE = b"1.2.840.10008.1.2.5\x00"  # the same length: the meta's lengths stay right


def _swap_syntax(data: bytes, old: bytes, new: bytes) -> bytes:
    at = data.index(old, 132)
    assert at < 400, "the transfer syntax is in the file meta"
    return data[:at] + new + data[at + len(old) :]


def native_under_rle(tmp: Path) -> Path:
    """CT_small re-encoded explicit VR little endian, then its meta says RLE Lossless."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    out = tmp / "native-under-rle.dcm"
    out.write_bytes(_swap_syntax(buf.getvalue(), EXPLICIT, RLE))
    return out


def encapsulated_under_native(tmp: Path) -> Path:
    """SC_rgb_rle (encapsulated RLE fragments), its meta then saying explicit little endian."""
    out = tmp / "encapsulated-under-native.dcm"
    data = Path(get_testdata_file("SC_rgb_rle.dcm")).read_bytes()
    out.write_bytes(_swap_syntax(data, RLE, EXPLICIT))
    return out


def element_longer_than_its_item(tmp: Path) -> Path:
    """A defined-length sequence whose item holds an LO claiming 10 bytes more than the
    item has left (the file goes on after it, so only the item's bound shows it)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    item = Dataset()
    item.CodeMeaning = "ITEM VALUE"
    ds.ProcedureCodeSequence = Sequence([item])
    ds["ProcedureCodeSequence"].is_undefined_length = False
    item.is_undefined_length_sequence_item = False
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = bytearray(buf.getvalue())
    at = data.index(b"\x08\x00\x04\x01LO")  # (0008,0104) Code Meaning, inside the item
    (length,) = struct.unpack_from("<H", data, at + 6)
    struct.pack_into("<H", data, at + 6, length + 10)
    out = tmp / "element-longer-than-item.dcm"
    out.write_bytes(bytes(data))
    return out


def odd_us(tmp: Path) -> Path:
    """Rows (0028,0010) US given 3 bytes (one inserted), the rest of the file intact."""
    data = bytearray(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    at = data.index(b"\x28\x00\x10\x00US")
    struct.pack_into("<H", data, at + 6, 3)
    data[at + 8 : at + 8] = b"\x00"
    out = tmp / "odd-us.dcm"
    out.write_bytes(bytes(data))
    return out


CASES = {
    "native pixel data, RLE syntax": (native_under_rle, "(7FE0,0010)"),
    "encapsulated pixel data, native syntax": (encapsulated_under_native, "(7FE0,0010)"),
    "element longer than its item": (element_longer_than_its_item, "(0008,0104)"),
    "US of odd length": (odd_us, "(0028,0010)"),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path):  # type: ignore[no-untyped-def]
    make, tag = CASES[request.param]
    return make(tmp_path), tag


def test_the_parser_refuses_it_naming_the_tag_and_offset(case):
    path, tag = case
    with pytest.raises(InvalidDICOMError) as caught:
        DICOMParser().parse_file(path)
    assert caught.value.reason.startswith("malformed: "), caught.value.reason
    assert tag in caught.value.reason and "offset" in caught.value.reason


@pytest.mark.parametrize("engine", ["bytes", "pydicom"])
def test_both_engines_quarantine_it_as_malformed_and_write_nothing(case, engine, tmp_path):
    path, _ = case
    deid = (
        Deidentifier(key=b"k" * 32)
        if engine == "bytes"
        else Deidentifier(key=b"k" * 32, engine="pydicom")
    )
    output = tmp_path / "out.dcm"
    with pytest.raises(InstanceRefusedError) as caught:
        InstancePipeline(deid, schema_validation).process(str(path), str(output), label="x")
    assert caught.value.reason is Reason.MALFORMED
    assert not output.exists()


@pytest.mark.peer
def test_dcmdump_rejects_native_pixel_data_under_a_compressed_syntax(tmp_path):
    # dcmdump reads encapsulated pixel data under a native syntax leniently; PS3.5 A.4 still
    # makes it invalid, so it is refused too (the test above), though no peer shows it.
    if shutil.which("dcmdump") is None:
        pytest.skip("dcmdump not installed (make test installs dcmtk)")
    done = subprocess.run(
        ["dcmdump", "-q", str(native_under_rle(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 or "E:" in done.stderr


def test_the_originals_pass(tmp_path):
    # The fixtures' sources are well formed: each refusal above is the one change's doing.
    for name in ("CT_small.dcm", "SC_rgb_rle.dcm"):
        parsed = DICOMParser().parse_file(get_testdata_file(name))
        assert parsed.SOPInstanceUID == pydicom.dcmread(get_testdata_file(name)).SOPInstanceUID
        assert "PixelData" in parsed


def test_validate_reports_it_with_exit_1_and_no_value(tmp_path):
    path = element_longer_than_its_item(tmp_path)
    done = medpipe("validate", str(path), check=False)
    assert done.returncode == 1
    assert "malformed" in done.stderr and "(0008,0104)" in done.stderr
    assert "ITEM VALUE" not in done.stderr + done.stdout
