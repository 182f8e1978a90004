"""From a de-identified OUTPUT to a training set: the typed index, the series table (local
and on S3), and ``medpipe export --format nifti`` (dcm2niix), on generated sample studies
and on a real multi-series study (pydicom's dicomdirtests: 2 patients, CT, MR and CR)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import shutil
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from blake3 import blake3

from src.records.series_objects import MEMBERS_PREFIX, series_key, update_series
from src.records.series_table import SERIES_COLUMNS, series_rows
from src.storage.folder_store import FolderStore
from src.storage.index_table import COLUMNS, DERIVED, flatten
from src.synthetic import write_corpus
from tests.conftest import medpipe

#: Glue type -> Arrow type, written out here (not taken from the code under test).
ARROW = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "array<double>": pa.list_(pa.float64()),
    "array<string>": pa.list_(pa.string()),
}
#: Glue type -> the JSON types a JSON-lines value of that column may have.
JSON = {
    "string": (str,),
    "bigint": (int,),
    "double": (int, float),
    "boolean": (bool,),
    "date": (str,),
    "timestamp": (str,),
    "array<double>": (list, int, float),  # a single value is a one-item list in Parquet
    "array<string>": (list, str),
}


def _pydicom_study(tmp_path: Path) -> Path:
    from pydicom.data import get_testdata_file

    source = Path(get_testdata_file("DICOMDIR")).parent  # type: ignore[arg-type]
    root = tmp_path / "pydicom-study"
    shutil.copytree(source, root)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """OUTPUTs of ``medpipe run`` on the sample studies and on the real study."""
    tmp = tmp_path_factory.mktemp("export")
    samples = write_corpus(tmp / "samples", seed=11, patients=2, instances_per_series=6).root
    outputs = {}
    for name, source in (("samples", samples), ("pydicom", _pydicom_study(tmp))):
        medpipe("run", str(source), str(tmp / f"{name}-out"), "--no-progress")
        outputs[name] = tmp / f"{name}-out"
        outputs[f"{name}-in"] = Path(source)
    return outputs


@pytest.mark.parametrize("name", ["samples", "pydicom"])
def test_index_parquet_jsonl_and_glue_share_one_schema(runs, name):
    out = runs[name]
    table = pq.read_table(out / "index.parquet")
    assert {f.name: f.type for f in table.schema} == {c: ARROW[t] for c, t in COLUMNS.items()}
    jsonl = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(jsonl) == table.num_rows > 0
    by_output = {r["output"]: r for r in table.to_pylist()}
    for row in jsonl:
        flat = flatten(row)
        assert set(flat) <= set(COLUMNS) - set(DERIVED)
        typed = by_output[row["output"]]
        for column, value in flat.items():
            if value is not None:
                assert isinstance(value, JSON[COLUMNS[column]]), column
        # Dates are dates, read from DICOM's text independently of the code under test.
        for column in ("study_date", "acquisition_date"):
            if flat.get(column):
                assert typed[column] == dt.datetime.strptime(flat[column], "%Y%m%d").date()
        if flat.get("study_date") and flat.get("study_time"):
            moment = dt.datetime.strptime(
                flat["study_date"] + flat["study_time"][:6], "%Y%m%d%H%M%S"
            )
            assert typed["study_datetime"].replace(microsecond=0) == moment
        # The integrity hash is of the file as it lies in OUTPUT, whichever engine wrote it.
        assert row["output_blake3"] == blake3((out / row["output"]).read_bytes()).hexdigest()
        # Every multi-valued number is a list of numbers, never JSON text.
        spacing = flat.get("image_pixel_spacing")
        if spacing is not None:
            assert typed["image_pixel_spacing"] == [float(v) for v in spacing]


@pytest.mark.parametrize("name", ["samples", "pydicom"])
def test_series_parquet_has_one_row_per_series(runs, name):
    out = runs[name]
    table = pq.read_table(out / "series.parquet")
    assert {f.name: f.type for f in table.schema} == {
        c: ARROW[t] for c, t in SERIES_COLUMNS.items()
    }
    index = pq.read_table(out / "index.parquet").to_pylist()
    series = table.to_pylist()
    assert len(series) == len({r["series_instance_uid"] for r in index})
    for row in series:
        members = [r for r in index if r["series_instance_uid"] == row["series_instance_uid"]]
        assert row["number_of_instances"] == len(members)
        assert row["patient_id"] == members[0]["patient_id"]
    if name == "samples":  # generated like a scanner: 2.5 mm apart, no gaps
        volumes = [r for r in series if r["modality"] in ("CT", "MR")]
        assert volumes and all(r["measured_slice_spacing"] == pytest.approx(2.5) for r in volumes)
        assert all(r["complete"] and r["uniform_spacing"] for r in volumes)
        assert all(r["geometry_consistent"] for r in volumes)


def test_the_aws_series_objects_equal_the_local_table_whatever_the_arrival(runs, tmp_path):
    rows = [json.loads(line) for line in (runs["samples"] / "index.jsonl").read_text().splitlines()]
    store = FolderStore(str(tmp_path / "processed"))
    # One instance per invocation, two invocations at a time, racing on the same series.
    threads = [threading.Thread(target=update_series, args=(store, [row])) for row in rows]
    for i in range(0, len(threads), 2):
        for t in threads[i : i + 2]:
            t.start()
        for t in threads[i : i + 2]:
            t.join()
    update_series(store, rows[:1])  # a repeated event changes nothing
    local = {r["series_instance_uid"]: r for r in series_rows(rows)}
    for uid, expected in local.items():
        with store.open(series_key(uid)) as fh:
            (written,) = pq.read_table(fh).to_pylist()
        assert written == expected
    members = list(store.list(MEMBERS_PREFIX + "/"))
    assert len(members) == len(rows)


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_export_writes_one_volume_per_series_with_ids_and_geometry(runs, tmp_path):
    out, dest = runs["samples"], tmp_path / "volumes"
    done = medpipe("export", str(out), str(dest), "--format", "nifti")
    series = {
        r["series_instance_uid"]: r for r in pq.read_table(out / "series.parquet").to_pylist()
    }
    dataset, refused = _csv(dest / "dataset.csv"), _csv(dest / "refused.csv")
    assert len(dataset) + len(refused) == len(series)  # every series: a volume or a reason
    assert f"{len(dataset)} volume(s) from {len(dataset)} series" in done.stdout
    assert {r["reason"] for r in refused} == {
        "not an image series (no rows and columns)",  # the SR documents
        "burned-in text risk: pixels not cleaned (run with --clean-pixels)",  # ultrasound
    }
    for row in dataset:
        expected = series[row["series_instance_uid"]]
        assert row["patient_id"] == expected["patient_id"].strip()
        volume = nib.load(dest / row["image"])
        assert volume.shape == (
            expected["columns"],
            expected["rows"],
            expected["number_of_instances"],
        )
        zooms = volume.header.get_zooms()
        assert zooms[:2] == pytest.approx(expected["pixel_spacing"], abs=1e-4)
        assert zooms[2] == pytest.approx(expected["measured_slice_spacing"], abs=1e-3)
        sidecar = json.loads((dest / row["sidecar"]).read_text())
        assert sidecar["Modality"] == expected["modality"]
        assert not {"PatientName", "PatientID", "PatientBirthDate", "AcquisitionDateTime"} & set(
            sidecar
        )
    datalist = json.loads((dest / "dataset.json").read_text())["volumes"]
    assert [d["image"] for d in datalist] == [r["image"] for r in dataset]
    # A re-run replaces, never adds.
    before = sorted(p.name for p in (dest / "images").iterdir())
    medpipe("export", str(out), str(dest))
    assert sorted(p.name for p in (dest / "images").iterdir()) == before
    assert not (dest / ".staging").exists()


def test_nothing_identifying_in_the_export_and_the_audit_would_see_it(runs, tmp_path):
    out, dest = runs["samples"], tmp_path / "volumes"
    medpipe("export", str(out), str(dest))
    clean = medpipe("audit", str(dest), "--against", str(runs["samples-in"]))
    assert "0 hit(s)" in clean.stdout
    # Negative control: a patient's name planted in a sidecar and in a NIfTI header's
    # description is found (the audit reads the JSON values and the gzipped header).
    from src.ingestion.dicom_parser import DICOMParser

    first = sorted(runs["samples-in"].rglob("*.dcm"))[0]
    name = str(DICOMParser().parse_file(first).PatientName).split("^")[0]
    volume = sorted((dest / "images").glob("*.nii.gz"))[0]
    image = nib.load(volume)
    image.header["descrip"] = f"reader {name}".encode()
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header), volume)
    assert name.encode() in gzip.decompress(volume.read_bytes())[:348]
    found = medpipe("audit", str(dest), "--against", str(runs["samples-in"]), check=False)
    assert found.returncode == 1 and "0 hit(s)" not in found.stdout


def test_export_of_a_real_multi_series_study(runs, tmp_path):
    out, dest = runs["pydicom"], tmp_path / "volumes"
    done = medpipe("export", str(out), str(dest))
    dataset, refused = _csv(dest / "dataset.csv"), _csv(dest / "refused.csv")
    series = pq.read_table(out / "series.parquet").to_pylist()
    converted = {r["series_instance_uid"] for r in dataset}
    assert len(converted) + len(refused) == len(series)
    assert {r["modality"] for r in dataset} == {"CT", "MR"}
    # CR is screened for burned-in text whatever its header says (#29): without Clean
    # Pixel Data its series are refused, with the reason.
    assert {r["modality"] for r in refused} == {"CR"}
    assert all("burned-in" in r["reason"] for r in refused)
    assert {r["patient_id"] for r in dataset} == {r["patient_id"] for r in series}
    # dcm2niix splits a series whose slices do not make one volume (a localizer's seven
    # orientations); the series table says the same of it.
    split = {r["series_instance_uid"] for r in dataset if "_i0" in r["image"]}
    assert split
    for row in series:
        if row["series_instance_uid"] in split:
            assert row["geometry_consistent"] is False
    assert f"from {len(converted)} series" in done.stdout
    assert "0 hit(s)" in medpipe("audit", str(dest), "--against", str(runs["pydicom-in"])).stdout


def test_export_refuses_what_is_not_an_output_and_a_dest_inside_it(runs, tmp_path):
    (tmp_path / "plain").mkdir()
    bad = medpipe("export", str(tmp_path / "plain"), str(tmp_path / "x"), check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "no index.jsonl" in bad.stderr
    inside = medpipe("export", str(runs["samples"]), str(runs["samples"] / "v"), check=False)
    assert inside.returncode == 2 and "outside OUTPUT" in inside.stderr


def test_the_readme_lines_load_export_and_join_labels(runs, tmp_path):
    """The README's three lines, run as written (pandas from tools/), on an OUTPUT with a
    crosswalk and a labels file keyed by accession number."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    pandas = root / "tools" / "pandas"
    if not (pandas / "pandas").is_dir():
        if os.environ.get("CI"):
            pytest.fail("tools/pandas missing: make test installs it")
        pytest.skip("tools/pandas not installed (make test installs it)")
    readme = (root / "README.md").read_text()
    block = readme.split("For a research engineer, the three lines")[1].split("```python")[1]
    code = block.split("```")[0]
    out, cross = str(tmp_path / "output"), str(tmp_path / "crosswalk.csv")
    medpipe("run", str(runs["samples-in"]), out, "--crosswalk", cross, "--no-progress")
    medpipe("export", out, str(tmp_path / "volumes"), "--format", "nifti")
    accessions = sorted({r["accession_number"] for r in _csv(Path(cross)) if r["accession_number"]})
    labels = "accession_number,label\n" + "".join(f"{a},{i}\n" for i, a in enumerate(accessions))
    (tmp_path / "labels.csv").write_text(labels)
    check = "\nprint(len(cases), bool(cases['label'].notna().all()), len(series))"
    ran = subprocess.run(
        [sys.executable, "-c", "import pandas as pd\n" + code + check],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(pandas)},
        capture_output=True,
        text=True,
        check=True,
    )
    cases, labelled, series = ran.stdout.split()
    volumes = _csv(tmp_path / "volumes" / "dataset.csv")
    assert int(cases) == len(volumes) > 0 and labelled == "True"  # every volume, labelled
    assert int(series) == pq.read_table(tmp_path / "output" / "series.parquet").num_rows
