"""Inputs found by content, the TOML configuration, and the resume journal."""

from __future__ import annotations

import json
import os
import zipfile

import pytest

from src.errors import ConfigurationError
from src.pipeline.runner import Journal
from src.pipeline.sources import iter_local
from src.settings.config import config_from_mapping, load_config
from src.settings.locations import input_id


def test_inputs_are_every_regular_file_sorted_and_zip_members_are_inputs(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.dcm").write_bytes(b"x")
    (tmp_path / "a.txt").write_bytes(b"y")
    with zipfile.ZipFile(tmp_path / "c.zip", "w") as z:
        z.writestr("m1.dcm", b"1")
        z.writestr("m1.dcm", b"2")  # same name twice: both are inputs
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.dcm").write_bytes(b"z")
    os.symlink("/etc/hostname", tmp_path / "link.dcm")
    items = list(iter_local(str(tmp_path), exclude=str(tmp_path / "out")))
    kinds = [(i.relative, i.kind) for i in items]
    assert kinds[0] == ("a.txt", "file") and ("b/2.dcm", "file") in kinds
    assert [k for k in kinds if k[1] == "zip"] == [
        ("c.zip::0:m1.dcm", "zip"),
        ("c.zip::1:m1.dcm", "zip"),
    ]
    assert ("link.dcm", "refused") in kinds
    assert not any(r.startswith("out") for r, _ in kinds)


def test_input_ids_are_keyed_and_hide_the_path():
    a = input_id(b"k" * 20, "Doe^John/scan.dcm")
    assert a == input_id(b"k" * 20, "Doe^John/scan.dcm") != input_id(b"j" * 20, "Doe^John/scan.dcm")
    assert "Doe" not in a and len(a) == 20


def test_config_file_sections_and_errors(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text('[profile]\nretain_uids = true\n[run]\nworkers = 3\n[key]\nfile = "/k"\n')
    config = load_config(cfg)
    assert config.profile.retain_uids is True and config.workers == 3 and config.key_file == "/k"
    with pytest.raises(ConfigurationError, match="unknown sections"):
        config_from_mapping({"nope": {}})
    with pytest.raises(ConfigurationError, match="unknown settings"):
        config_from_mapping({"run": {"wrokers": 2}})
    cfg.write_text("[profile\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        load_config(cfg)


def test_journal_survives_a_cut_line_and_keeps_the_last_entry(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append({"input_id": "a", "status": "quarantined"})
    journal.append({"input_id": "a", "status": "processed"})
    journal.close()
    with open(tmp_path / "j.jsonl", "a") as fh:
        fh.write('{"input_id": "b", "sta')  # kill -9 mid-line
    entries = Journal(tmp_path / "j.jsonl").load()
    assert entries == {"a": {"input_id": "a", "status": "processed"}}
    assert json.loads((tmp_path / "j.jsonl").read_text().splitlines()[1])["status"] == "processed"


def test_an_output_written_before_a_setting_existed_takes_its_default(tmp_path):
    from src.ingestion.annex_e.profile import ConfidentialityProfile
    from src.records.provenance import check_provenance, provenance_conflict
    from src.storage.store import open_store

    store = open_store(str(tmp_path / "out"))
    older = ConfidentialityProfile().as_dict()
    for added in ("clean_pixels", "pixel_regions", "pixel_text"):
        del older[added]
    check_provenance(store, "fp", older)
    assert provenance_conflict(store, "fp", ConfidentialityProfile().as_dict()) is None
    cleaning = ConfidentialityProfile(clean_pixels=True).as_dict()
    assert "clean_pixels" in (provenance_conflict(store, "fp", cleaning) or "")
