"""Hostile and broken input, PHI audit and logs: nothing lost, nothing leaked."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from src.pipeline.audit import audit
from src.synthetic import write_corpus
from tests.conftest import TEST_KEY, all_files, interrupt_run, medpipe
from tests.integration.fault_proxy import FaultProxy

ROOT = Path(__file__).resolve().parents[2]


def _offset(data: bytes, tag: int) -> int:
    needle = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    position = data.find(needle, 132)
    assert position > 0
    return position


def _meta(ds: Dataset, ts: str = ExplicitVRLittleEndian) -> None:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _raw_nested(depth: int) -> bytes:
    """An explicit-VR dataset whose sequence nests ``depth`` items deep (undefined lengths)."""
    sq_open = struct.pack("<HH", 0x0008, 0x1115) + b"SQ\x00\x00" + b"\xff\xff\xff\xff"
    item_open = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
    item_close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
    sq_close = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return (sq_open + item_open) * depth + (item_close + sq_close) * depth


def _file_with_raw(tmp: Path, name: str, raw: bytes) -> Path:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242"
    ds.PatientID = "MRN-HOSTILE"
    _meta(ds)
    path = tmp / name
    ds.save_as(path, enforce_file_format=True)
    with open(path, "ab") as fh:
        fh.write(raw)
    return path


def build_bad_corpus(root: Path, good: Path) -> dict[str, str]:
    """Write the bad inputs; return {file name: expected reason prefix}."""
    root.mkdir(parents=True)
    rng = random.Random(99)
    data = good.read_bytes()
    expected: dict[str, str] = {}

    def put(name: str, content: bytes, reason: str) -> None:
        (root / name).write_bytes(content)
        expected[name] = reason

    put("zero.dcm", b"", "empty")
    put("random.bin", rng.randbytes(3000), "not-dicom")
    put("notes.dcm", b"Patient: Whitfield\n" * 40, "not-dicom")
    pixel = _offset(data, 0x7FE00010)
    cuts = {
        "cut-preamble.dcm": 64,
        "cut-meta.dcm": 150,
        "cut-element-header.dcm": _offset(data, 0x00080020) + 3,
        "cut-element-value.dcm": _offset(data, 0x00100010) + 10,
        "cut-sequence.dcm": _offset(data, 0x00400275) + 30,
        "cut-nested-item.dcm": _offset(data, 0x00101002) + 20,
        "cut-private.dcm": _offset(data, 0x00091001) + 9,
        "cut-before-pixels.dcm": pixel,
        "cut-pixel-header.dcm": pixel + 6,
        "cut-mid-pixels.dcm": len(data) - 100,
    }
    for name, at in cuts.items():
        reason = "not-dicom" if at < 132 else "truncated"
        if at == pixel:  # every element is whole: what is missing is the image itself
            reason = "image-without-pixel-data"
        put(name, data[:at], reason)
    wrong = bytearray(data)
    name_at = _offset(data, 0x00100010)
    wrong[name_at + 6 : name_at + 8] = struct.pack("<H", 0xFFF0)
    put("wrong-length.dcm", bytes(wrong), "")
    odd = bytearray(data)
    odd[name_at + 6 : name_at + 8] = struct.pack("<H", 3)
    put("odd-length.dcm", bytes(odd), "")
    undelimited = _file_with_raw(root, "undelimited.dcm", _raw_nested(3)[: -8 * 6])
    expected[undelimited.name] = "truncated"
    deep = _file_with_raw(root, "nested-10000.dcm", _raw_nested(10_000))
    expected[deep.name] = "malformed: sequence nesting"
    bomb = Dataset()
    bomb.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    bomb.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.777"
    bomb.add_new(0x00091010, "OB", b"\x00" * (24 * 1024 * 1024))
    _meta(bomb, DeflatedExplicitVRLittleEndian)
    bomb.save_as(root / "bomb.dcm", enforce_file_format=True)
    expected["bomb.dcm"] = "not-dicom: deflated dataset inflates beyond"
    return expected


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("hostile")
    corpus = write_corpus(
        base / "in" / "good",
        seed=5,
        patients=2,
        series_per_study=1,
        instances_per_series=3,
        rows=32,
        columns=32,
    )
    expected = build_bad_corpus(base / "in" / "bad", corpus.files[0])
    odd_names = base / "in" / "odd names ü"
    odd_names.mkdir()
    others = write_corpus(
        base / "others",
        seed=6,
        patients=1,
        series_per_study=1,
        instances_per_series=4,
        rows=16,
        columns=16,
        include_sr=False,
        include_us=False,
    )
    names = ["with space.dcm", "ünïcødé-名前.dcm", "..dots..dcm", "x" * 200 + ".dcm"]
    for name, src in zip(names, others.files, strict=True):
        (odd_names / name).write_bytes(src.read_bytes())
    flat = Dataset()
    flat.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    flat.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.10000"
    flat.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.10001"
    flat.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.10002"
    flat.PatientID = "MRN-FLAT"
    items = []
    for i in range(10_000):
        item = Dataset()
        item.TextValue = f"item {i} for Whitfield"
        items.append(item)
    flat.ContentSequence = Sequence(items)
    _meta(flat)
    flat.save_as(base / "in" / "flat-10000.dcm", enforce_file_format=True)
    # A link inside the tree is read; top-level files come first, so the linked original
    # deeper down is the second producer of the same SOP instance: a duplicate.
    (base / "in" / "zz-link.dcm").symlink_to(corpus.files[0])
    expected[corpus.files[0].name] = "duplicate-sop-instance"
    outside = base / "secret.dcm"
    outside.write_bytes(corpus.files[0].read_bytes())
    (base / "in" / "link-out.dcm").symlink_to(outside)
    expected["link-out.dcm"] = "not-a-regular-file: symbolic link points outside"
    config = base / "medpipe.toml"
    config.write_text("[run]\nmax_inflated_bytes = 8388608\n")  # 8 MiB: the bomb is 24 MiB
    before = sorted(p.relative_to(base).as_posix() for p in base.rglob("*"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "src.cli",
            "--log-level",
            "DEBUG",
            "run",
            str(base / "in"),
            str(base / "out"),
            "--no-progress",
            "-j",
            "2",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    after = sorted(
        p.relative_to(base).as_posix()
        for p in base.rglob("*")
        if not p.relative_to(base).as_posix().startswith("out")
    )
    return {
        "base": base,
        "corpus": corpus,
        "expected": expected,
        "proc": proc,
        "before": before,
        "after": after,
    }


def test_every_bad_input_is_quarantined_with_its_reason(hostile):
    proc = hostile["proc"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = hostile["base"] / "out"
    reasons = {}
    for reason_file in (out / "quarantine").glob("*.reason.json"):
        entry = json.loads(reason_file.read_text())
        reasons[Path(entry["source"]).name] = f"{entry['reason']}: {entry['detail']}"
    expected = hostile["expected"]
    assert set(reasons) == set(expected), set(reasons) ^ set(expected)
    for name, prefix in expected.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
    # The README's promise: quarantine holds each refused input byte for byte, and an
    # input that could not be read is there by its reason alone.
    copies = 0
    for reason_file in (out / "quarantine").glob("*.reason.json"):
        entry = json.loads(reason_file.read_text())
        source = hostile["base"] / "in" / entry["source"]
        copy = reason_file.with_name(entry["input_id"] + ".bin")
        assert copy.exists() == entry["copied"], entry["reason"]
        if entry["copied"] and source.is_file() and not source.is_symlink():
            assert copy.read_bytes() == source.read_bytes(), entry["reason"]
            copies += 1
    assert copies >= len(expected) // 2
    manifest = json.loads((out / "manifest.json").read_text())
    run = manifest["run"]
    assert run["balanced"] and run["quarantined"] == len(expected)
    good = len(hostile["corpus"].files) + 4 + 1  # corpus, odd names, flat SR
    assert run["processed"] == good
    assert run["inputs"] == good + len(expected)


def test_nothing_is_written_outside_output(hostile):
    assert hostile["before"] == hostile["after"]


def test_audit_finds_no_planted_value_in_outputs_or_logs(hostile, tmp_path):
    base = hostile["base"]
    log = tmp_path / "run.log"
    log.write_text(hostile["proc"].stderr + hostile["proc"].stdout)
    report = audit(base / "out", base / "in" / "good", logs=[log], key=TEST_KEY)
    assert report.inputs == len(hostile["corpus"].files)
    # Study-level values are shared by a study's instances (as a scanner writes them), so a
    # ten-file corpus holds some 95 distinct identifying values: the audit looked for them all.
    assert report.values > 80
    assert report.files_scanned > len(hostile["corpus"].files)
    assert report.hits == []


def test_audit_command_reports_a_leak_by_tag_not_value(hostile, tmp_path):
    base = hostile["base"]
    leak_out = tmp_path / "out"
    leak_out.mkdir()
    planted = hostile["corpus"].files[0]
    (leak_out / "copy.dcm").write_bytes(planted.read_bytes())
    proc = medpipe("audit", str(leak_out), "--against", str(base / "in" / "good"), check=False)
    assert proc.returncode == 1
    assert "HIT PatientName in copy.dcm" in proc.stdout
    for value in hostile["corpus"].planted:
        assert value not in proc.stdout


def test_logs_of_a_full_run_hold_no_phi(hostile):
    text = hostile["proc"].stderr + hostile["proc"].stdout
    lines = [
        json.loads(line) for line in hostile["proc"].stderr.splitlines() if line.startswith("{")
    ]
    assert len(lines) > 5  # DEBUG logging was on and captured
    for value in hostile["corpus"].planted:
        assert value not in text
    for name in hostile["expected"]:
        assert name not in text  # input file names can hold PHI too


def test_outputs_have_no_partial_or_temp_files(hostile):
    out = hostile["base"] / "out"
    assert not [p for p in all_files(out) if p.name.startswith(".medpipe-tmp")]
    for path in all_files(out):
        if path.suffix == ".dcm" and "quarantine" not in path.parts:
            pydicom.dcmread(path)
    assert os.listdir(out / ".medpipe" / "staging") == []


def test_s3_run_survives_injected_faults(corpus, moto_reset, tmp_path):
    """503 SlowDown, 500 and connection resets on one request in four: retried, nothing
    lost or duplicated, and the manifest balances."""
    import boto3

    from tests.integration.fault_proxy import FaultProxy

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="raw")
    s3.create_bucket(Bucket="processed")
    for path in corpus.files:
        s3.upload_file(str(path), "raw", f"in/{path.relative_to(corpus.root).as_posix()}")
    with FaultProxy(moto_reset, every=4) as proxy:
        proc = medpipe(
            "run",
            "s3://raw/in",
            "s3://processed/out",
            "--endpoint-url",
            proxy.url,
            "--state-dir",
            str(tmp_path / "state"),
            "--no-progress",
            "-j",
            "2",
            env={"MEDPIPE_AWS_MAX_ATTEMPTS": "10"},
        )
    n = len(corpus.files)
    assert f"{n} = {n} + 0 + 0 (balanced)" in proc.stdout
    assert min(proxy.injected.values()) >= 3, proxy.injected
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="processed", Prefix="out/")
        for o in page.get("Contents", [])
    ]
    dicoms = [k for k in keys if k.endswith(".dcm")]
    assert len(dicoms) == len(set(dicoms)) == n
    manifest = json.loads(s3.get_object(Bucket="processed", Key="out/manifest.json")["Body"].read())
    assert manifest["run"]["balanced"] and manifest["run"]["processed"] == n
    print(f"faults injected: {proxy.injected} over {proxy.requests} requests")


def test_s3_run_killed_and_resumed_accounts_for_every_input_once(moto_reset, tmp_path):
    import signal

    import boto3

    corpus = write_corpus(
        tmp_path / "in",
        seed=21,
        patients=4,
        series_per_study=2,
        instances_per_series=10,
        rows=64,
        columns=64,
    )
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="raw")
    s3.create_bucket(Bucket="processed")
    for path in corpus.files:
        s3.upload_file(str(path), "raw", f"in/{path.relative_to(corpus.root).as_posix()}")
    state = tmp_path / "state"
    args = [
        "run",
        "s3://raw/in",
        "s3://processed/out",
        "--endpoint-url",
        moto_reset,
        "--state-dir",
        str(state),
        "--no-progress",
        "-j",
        "2",
    ]
    journal = state / "journal.jsonl"
    # Input GETs slowed through the proxy: the kill always lands mid-run.
    with FaultProxy(moto_reset, every=0, get_delay=0.3) as proxy:
        slow = [a if a != moto_reset else proxy.url for a in args]
        interrupt_run(slow, journal, after=8, sig=signal.SIGKILL)
    assert 8 <= len(journal.read_text().splitlines()) < len(corpus.files)
    resumed = medpipe(*args)
    assert "(balanced)" in resumed.stdout
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="processed", Prefix="out/")
        for o in page.get("Contents", [])
    ]
    dicoms = [k for k in keys if k.endswith(".dcm")]
    assert len(dicoms) == len(set(dicoms)) == len(corpus.files)
    manifest = json.loads(s3.get_object(Bucket="processed", Key="out/manifest.json")["Body"].read())
    ids = [e["input_id"] for e in manifest["inputs"]]
    assert len(ids) == len(set(ids)) == len(corpus.files)
    assert manifest["run"]["skipped"] >= 8
