"""Real DICOM peers for the network tests: dcmtk, Orthanc, and medpipe's own receiver.

dcmtk's storescp and Orthanc bind every interface, so they run inside a network
namespace that has only loopback (:class:`LoopbackNamespace`); whatever talks to them runs
in the same namespace. ``medpipe receive`` binds 127.0.0.1 and runs in the open.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ORTHANC_DICOMWEB = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def need(*tools: str) -> None:
    """Skip (outside CI) or fail (in CI, where `make test` installs them) without ``tools``."""
    missing = [t for t in tools if shutil.which(t) is None and not os.path.exists(t)]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} must be installed in CI (make test does it)")
        pytest.skip(f"needs {', '.join(missing)}")


def wait_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {host}:{port}")


def dataset_bytes(path: str | Path) -> bytes:
    """A Part 10 file's bytes after its File Meta Information (the data set as sent)."""
    data = Path(path).read_bytes()
    assert data[128:132] == b"DICM", path
    offset = 132
    while offset + 8 <= len(data):
        group, _element = struct.unpack_from("<HH", data, offset)
        if group != 0x0002:
            break
        vr = data[offset + 4 : offset + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN", b"UC", b"UR", b"OD", b"OL", b"OV"):
            length = struct.unpack_from("<I", data, offset + 8)[0]
            offset += 12 + length
        else:
            length = struct.unpack_from("<H", data, offset + 6)[0]
            offset += 8 + length
    return data[offset:]


def medpipe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "src.cli", *args]


class Receiver:
    """``medpipe receive`` in a subprocess (optionally behind a command prefix)."""

    def __init__(
        self,
        output: Path,
        port: int,
        *extra: str,
        prefix: tuple[str, ...] = (),
        output_uri: str | None = None,
    ) -> None:
        self.output, self.port = output, port
        output.parent.mkdir(parents=True, exist_ok=True)
        self.log = output.parent / f"receive-{port}.log"
        self.proc = subprocess.Popen(
            [
                *prefix,
                *medpipe_cmd(
                    "--log-level",
                    "INFO",
                    "receive",
                    output_uri or str(output),
                    "--port",
                    str(port),
                    *extra,
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=open(self.log, "w"),
            text=True,
            cwd=ROOT,
        )
        wait_port(port)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def stderr(self) -> str:
        return self.log.read_text()


class LoopbackNamespace:
    """A network namespace with only loopback, held open by a sleeping process."""

    def __init__(self) -> None:
        need("unshare", "nsenter", "ip")
        self.holder = subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec sleep 3600"]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = self.run(["ip", "-o", "link", "show", "lo"], check=False)
            if "UP" in probe.stdout:
                break
            time.sleep(0.05)
        self.children: list[subprocess.Popen[Any]] = []

    def prefix(self) -> list[str]:
        return ["nsenter", "-t", str(self.holder.pid), "-n", "--"]

    def run(self, cmd: list[str], check: bool = True, timeout: float = 300, **kw: Any) -> Any:
        proc = subprocess.run(
            [*self.prefix(), *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=ROOT,
            check=False,
            **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        return proc

    def start(self, cmd: list[str], **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen([*self.prefix(), *cmd], cwd=ROOT, **kw)
        self.children.append(proc)
        return proc

    def wait_port(self, port: int, timeout: float = 60) -> None:
        code = (
            "import socket,sys,time\n"
            f"end=time.time()+{timeout}\n"
            "while time.time()<end:\n"
            " s=socket.socket()\n"
            f" if s.connect_ex(('127.0.0.1',{port}))==0: sys.exit(0)\n"
            " s.close(); time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        self.run([sys.executable, "-c", code], timeout=timeout + 10)

    def http_get(self, url: str, method: str = "GET") -> bytes:
        code = (
            "import sys,urllib.request\n"
            f"request = urllib.request.Request({url!r}, method={method!r})\n"
            "sys.stdout.buffer.write(urllib.request.urlopen(request, timeout=30).read())"
        )
        proc = subprocess.run(
            [*self.prefix(), sys.executable, "-c", code],
            capture_output=True,
            timeout=60,
            check=True,
        )
        return proc.stdout

    def close(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.terminate()
                try:
                    child.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    child.kill()
        self.holder.kill()
        self.holder.wait()


def orthanc_config(folder: Path) -> Path:
    """An Orthanc configuration: DICOM on 4242, REST and DICOMweb on 8042, no auth."""
    (folder / "db").mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "medpipe-test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "DicomAet": "ORTHANC",
        "DicomPort": 4242,
        "HttpPort": 8042,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "Plugins": [ORTHANC_DICOMWEB],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StorageCompression": False,
    }
    path = folder / "orthanc.json"
    path.write_text(json.dumps(config))
    return path


def set_aside_at_risk(output: Path) -> list[Path]:
    """Move the outputs marked Patient Identity Removed = NO (images whose pixels may
    carry burned-in text) out of ``output``, into a sibling ``at-risk`` folder: the
    sender refuses them, and the tests that count what arrives send the rest."""
    import pydicom

    aside = output.parent / "at-risk"
    aside.mkdir(exist_ok=True)
    moved = []
    for path in sorted(output.rglob("*.dcm")):
        if "quarantine" in path.parts:
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.PatientIdentityRemoved != "YES":
            target = aside / f"{len(moved):04d}.dcm"
            path.rename(target)
            moved.append(target)
    return moved
