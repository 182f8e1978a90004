"""What a person at a terminal sees: a summary, short lines with -v, JSON only when asked
for or when stderr is not a terminal (a log collector)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.integration.peers import ROOT


def _run_on_terminal(*args: str) -> tuple[int, str]:
    """Run medpipe with stderr on a pseudo-terminal; return its code and stderr."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "src.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=follower,
        cwd=ROOT,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(120), b"".join(chunks).decode("utf-8", "replace")


def _inputs(tmp_path: Path, corpus) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path / "in"
    folder.mkdir()
    for i, path in enumerate(corpus.files[:3]):
        (folder / f"{i}.dcm").write_bytes(path.read_bytes())
    for i in range(4):
        (folder / f"notes{i}.xml").write_text("<report>not DICOM</report>")
    return folder


def test_a_terminal_gets_short_lines_and_a_pipe_gets_json(tmp_path: Path, corpus) -> None:
    inputs = _inputs(tmp_path, corpus)
    code, quiet = _run_on_terminal("run", str(inputs), str(tmp_path / "a"), "--no-progress")
    assert code == 0
    assert "{" not in quiet  # no JSON on a terminal by default
    assert "input quarantined" not in quiet.lower()
    code, verbose = _run_on_terminal("-v", "run", str(inputs), str(tmp_path / "b"), "--no-progress")
    assert code == 0
    lines = [line for line in verbose.splitlines() if "input quarantined" in line]
    assert len(lines) == 4 and all(len(line) < 200 and "reason=not-dicom" in line for line in lines)
    assert not any(line.lstrip().startswith("{") for line in verbose.splitlines())
    # Which input, by the path as given, on the terminal only (never in JSON or manifest).
    named = sorted(ln.strip() for ln in verbose.splitlines() if ln.startswith("quarantined ("))
    assert named == [f"quarantined (not-dicom): {inputs}/notes{i}.xml" for i in range(4)]
    assert "notes0.xml" not in (tmp_path / "b" / "manifest.json").read_text()
    piped = subprocess.run(
        [sys.executable, "-m", "src.cli", "-v", "run", str(inputs), str(tmp_path / "c")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    records = [json.loads(line) for line in piped.stderr.splitlines() if line.startswith("{")]
    assert "notes0.xml" not in piped.stderr  # JSON logs name the keyed id, not the file
    assert sum(r["message"] == "Input quarantined" for r in records) == 4
    assert "quarantine/ (original data with PHI" in piped.stdout
    code, forced = _run_on_terminal(
        "--log-format", "json", "-v", "run", str(inputs), str(tmp_path / "d"), "--no-progress"
    )
    assert sum('"Input quarantined"' in line for line in forced.splitlines()) == 4
