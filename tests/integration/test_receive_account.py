"""The receiver's account stays true: one rule for a repeated SOP Instance, and a run
history that a ``kill -9`` cannot make disagree with the journal and the manifest.

The intake is what ``medpipe receive`` calls for every C-STORE (the network tests drive it
through dcmtk's storescu); here it is driven directly so that a session can be dropped
mid-way the way ``kill -9`` drops it: no flush, no close.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom

from src.ingestion.annex_e.pseudonyms import KeyMaterial
from src.network.intake import SUCCESS, Intake
from src.settings.config import RunConfig

KEY = KeyMaterial(b"receive-account-key-0123456789abcdef", "test")


def _intake(out: Path) -> Intake:
    return Intake(str(out), RunConfig(), KEY, quiet_seconds=3600)


def _send(intake: Intake, path: Path, tmp: Path) -> int:
    # The receiver hands the intake a spooled copy of what arrived.
    spooled = tmp / f"spool-{path.name}"
    shutil.copyfile(path, spooled)
    uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    return intake.accept(str(spooled), uid, "MODALITY")


def _manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_a_retry_is_skipped_and_other_content_under_the_same_uid_is_a_duplicate(tmp_path, corpus):
    out = tmp_path / "out"
    intake = _intake(out)
    first = corpus.files[0]
    assert _send(intake, first, tmp_path) == SUCCESS
    assert _send(intake, first, tmp_path) == SUCCESS  # the sender's retry, same bytes
    other = tmp_path / "other.dcm"
    ds = pydicom.dcmread(first)
    ds.SeriesDescription = "edited after sending"  # other content, same SOP Instance UID
    ds.save_as(other)
    assert _send(intake, other, tmp_path) == SUCCESS
    assert _send(intake, other, tmp_path) == SUCCESS  # and its own retry
    intake.flush()
    intake.close()
    manifest = _manifest(out)
    assert manifest["totals"] == {"inputs": 2, "processed": 1, "quarantined": 1, "index_rows": 1}
    (quarantined,) = [e for e in manifest["inputs"] if e["status"] == "quarantined"]
    assert quarantined["reason"] == "duplicate-sop-instance"  # as `run` decides it
    run = manifest["runs"][-1]
    assert (run["inputs"], run["processed"], run["quarantined"], run["skipped"]) == (4, 1, 1, 2)
    assert run["balanced"]
    outputs = [p for p in out.rglob("*.dcm") if ".medpipe" not in p.parts]
    assert len(outputs) == 1 and "edited" not in str(
        pydicom.dcmread(outputs[0]).get("SeriesDescription", "")
    )


def test_a_session_killed_between_rewrites_gets_its_true_counts_back(tmp_path, corpus):
    out = tmp_path / "out"
    killed = _intake(out)
    for path in corpus.files[:2]:
        assert _send(killed, path, tmp_path) == SUCCESS
    killed.flush()  # the last rewrite before the kill
    for path in corpus.files[2:6]:
        assert _send(killed, path, tmp_path) == SUCCESS
    killed.journal.close()  # kill -9: no flush, no close; the journal lines are on disk
    assert _manifest(out)["runs"][-1]["inputs"] == 2  # what the history said at the kill
    restarted = _intake(out)
    assert _send(restarted, corpus.files[6], tmp_path) == SUCCESS
    assert _send(restarted, corpus.files[0], tmp_path) == SUCCESS  # a retry across sessions
    restarted.flush()
    restarted.close()
    manifest = _manifest(out)
    runs = manifest["runs"]
    assert [r["inputs"] for r in runs] == [6, 2]
    assert runs[0]["recovered_from_journal"] is True
    assert sum(r["processed"] + r["quarantined"] for r in runs) == manifest["totals"]["inputs"] == 7
    assert sum(r["skipped"] for r in runs) == 1
