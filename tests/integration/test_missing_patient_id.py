"""An input without Patient ID (or Patient's Name) gets the same keyed pseudonym in its
folder name, its header, its index row and its crosswalk row (#32), on both engines
(Explicit VR Little Endian: the byte engine; Big Endian: the pydicom engine)."""

from __future__ import annotations

import csv
import json

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

from tests.conftest import medpipe


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("missing", [("PatientID",), ("PatientID", "PatientName")])
def test_the_pseudonym_is_the_same_everywhere(tmp_path, syntax, missing):
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword in missing:
        delattr(ds, keyword)
    inputs = tmp_path / "in"
    inputs.mkdir()
    ds.file_meta.TransferSyntaxUID = syntax
    pydicom.dcmwrite(
        inputs / "a.dcm",
        ds,
        little_endian=syntax != ExplicitVRBigEndian,
        implicit_vr=False,
        force_encoding=True,
    )
    out, crosswalk = tmp_path / "out", tmp_path / "crosswalk.csv"
    medpipe("run", str(inputs), str(out), "--crosswalk", str(crosswalk), "--no-progress")
    (folder,) = [p.name for p in out.iterdir() if p.name.startswith("ANON-")]
    (written,) = list((out / folder).rglob("*.dcm"))
    header = pydicom.dcmread(written)
    row = json.loads((out / "index.jsonl").read_text().splitlines()[0])
    (mapping,) = list(csv.DictReader(crosswalk.open()))
    assert header.PatientID == folder == row["patient"]["patient_id"]
    assert mapping["patient_pseudonym"] == folder
    assert str(header.PatientName) == folder
