"""The receiver's worker pool: instances arriving on concurrent associations are
de-identified in worker processes, and what lands in OUTPUT is what one worker writes.

Driven through :meth:`Intake.accept` from threads, as pynetdicom calls it (one thread per
association); the throughput with four associations is measured in ``make bench``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom

from src.ingestion.annex_e.pseudonyms import KeyMaterial
from src.network.intake import OUT_OF_RESOURCES, SUCCESS, Intake
from src.settings.config import RunConfig

KEY = KeyMaterial(b"receive-workers-key-0123456789abcdef", "test")


def _spool(path: Path, tmp: Path, n: int) -> tuple[str, str]:
    spooled = tmp / f"spool-{n}-{path.name}"
    shutil.copyfile(path, spooled)
    return str(spooled), str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _outputs(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in out.rglob("*.dcm")
        if ".medpipe" not in p.parts
    }


def test_four_concurrent_associations_write_what_one_worker_writes(tmp_path, corpus):
    files = corpus.files[:16]
    one = Intake(str(tmp_path / "one"), RunConfig(workers=1), KEY, quiet_seconds=3600)
    assert one.workers.count == 1
    for n, path in enumerate(files):
        assert one.accept(*_spool(path, tmp_path, n), "MODALITY") == SUCCESS
    one.flush()
    one.close()

    pooled = Intake(str(tmp_path / "two"), RunConfig(workers=2), KEY, quiet_seconds=3600)
    assert pooled.workers.count == 2
    spooled = [_spool(path, tmp_path, 100 + n) for n, path in enumerate(files)]
    with ThreadPoolExecutor(4) as associations:  # four senders at once
        codes = list(associations.map(lambda s: pooled.accept(*s, "MODALITY"), spooled))
    pooled.flush()
    pooled.close()
    assert codes == [SUCCESS] * len(files)
    assert _outputs(tmp_path / "two") == _outputs(tmp_path / "one")
    assert len(_outputs(tmp_path / "one")) == sum(1 for f in files if f.suffix == ".dcm")


def test_a_worker_that_dies_fails_its_instance_and_the_next_one_is_stored(tmp_path, corpus):
    intake = Intake(str(tmp_path / "out"), RunConfig(workers=2), KEY, quiet_seconds=3600)
    pool = intake.workers._pool
    assert pool is not None
    for pid in list(pool._processes):  # kill -9 of the workers, as the OOM killer would
        os.kill(pid, signal.SIGKILL)
    first, second = corpus.files[0], corpus.files[1]
    # The sender is told to keep the instance: nothing was recorded for it.
    assert intake.accept(*_spool(first, tmp_path, 0), "MODALITY") == OUT_OF_RESOURCES
    assert intake.accept(*_spool(second, tmp_path, 1), "MODALITY") == SUCCESS
    assert intake.accept(*_spool(first, tmp_path, 2), "MODALITY") == SUCCESS  # its retry
    intake.flush()
    intake.close()
    assert len(_outputs(tmp_path / "out")) == 2
