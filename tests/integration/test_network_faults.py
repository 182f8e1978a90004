"""The network when things go wrong: a sender that aborts, a disk that fills, a peer
that drops the association, a stop in the middle of a transfer, and TLS."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE, AllStoragePresentationContexts, StoragePresentationContexts, evt

from src.settings.locations import input_id
from tests.conftest import TEST_KEY, free_port, identity_removed_expected, medpipe
from tests.integration.peers import Receiver, need, set_aside_at_risk

pytestmark = [pytest.mark.peer, pytest.mark.timeout(600)]


def dicom_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.dcm") if not {"quarantine", ".medpipe"} & set(p.parts))


def journal(output: Path) -> dict[str, dict]:
    entries = {}
    for line in (output / ".medpipe" / "journal.jsonl").read_text().splitlines():
        entry = json.loads(line)
        entries[entry["input_id"]] = entry
    return entries


def scu(port: int, ae_title: str = "MEDPIPE"):  # type: ignore[no-untyped-def]
    ae = AE(ae_title="MODALITY")
    ae.dimse_timeout = ae.network_timeout = 10  # a send cut by abort() gives up soon
    for cx in StoragePresentationContexts:
        ae.add_requested_context(cx.abstract_syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    assert assoc.is_established
    return assoc


def iid(path: Path) -> str:
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return input_id(TEST_KEY.encode(), f"dicom:{uid}")


def big_instance(tmp_path: Path, frames: int = 60) -> Path:
    """A multi-frame CT of about 30 MB: long enough on the wire to be cut mid-transfer."""
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ds.Rows = ds.Columns = 512
    ds.NumberOfFrames = frames
    ds.PixelData = os.urandom(512 * 512 * 2 * frames)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    path = tmp_path / "big.dcm"
    ds.save_as(path)
    return path


def test_a_sender_that_aborts_mid_association_loses_nothing_it_was_told_was_stored(
    tmp_path: Path, corpus
) -> None:
    out = tmp_path / "out"
    port = free_port()
    receiver = Receiver(out, port)
    big = big_instance(tmp_path)
    try:
        assoc = scu(port)
        stored = []
        for path in corpus.files[:4]:
            status = assoc.send_c_store(path)
            assert status.Status == 0x0000
            stored.append(path)
        # Abort once 20 P-DATA PDUs of the big instance are on the wire: mid-transfer by
        # construction (it takes thousands), not by a sleep that a slow machine outruns.
        mid_transfer = threading.Event()
        sent = [0]

        def count(event) -> None:  # type: ignore[no-untyped-def]
            if event.pdu.__class__.__name__ == "P_DATA_TF":
                sent[0] += 1
                if sent[0] == 20:
                    mid_transfer.set()

        assoc.bind(evt.EVT_PDU_SENT, count)
        sender = threading.Thread(target=assoc.send_c_store, args=(big,), daemon=True)
        sender.start()
        assert mid_transfer.wait(30)
        assoc.abort()  # mid-transfer of the big instance
        sender.join(5)  # pynetdicom's own send may hang after abort()
        # A new association after the abort works.
        again = scu(port)
        assert again.send_c_store(corpus.files[4]).Status == 0x0000
        stored.append(corpus.files[4])
        again.release()
    finally:
        code, _ = receiver.stop()
    assert code == 0
    entries = journal(out)
    assert {iid(p) for p in stored} <= set(entries)
    assert set(entries) <= {iid(p) for p in stored} | {iid(big)}
    assert len(dicom_files(out)) == len([e for e in entries.values() if e["status"] == "processed"])
    for path in dicom_files(out):
        pydicom.dcmread(path)  # whole, parseable files only
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".medpipe-tmp")]
    assert not leftovers


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_gets_a_failure_status_and_nothing_acknowledged_is_lost(
    tmp_path: Path, corpus
) -> None:
    need("unshare")
    out = tmp_path / "out"
    out.mkdir()
    port = free_port()
    # OUTPUT is a 300 KB tmpfs of the receiver's own (a mount namespace): it fills up.
    mount = f'mount -t tmpfs -o size=300k tmpfs {out} && exec "$@"'
    receiver = Receiver(out, port, prefix=("unshare", "-m", "--", "sh", "-c", mount, "sh"))
    view = Path(f"/proc/{receiver.proc.pid}/root") / str(out).lstrip("/")
    statuses: dict[Path, int] = {}
    try:
        assoc = scu(port)
        files = list(corpus.files)
        for path in files:
            status = assoc.send_c_store(path)
            statuses[path] = int(status.Status)
        for _ in range(3):  # keep writing: the disk stays full
            big = big_instance(tmp_path, frames=2)
            statuses[big] = int(assoc.send_c_store(big).Status)
        assoc.release()
        ok = {p for p, s in statuses.items() if s == 0x0000}
        failed = {p for p, s in statuses.items() if s != 0x0000}
        assert ok and failed
        assert {statuses[p] for p in failed} == {0xA700}
        entries = journal(view)
        # Every instance acknowledged is journalled and its output is whole on disk.
        assert {iid(p) for p in ok} <= set(entries)
        assert not {iid(p) for p in failed} & set(entries)
        for p in ok:
            entry = entries[iid(p)]
            if entry["status"] == "processed":
                pydicom.dcmread(view / entry["output"])
    finally:
        code, _ = receiver.stop()
    assert code in (0, 1)  # 1: the reports did not fit; the journal has every instance
    assert "ENOSPC" in receiver.stderr()


class DroppingPeer:
    """A C-STORE SCP that drops the association at its ``drop_at``-th instance (without
    storing it) and optionally goes away; it records what it stored."""

    def __init__(self, port: int, drop_at: int, go_away: bool) -> None:
        self.port, self.drop_at, self.go_away = port, drop_at, go_away
        self.stored: list[str] = []
        self.seen = 0
        self.ae = AE(ae_title="PEER")
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = self.ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self.on_store)]
        )

    def on_store(self, event):  # type: ignore[no-untyped-def]
        self.seen += 1
        if self.seen == self.drop_at:
            event.assoc.abort()
            if self.go_away:
                threading.Thread(target=self.stop).start()
            return 0xA700  # never reaches the sender: the association is gone
        self.stored.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture(scope="module")
def outgoing(tmp_path_factory: pytest.TempPathFactory, corpus) -> Path:
    out = tmp_path_factory.mktemp("faults") / "out"
    medpipe("run", str(corpus.root), str(out), "-j", "1")
    set_aside_at_risk(out)
    return out


def test_send_to_a_peer_that_drops_halfway_resumes_without_duplicates(
    tmp_path: Path, outgoing: Path
) -> None:
    files = dicom_files(outgoing)
    uids = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in files)
    # 1. The peer drops once and stays: one send reconnects and delivers the rest.
    port = free_port()
    peer = DroppingPeer(port, drop_at=5, go_away=False)
    try:
        source = tmp_path / "copy1"
        shutil.copytree(outgoing, source)
        proc = medpipe("send", str(source), f"dicom://PEER@127.0.0.1:{port}", "--no-progress")
        assert f"{len(files)} = {len(files)} + 0 + 0 + 0" in proc.stdout
        assert sorted(peer.stored) == uids
    finally:
        peer.stop()
    # 2. The peer drops and goes away: the send fails; the next one sends only the rest.
    port = free_port()
    peer = DroppingPeer(port, drop_at=5, go_away=True)
    try:
        source = tmp_path / "copy2"
        shutil.copytree(outgoing, source)
        dest = f"dicom://PEER@127.0.0.1:{port}"
        first = medpipe("send", str(source), dest, "--retries", "1", "--no-progress", check=False)
        assert first.returncode == 1
        assert len(peer.stored) == 4
        assert f"{len(files)} = 4 + 0 + 0 + {len(files) - 4}" in first.stdout
        peer.start()
        second = medpipe("send", str(source), dest, "--no-progress")
        assert f"{len(files)} = {len(files) - 4} + 4 + 0 + 0" in second.stdout
        assert sorted(peer.stored) == uids  # each exactly once
    finally:
        peer.stop()


def test_sigterm_finishes_the_transfer_in_flight_and_a_restart_resumes(
    tmp_path: Path, corpus
) -> None:
    need("storescu")
    out = tmp_path / "out"
    port = free_port()
    receiver = Receiver(out, port)
    batch = tmp_path / "batch"
    shutil.copytree(corpus.root, batch)
    for i in range(3):  # about 90 MB in all: still on the wire when SIGTERM comes
        big_instance(tmp_path, frames=60).rename(batch / f"big{i}.dcm")
    total = len(corpus.files) + 3
    slow = subprocess.Popen(
        ["storescu", "-aec", "MEDPIPE", "+sd", "+r", "127.0.0.1", str(port), str(batch)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (out / ".medpipe" / "journal.jsonl").exists():
        time.sleep(0.01)
    while time.monotonic() < deadline and not journal(out):
        time.sleep(0.01)
    receiver.proc.send_signal(signal.SIGTERM)
    at_signal = len(journal(out))
    assert at_signal < total  # the transfer was in flight
    code, _ = receiver.stop(signal.SIGTERM)
    assert code == 0
    assert slow.wait(60) == 0, slow.stderr.read()  # its association was let finish
    assert len(journal(out)) == total
    first = json.loads((out / "manifest.json").read_text())
    assert first["totals"]["processed"] == total
    # A restart into the same OUTPUT carries on: a new session in the history.
    port = free_port()
    receiver = Receiver(out, port)
    try:
        assoc = scu(port)
        assert assoc.send_c_store(corpus.files[0]).Status == 0x0000  # the same again
        assoc.release()
    finally:
        assert receiver.stop(signal.SIGINT)[0] == 0
    second = json.loads((out / "manifest.json").read_text())
    assert len(second["runs"]) == 2
    assert second["totals"]["processed"] == total
    assert len(dicom_files(out)) == total


def test_a_completed_study_is_forwarded(tmp_path: Path, corpus) -> None:
    archive_port, port = free_port(), free_port()
    archive = Receiver(tmp_path / "archive", archive_port, "--ae-title", "ARCHIVE")
    node = Receiver(
        tmp_path / "node",
        port,
        "--study-quiet",
        "1",
        "--forward",
        f"dicom://ARCHIVE@127.0.0.1:{archive_port}",
    )
    try:
        assoc = scu(port)
        for path in corpus.files:
            assert assoc.send_c_store(path).Status == 0x0000
        assoc.release()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"Study forwarded"' not in node.stderr():
            time.sleep(0.2)
    finally:
        code, summary = node.stop()
    archive.stop()
    assert code == 0
    n = len(corpus.files)
    # Images whose pixels may carry burned-in text are marked Patient Identity Removed
    # = NO and are refused, never forwarded.
    risky = sum(identity_removed_expected(pydicom.dcmread(p)) == "NO" for p in corpus.files)
    assert risky > 0
    ok = n - risky
    assert (
        f"forward: files = sent + already sent + refused + failed: {n} = {ok} + 0 + {risky} + 0"
        in summary
    )
    assert len(dicom_files(tmp_path / "archive")) == ok
    # Real figures: the time spent sending and its rate, not "0.00 s: 0.0 files/s".
    sent = re.search(r"forward: sent [\d.]+ MB to \S+ in ([\d.]+) s: ([\d.]+) files/s", summary)
    assert sent is not None, summary
    assert float(sent.group(1)) > 0 and float(sent.group(2)) > 0


def _certificates(folder: Path) -> dict[str, Path]:
    """A test CA, and a server and a client certificate it signed (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key, cert) -> None:  # type: ignore[no-untyped-def]
        (folder / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("medpipe test CA"))
        .issuer_name(name("medpipe test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write("ca", ca_key, ca)
    for stem in ("server", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(f"medpipe {stem}"))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        write(stem, key, cert)
    return {p.stem + p.suffix: p for p in folder.iterdir()}


def test_tls_with_client_verification(tmp_path: Path, corpus, outgoing: Path) -> None:
    need("storescu")
    certs = _certificates(tmp_path)
    out = tmp_path / "out"
    port = free_port()
    receiver = Receiver(
        out,
        port,
        "--tls-cert",
        str(certs["server.crt"]),
        "--tls-key",
        str(certs["server.key"]),
        "--tls-ca",
        str(certs["ca.crt"]),
    )
    try:
        dcmtk = subprocess.run(
            [
                "storescu",
                "-aec",
                "MEDPIPE",
                "+tls",
                str(certs["client.key"]),
                str(certs["client.crt"]),
                "+cf",
                str(certs["ca.crt"]),
                "+sd",
                "+r",
                "127.0.0.1",
                str(port),
                str(corpus.root),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert dcmtk.returncode == 0, dcmtk.stderr[-2000:]
        plain = subprocess.run(
            ["echoscu", "-aec", "MEDPIPE", "127.0.0.1", str(port)],
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert plain.returncode != 0
        dest = f"dicom://MEDPIPE@127.0.0.1:{port}"
        anonymous = medpipe(
            "send",
            str(outgoing),
            dest,
            "--tls-ca",
            str(certs["ca.crt"]),
            "--retries",
            "0",
            "--no-progress",
            check=False,
        )
        assert anonymous.returncode == 1  # no client certificate: not let in
        assert "a peer that verifies clients needs --tls-cert and --tls-key" in anonymous.stdout
        ours = medpipe(
            "send",
            str(outgoing),
            dest,
            "--tls-ca",
            str(certs["ca.crt"]),
            "--tls-cert",
            str(certs["client.crt"]),
            "--tls-key",
            str(certs["client.key"]),
            "--no-progress",
        )
        assert " + 0 + 0 + 0" in ours.stdout
    finally:
        code, _ = receiver.stop()
    assert code == 0
    totals = json.loads((out / "manifest.json").read_text())["totals"]
    # dcmtk sent the corpus; medpipe sent what it may share (no image at risk of burned-in text)
    assert totals["processed"] == len(corpus.files) + len(dicom_files(outgoing))


def test_receive_into_s3_answers_success_only_after_the_upload(
    tmp_path: Path, corpus, moto_reset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=moto_reset)
    s3.create_bucket(Bucket="research")
    port = free_port()
    receiver = Receiver(
        tmp_path / "unused",
        port,
        "--endpoint-url",
        moto_reset,
        output_uri="s3://research/deid",
    )
    try:
        assoc = scu(port)
        for path in corpus.files:
            assert assoc.send_c_store(path).Status == 0x0000
        assoc.release()
    finally:
        code, _ = receiver.stop()
    assert code == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="research")["Contents"]]
    assert len([k for k in keys if k.endswith(".dcm")]) == len(corpus.files)
    body = s3.get_object(Bucket="research", Key="deid/manifest.json")["Body"].read()
    assert json.loads(body)["totals"]["processed"] == len(corpus.files)
    # The uploads start failing: the sender is told, and keeps the instance.
    from tests.integration.fault_proxy import FaultProxy

    monkeypatch.setenv("MEDPIPE_AWS_MAX_ATTEMPTS", "2")  # give up within the DIMSE timeout
    with FaultProxy(moto_reset, every=0) as proxy:
        port = free_port()
        receiver = Receiver(
            tmp_path / "unused2",
            port,
            "--endpoint-url",
            proxy.url,
            output_uri="s3://research/deid2",
        )
        try:
            assoc = scu(port)
            assert assoc.send_c_store(corpus.files[0]).Status == 0x0000
            proxy.every = 1  # from now on every request fails
            assert assoc.send_c_store(corpus.files[1]).Status == 0xA700
            assoc.release()
        finally:
            receiver.stop()
    assert '"Instance not stored; the sender is told to keep it"' in receiver.stderr()
