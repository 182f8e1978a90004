"""The network's pure parts: DEST parsing, the acknowledgement record, study completion."""

from __future__ import annotations

from pathlib import Path

import pytest

from src.errors import ConfigurationError
from src.network.destinations import check_ae_title, parse_destination
from src.network.intake import StudyTracker
from src.network.outgoing import Outgoing, SentRecord


def test_dest_forms_and_errors() -> None:
    dicom = parse_destination("dicom://RESEARCH@10.1.2.3:104")
    assert (dicom.scheme, dicom.ae_title, dicom.host, dicom.port) == (
        "dicom",
        "RESEARCH",
        "10.1.2.3",
        104,
    )
    web = parse_destination("https://user:secret@archive.example.org:8443/dicom-web/")
    assert web.scheme == "dicomweb" and web.url.endswith("/dicom-web")
    assert "secret" not in web.label and "user" not in web.label  # the label is logged
    assert web.state_name != parse_destination("https://archive.example.org/other").state_name
    for bad in (
        "pacs:104",
        "dicom://pacs:104",
        "dicom://AE@pacs",
        "ftp://x/y",
        "dicom://" + "A" * 17 + "@h:1",
    ):
        with pytest.raises(ConfigurationError):
            parse_destination(bad)
    with pytest.raises(ConfigurationError):
        check_ae_title("BACK\\SLASH")


def test_sent_record_survives_a_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "sent.jsonl"
    item = Outgoing("/x.dcm", "1.2", "2.25.1", "1.2.840.10008.1.2.1", "2.25.9", 10)
    record = SentRecord(path)
    record.add(item)
    with open(path, "a") as fh:
        fh.write('{"key": "2.25.2:1')  # a crash mid-line
    again = SentRecord(path)
    assert item in again
    assert Outgoing("/y.dcm", "1.2", "2.25.2", "1.2.840.10008.1.2.1", "2.25.9", 1) not in again
    changed = Outgoing("/x.dcm", "1.2", "2.25.1", "1.2.840.10008.1.2.1", "2.25.9", 11)
    assert changed not in again  # a rewritten file is sent again


def test_a_study_completes_after_its_quiet_time_and_again_for_late_instances() -> None:
    tracker = StudyTracker(quiet_seconds=30)
    tracker.touch("2.25.1", "a", now=0)
    tracker.touch("2.25.1", "b", now=20)
    tracker.touch("2.25.2", "c", now=5)
    assert [s.uid for s in tracker.due(now=40)] == ["2.25.2"]
    assert [(s.uid, s.keys) for s in tracker.due(now=50)] == [("2.25.1", ["a", "b"])]
    assert tracker.due(now=1000) == []
    tracker.touch("2.25.1", "late", now=1000)
    assert [s.keys for s in tracker.due(everything=True, now=1000)] == [["late"]]
