"""A full or read-only OUTPUT disk stops `medpipe run` with one line; a re-run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.peers import ROOT, need

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


def test_full_then_read_only_output_stops_with_one_line_and_resumes(tmp_path: Path, corpus) -> None:
    need("unshare")
    out = tmp_path / "out"
    out.mkdir()
    run = f"{sys.executable} -m src.cli run {corpus.root} {out} -j 1"
    # All in one private mount namespace: OUTPUT is a tmpfs too small for the corpus, then
    # read-only, then big enough. Each step prints its exit code and stderr as JSON.
    script = f"""
set -u
step() {{ err=$({run} 2>&1 >/dev/null); printf '{{"rc": %d, "err": %s}}\\n' $? \\
  "$(printf '%s' "$err" | {sys.executable} -c 'import json,sys;print(json.dumps(sys.stdin.read()))')"; }}
mount -t tmpfs -o size=160k tmpfs {out}
step
mount -o remount,ro {out}
step
mount -o remount,rw,size=64m {out}
step
cat {out}/manifest.json
"""
    proc = subprocess.run(
        ["unshare", "-m", "--", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    lines = proc.stdout.splitlines()
    full, read_only, resumed = (json.loads(line) for line in lines[:3])
    for step, word in (
        (full, "no room left (ENOSPC)"),
        (read_only, "read-only file system (EROFS)"),
    ):
        assert step["rc"] == 1, step["err"]
        assert "Traceback" not in step["err"]
        errors = [line for line in step["err"].splitlines() if line.startswith("medpipe: error:")]
        assert len(errors) == 1 and word in errors[0], step["err"]
    assert "make room" not in read_only["err"] and "make it writable" in read_only["err"]
    assert resumed["rc"] == 0, resumed["err"]
    manifest = json.loads("\n".join(lines[3:]))
    totals = manifest["totals"]
    assert totals["processed"] == len(corpus.files) and totals["quarantined"] == 0
    assert totals["inputs"] == len(corpus.files)
