"""The audit's search: a UID, date or number counts only as a whole token, text anywhere."""

from __future__ import annotations

import re

from src.pipeline.audit import _matches

NEEDLES = [b"1.2.840.99", b"19700101", b"Whitfield"]
TOKENS = {b"1.2.840.99", b"19700101"}
PATTERN = re.compile(
    b"|".join(
        re.escape(n) + rb"(?![.]?[0-9])" if n in TOKENS else re.escape(n)
        for n in sorted(NEEDLES, key=len, reverse=True)
    )
)


def found(data: bytes) -> list[bytes]:
    return list(_matches(PATTERN, data, TOKENS))


def test_a_token_alone_or_between_separators_is_found() -> None:
    assert found(b"1.2.840.99") == [b"1.2.840.99"]
    assert found(b"x\\19700101\\y 1.2.840.99\x00") == [b"19700101", b"1.2.840.99"]


def test_a_token_inside_a_longer_number_or_uid_is_not() -> None:
    assert found(b"11.2.840.99") == []  # a digit before
    assert found(b"5.1.2.840.99") == []  # a dot before
    assert found(b"1.2.840.991") == []  # a digit after
    assert found(b"1.2.840.99.7") == []  # a longer UID
    assert found(b"219700101") == []


def test_a_rejected_token_does_not_hide_a_later_one() -> None:
    assert found(b"219700101 19700101") == [b"19700101"]
    assert found(b"119700101") == []


def test_text_is_found_inside_words() -> None:
    assert found(b"Dr.Whitfields") == [b"Whitfield"]
