"""`medpipe audit` as a gate: silent on clean output, loud on a planted value.

The clean side runs over every file pydicom ships and over the generated corpus; the
negative controls plant one input's identifying value into an output DICOM file, a
cell of index.parquet and a cell of report.html, and expect the tag of that value.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest

from tests.conftest import medpipe, pydicom_files


@pytest.fixture(scope="module")
def pydicom_run(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("audit")
    src = base / "in"
    src.mkdir()
    for i, path in enumerate(pydicom_files()):
        shutil.copy(path, src / f"{i:03d}-{Path(path).name}")
    medpipe("run", str(src), str(base / "out"), "-j", "1")
    return base


def test_audit_passes_clean_output_of_pydicoms_files(pydicom_run):
    proc = medpipe(
        "audit", str(pydicom_run / "out"), "--against", str(pydicom_run / "in"), check=False
    )
    assert proc.returncode == 0, proc.stdout
    assert " 0 hit(s)" in proc.stdout
    inputs = int(proc.stdout.split(" inputs")[0].rsplit(" ", 1)[1])
    assert inputs > 100  # pydicom's DICOM files were really read


def _name_of_an_input(root: Path) -> str:
    for path in sorted(root.iterdir()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # pydicom's corpus holds non-DICOM too
            continue
        name = str(ds.get("PatientName", "")).split("^")[0]
        if len(name) >= 6 and name.isalpha():
            return name
    raise AssertionError("no input with a usable PatientName")


@pytest.mark.parametrize("where", ["index.parquet", "report.html"])
def test_audit_finds_a_value_planted_in_a_report(pydicom_run, tmp_path, where):
    out = tmp_path / "out"
    shutil.copytree(pydicom_run / "out", out)
    name = _name_of_an_input(pydicom_run / "in")
    if where == "index.parquet":
        table = pq.read_table(out / where)
        column = table.column("series_description").to_pylist()
        column[0] = name
        table = table.set_column(
            table.schema.get_field_index("series_description"),
            "series_description",
            pa.array(column),
        )
        pq.write_table(table, out / where)
    else:
        page = (out / where).read_text()
        (out / where).write_text(page.replace("<td>", f"<td>{name} ", 1))
    proc = medpipe("audit", str(out), "--against", str(pydicom_run / "in"), check=False)
    assert proc.returncode == 1
    assert f"in {where}" in proc.stdout
    assert name not in proc.stdout


def test_audit_finds_an_original_birth_date_in_the_typed_date_column(pydicom_run, tmp_path):
    import datetime as dt

    out = tmp_path / "out"
    shutil.copytree(pydicom_run / "out", out)
    births = []
    for path in sorted((pydicom_run / "in").iterdir()):
        try:
            value = str(pydicom.dcmread(path, stop_before_pixels=True).get("PatientBirthDate", ""))
        except Exception:  # pydicom's corpus holds non-DICOM too
            continue
        if len(value) == 8 and value.isdigit() and value[:2] in ("19", "20"):
            births.append(value)
    assert births, "no input with a birth date"
    table = pq.read_table(out / "index.parquet")
    column = table.column("patient_birth_date").to_pylist()
    column[0] = dt.datetime.strptime(births[0], "%Y%m%d").date()  # a leak, typed as a date
    index = table.schema.get_field_index("patient_birth_date")
    table = table.set_column(index, "patient_birth_date", pa.array(column, pa.date32()))
    pq.write_table(table, out / "index.parquet")
    proc = medpipe("audit", str(out), "--against", str(pydicom_run / "in"), check=False)
    assert proc.returncode == 1 and "in index.parquet" in proc.stdout
    assert births[0] not in proc.stdout


@pytest.fixture(scope="module")
def institution_kept(corpus, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A run that kept the institution, and an audit of it with the default profile."""
    out = tmp_path_factory.mktemp("institution-kept") / "out"
    medpipe("run", str(corpus.root), str(out), "--retain-institution-identity")
    strict = medpipe(
        "audit",
        str(out),
        "--against",
        str(corpus.root),
        "--no-retain-institution-identity",
        check=False,
    )
    return out, strict


def test_audit_reads_the_profile_from_the_manifest(corpus, institution_kept):
    out, strict = institution_kept
    # The run kept the institution, so an audit with that run's profile is clean...
    proc = medpipe("audit", str(out), "--against", str(corpus.root), check=False)
    assert proc.returncode == 0, proc.stdout
    # ...while the default profile (given explicitly) counts the kept name as a leak.
    assert strict.returncode == 1
    assert "HIT InstitutionName" in strict.stdout


def test_a_hit_in_a_dicom_output_names_the_element_and_the_rule_that_kept_it(
    corpus, institution_kept
):
    """A kept value that equals an identifier (here the institution, kept by the run's
    option) is reported with the output element holding it and its rule, by tag; the
    value itself is never shown."""
    _, proc = institution_kept
    lines = [line for line in proc.stdout.splitlines() if line.startswith("HIT InstitutionName")]
    assert lines
    assert any(
        " at InstitutionName (0008,0080) LO, its rule K (E.1-1)" in line for line in lines
    ), lines
    import pydicom

    institution = str(pydicom.dcmread(corpus.files[0]).InstitutionName)
    assert institution not in proc.stdout
