"""OUTPUT's private state: where the resume journal and staging live, and the sweep of
what an interrupted run or receiver left half-done. Shared by ``medpipe run`` and
``medpipe receive``."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from src.atomic import TMP_PREFIX
from src.settings.config import RunConfig
from src.settings.locations import Location

STATE_DIR = ".medpipe"


def state_dir_for(output: Location, config: RunConfig) -> Path:
    """Where OUTPUT's journal and staging live: ``OUTPUT/.medpipe``, or for an S3
    OUTPUT ``--state-dir`` or a folder of the user's cache named by the OUTPUT."""
    if not output.is_s3:
        return Path(output.path) / STATE_DIR
    if config.state_dir:
        return Path(config.state_dir)
    digest = hashlib.sha256(output.raw.encode()).hexdigest()[:16]
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "medpipe" / "state" / digest


def sweep_leftovers(output: Location, staging: Path) -> int:
    """Remove what an interrupted run left half-done: staged files and temp files."""
    removed = 0
    if staging.exists():
        for entry in staging.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
    if not output.is_s3 and os.path.isdir(output.path):
        for dirpath, dirnames, filenames in os.walk(output.path):
            dirnames[:] = [d for d in dirnames if d != STATE_DIR]
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    os.unlink(os.path.join(dirpath, name))
                    removed += 1
    return removed


__all__ = ["STATE_DIR", "state_dir_for", "sweep_leftovers"]
