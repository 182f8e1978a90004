"""A Code Meaning in SR content: kept only as the standard's own meaning of a standard
code (the coding scheme and code value beside it in the item), else dummied."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from src.ingestion.annex_e.codes import standard_meaning
from src.ingestion.annex_e.element_rules import (
    _CODE_VALUE,
    _CODING_SCHEME,
    KEPT,
    Kind,
    Rule,
)
from src.ingestion.annex_e.profile import Action
from src.ingestion.encoding.elements import Element, text_of

_CODE_MEANING_DUMMY = Rule(Kind.VALUE, Action.DUMMY, "code-meaning")


def code_meaning_rule(buf: Any, el: Element, codec: str, codes: dict[int, str]) -> Rule:
    """Code Meaning in SR content: kept only as the standard's own meaning of the code."""
    return code_meaning_decision(
        lambda: text_of(buf, el, codec), codes.get(_CODING_SCHEME, ""), codes.get(_CODE_VALUE, "")
    )


def code_meaning_decision(meaning_text: Callable[[], str], scheme: str, code_value: str) -> Rule:
    """The rule for a Code Meaning whose item holds ``scheme`` and ``code_value``.

    ``meaning_text`` gives the Code Meaning as it was (asked only for a standard code).
    """
    meaning = standard_meaning(scheme, code_value)
    if meaning is None:
        return _CODE_MEANING_DUMMY
    if meaning_text() == meaning:
        return KEPT
    return Rule(Kind.VALUE, Action.CLEAN, "standard-code", value=meaning)


__all__ = ["code_meaning_decision", "code_meaning_rule"]
