"""Keyed pseudonyms, key precedence and date shifting."""

from __future__ import annotations

import os
import re
import stat
from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from src.errors import KeyConfigurationError
from src.ingestion.annex_e.pseudonyms import Pseudonymizer, resolve_key

KEY = b"pseudonym-test-key-0123456789"


def test_key_precedence_argument_then_environment_then_file(tmp_path, monkeypatch):
    key_file = tmp_path / "k"
    key_file.write_text("from-the-key-file-0123456789\n")
    monkeypatch.setenv("MEDPIPE_DEID_KEY", "from-the-environment-0123")
    monkeypatch.setenv("MEDPIPE_KEY_FILE", str(key_file))
    assert resolve_key("from-the-argument-012345").key == b"from-the-argument-012345"
    assert resolve_key().key == b"from-the-environment-0123"
    monkeypatch.delenv("MEDPIPE_DEID_KEY")
    assert resolve_key().key == b"from-the-key-file-0123456789"
    assert resolve_key(key_file=key_file).source.startswith("key file")


def test_a_missing_default_key_file_is_created_once_with_mode_0600(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDPIPE_DEID_KEY", raising=False)
    monkeypatch.delenv("MEDPIPE_KEY_FILE", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    first = resolve_key()
    again = resolve_key()
    assert first.key == again.key and len(first.key) >= 32
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1
    assert stat.S_IMODE(os.stat(files[0]).st_mode) == 0o600
    with pytest.raises(KeyConfigurationError, match="does not exist"):
        resolve_key(key_file=tmp_path / "nope")
    with pytest.raises(KeyConfigurationError, match="shorter"):
        resolve_key("short")


def test_pseudonyms_are_keyed_stable_and_distinct():
    a, b = Pseudonymizer(KEY), Pseudonymizer(b"another-key-0123456789abc")
    assert a.uid("1.2.3") == Pseudonymizer(KEY).uid("1.2.3") != b.uid("1.2.3")
    assert a.patient_id("MRN1") != a.patient_id("MRN2")
    assert a.patient_id("MRN1").startswith("ANON-") and len(a.patient_id("MRN1")) == 21


@given(st.text(min_size=1, max_size=64), st.sampled_from(["2.25", "1.2.826.0.1.3680043.10.99"]))
def test_replacement_uids_are_valid_uids(original, root):
    uid = Pseudonymizer(KEY, root).uid(original)
    assert len(uid) <= 64 and uid.startswith(root + ".")
    assert all(
        part.isdigit() and (part == "0" or not part.startswith("0")) for part in uid.split(".")
    )


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31)), st.text(max_size=12))
def test_date_offsets_keep_intervals_within_one_patient(day, patient):
    p = Pseudonymizer(KEY)
    offset = p.date_offset(patient)
    assert timedelta(days=-3650) <= offset <= timedelta(days=-1)
    later = day + timedelta(days=17)
    a = p.shift_date(day.strftime("%Y%m%d"), offset)
    b = p.shift_date(later.strftime("%Y%m%d"), offset)
    da = date(int(a[:4]), int(a[4:6]), int(a[6:]))
    db = date(int(b[:4]), int(b[4:6]), int(b[6:]))
    assert db - da == timedelta(days=17)
    assert da == day + offset


_DT_GRAMMAR = r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-]\d{4})?"


@given(
    st.datetimes(min_value=datetime(1901, 1, 1), max_value=datetime(2099, 12, 31)),
    st.integers(1, 8),
    st.sampled_from(["", "+0100", "-0500", "+0000"]),
    st.integers(1, 3650),
)
def test_shifted_dt_values_stay_valid_and_keep_their_precision(moment, parts, utc, days):
    full = moment.strftime("%Y%m%d%H%M%S") + f".{moment.microsecond:06d}"
    cut = [4, 6, 8, 10, 12, 14, 17, 21][parts - 1]
    value = full[:cut] + utc
    shifted = Pseudonymizer(KEY).shift_datetime(value, timedelta(days=-days))
    assert re.fullmatch(_DT_GRAMMAR, shifted), (value, shifted)
    assert len(shifted) == len(value)  # no more (and no less) precise than the source
    assert shifted.endswith(utc) and shifted[8:cut] == value[8:cut]  # time of day kept
    bare = Pseudonymizer(KEY).shift_datetime(value, timedelta(days=-days), keep_utc_offset=False)
    assert bare == shifted[: len(shifted) - len(utc)]


@given(st.dates(min_value=date(1901, 1, 1), max_value=date(2099, 12, 31)), st.integers(1, 3650))
def test_shifted_da_values_stay_valid_dates(day, days):
    out = Pseudonymizer(KEY).shift_date(day.strftime("%Y%m%d"), timedelta(days=-days))
    assert date(int(out[:4]), int(out[4:6]), int(out[6:])) == day - timedelta(days=days)


def test_the_examples_the_issue_names():
    p = Pseudonymizer(KEY)
    back = timedelta(days=-400)
    assert re.fullmatch(_DT_GRAMMAR, p.shift_datetime("2020+0100", back))
    assert p.shift_datetime("2020+0100", back) == "2018+0100"
    assert p.shift_datetime("1947", back) == "1945"  # a year stays a year
