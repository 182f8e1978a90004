"""``medpipe run`` and its intake under attack (issue #33, items 4-8).

Each test builds the hostile input itself (a file of zeros, zip bombs of both shapes, a
file swapped for a link during the run, formula-shaped identifiers, control characters
in names) and asserts the bound: bytes read, bytes in quarantine, what is read from
outside INPUT (nothing), what a spreadsheet would run (nothing).
"""

from __future__ import annotations

import csv
import http.server
import io
import json
import os
import ssl
import stat
import struct
import threading
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline, InstanceRefusedError, Reason
from src.pipeline.archives import ArchiveLimits, unsafe_archive
from src.pipeline.sources import (
    InputChangedError,
    iter_local,
    materialise,
    open_input,
    original_for_quarantine,
)
from src.settings.config import RunConfig
from tests.conftest import TEST_KEY, medpipe


def ct(path: Path, name: str = "Doe^Jane", patient_id: str = "MRN-1", uid: str = "") -> Path:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.PatientName, ds.PatientID = name, patient_id
    if uid:
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


class CountingReader(io.RawIOBase):
    """A file that counts the bytes read from it and cannot be memory-mapped."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.inner.seek(offset, whence)

    def tell(self) -> int:
        return self.inner.tell()

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = self.inner.readinto(buffer)
        self.read_bytes += n
        return n


@pytest.mark.parametrize("fill", [b"\0", b"A", b"\xff"])
def test_a_large_file_that_is_not_dicom_is_refused_after_reading_a_few_bytes(
    tmp_path: Path, fill: bytes
) -> None:
    size = 64 << 20
    reader = CountingReader(fill * size)
    pipeline = InstancePipeline(Deidentifier(key=TEST_KEY))
    with pytest.raises(InstanceRefusedError) as refused:
        pipeline.process(io.BufferedReader(reader), tmp_path / "out.dcm", label="zeros")
    assert refused.value.reason == Reason.NOT_DICOM
    # before: the whole file, up to four pydicom passes over it (about 1 s of CPU per MB)
    assert reader.read_bytes < 1 << 20, reader.read_bytes
    assert not (tmp_path / "out.dcm").exists()


def test_a_headerless_dataset_is_still_read(tmp_path: Path) -> None:
    """The bound does not cost the headerless files that exist (pydicom's no_meta.dcm)."""
    source = Path(get_testdata_file("no_meta.dcm"))
    result = InstancePipeline(Deidentifier(key=TEST_KEY)).process(source, tmp_path / "o.dcm")
    assert pydicom.dcmread(tmp_path / "o.dcm").PatientIdentityRemoved == "YES"
    assert result.output_key


def overlapping_zip(path: Path, members: int, member_bytes: int) -> None:
    """One deflated member, and ``members - 1`` more central-directory entries of the same
    name pointing at the same local header: every entry passes zipfile's name check and
    expands the same compressed bytes again (the shape of CVE-2024-0450's bombs)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("m0.dcm", b"\0" * member_bytes)
    data = buffer.getvalue()
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", data, eocd + 12)
    entries = data[cd_offset : cd_offset + cd_size] * members
    tail = struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, members, members, len(entries), cd_offset, 0
    )
    path.write_bytes(data[:cd_offset] + entries + tail)


def test_overlapping_zip_members_are_refused_whatever_the_python(tmp_path: Path) -> None:
    bomb = tmp_path / "in" / "bomb.zip"
    bomb.parent.mkdir()
    overlapping_zip(bomb, members=200, member_bytes=8 << 20)  # 1.6 GB from a few KB
    with zipfile.ZipFile(bomb) as archive:
        assert len(archive.infolist()) == 200
        assert unsafe_archive(archive, bomb.stat().st_size, ArchiveLimits())
    out = tmp_path / "out"
    medpipe("run", str(bomb.parent), str(out), "--no-progress")
    totals = manifest(out)["totals"]
    assert totals["quarantined"] == 1 and totals["processed"] == 0
    assert manifest(out)["run"]["quarantine_reasons"] == {"unsafe-archive": 1}
    assert tree_bytes(out / "quarantine") < 64 << 10  # before: 1.3 GB from 66 KB
    assert not list((out / ".medpipe" / "staging").iterdir())


def test_a_zip_that_expands_past_its_budget_is_refused_before_reading(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with zipfile.ZipFile(folder / "zeros.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"z{i}.dcm", b"\0" * (48 << 20))
    ct(folder / "ok.dcm")
    out = tmp_path / "out"
    medpipe("run", str(folder), str(out), "--no-progress")
    m = manifest(out)
    assert m["totals"]["processed"] == 1
    assert m["run"]["quarantine_reasons"] == {"unsafe-archive": 1}
    assert tree_bytes(out / "quarantine") < 64 << 10  # before: every member copied whole


def test_a_refused_input_above_the_copy_limit_keeps_only_its_reason(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "big.bin").write_bytes(os.urandom(3 << 20))
    (folder / "small.bin").write_bytes(os.urandom(1000))
    config = tmp_path / "medpipe.toml"
    config.write_text("[run]\nmax_quarantine_copy_bytes = 1048576\n")
    out = tmp_path / "out"
    medpipe("run", str(folder), str(out), "--config", str(config), "--no-progress")
    reasons = [json.loads(p.read_text()) for p in (out / "quarantine").rglob("*.reason.json")]
    copied = sorted(r["copied"] for r in reasons)
    assert copied == [False, True]
    big = next(r for r in reasons if not r["copied"])
    assert "not copied" in big["detail"] and "big.bin" not in big["detail"]
    assert tree_bytes(out / "quarantine") < 1 << 20


def test_scratch_copies_are_private_and_removed_when_a_member_is_too_large(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    with zipfile.ZipFile(folder / "a.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.dcm", ct(tmp_path / "x.dcm").read_bytes())
        archive.writestr("y.dcm", b"\0" * (4 << 20))
    items = {i.member: i for i in iter_local(str(folder))}
    target = tmp_path / "scratch.orig"
    materialise(items["x.dcm"], str(target), None, 1 << 30)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(ValueError):
        materialise(items["y.dcm"], str(tmp_path / "partial"), None, 1 << 20)
    assert not (tmp_path / "partial").exists()  # before: a partial copy at 0644 stayed


def discovered_then_swapped(tmp_path: Path):  # type: ignore[no-untyped-def]
    """INPUT/a.dcm as discovery saw it, then replaced by a link to a file outside INPUT
    (another patient's)."""
    folder = tmp_path / "in"
    ct(folder / "a.dcm")
    outside = ct(tmp_path / "secret" / "hostname.dcm", name="Outside^Person", patient_id="XYZ-9")
    item = next(iter_local(str(folder)))
    (folder / "a.dcm").unlink()
    (folder / "a.dcm").symlink_to(outside)
    return item, folder


def test_a_file_swapped_for_a_link_after_discovery_is_not_read(tmp_path: Path) -> None:
    item, folder = discovered_then_swapped(tmp_path)
    with pytest.raises(InputChangedError):
        open_input(item)
    with original_for_quarantine(item, "", "refused", 1 << 30) as (original, detail):
        assert original is None and "symbolic link" in detail
    # and a file renamed over it (another inode) is not the file discovered either
    (folder / "a.dcm").unlink()
    ct(folder / "a.dcm", name="Other^Patient")
    with pytest.raises(InputChangedError):
        open_input(item)


def test_a_run_never_reads_a_file_swapped_in_from_outside_input(tmp_path: Path) -> None:
    """The whole worker path: discovery, then the swap, then the worker and the commit."""
    from src.pipeline import worker
    from src.pipeline.runner import _finish
    from src.records.summary import RunSummary
    from src.storage.folder_store import FolderStore

    item, _ = discovered_then_swapped(tmp_path)
    staging = tmp_path / "staging"
    staging.mkdir()
    worker.init_worker(RunConfig(), TEST_KEY.encode(), str(staging))
    outcome = worker.process((item, "id-a"))
    assert outcome.status == "quarantined" and outcome.reason == "not-a-regular-file"
    out = tmp_path / "out"
    _finish(outcome, item, FolderStore(str(out)), {}, RunSummary(), str(staging), 1 << 30)
    assert not [p for p in (out / "quarantine").rglob("*") if not p.name.endswith(".json")]
    for path in out.rglob("*"):
        if path.is_file():
            assert b"Outside" not in path.read_bytes() and b"XYZ-9" not in path.read_bytes()


def test_crosswalk_cells_never_become_spreadsheet_formulas(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    ct(folder / "@SUM(1+1).dcm", patient_id='=HYPERLINK("http://x")', uid="1.2.3.4.5.1")
    ct(folder / "b.dcm", patient_id="-42", uid="1.2.3.4.5.2")
    crosswalk = tmp_path / "crosswalk.csv"
    medpipe(
        "run", str(folder), str(tmp_path / "out"), "--crosswalk", str(crosswalk), "--no-progress"
    )
    rows = list(csv.DictReader(crosswalk.open()))
    assert len(rows) == 2
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
    assert {r["patient_id"] for r in rows} == {'\'=HYPERLINK("http://x")', "'-42"}
    assert any(r["source"] == "'@SUM(1+1).dcm" for r in rows)


def test_a_crosswalk_path_that_is_a_link_is_refused(tmp_path: Path) -> None:
    ct(tmp_path / "in" / "a.dcm")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    victim.chmod(0o644)
    link = tmp_path / "crosswalk.csv"
    link.symlink_to(victim)
    run = medpipe(
        "run", str(tmp_path / "in"), str(tmp_path / "out"), "--crosswalk", str(link), check=False
    )
    assert run.returncode == 2 and "symbolic link" in run.stderr
    assert victim.read_text() == "keep" and stat.S_IMODE(victim.stat().st_mode) == 0o644


def test_medpipe_tmp_named_inputs_are_accounted(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    ct(folder / ".medpipe-tmp-123.dcm")
    ct(folder / "b.dcm", uid="1.2.3.4.5.9")
    out = tmp_path / "out"
    medpipe("run", str(folder), str(out), "--no-progress")
    totals = manifest(out)["totals"]
    assert totals["inputs"] == 2  # before: 1 (the first was silently left out)
    assert totals["processed"] + totals["quarantined"] == 2


def test_control_characters_in_names_never_reach_the_terminal_raw(tmp_path: Path) -> None:
    hostile = tmp_path / "in\x1b]0;owned\x07"
    run = medpipe("run", str(hostile), str(tmp_path / "out"), check=False)
    assert run.returncode == 2
    assert "\x1b" not in run.stderr and "\x07" not in run.stderr
    assert "\\x1b]0;owned\\x07" in run.stderr


def test_the_review_page_is_refused_in_the_shareable_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ct(tmp_path / "in" / "a.dcm")
    medpipe("run", str(tmp_path / "in"), str(out), "--no-progress")
    shared = medpipe("review", str(out), "--to", str(out / "review.html"), check=False)
    assert shared.returncode == 2 and "PHI" in shared.stderr
    assert not (out / "review.html").exists()
    private = medpipe("review", str(out), "--to", str(out / "quarantine" / "r.html"))
    assert private.returncode == 0


def test_weak_keys_and_shared_key_files_are_warned_about(tmp_path: Path) -> None:
    ct(tmp_path / "in" / "a.dcm")
    weak = medpipe(
        "run",
        str(tmp_path / "in"),
        str(tmp_path / "o1"),
        "--no-progress",
        env={"MEDPIPE_DEID_KEY": "abcdefghijklmnop"},
    )
    assert "weak de-identification key" in weak.stderr.lower()
    key_file = tmp_path / "deid.key"
    key_file.write_text(os.urandom(32).hex())
    key_file.chmod(0o644)
    shared = medpipe(
        "run",
        str(tmp_path / "in"),
        str(tmp_path / "o2"),
        "--no-progress",
        "--key-file",
        str(key_file),
        env={"MEDPIPE_DEID_KEY": ""},
    )
    assert "chmod 600" in shared.stderr.lower()
    assert "abcdefghijklmnop" not in weak.stderr


def _https_stow_origin(folder: Path, certs: dict[str, Path]):  # type: ignore[no-untyped-def]
    """A minimal STOW-RS origin over TLS, signed by the test CA; it stores nothing and
    answers an empty PS3.18 response (every instance accepted)."""
    posts: list[int] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            posts.append(length)
            body = b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/dicom+json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certs["server.crt"]), str(certs["server.key"]))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, posts


def test_send_verifies_an_https_origin_against_tls_ca(tmp_path: Path) -> None:
    from tests.integration.test_network_faults import _certificates

    certs = _certificates(tmp_path)
    ct(tmp_path / "in" / "a.dcm")
    out = tmp_path / "out"
    medpipe("run", str(tmp_path / "in"), str(out), "--no-progress")
    server, posts = _https_stow_origin(tmp_path, certs)
    try:
        url = f"https://localhost:{server.server_address[1]}/dicom-web"
        unverified = medpipe("send", str(out), url, "--retries", "0", "--no-progress", check=False)
        assert unverified.returncode == 1 and not posts  # the test CA is not the system's
        verified = medpipe(
            "send",
            str(out),
            url,
            "--tls-ca",
            str(certs["ca.crt"]),
            "--retries",
            "0",
            "--no-progress",
            check=False,
        )
        assert verified.returncode == 0, verified.stderr[-1000:]
        assert posts
    finally:
        server.shutdown()
