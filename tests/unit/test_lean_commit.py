"""The run's lean commit: one rename per output, journal entries written in batches, and
a redo after a crash that finds its own output in place (also where no owner attribute
can be kept)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.atomic import rename_noreplace
from src.records.journal import Journal, read_journal
from src.storage.folder_store import FolderStore
from src.storage.store import DuplicateInstanceError, commit_instance


def _staged(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_rename_noreplace_never_overwrites(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    with pytest.raises(FileExistsError):
        rename_noreplace(str(a), str(b))
    assert b.read_bytes() == b"second" and a.exists()
    c = tmp_path / "c"
    if rename_noreplace(str(a), str(c)):  # done in one call: moved whole
        assert c.read_bytes() == b"first" and not a.exists()
    else:  # this system cannot: nothing moved, the caller links instead
        assert a.read_bytes() == b"first" and not c.exists()


@pytest.mark.parametrize("xattrs", [True, False], ids=["owner-attribute", "no-attributes"])
def test_a_redone_input_finds_its_own_output_and_another_input_is_refused(
    tmp_path, monkeypatch, xattrs
):
    if not xattrs:  # a filesystem without user attributes (older tmpfs, some NFS)

        def refused(*_args: object) -> None:
            raise OSError(errno.ENOTSUP, "not supported")

        monkeypatch.setattr(os, "setxattr", refused)
        monkeypatch.setattr(os, "getxattr", refused)
    store = FolderStore(str(tmp_path / "out"))
    key = "ANON-X/1.2/1.3/1.4.dcm"
    first = _staged(tmp_path, "s1", b"DICM output bytes")
    assert commit_instance(store, key, first, "input-a", claimed=False) is True
    assert not os.path.exists(first)  # consumed: renamed into place
    # The same input redone after a crash (its journal line lost): the same bytes.
    again = _staged(tmp_path, "s2", b"DICM output bytes")
    assert commit_instance(store, key, again, "input-a", claimed=False) is False
    # Another input with other bytes under the same SOP Instance UID loses.
    other = _staged(tmp_path, "s3", b"DICM other bytes!")
    with pytest.raises(DuplicateInstanceError):
        commit_instance(store, key, other, "input-b", claimed=False)
    assert (tmp_path / "out" / key).read_bytes() == b"DICM output bytes"


def test_journal_batches_are_written_on_close_and_a_kill_loses_at_most_one(tmp_path):
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, batch=4)
    for n in range(6):
        journal.append({"input_id": f"i{n}", "status": "processed"})
    assert len(read_journal(path)) == 4  # one batch written, two entries pending
    journal.close()
    assert len(read_journal(path)) == 6
    # kill -9 in the middle of a batch: the lines written before it are whole.
    code = (
        "import os, signal, sys\nfrom pathlib import Path\nfrom src.records.journal import "
        "Journal\nj = Journal(Path(sys.argv[1]), batch=4)\nfor n in range(7):\n"
        "    j.append({'input_id': f'k{n}', 'status': 'processed'})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = tmp_path / "killed.jsonl"
    subprocess.run([sys.executable, "-c", code, str(killed)], check=False)
    assert sorted(read_journal(killed)) == ["k0", "k1", "k2", "k3"]
