"""Worker processes for the local run and the receiver: how they start, and the pool.

A fork copies the modules this process already imported, so workers start at once; the
forkserver imports the worker's modules again, serially, before the first file (0.3-0.4
s). Forking a process that has other threads (an S3 transfer's, a log handler's, an
association's) can copy a held lock, so a process with threads gets the forkserver.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing.pool import Pool


def start_method() -> str:
    """``fork`` while this process has one thread, else ``forkserver`` (``spawn`` on Windows)."""
    if sys.platform == "win32":
        return "spawn"
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return "fork"
    return "forkserver"


def worker_pool(
    workers: int,
    initializer: Callable[..., None],
    initargs: tuple[Any, ...],
    preload: str,
) -> Pool:
    """A pool of ``workers`` processes, all started now (before any thread is).

    Parameters
    ----------
    workers : int
    initializer, initargs
        Run once in each worker (builds its core).
    preload : str
        The module the forkserver imports once, when it is the start method.
    """
    pool: Pool = _context(preload).Pool(workers, initializer=initializer, initargs=initargs)
    return pool


def worker_executor(
    workers: int, initializer: Callable[..., None], initargs: tuple[Any, ...], preload: str
) -> ProcessPoolExecutor:
    """:func:`worker_pool` as an executor: a worker that dies fails its task
    (``BrokenProcessPool``) instead of leaving its caller waiting."""
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        workers, mp_context=_context(preload), initializer=initializer, initargs=initargs
    )


def _context(preload: str) -> Any:
    ctx = multiprocessing.get_context(start_method())
    if ctx.get_start_method() == "forkserver":
        # The server imports the worker's modules once; each worker forks from it with
        # them loaded, instead of importing pydicom, pydantic and the core again.
        ctx.set_forkserver_preload([preload])
    return ctx


__all__ = ["start_method", "worker_executor", "worker_pool"]
