"""How `medpipe run` starts its workers: fork while single-threaded, else the forkserver."""

from __future__ import annotations

import sys
import threading

import pytest

from src.pipeline.runner import _start_method


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX start methods")
def test_fork_only_while_this_process_has_one_thread() -> None:
    if threading.active_count() != 1:
        pytest.skip("another test left a thread running")
    assert _start_method() == "fork"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _start_method() == "forkserver"  # a forked copy could hold that thread's locks
    finally:
        stop.set()
        other.join()
    assert _start_method() == "fork"
