"""Shared fixtures: a test key, fake AWS credentials, generated corpora, pydicom's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest

# Set before anything imports boto3 or resolves a key; subprocesses inherit them.
_HOME = tempfile.mkdtemp(prefix="medpipe-test-home-")
os.environ["MEDPIPE_DEID_KEY"] = "unit-test-key-0123456789abcdef0123456789"
os.environ["XDG_CONFIG_HOME"] = os.path.join(_HOME, "config")
os.environ["XDG_CACHE_HOME"] = os.path.join(_HOME, "cache")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ["AWS_SESSION_TOKEN"] = "testing"
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)

TEST_KEY = os.environ["MEDPIPE_DEID_KEY"]


#: The SOP Classes among pydicom's files and our generated corpus whose pixels may carry
#: burned-in text (Secondary Capture, Ultrasound, Ultrasound Multi-frame). None of those
#: files says Burned In Annotation, so Patient Identity Removed must be NO for these
#: classes and YES for every other (PS3.3 C.7.1.1: removed from the Attributes *and* the
#: Pixel Data). A literal list, not the code's rule: a change of the rule must change it.
PIXELS_AT_RISK_CLASSES = frozenset(
    {
        "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
        "1.2.840.10008.5.1.4.1.1.6.1",  # Ultrasound Image Storage
        "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    }
)


#: The modalities #29 screens whatever Burned In Annotation says (the issue's list).
SCREENED_MODALITIES = frozenset({"US", "CR", "DX", "MG", "XA", "RF", "ES", "XC", "SC", "OT"})


def identity_removed_expected(original: Any) -> str:
    """Patient Identity Removed without Clean Pixel Data, by :data:`PIXELS_AT_RISK_CLASSES`
    and :data:`SCREENED_MODALITIES`.

    Only for files without Burned In Annotation (asserted): pydicom's and our corpus.
    """
    assert "BurnedInAnnotation" not in original, "a literal case is needed for this file"
    at_risk = str(original.get("SOPClassUID", "")) in PIXELS_AT_RISK_CLASSES or (
        str(original.get("Modality", "")).upper() in SCREENED_MODALITIES
    )
    return "NO" if at_risk else "YES"


def pydicom_files() -> list[str]:
    """Every regular file pydicom ships as test data (DICOM and not)."""
    from pydicom.data import get_testdata_files

    return sorted(f for f in get_testdata_files() if os.path.isfile(f))


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A small generated multi-patient corpus with PHI planted everywhere."""
    from src.synthetic import write_corpus

    return write_corpus(
        tmp_path_factory.mktemp("corpus"),
        seed=7,
        patients=3,
        series_per_study=2,
        instances_per_series=3,
        rows=32,
        columns=32,
    )


@pytest.fixture()
def key() -> str:
    return TEST_KEY


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint():  # type: ignore[no-untyped-def]
    """moto's standalone HTTP server on 127.0.0.1, started and stopped by the suite."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def moto_reset(moto_endpoint):  # type: ignore[no-untyped-def]
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    return moto_endpoint


def medpipe(
    *args: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 300
):  # type: ignore[no-untyped-def]
    """Run the CLI as a user would, in a subprocess."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "src.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"medpipe {args} failed: {proc.returncode}\n{proc.stderr[-3000:]}")
    return proc


def slow_s3_input(endpoint: str, files: list[Path], root: Path, bucket: str = "slow"):  # type: ignore[no-untyped-def]
    """Upload ``files`` to moto's server and return a proxy whose object GETs take 0.3 s.

    Interrupt tests read their input through it: the rest of the run then takes at least
    0.3 s per remaining file, so a signal sent after N outcomes always lands mid-run,
    however loaded the machine is (nothing is timed; the run is only slowed).
    """
    import boto3

    from tests.integration.fault_proxy import FaultProxy

    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for path in files:
        s3.upload_file(str(path), bucket, f"in/{path.relative_to(root).as_posix()}")
    return FaultProxy(endpoint, every=0, get_delay=0.3)


def interrupt_run(args: list[str], journal: Path, after: int, sig: int):  # type: ignore[no-untyped-def]
    """Start ``medpipe ARGS`` in its own process group, wait until the journal holds
    ``after`` outcomes, send ``sig`` to the whole group, and return the finished process
    (its stdout and stderr as text)."""
    import os
    import subprocess
    import sys
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "src.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= after:
            break
        time.sleep(0.02)
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # the run already ended; the caller's assertions say whether that is a failure
    proc.stdout_text, proc.stderr_text = proc.communicate(timeout=60)
    return proc
