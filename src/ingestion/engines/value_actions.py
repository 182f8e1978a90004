"""The actions on one value, as bytes: empty it, dummy it, map its UIDs, shift its dates.

These are the byte-level engine's versions of what the pydicom path does to a decoded
element (:mod:`src.ingestion.engines.walk`); the differential test holds the two to the same
decoded output. Values are decoded as pydicom decodes them (trailing spaces and NULs stripped,
then split at backslashes) and written padded to even length, UIDs with
a NUL and everything else with a space. Replaced values are cached by their original
bytes, so a series' repeated dates and UIDs are computed once per process.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Protocol

from src.ingestion.annex_e.dummies import _DUMMY
from src.ingestion.annex_e.element_rules import CLEANED_AS_TEXT, Kind, Rule, pseudonym_as_text
from src.ingestion.annex_e.free_text import _clean_text
from src.ingestion.annex_e.profile import Action
from src.ingestion.annex_e.pseudonyms import Pseudonymizer
from src.ingestion.encoding.elements import NotHandled

#: Text VRs whose value is never split at backslashes (pydicom's own set).
_SINGLE_VALUED = frozenset({"LT", "ST", "UT", "UR"})
_PER_VALUE = frozenset({"SH", "LO", "UC"})
#: Byte size of one value of the fixed-size binary VRs.
_BINARY_SIZE = {"FL": 4, "FD": 8, "SL": 4, "SS": 2, "SV": 8, "UL": 4, "US": 2, "UV": 8, "AT": 4}
#: VRs whose bytes are opaque: their dummy is the table's bytes, never replicated.
_OPAQUE = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_CACHE_LIMIT = 200_000


def pad(data: bytes, vr: str) -> bytes:
    """``data`` padded to even length as PS3.5 6.2 says for ``vr``."""
    if len(data) & 1:
        return data + (b"\x00" if vr in ("UI", "OB", "UN") else b" ")
    return data


def split(raw: bytes, vr: str, codec: str = "latin-1") -> list[str]:
    """A text value as pydicom decodes it (:mod:`pydicom.values`): trailing spaces and
    NULs stripped (per value for SH, LO and UC; both sides of each AE), then split at
    backslashes unless the VR is single-valued."""
    text = raw.decode(codec)
    if vr == "AE":
        return [v.strip() for v in text.split("\\")]
    if vr in _PER_VALUE:
        return [v.rstrip(" \x00") for v in text.split("\\")]
    text = text.rstrip(" \x00")
    if vr in _SINGLE_VALUED:
        return [text]
    return text.split("\\")


def join(values: list[str], vr: str, codec: str = "latin-1") -> bytes:
    """Encode ``values`` as one padded value."""
    return pad("\\".join(values).encode(codec), vr)


def multiplicity(raw: bytes, vr: str) -> int:
    """How many values ``raw`` holds (0 when empty), as pydicom would count them."""
    if vr in _BINARY_SIZE:
        return len(raw) // _BINARY_SIZE[vr]
    if vr in _OPAQUE:
        return 1 if raw else 0
    text = raw.strip(b" \x00")
    if not text:
        return 0
    return 1 if vr in _SINGLE_VALUED else text.count(b"\\") + 1


def dummy(vr: str, raw: bytes) -> bytes:
    """The D value for a non-UI, non-date element: the VR's dummy, once per value held."""
    value = _DUMMY.get(vr, b"\x00\x00")
    if isinstance(value, bytes):
        return value
    count = max(1, multiplicity(raw, vr))
    if vr in _BINARY_SIZE:
        return b"\x00" * _BINARY_SIZE[vr] * count
    return join([str(value)] * count, vr)


def empty_value(vr: str) -> bytes:
    """The Z value: an empty value of any VR."""
    return b""


def clean_text(raw: bytes, vr: str, codec: str, identifiers: Iterable[str]) -> bytes:
    """A C action on text: this patient's identifiers, dates and long numbers removed."""
    values = split(raw, vr, codec)
    words = list(identifiers)
    return join([_clean_text(v, words, vr) for v in values], vr, codec)


class FileValues(Protocol):
    """What a replacement needs to know of its file."""

    @property
    def pseudonym(self) -> str: ...
    @property
    def offset(self) -> timedelta | None: ...
    @property
    def codec(self) -> str: ...
    @property
    def identifiers(self) -> Iterable[str]: ...


class ValueActions:
    """The value replacements of one key and profile, cached across files.

    Parameters
    ----------
    pseudo : Pseudonymizer
        The keyed pseudonyms.
    keep_utc_offset : bool
        Whether a DT keeps its UTC offset (it goes when Timezone Offset From UTC goes).
    """

    def __init__(self, pseudo: Pseudonymizer, *, keep_utc_offset: bool) -> None:
        self.pseudo = pseudo
        self.keep_utc_offset = keep_utc_offset
        self._uids: dict[bytes, bytes] = {}
        self._dates: dict[tuple[bytes, str, int], bytes] = {}

    def uids(self, raw: bytes) -> bytes:
        """Every UID in the value replaced by its keyed pseudonym (empty values stay)."""
        done = self._uids.get(raw)
        if done is None:
            uid = self.pseudo.uid
            done = join([uid(v) if v else v for v in split(raw, "UI")], "UI")
            if len(self._uids) > _CACHE_LIMIT:
                self._uids.clear()
            self._uids[raw] = done
        return done

    def dates(self, raw: bytes, vr: str, offset: timedelta) -> bytes:
        """Every DA or DT in the value shifted by ``offset`` (empty values stay)."""
        key = (raw, vr, offset.days)
        done = self._dates.get(key)
        if done is None:
            if vr == "DA":
                values = [self.pseudo.shift_date(v, offset) if v else v for v in split(raw, vr)]
            else:
                keep = self.keep_utc_offset
                shift = self.pseudo.shift_datetime
                values = [
                    shift(v, offset, keep_utc_offset=keep) if v else v for v in split(raw, vr)
                ]
            done = join(values, vr)
            if len(self._dates) > _CACHE_LIMIT:
                self._dates.clear()
            self._dates[key] = done
        return done

    def replace(self, raw: bytes, vr: str, rule: Rule, file: FileValues) -> bytes:
        """The new value of an element whose rule is ``VALUE`` or ``PSEUDONYM``.

        Raises
        ------
        NotHandled
            For a UID to be dummied that is empty or multi-valued (the pydicom path keys
            those by their path).
        """
        action = rule.action
        if rule.kind == Kind.PSEUDONYM:
            if pseudonym_as_text(vr):
                return pad(file.pseudonym[:64].encode(file.codec), vr)
            action = Action.DUMMY
        if action == Action.ZERO:
            return b""
        if action == Action.UID and vr == "UI":
            return self.uids(raw)
        if action in (Action.DUMMY, Action.UID):
            if vr == "UI":
                values = split(raw, "UI")
                if len(values) != 1 or not values[0]:
                    raise NotHandled  # the pydicom path keys these by path
                return join([self.pseudo.uid(values[0])], "UI")
            if vr in ("DA", "DT") and file.offset is not None and multiplicity(raw, vr):
                return self.dates(raw, vr, file.offset)
            return dummy(vr, raw)
        if action == Action.CLEAN and rule.reason == "standard-code":
            return join([rule.value], vr, file.codec)
        if action == Action.CLEAN:
            if not multiplicity(raw, vr):
                return raw
            if vr in ("DA", "DT"):
                return b"" if file.offset is None else self.dates(raw, vr, file.offset)
            if vr == "PN":
                return dummy("PN", b"")
            if vr == "UI":
                return self.uids(raw)
            if vr in CLEANED_AS_TEXT:
                return clean_text(raw, vr, file.codec, file.identifiers)
            return raw
        raise NotHandled(rule.action)  # pragma: no cover - every action is covered above


__all__ = [
    "ValueActions",
    "clean_text",
    "dummy",
    "empty_value",
    "join",
    "multiplicity",
    "pad",
    "split",
]
