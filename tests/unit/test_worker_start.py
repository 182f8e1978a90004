"""How `medpipe run` starts its workers: fork while single-threaded, else the forkserver."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# A fresh interpreter: the test process itself may hold other tests' threads.
PROBE = """
import threading
from src.processes import start_method as _start_method
alone = _start_method()
stop = threading.Event()
other = threading.Thread(target=stop.wait)
other.start()
busy = _start_method()
stop.set()
other.join()
print(alone, busy, _start_method())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX start methods")
def test_fork_only_while_this_process_has_one_thread() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, check=True
    )
    # A forked copy of a process with another thread could hold that thread's locks.
    assert proc.stdout.split() == ["fork", "forkserver", "fork"]
