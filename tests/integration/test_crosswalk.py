"""The crosswalk (PHI, asked for, mode 0600, outside OUTPUT) and `medpipe lookup`."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pydicom

from tests.conftest import medpipe


def test_crosswalk_joins_every_processed_input_to_its_pseudonyms_and_lookup_agrees(
    tmp_path: Path, corpus
) -> None:
    out, walk = tmp_path / "out", tmp_path / "private" / "crosswalk.csv"
    medpipe("run", str(corpus.root), str(out), "-j", "2", "--crosswalk", str(walk))
    assert stat.S_IMODE(os.stat(walk).st_mode) == 0o600
    rows = list(csv.DictReader(walk.open()))
    assert len(rows) == len(corpus.files)
    by_source = {r["source"]: r for r in rows}
    for path in corpus.files:
        original = pydicom.dcmread(path, stop_before_pixels=True)
        row = by_source[path.relative_to(corpus.root).as_posix()]
        assert row["patient_id"] == original.PatientID
        assert row["sop_instance_uid"] == original.SOPInstanceUID
        assert row["accession_number"] == str(original.get("AccessionNumber", ""))
        written = pydicom.dcmread(out / row["output"], stop_before_pixels=True)
        assert written.PatientID == row["patient_pseudonym"]
        assert written.SOPInstanceUID == row["sop_pseudonym"]
        assert written.StudyInstanceUID == row["study_pseudonym"]
    # `lookup` answers from the key alone, the same as the files say.
    row = rows[0]
    issuer = ["--issuer", row["issuer_of_patient_id"]] if row["issuer_of_patient_id"] else []
    assert medpipe("lookup", row["patient_id"], *issuer).stdout.strip() == row["patient_pseudonym"]
    for column in ("study", "series", "sop"):
        original = row[f"{column}_instance_uid"]
        assert medpipe("lookup", "--uid", original).stdout.strip() == row[f"{column}_pseudonym"]
    # A re-run adds nothing twice; nothing of it reaches OUTPUT.
    medpipe("run", str(corpus.root), str(out), "--crosswalk", str(walk))
    assert len(list(csv.DictReader(walk.open()))) == len(corpus.files)
    for written in out.rglob("*"):
        if written.is_file() and "quarantine" not in written.parts:
            data = written.read_bytes()
            assert not any(r["source"].encode() in data for r in rows if "/" in r["source"])


def test_a_crosswalk_inside_output_is_refused_unless_asked(tmp_path: Path, corpus) -> None:
    out = tmp_path / "out"
    refused = medpipe(
        "run", str(corpus.root), str(out), "--crosswalk", str(out / "x.csv"), check=False
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "holds PHI" in refused.stderr
    assert not (out / "x.csv").exists()
    medpipe(
        "run",
        str(corpus.root),
        str(out),
        "--crosswalk",
        str(out / "x.csv"),
        "--crosswalk-in-output",
    )
    assert (out / "x.csv").exists()
