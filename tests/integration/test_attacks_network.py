"""The receiver under attack from its own network (issue #33, items 1-3 and 8).

Each attack runs against a real ``medpipe receive`` subprocess while an allowed client
(pynetdicom, with the right AE titles and, for TLS, a client certificate) tries to
associate; the assertion is the bound: it still associates within a second, the
receiver's peak memory stays under a ceiling, the attacker's connection is closed.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from tests.conftest import free_port
from tests.integration.peers import Receiver
from tests.integration.test_network_faults import _certificates

pytestmark = [pytest.mark.peer, pytest.mark.timeout(300)]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def associate_seconds(
    port: int, calling: str = "GOOD", called: str = "MEDPIPE", tls: ssl.SSLContext | None = None
) -> float | None:
    """Seconds an allowed client takes to associate and echo; None when refused."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = ae.connection_timeout = 10
    start = time.monotonic()
    assoc = ae.associate("127.0.0.1", port, ae_title=called, tls_args=(tls, None) if tls else None)
    try:
        if not assoc.is_established:
            return None
        status = assoc.send_c_echo()
        assert status.Status == 0
        return time.monotonic() - start
    finally:
        if assoc.is_established:
            assoc.release()


def security_events(receiver: Receiver) -> list[str]:
    reasons = []
    for line in receiver.stderr().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("status") == "security":
            reasons.append(entry["details"]["reason"])
    return reasons


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the receiver closes ``sock`` within ``seconds`` (EOF or reset)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def a_associate_rq_header(length: int) -> bytes:
    return struct.pack(">BBL", 0x01, 0, length)


@pytest.fixture()
def receiver(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    rx = Receiver(
        tmp_path / "out",
        port,
        "--allow-ae",
        "GOOD",
        "--association-timeout",
        "2",
        "--idle-timeout",
        "5",
    )
    yield rx
    rx.stop()


def test_an_idle_tcp_connection_does_not_lock_tls_clients_out(tmp_path: Path) -> None:
    certs = _certificates(tmp_path)
    port = free_port()
    rx = Receiver(
        tmp_path / "out",
        port,
        "--tls-cert",
        str(certs["server.crt"]),
        "--tls-key",
        str(certs["server.key"]),
        "--tls-ca",
        str(certs["ca.crt"]),
        "--association-timeout",
        "3",
    )
    client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certs["ca.crt"]))
    client.check_hostname = False
    client.load_cert_chain(str(certs["client.crt"]), str(certs["client.key"]))
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    try:
        time.sleep(0.3)  # the receiver has accepted them: no ClientHello will ever come
        took = associate_seconds(port, tls=client)
        assert took is not None and took < 1.0, took
        assert all(closed_within(s, 6) for s in idle)  # dropped at the association deadline
    finally:
        for s in idle:
            s.close()
        rx.stop()
    assert "TLS handshake failed or timed out" in security_events(rx)


def test_a_huge_declared_pdu_is_refused_before_it_is_read(receiver: Receiver) -> None:
    sock = socket.create_connection(("127.0.0.1", receiver.port))
    before = peak_rss_mb(receiver.proc.pid)
    sock.sendall(a_associate_rq_header(0xFFFFFFF0))
    sent = 0
    chunk = b"\0" * (1 << 20)
    try:
        while sent < (512 << 20):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the receiver closed the connection
    finally:
        sock.close()
    assert sent < (64 << 20), f"{sent >> 20} MiB accepted"
    assert peak_rss_mb(receiver.proc.pid) - before < 50
    took = associate_seconds(receiver.port)
    assert took is not None and took < 1.0
    assert "A-ASSOCIATE-RQ longer than allowed" in security_events(receiver)


def test_idle_and_dripping_connections_take_no_association_slot(receiver: Receiver) -> None:
    # More than --max-associations (10): idle sockets, and sockets dripping an
    # A-ASSOCIATE-RQ one byte at a time.
    idle = [socket.create_connection(("127.0.0.1", receiver.port)) for _ in range(12)]
    drip = [socket.create_connection(("127.0.0.1", receiver.port)) for _ in range(12)]
    stop = threading.Event()

    def dripping() -> None:
        header = a_associate_rq_header(200)
        for i in range(len(header)):
            for s in drip:
                try:
                    s.send(header[i : i + 1])
                except OSError:
                    pass
            if stop.wait(0.5):
                return

    feeder = threading.Thread(target=dripping, daemon=True)
    feeder.start()
    try:
        time.sleep(0.5)
        for _ in range(3):
            took = associate_seconds(receiver.port)
            assert took is not None and took < 1.0, took
        # the association deadline (2 s) closes every one of them
        assert all(closed_within(s, 5) for s in idle + drip)
    finally:
        stop.set()
        for s in idle + drip:
            s.close()
    reasons = security_events(receiver)
    assert "no association in time" in reasons


def test_connections_beyond_the_pending_bound_drop_the_oldest(tmp_path: Path) -> None:
    port = free_port()
    rx = Receiver(tmp_path / "out", port, "--max-pending", "4")
    flood = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    try:
        time.sleep(0.5)
        closed = [closed_within(s, 0.5) for s in flood]
        assert sum(closed) >= 4  # at most four are kept waiting
        took = associate_seconds(port, calling="ANY")
        assert took is not None and took < 1.0
    finally:
        for s in flood:
            s.close()
        rx.stop()
    assert "too many connections not yet associated" in security_events(rx)


def test_a_p_data_pdu_longer_than_announced_closes_the_association(receiver: Receiver) -> None:
    ae = AE(ae_title="GOOD")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", receiver.port, ae_title="MEDPIPE")
    assert assoc.is_established
    raw = assoc.dul.socket.socket
    raw.sendall(struct.pack(">BBL", 0x04, 0, 1 << 30) + b"\0" * 65536)
    deadline = time.monotonic() + 5
    while assoc.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not assoc.is_established
    assoc.abort()
    assert "PDU longer than the announced maximum" in security_events(receiver)


def test_wrong_called_and_calling_ae_titles_are_refused_and_logged(receiver: Receiver) -> None:
    assert associate_seconds(receiver.port, calling="GOOD", called="OTHER") is None
    assert associate_seconds(receiver.port, calling="BAD") is None
    assert associate_seconds(receiver.port) is not None
    reasons = security_events(receiver)
    assert "called AE title is not ours" in reasons
    assert "calling AE title not allowed" in reasons
    log = receiver.stderr()
    assert "BAD" not in log and "OTHER" not in log  # titles are not logged
