"""What each attack of issue #33 costs the node and the intake, measured (not a test).

``python -m benchmarks.attacks [TREE]`` runs every attack against ``medpipe`` from the
checkout at TREE (default: this one), so that a tree before and after a change can be
compared in one sitting. It prints one line per attack: the time an allowed client
waited, the receiver's peak memory, the CPU spent refusing, the bytes in quarantine.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

KEY = {"MEDPIPE_DEID_KEY": os.urandom(32).hex()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _receiver(tree: Path, out: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.cli", "receive", str(out), "--port", str(port), *extra],
        cwd=tree,
        env={**os.environ, **KEY},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    raise RuntimeError("receiver did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _associate(port: int, tls: ssl.SSLContext | None = None, timeout: float = 15) -> str:
    ae = AE(ae_title="GOOD")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = timeout
    start = time.monotonic()
    assoc = ae.associate(
        "127.0.0.1", port, ae_title="MEDPIPE", tls_args=(tls, None) if tls else None
    )
    took = time.monotonic() - start
    if assoc.is_established:
        assoc.release()
        return f"associated in {took:.2f} s"
    return f"refused or timed out after {took:.2f} s"


def _peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tls_lockout(tree: Path, work: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.test_network_faults import _certificates

    certs = _certificates(work)
    port = _free_port()
    proc = _receiver(
        tree, work / "tls-out", port,
        "--tls-cert", str(certs["server.crt"]), "--tls-key", str(certs["server.key"]),
        "--tls-ca", str(certs["ca.crt"]),
    )  # fmt: skip
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.crt"]))
    client.check_hostname = False
    client.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))
    idle = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.3)
    try:
        return "one idle TCP connection, then a TLS client: " + _associate(port, client)
    finally:
        idle.close()
        _stop(proc)


def huge_pdu(tree: Path, work: Path) -> str:
    port = _free_port()
    proc = _receiver(tree, work / "pdu-out", port)
    before = _peak_mb(proc.pid)
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        try:
            sock.sendall(struct.pack(">BBL", 1, 0, 0xFFFFFFF0))
            chunk = b"\0" * (1 << 20)
            while sent < (1 << 30):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        time.sleep(0.5)
    peak = _peak_mb(proc.pid)
    _stop(proc)
    return (
        f"A-ASSOCIATE-RQ declaring 4 GiB: {sent >> 20} MiB accepted, receiver peak "
        f"{peak:.0f} MB (from {before:.0f} MB)"
    )


def slot_filling(tree: Path, work: Path) -> str:
    port = _free_port()
    proc = _receiver(tree, work / "slot-out", port)
    held = [socket.create_connection(("127.0.0.1", port)) for _ in range(12)]
    for sock in held[6:]:
        sock.send(b"\x01")  # the first byte of an A-ASSOCIATE-RQ, and no more
    time.sleep(0.5)
    try:
        return "12 idle or dripping connections (limit 10), then a client: " + _associate(port)
    finally:
        for sock in held:
            sock.close()
        _stop(proc)


def _run(tree: Path, inputs: Path, out: Path) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(
        [sys.executable, "-m", "src.cli", "run", str(inputs), str(out), "--no-progress", "-j", "1"],
        cwd=tree, env={**os.environ, **KEY}, capture_output=True, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def _quarantine_mb(out: Path) -> float:
    folder = out / "quarantine"
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def zeros(tree: Path, work: Path) -> str:
    inputs = work / "zeros-in"
    inputs.mkdir()
    (inputs / "zeros.bin").write_bytes(b"\0" * (64 << 20))
    cpu = _run(tree, inputs, work / "zeros-out")
    empty = work / "empty-in"
    empty.mkdir()
    base = _run(tree, empty, work / "empty-out")
    return f"a 64 MiB file of zeros: {cpu - base:.2f} s of CPU to refuse (beyond start-up)"


def zip_bombs(tree: Path, work: Path) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.integration.test_attacks_intake import overlapping_zip

    inputs = work / "zip-in"
    inputs.mkdir()
    overlapping_zip(inputs / "overlap.zip", members=20, member_bytes=8 << 20)
    with zipfile.ZipFile(inputs / "ratio.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        for i in range(3):
            archive.writestr(f"z{i}.dcm", b"\0" * (48 << 20))
    size = sum(p.stat().st_size for p in inputs.iterdir()) / 1e3
    cpu = _run(tree, inputs, work / "zip-out")
    out = work / "zip-out"
    staging = out / ".medpipe" / "staging"
    left = (
        sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.exists() else 0
    )
    return (
        f"two zip bombs ({size:.0f} KB in all): {_quarantine_mb(out):.1f} MB in quarantine, "
        f"{left / 1e6:.1f} MB left in staging, {cpu:.1f} s of CPU"
    )


ATTACKS = (tls_lockout, huge_pdu, slot_filling, zeros, zip_bombs)


def main() -> None:
    tree = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
    print(f"tree: {tree} ({json.dumps(os.uname().sysname)})")
    for attack in ATTACKS:
        with tempfile.TemporaryDirectory() as work:
            try:
                line = attack(tree.resolve(), Path(work))
            except Exception as exc:  # one attack's failure does not hide the others
                line = f"{attack.__name__}: could not run ({type(exc).__name__}: {exc})"
            print(f"- {line}", flush=True)


if __name__ == "__main__":
    main()
