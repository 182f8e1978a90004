"""``medpipe run`` and the other commands, driven as a user would through a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import signal
import zipfile
from pathlib import Path

import pydicom
import pytest

from src.ingestion.dicom_parser import DICOMParser
from src.synthetic import write_corpus
from tests.conftest import all_files, interrupt_run, medpipe, slow_s3_input


def _input_tree(tmp_path: Path, corpus) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "in"
    shutil.copytree(corpus.root, root)
    (root / "bad").mkdir()
    (root / "bad" / "empty.dcm").write_bytes(b"")
    (root / "bad" / "notes.dcm").write_text("Whitfield: not DICOM\n" * 10)
    (root / "bad" / "noise").write_bytes(os.urandom(4096))
    data = corpus.files[0].read_bytes()
    (root / "bad" / "cut.dcm").write_bytes(data[: len(data) // 2])
    return root


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in all_files(root)
        # The manifest and report.html hold the run history (timings, worker counts).
        if ".medpipe" not in p.parts and p.name not in ("manifest.json", "report.html")
    }


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_run_is_balanced_quarantines_bad_input_and_is_worker_independent(corpus, tmp_path):
    src = _input_tree(tmp_path, corpus)
    one = medpipe("run", str(src), str(tmp_path / "one"), "-j", "1", "--no-progress")
    medpipe("run", str(src), str(tmp_path / "two"), "-j", "2", "--no-progress")
    inputs = len(corpus.files) + 4
    assert (
        f"inputs = processed + quarantined + skipped: {inputs} = {len(corpus.files)} + 4 + 0"
        in one.stdout
    )
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")
    out = tmp_path / "one"
    reasons = sorted(e["reason"] for e in _manifest(out)["inputs"] if e["status"] == "quarantined")
    assert len(reasons) == 4
    assert reasons == ["empty", "not-dicom", "not-dicom", "truncated"]
    quarantine = out / "quarantine"
    assert len(list(quarantine.glob("*.reason.json"))) == 4
    assert len(list(quarantine.glob("*.bin"))) == 4
    dicoms = [p for p in all_files(out) if p.suffix == ".dcm"]
    assert len(dicoms) == len(corpus.files)
    for path in dicoms:
        pseudonym, study, series, name = path.relative_to(out).parts
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientID == pseudonym and ds.StudyInstanceUID == study
        assert ds.SeriesInstanceUID == series and name == f"{ds.SOPInstanceUID}.dcm"
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(rows) == len(corpus.files)
    text = (out / "index.jsonl").read_text() + (out / "manifest.json").read_text()
    for value in corpus.planted:
        assert value not in text


def test_second_run_does_nothing_and_changes_nothing(corpus, tmp_path):
    src = _input_tree(tmp_path, corpus)
    out = tmp_path / "out"
    medpipe("run", str(src), str(out), "--no-progress")
    before = {p: p.stat().st_mtime_ns for p in all_files(out) if p.suffix == ".dcm"}
    again = medpipe("run", str(src), str(out), "--no-progress")
    n = len(corpus.files) + 4
    assert f"{n} = 0 + 0 + {n} (balanced)" in again.stdout
    assert before == {p: p.stat().st_mtime_ns for p in all_files(out) if p.suffix == ".dcm"}


def test_kill_9_then_resume_accounts_for_every_input_once(tmp_path, moto_reset):
    corpus = write_corpus(
        tmp_path / "in",
        seed=3,
        patients=6,
        series_per_study=3,
        instances_per_series=4,
        rows=96,
        columns=96,
    )
    out = tmp_path / "out"
    journal = out / ".medpipe" / "journal.jsonl"
    with slow_s3_input(moto_reset, corpus.files, corpus.root) as proxy:
        args = ["run", "s3://slow/in", str(out), "--endpoint-url", proxy.url, "-j", "2"]
        interrupt_run([*args, "--no-progress"], journal, after=20, sig=signal.SIGKILL)
    done_before = len(journal.read_text().splitlines())
    assert 20 <= done_before < len(corpus.files), "kill landed outside the run"
    # Whatever was written is whole: every visible .dcm parses completely.
    for path in all_files(out):
        if path.suffix == ".dcm" and ".medpipe" not in path.parts:
            DICOMParser().parse_file(path)
    resumed = medpipe(
        "run", "s3://slow/in", str(out), "--endpoint-url", moto_reset, "-j", "2", "--no-progress"
    )
    assert "(balanced)" in resumed.stdout
    manifest = _manifest(out)
    ids = [e["input_id"] for e in manifest["inputs"]]
    assert len(ids) == len(set(ids)) == len(corpus.files)
    assert all(e["status"] == "processed" for e in manifest["inputs"])
    assert manifest["run"]["skipped"] >= 20
    assert not [p for p in all_files(out) if p.name.startswith(".medpipe-tmp-")]
    assert not list((out / ".medpipe" / "staging").iterdir())
    assert len([p for p in all_files(out) if p.suffix == ".dcm"]) == len(corpus.files)


def test_symlink_out_of_tree_is_quarantined_unread(corpus, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(corpus.root / "patient000", src)
    secret = tmp_path / "outside.dcm"
    shutil.copy(corpus.files[0], secret)
    (src / "link.dcm").symlink_to(secret)
    (src / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    out = tmp_path / "out"
    medpipe("run", str(src), str(out), "--no-progress")
    refused = [e for e in _manifest(out)["inputs"] if e["stage"] == "discover"]
    assert len(refused) == 2
    assert not list((out / "quarantine").glob("*.bin"))


def test_zip_archives_are_opened(corpus, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    with zipfile.ZipFile(src / "study.zip", "w") as archive:
        for path in corpus.files[:5]:
            archive.write(path, f"../evil/{path.name}")
    out = tmp_path / "out"
    result = medpipe("run", str(src), str(out), "--no-progress")
    assert "5 = 5 + 0 + 0" in result.stdout
    assert not (tmp_path / "evil").exists()


def test_a_zip_named_as_dicom_is_refused_saying_what_it_is(corpus, tmp_path):
    # Names ending .dcm are not opened at discovery (the worker reads them once).
    src = tmp_path / "in"
    src.mkdir()
    with zipfile.ZipFile(src / "study.dcm", "w") as archive:
        archive.write(corpus.files[0], "member.dcm")
    out = tmp_path / "out"
    medpipe("run", str(src), str(out), "--no-progress")
    (entry,) = json.loads((out / "manifest.json").read_text())["inputs"]
    assert entry["status"] == "quarantined" and entry["reason"] == "not-dicom"
    assert "zip archive" in entry["detail"] and "unpack it" in entry["detail"]


def test_every_command_has_help():
    top = medpipe("--help")
    for command in (
        "run",
        "deidentify",
        "inspect",
        "validate",
        "url",
        "config",
        "samples",
        "audit",
    ):
        assert command in top.stdout
        assert medpipe(command, "--help").stdout.startswith("Usage:")
    assert medpipe("config", "show", "--help").stdout.startswith("Usage:")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "/nonexistent/input", "/tmp/medpipe-never"],
        ["validate", __file__],
        ["inspect", __file__],
        ["deidentify", __file__, "/tmp/medpipe-never.dcm"],
        ["url", "s3://bucket-only"],
        ["run", ".", ".", "--config", "/nonexistent.toml"],
        ["run"],
        ["no-such-command"],
        ["run", "a", "b", "--workers", "x"],
        ["receive", "/tmp/medpipe-never"],
        ["send", "/nonexistent", "dicom://A@h:1"],
    ],
)
def test_bad_input_gives_one_line_and_non_zero_exit(args):
    proc = medpipe(*args, check=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("medpipe: error:")  # click's usage errors too
    assert proc.returncode == 2 or args[0] in ("validate", "inspect", "deidentify")
    assert "Traceback" not in proc.stderr


def test_inspect_hides_phi_unless_asked(corpus):
    path = str(corpus.files[0])
    hidden = medpipe("inspect", path).stdout
    shown = medpipe("inspect", path, "--show-phi").stdout
    name = corpus.patients[0].name
    assert name not in hidden and corpus.patients[0].patient_id not in hidden
    assert json.loads(shown)["patient"]["patient_name"] == name
    assert json.loads(hidden)["phi_shown"] is False


def test_validate_and_deidentify_single_file(corpus, tmp_path):
    path = str(corpus.files[0])
    assert "valid" in medpipe("validate", path).stdout
    out = tmp_path / "one.dcm"
    report = tmp_path / "report.json"
    medpipe("deidentify", path, str(out), "--report", str(report), "--patient-id", "ANON1")
    assert pydicom.dcmread(out).PatientID == "ANON1"
    actions = json.loads(report.read_text())["actions"]
    assert any(a["path"] == "PatientName" for a in actions)


def test_config_file_and_config_show(tmp_path):
    cfg = tmp_path / "medpipe.toml"
    cfg.write_text(
        "[profile]\nretain_safe_private = true\nclean_descriptors = true\n"
        'uid_root = "1.2.826.0.1.3680043.10.99"\n[run]\nworkers = 3\n'
    )
    shown = json.loads(medpipe("config", "show", "--config", str(cfg)).stdout)
    assert shown["profile"]["retain_safe_private"] is True
    assert shown["profile"]["uid_root"] == "1.2.826.0.1.3680043.10.99"
    assert shown["workers"] == 3
    assert "Retain Safe Private Option" in shown["method"]
    flagged = json.loads(
        medpipe("config", "show", "--config", str(cfg), "--no-retain-safe-private").stdout
    )
    assert flagged["profile"]["retain_safe_private"] is False
    bad = tmp_path / "bad.toml"
    bad.write_text("[profile]\nretain_everything = true\n")
    proc = medpipe("config", "show", "--config", str(bad), check=False)
    assert proc.returncode == 2 and "retain_everything" in proc.stderr


def test_options_reach_the_output(corpus, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(corpus.root / "patient001", src)
    out = tmp_path / "out"
    medpipe("run", str(src), str(out), "--retain-safe-private", "--retain-longitudinal-full-dates")
    ds = pydicom.dcmread(next(p for p in all_files(out) if p.suffix == ".dcm"))
    codes = {i.CodeValue for i in ds.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113111", "113106"}
    assert ds.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_s3_to_s3_run_against_moto_server(corpus, moto_reset, tmp_path):
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="raw")
    s3.create_bucket(Bucket="processed")
    for path in corpus.files:
        s3.upload_file(str(path), "raw", f"incoming/{path.relative_to(corpus.root).as_posix()}")
    s3.put_object(Bucket="raw", Key="incoming/notes with space.dcm", Body=b"not dicom")
    args = [
        "run",
        "s3://raw/incoming",
        "s3://processed/deid",
        "--endpoint-url",
        moto_reset,
        "--state-dir",
        str(tmp_path / "state"),
        "--no-progress",
    ]
    first = medpipe(*args)
    n = len(corpus.files)
    assert f"{n + 1} = {n} + 1 + 0 (balanced)" in first.stdout
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="processed")
        for o in page.get("Contents", [])
    ]
    dicoms = [k for k in keys if k.endswith(".dcm")]
    assert len(dicoms) == n
    assert "deid/index.jsonl" in keys and "deid/manifest.json" in keys
    assert len([k for k in keys if k.startswith("deid/quarantine/")]) == 2
    body = s3.get_object(Bucket="processed", Key=dicoms[0])["Body"].read()
    for value in corpus.planted:
        assert value.encode("latin-1", "ignore") not in body
    again = medpipe(*args)
    assert f"{n + 1} = 0 + 0 + {n + 1} (balanced)" in again.stdout


def test_metrics_go_to_cloudwatch_when_asked(corpus, moto_reset, tmp_path):
    import boto3

    src = tmp_path / "in"
    shutil.copytree(corpus.root / "patient000", src)
    medpipe(
        "run",
        str(src),
        str(tmp_path / "out"),
        "--metrics",
        "cloudwatch",
        env={"AWS_ENDPOINT_URL": moto_reset},
    )
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_reset)
    names = {
        m["MetricName"]
        for m in cloudwatch.list_metrics(Namespace="MedicalImaging/Pipeline")["Metrics"]
    }
    assert {"FilesProcessed", "FilesQuarantined", "BytesProcessed"} <= names
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["run"]["metrics"]["FilesProcessed"] == len(list(src.rglob("*.dcm")))


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(tmp_path, moto_reset):
    corpus = write_corpus(
        tmp_path / "in",
        seed=4,
        patients=4,
        series_per_study=2,
        instances_per_series=5,
        rows=96,
        columns=96,
    )
    out = tmp_path / "out"
    journal = out / ".medpipe" / "journal.jsonl"
    with slow_s3_input(moto_reset, corpus.files, corpus.root) as proxy:
        proc = interrupt_run(
            [
                "run",
                "s3://slow/in",
                str(out),
                "--endpoint-url",
                proxy.url,
                "-j",
                "2",
                "--no-progress",
            ],
            journal,
            after=5,
            sig=signal.SIGINT,
        )
    stderr = proc.stderr_text
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted; run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert 5 <= len(journal.read_text().splitlines()) < len(corpus.files)
    resumed = medpipe(
        "run", "s3://slow/in", str(out), "--endpoint-url", moto_reset, "--no-progress"
    )
    assert "(balanced)" in resumed.stdout
    assert len([p for p in all_files(out) if p.suffix == ".dcm"]) == len(corpus.files)


def test_output_inside_input_is_not_read_as_input(corpus, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(corpus.root / "patient000", src)
    n = len(list(src.rglob("*.dcm")))
    first = medpipe("run", str(src), str(src / "deid"), "--no-progress")
    assert f"{n} = {n} + 0 + 0 (balanced)" in first.stdout
    again = medpipe("run", str(src), str(src / "deid"), "--no-progress")
    assert f"{n} = 0 + 0 + {n} (balanced)" in again.stdout


def test_an_empty_input_is_one_error_line_and_a_non_zero_exit(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = medpipe("run", str(tmp_path / "empty"), str(tmp_path / "out"), check=False)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("medpipe: error:")]
    assert lines == [f"medpipe: error: INPUT {tmp_path / 'empty'} holds no files"]
    assert "Traceback" not in proc.stderr


def test_a_run_with_refused_inputs_prints_no_json_lines_by_default(tmp_path, corpus):
    src = tmp_path / "in"
    src.mkdir()
    for i in range(5):
        (src / f"note{i}.dcm").write_bytes(b"not dicom at all" * 10)
    proc = medpipe("run", str(src), str(tmp_path / "out"), "--no-progress")
    assert "quarantined 5: not-dicom" in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line.startswith("{")]


def test_index_parquet_has_one_typed_row_per_processed_file(corpus, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    medpipe("run", str(corpus.root), str(out), "--no-progress")
    table = pq.read_table(out / "index.parquet")
    jsonl = (out / "index.jsonl").read_text().splitlines()
    assert table.num_rows == len(jsonl) == len(corpus.files)
    schema = {f.name: str(f.type) for f in table.schema}
    assert schema["image_rows"] == "int64" and schema["acquisition_slice_thickness"] == "double"
    assert schema["burned_in_annotation_risk"] == "bool"
    outputs = set(table.column("output").to_pylist())
    assert outputs == {json.loads(line)["output"] for line in jsonl}
    for value in corpus.planted:
        assert value.encode() not in (out / "index.parquet").read_bytes()
    # Geometry, rescale and window for ML loaders, read back against the files themselves
    # (pydicom as the oracle), and each output's BLAKE3, as the manifest says.
    import pydicom
    from blake3 import blake3

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["integrity"] == {"algorithm": "blake3", "index_column": "output_blake3"}

    assert schema["image_position_patient"] == "list<element: double>"
    assert schema["image_window_center"] == "list<element: double>"  # every window
    assert schema["image_pixel_spacing"] == "list<element: double>"
    checked = 0
    for row in table.to_pylist():
        path = out / row["output"]
        assert row["output_blake3"] == blake3(path.read_bytes()).hexdigest()
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if "ImagePositionPatient" in ds:
            assert row["image_position_patient"] == [float(v) for v in ds.ImagePositionPatient]
            assert row["image_orientation_patient"] == [
                float(v) for v in ds.ImageOrientationPatient
            ]
            checked += 1
        if "RescaleSlope" in ds:
            assert row["image_rescale_slope"] == float(ds.RescaleSlope)
            assert row["image_rescale_intercept"] == float(ds.RescaleIntercept)
        if "WindowCenter" in ds:
            centers = [ds.WindowCenter] if ds["WindowCenter"].VM == 1 else ds.WindowCenter
            assert row["image_window_center"] == [float(c) for c in centers]
        if "PixelSpacing" in ds:
            assert row["image_pixel_spacing"] == [float(v) for v in ds.PixelSpacing]
    assert checked > 0


def test_another_key_or_profile_into_an_existing_output_stops_with_one_line(corpus, tmp_path):
    out = tmp_path / "out"
    medpipe("run", str(corpus.root), str(out), "--no-progress")
    other_key = medpipe(
        "run",
        str(corpus.root),
        str(out),
        "--no-progress",
        check=False,
        env={"MEDPIPE_DEID_KEY": "a-completely-different-key-0123456789"},
    )
    assert other_key.returncode == 2
    errors = [line for line in other_key.stderr.splitlines() if line.startswith("medpipe: error:")]
    assert len(errors) == 1 and "another key" in errors[0]
    assert "a-completely-different-key" not in other_key.stderr + other_key.stdout
    other_profile = medpipe(
        "run", str(corpus.root), str(out), "--no-progress", "--retain-uids", check=False
    )
    assert other_profile.returncode == 2 and "retain_uids" in other_profile.stderr
    again = medpipe("run", str(corpus.root), str(out), "--no-progress")  # same key and profile
    assert "(balanced)" in again.stdout
    pseudonyms = [p for p in out.iterdir() if p.name.startswith("ANON-")]
    assert len(pseudonyms) == len(corpus.patients)


def test_new_version_writes_another_key_or_profile_beside_output(corpus, tmp_path):
    out = tmp_path / "out"
    medpipe("run", str(corpus.root), str(out), "--no-progress")
    first = sorted(p.relative_to(out) for p in out.rglob("*.dcm"))
    v2 = medpipe(
        "run", str(corpus.root), str(out), "--no-progress", "--retain-uids", "--new-version"
    )
    assert f"version 2 is {out}-v2" in v2.stderr
    assert "(balanced)" in v2.stdout
    version2 = tmp_path / "out-v2"
    assert len(list(version2.rglob("*.dcm"))) == len(first)
    # Version 1 is untouched; UIDs were retained only in version 2.
    assert sorted(p.relative_to(out) for p in out.rglob("*.dcm")) == first
    sop = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in corpus.files}
    kept = {
        pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in version2.rglob("*.dcm")
    }
    assert kept == sop
    # Idempotent: the same flags again reuse version 2; a third key makes version 3.
    again = medpipe(
        "run", str(corpus.root), str(out), "--no-progress", "--retain-uids", "--new-version"
    )
    assert "version 2" in again.stderr and f"+ {len(corpus.files)} (balanced)" in again.stdout
    default = medpipe("run", str(corpus.root), str(out), "--no-progress", "--new-version")
    assert "version 1" in default.stderr
    v3 = medpipe(
        "run",
        str(corpus.root),
        str(out),
        "--no-progress",
        "--new-version",
        env={"MEDPIPE_DEID_KEY": "a-third-key-for-version-three-0123"},
    )
    assert f"version 3 is {out}-v3" in v3.stderr
    assert not (tmp_path / "out-v4").exists()


def test_the_manifest_keeps_every_run_and_totals_that_match_the_index(corpus, tmp_path):
    out = tmp_path / "out"
    medpipe("run", str(corpus.root), str(out), "--no-progress")
    medpipe("run", str(corpus.root), str(out), "--no-progress")  # a no-op re-run
    manifest = _manifest(out)
    assert [r["processed"] for r in manifest["runs"]] == [len(corpus.files), 0]
    assert manifest["runs"][1]["skipped"] == len(corpus.files)
    rows = (out / "index.jsonl").read_text().splitlines()
    assert manifest["totals"]["processed"] == manifest["totals"]["index_rows"] == len(rows)
    assert manifest["totals"]["inputs"] == len(manifest["inputs"])


def test_key_create_makes_a_private_key_once_and_a_missing_key_says_how(tmp_path):
    import stat

    path = tmp_path / "keys" / "deid.key"
    env = {"MEDPIPE_DEID_KEY": ""}
    made = medpipe("key", "create", str(path), env=env)
    assert "fingerprint" in made.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    again = medpipe("key", "create", str(path), env=env, check=False)
    assert again.returncode != 0 and "never replaced" in again.stderr
    missing = medpipe("lookup", "MRN1", "--key-file", str(tmp_path / "nope"), env=env, check=False)
    assert missing.returncode != 0
    assert f"medpipe key create {tmp_path / 'nope'}" in missing.stderr
    one = medpipe("lookup", "MRN1", "--key-file", str(path), env=env).stdout
    assert one == medpipe("lookup", "MRN1", "--key-file", str(path), env=env).stdout
    assert one.startswith("ANON-")


def test_archives_that_are_not_opened_say_so(tmp_path, corpus):
    import io
    import tarfile
    import zipfile

    inputs = tmp_path / "in"
    inputs.mkdir()
    with tarfile.open(inputs / "study.tar", "w") as tar:
        tar.add(corpus.files[0], arcname="a.dcm")
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.write(corpus.files[1], "b.dcm")
    with zipfile.ZipFile(inputs / "outer.zip", "w") as z:
        z.writestr("inner.zip", inner.getvalue())
        z.write(corpus.files[2], "c.dcm")
    out = tmp_path / "out"
    medpipe("run", str(inputs), str(out))
    manifest = json.loads((out / "manifest.json").read_text())
    details = sorted(e["detail"] for e in manifest["inputs"] if e["status"] == "quarantined")
    assert details == [
        "a tar archive is not opened: unpack it into INPUT first",
        "a zip archive inside a zip archive is not opened: unpack it into INPUT first",
    ]
    assert manifest["totals"]["processed"] == 1


def test_missing_s3_credentials_are_found_before_any_work(tmp_path, corpus):
    env = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SESSION_TOKEN": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = medpipe("run", str(corpus.root), "s3://bucket/out", env=env, check=False, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "OUTPUT is on S3 but no AWS credentials" in lines[0]


def test_an_earlier_output_inside_input_is_not_read_again(corpus, tmp_path):
    src = tmp_path / "in"
    shutil.copytree(corpus.root, src)
    n = len(corpus.files)
    # An operator's first run wrote its OUTPUT inside INPUT; a second run reads INPUT again.
    medpipe("run", str(src), str(src / "deidentified"), "--no-progress")
    second = medpipe("run", str(src), str(tmp_path / "out"), "--no-progress")
    assert f"inputs = processed + quarantined + skipped: {n} = {n} + 0 + 0" in second.stdout
    assert "skipped 1 folder(s) inside INPUT that hold a medpipe OUTPUT" in second.stdout
    run = _manifest(tmp_path / "out")["runs"][-1]
    assert run["output_folders_skipped"] == 1 and run["quarantined"] == 0
    written = [p for p in all_files(tmp_path / "out") if p.suffix == ".dcm"]
    assert len(written) == n  # the originals once each, nothing of the first OUTPUT
    assert "deidentified" not in (tmp_path / "out" / "manifest.json").read_text()
    # Given as INPUT, an OUTPUT is refused in one line, before any work.
    refused = medpipe("run", str(src / "deidentified"), str(tmp_path / "again"), check=False)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "is a medpipe OUTPUT" in refused.stderr
    assert not (tmp_path / "again").exists()


def test_a_dicomdir_and_a_damaged_zip_are_quarantined_with_their_true_reasons(tmp_path):
    from pydicom.data import get_testdata_file

    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(get_testdata_file("DICOMDIR"), src / "DICOMDIR")
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w") as archive:
        archive.writestr("a.dcm", b"\0" * 5000)
    data = whole.read_bytes()
    (src / "cut.zip").write_bytes(data[: len(data) - 30])  # its central directory cut off
    medpipe("run", str(src), str(tmp_path / "out"), "--no-progress")
    reasons = {
        e["reason"]: e.get("detail", "")
        for e in _manifest(tmp_path / "out")["inputs"]
        if e["status"] == "quarantined"
    }
    assert set(reasons) == {"media-directory", "corrupt-archive"}, reasons


def test_a_missing_key_is_bad_input_and_config_show_says_the_key_file_is_not_there(
    corpus, tmp_path
):
    env = {"MEDPIPE_DEID_KEY": "", "XDG_CONFIG_HOME": str(tmp_path / "config")}
    missing = tmp_path / "no" / "deid.key"
    proc = medpipe(
        "run", str(corpus.root), str(tmp_path / "out"), "--key-file", str(missing),
        check=False, env=env,
    )  # fmt: skip
    assert proc.returncode == 2  # like any other bad input
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    shown = json.loads(medpipe("config", "show", env=env).stdout)
    assert "does not exist yet" in shown["key_source"]
    assert not (tmp_path / "config" / "medpipe" / "deid.key").exists()  # said, not made
