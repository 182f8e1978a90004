"""Start-up: a command that reads no DICOM header does not load the engine's libraries
(pydicom with numpy is 0.3 s, pydantic and pyarrow more): an empty INPUT is refused, and
``--help`` answers, before any of them is imported (#28). Run in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("pydicom", "numpy", "pydantic", "pyarrow", "PIL", "requests", "boto3", "tqdm")

PROBE = """
import json, sys
from src.cli import main
try:
    main(sys.argv[1:], standalone_mode=True)
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": [m for m in %r if m in sys.modules]}))
"""


def _probe(*args: str) -> dict:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE % (HEAVY,), *args],
        capture_output=True,
        text=True,
        cwd=root,
        check=False,
        timeout=120,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_an_empty_input_is_refused_without_loading_the_engine(tmp_path):
    (tmp_path / "in").mkdir()
    result = _probe("run", str(tmp_path / "in"), str(tmp_path / "out"), "--no-progress")
    assert result == {"code": 2, "loaded": []}


def test_help_loads_no_engine():
    assert _probe("--help") == {"code": 0, "loaded": []}
    assert _probe("run", "--help") == {"code": 0, "loaded": []}


def test_the_byte_path_runs_without_pydicom_or_numpy(tmp_path):
    from src.synthetic import write_corpus

    write_corpus(
        tmp_path / "in",
        seed=5,
        patients=2,
        series_per_study=1,
        instances_per_series=3,
        rows=16,
        columns=16,
        include_sr=False,
        include_us=False,
    )
    result = _probe("run", str(tmp_path / "in"), str(tmp_path / "out"), "-j", "1", "--no-progress")
    # Validation needs pydantic and the reports pyarrow (which loads numpy); the byte
    # engine needs neither pydicom nor PIL nor requests for plain CT.
    assert result["code"] == 0
    assert {"pydantic", "pyarrow"} <= set(result["loaded"])
    assert not {"pydicom", "PIL", "requests", "boto3"} & set(result["loaded"])
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 6
