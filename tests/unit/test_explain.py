"""``medpipe explain``: the action the engines apply, read back, checked against the table.

Expectations come from the shipped PS3.15 Table E.1-1 JSON (read here directly), not
from the code that compiles it.
"""

from __future__ import annotations

import json
from importlib import resources

import pytest
from pydicom.datadict import dictionary_has_tag, dictionary_VR

from src.ingestion.annex_e.explain import explain, parse_attribute
from src.ingestion.annex_e.profile import ConfidentialityProfile
from tests.conftest import medpipe

NO_OPTIONS = ConfidentialityProfile(retain_longitudinal_modified_dates=False)


def _rows() -> list[dict[str, object]]:
    data = resources.files("src.ingestion").joinpath("data/ps3.15_table_E.1-1.json").read_text()
    rows: list[dict[str, object]] = json.loads(data)["rows"]
    return rows


def _single_coded_rows() -> list[tuple[int, str]]:
    out = []
    for row in _rows():
        code = str(row["basic"])
        text = str(row["tag"])
        if "/" in code or "x" in text.lower() or "gggg" in text:
            continue
        tag = int(text.strip("()").replace(",", ""), 16)
        if not dictionary_has_tag(tag) or tag in (0x00100010, 0x00100020):
            continue  # Patient Name and ID take the pseudonym (asserted below)
        if str(dictionary_VR(tag)) == "SQ":
            continue
        out.append((tag, code.rstrip("*")))
    return out


def test_every_single_coded_row_is_explained_as_its_basic_code() -> None:
    rows = _single_coded_rows()
    assert len(rows) > 300
    wrong = []
    for tag, code in rows:
        top = explain(tag, NO_OPTIONS).decisions[0]
        if not top.action.startswith(code):
            wrong.append((f"{tag:08X}", code, top.action))
    assert not wrong, wrong[:10]


def test_options_change_the_explained_action() -> None:
    full = ConfidentialityProfile(
        retain_longitudinal_full_dates=True, retain_longitudinal_modified_dates=False
    )
    assert explain("StudyDate", full).decisions[0].action.startswith("K")
    assert explain("StudyDate").decisions[0].action.startswith("C")  # modified dates
    assert explain("StudyDate", NO_OPTIONS).decisions[0].action.startswith("Z")


def test_pseudonym_masks_iod_types_and_safety_net_are_named() -> None:
    name = explain("PatientName")
    assert "pseudonym" in name.decisions[0].why
    assert name.decisions[1].action.startswith("Z")  # inside a sequence: the table's Z
    assert "(gggg,eeee)" in explain("(0009,1001)").render()
    assert "whole group" in explain("OverlayData").decisions[0].action
    typed = explain("ContentDate", NO_OPTIONS, sop_class_uid="1.2.840.10008.5.1.4.1.1.2")
    assert "Type 2C" in typed.decisions[0].why and typed.decisions[0].action.startswith("Z")
    unlisted = explain("Manufacturer")
    assert "identifiers" in unlisted.decisions[0].action
    assert explain("CodeMeaning").decisions[2].action.startswith("K as the standard")


def test_unknown_attribute_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a DICOM keyword or tag"):
        parse_attribute("NoSuchKeyword")


def test_cli_explain_prints_the_rule_and_fails_cleanly_on_bad_input() -> None:
    proc = medpipe("explain", "StudyDate", "--retain-longitudinal-full-dates",
                   "--no-retain-longitudinal-modified-dates")  # fmt: skip
    assert "at the top level: K (kept)" in proc.stdout
    assert "(0008,0020) Study Date" in proc.stdout
    bad = medpipe("explain", "NoSuchKeyword", check=False)
    assert bad.returncode != 0
    assert bad.stderr.strip().count("\n") == 0 and "medpipe: error:" in bad.stderr
