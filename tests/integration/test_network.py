"""The DICOM network against real peers: dcmtk's storescu/echoscu/storescp, Orthanc
(C-STORE and STOW-RS through its DICOMweb plugin), and faults on the wire and the disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from src.settings.locations import input_id
from tests.conftest import TEST_KEY, free_port, identity_removed_expected, medpipe, pydicom_files
from tests.integration.peers import (
    ORTHANC_DICOMWEB,
    LoopbackNamespace,
    Receiver,
    dataset_bytes,
    medpipe_cmd,
    need,
    orthanc_config,
    set_aside_at_risk,
)

pytestmark = [pytest.mark.peer, pytest.mark.timeout(600)]


def dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if "quarantine" not in p.parts)


def manifest(output: Path) -> dict:
    return json.loads((output / "manifest.json").read_text())


def assert_deidentified(output: Path, planted: set[str]) -> None:
    files = dicom_files(output)
    assert files
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.PatientIdentityRemoved == identity_removed_expected(ds)
        raw = path.read_bytes()
        leaked = [p for p in planted if p.encode() in raw]
        assert not leaked, f"{path.name} still holds planted PHI"


@pytest.fixture()
def pydicom_dir(tmp_path: Path) -> Path:
    """pydicom's test files that are Part 10 files, copied flat for storescu."""
    folder = tmp_path / "pydicom"
    folder.mkdir()
    for i, path in enumerate(pydicom_files()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        if "SOPInstanceUID" not in ds or "TransferSyntaxUID" not in ds.file_meta:
            continue
        shutil.copy(path, folder / f"{i:03d}.dcm")
    return folder


def completions(receiver: Receiver, details: bool = False):  # type: ignore[no-untyped-def]
    found = [
        json.loads(line)["details"]
        for line in receiver.stderr().splitlines()
        if '"study-complete"' in line
    ]
    return found if details else len(found)


def storescu(port: int, *paths: Path, aet: str = "MODALITY", extra: tuple[str, ...] = ()):
    return subprocess.run(
        [
            "storescu",
            "-v",
            "-nh",
            "-aet",
            aet,
            "-aec",
            "MEDPIPE",
            *extra,
            "+sd",
            "+r",
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_storescu_sends_a_study_and_pydicoms_files_and_every_one_is_accounted_for(
    tmp_path: Path, corpus, pydicom_dir: Path
) -> None:
    need("storescu", "echoscu")
    out = tmp_path / "out"
    port = free_port()
    receiver = Receiver(out, port, "--study-quiet", "2")
    try:
        echo = subprocess.run(
            ["echoscu", "-aec", "MEDPIPE", "127.0.0.1", str(port)], capture_output=True, timeout=60
        )
        assert echo.returncode == 0
        study = storescu(port, corpus.root)
        assert study.returncode == 0, study.stderr[-2000:]
        studies = {
            str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in corpus.files
        }
        deadline = time.monotonic() + 60
        while completions(receiver) < len(studies) and time.monotonic() < deadline:
            time.sleep(0.2)
        # Each generated study completed once, named by its de-identified UID (no PHI).
        complete = completions(receiver, details=True)
        assert len(complete) == len(studies)
        assert {c["instances"] for c in complete} == {len(corpus.files) // len(studies)}
        assert len({c["study"] for c in complete}) == len(studies)
        others = storescu(port, pydicom_dir)
    finally:
        code, summary = receiver.stop()
    assert code == 0, receiver.stderr()[-2000:]
    log = study.stdout + study.stderr + others.stdout + others.stderr
    acknowledged = log.count("Received Store Response (Success")
    assert acknowledged >= len(corpus.files) + 50
    # Every acknowledged instance is in the account: processed or quarantined, by its
    # keyed id. A SOP Instance UID sent again with other bytes (as several of pydicom's
    # files share one) is a second input, quarantined as `run` quarantines it.
    sent_uids = {
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
        for p in [*corpus.files, *pydicom_dir.iterdir()]
    }
    entries = {e["input_id"]: e for e in manifest(out)["inputs"]}
    primary = {input_id(TEST_KEY.encode(), f"dicom:{uid}") for uid in sent_uids}
    for iid, entry in entries.items():
        assert iid in primary or entry["reason"] == "duplicate-sop-instance", entry
    # The history counts what each session did (an input refused, then received again
    # whole, is counted both times), and every session balances.
    runs = manifest(out)["runs"]
    assert all(r["inputs"] == r["processed"] + r["quarantined"] + r["skipped"] for r in runs)
    assert sum(r["processed"] + r["quarantined"] for r in runs) >= len(entries)
    totals = manifest(out)["totals"]
    assert totals["inputs"] == totals["processed"] + totals["quarantined"]
    assert totals["index_rows"] == totals["processed"] == len(dicom_files(out))
    assert len(entries) >= len(corpus.files) + 40
    assert_deidentified(out, corpus.planted)
    assert "inputs = processed + quarantined + skipped" in summary
    for patient in corpus.patients:
        assert patient.name.replace("^", " ") not in receiver.stderr()


def test_calling_ae_and_source_address_allow_lists_deny_by_default(tmp_path: Path) -> None:
    need("echoscu")
    port = free_port()
    receiver = Receiver(tmp_path / "out", port, "--allow-ae", "GOOD", "--allow-ae", "OTHER")
    try:

        def echo(aet: str) -> int:
            return subprocess.run(
                ["echoscu", "-aet", aet, "-aec", "MEDPIPE", "127.0.0.1", str(port)],
                capture_output=True,
                timeout=60,
                check=False,
            ).returncode

        assert echo("GOOD") == 0
        assert echo("BAD") != 0
    finally:
        assert receiver.stop()[0] == 0
    port = free_port()
    receiver = Receiver(tmp_path / "out2", port, "--allow-host", "10.0.0.0/8")
    try:
        refused = subprocess.run(
            ["echoscu", "-aec", "MEDPIPE", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode != 0
    finally:
        receiver.stop()
    port = free_port()
    receiver = Receiver(tmp_path / "out3", port, "--allow-host", "127.0.0.0/8")
    try:
        allowed = subprocess.run(
            ["echoscu", "-aec", "MEDPIPE", "127.0.0.1", str(port)], capture_output=True, timeout=60
        )
        assert allowed.returncode == 0
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def deidentified(tmp_path_factory: pytest.TempPathFactory, corpus) -> Path:
    """A de-identified OUTPUT of the generated corpus plus compressed pydicom files."""
    work = tmp_path_factory.mktemp("send")
    inputs = work / "in"
    shutil.copytree(corpus.root, inputs / "study")
    from pydicom.data import get_testdata_file

    for name in (
        "JPEG2000.dcm",
        "SC_rgb_rle.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "SC_rgb_jpeg.dcm",
        "MR_small_implicit.dcm",
    ):
        shutil.copy(get_testdata_file(name), inputs / name)
    out = work / "out"
    medpipe("run", str(inputs), str(out), "-j", "1")
    assert set_aside_at_risk(out)  # the US and SC images: sent by no test but the next
    return out


def test_send_refuses_images_whose_pixels_may_carry_burned_in_text(deidentified: Path) -> None:
    at_risk = deidentified.parent / "at-risk"
    n = len(list(at_risk.glob("*.dcm")))
    assert n >= 3
    proc = medpipe(
        "send", str(at_risk), "dicom://ARCHIVE@127.0.0.1:9", "--no-progress", check=False
    )
    assert proc.returncode == 1
    assert f"{n} = 0 + 0 + {n} + 0" in proc.stdout


def received_by_uid(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:
            continue
        uid = str(ds.SOPInstanceUID)
        assert uid not in found, "an instance arrived twice"
        found[uid] = path
    return found


def assert_same_as_sent(sent: list[Path], received: dict[str, Path]) -> None:
    assert len(received) == len(sent)
    for path in sent:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert dataset_bytes(received[uid]) == dataset_bytes(path), path.name


def test_send_to_dcmtk_storescp_arrives_byte_for_byte_and_is_not_sent_twice(
    tmp_path: Path, deidentified: Path
) -> None:
    need("storescp")
    ns = LoopbackNamespace()
    try:
        inbox = tmp_path / "storescp"
        inbox.mkdir()
        ns.start(
            ["storescp", "+B", "+xa", "-aet", "ARCHIVE", "-od", str(inbox), "11112"],
            stderr=subprocess.DEVNULL,
        )
        ns.wait_port(11112)
        dest = "dicom://ARCHIVE@127.0.0.1:11112"
        first = ns.run(medpipe_cmd("send", str(deidentified), dest, "--no-progress"))
        sent = dicom_files(deidentified)
        assert f"{len(sent)} = {len(sent)} + 0 + 0 + 0" in first.stdout
        assert_same_as_sent(sent, received_by_uid(inbox))
        again = ns.run(medpipe_cmd("send", str(deidentified), dest, "--no-progress"))
        assert f"{len(sent)} = 0 + {len(sent)} + 0 + 0" in again.stdout
        assert len(list(inbox.iterdir())) == len(sent)
    finally:
        ns.close()


def test_send_to_orthanc_over_c_store_and_stow_rs(tmp_path: Path, deidentified: Path) -> None:
    need("Orthanc", ORTHANC_DICOMWEB)
    ns = LoopbackNamespace()
    try:
        config = orthanc_config(tmp_path / "orthanc")
        ns.start(["Orthanc", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ns.wait_port(8042)
        ns.wait_port(4242)
        patients = sorted(
            p for p in deidentified.iterdir() if p.name.startswith("ANON-") and dicom_files(p)
        )
        assert len(patients) >= 2
        over_dimse, over_web = patients[0], patients[1]
        ns.run(
            medpipe_cmd("send", str(over_dimse), "dicom://ORTHANC@127.0.0.1:4242", "--no-progress")
        )
        web = ns.run(
            medpipe_cmd("send", str(over_web), "http://127.0.0.1:8042/dicom-web", "--no-progress")
        )
        assert "+ 0 + 0" in web.stdout
        stored = tmp_path / "from-orthanc"
        stored.mkdir()
        for oid in json.loads(ns.http_get("http://127.0.0.1:8042/instances")):
            data = ns.http_get(f"http://127.0.0.1:8042/instances/{oid}/file")
            (stored / f"{oid}.dcm").write_bytes(data)
        assert_same_as_sent(
            dicom_files(over_dimse) + dicom_files(over_web), received_by_uid(stored)
        )
        # STOW-RS resumes as C-STORE does: nothing acknowledged is posted again.
        again = ns.run(
            medpipe_cmd("send", str(over_web), "http://127.0.0.1:8042/dicom-web", "--no-progress")
        )
        n = len(dicom_files(over_web))
        assert f"{n} = 0 + {n} + 0 + 0" in again.stdout
        url = "http://127.0.0.1:8042/dicom-web"
        # Emptied, the destination is asked (QIDO-RS) what it holds: everything goes again.
        for oid in json.loads(ns.http_get("http://127.0.0.1:8042/instances")):
            ns.http_get(f"http://127.0.0.1:8042/instances/{oid}", method="DELETE")
        verified = ns.run(medpipe_cmd("send", str(over_web), url, "--verify", "--no-progress"))
        assert f"{n} = {n} + 0 + 0 + 0" in verified.stdout
        assert f"{n} earlier acknowledgement(s) forgotten" in verified.stdout
        held = ns.run(medpipe_cmd("send", str(over_web), url, "--verify", "--no-progress"))
        assert f"{n} = 0 + {n} + 0 + 0" in held.stdout  # all held: nothing sent
        resent = ns.run(medpipe_cmd("send", str(over_web), url, "--resend", "--no-progress"))
        assert f"{n} = {n} + 0 + 0 + 0" in resent.stdout
        dimse = ns.run(
            medpipe_cmd("send", str(over_dimse), "dicom://ORTHANC@127.0.0.1:4242", "--verify"),
            check=False,
        )
        assert dimse.returncode == 2 and "--verify needs a DICOMweb destination" in dimse.stderr
    finally:
        ns.close()


def test_send_refuses_what_is_not_deidentified_and_never_reads_quarantine(
    tmp_path: Path, corpus, deidentified: Path
) -> None:
    raw = tmp_path / "raw"
    shutil.copytree(corpus.root, raw)
    for path in raw.rglob("*"):
        if path.is_file():
            path.rename(path.with_suffix(".dcm"))
    port = free_port()  # nothing listens: a refused file must not even be tried
    proc = medpipe("send", str(raw), f"dicom://ARCHIVE@127.0.0.1:{port}", check=False)
    assert proc.returncode == 1
    n = len(corpus.files)
    assert f"{n} = 0 + 0 + {n} + 0" in proc.stdout
    assert "Patient Identity Removed (0012,0062) is not YES" in proc.stdout
    quarantine = deidentified / "quarantine"
    quarantine.mkdir(exist_ok=True)
    proc = medpipe("send", str(quarantine), f"dicom://ARCHIVE@127.0.0.1:{port}", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "quarantine" in proc.stderr
    bad = medpipe("send", str(deidentified), "pacs.example.org:104", check=False)
    assert bad.returncode == 2 and "dicom://AE_TITLE@host:port" in bad.stderr
