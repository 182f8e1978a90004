"""The safety net: this patient's own identifiers, found in text the table keeps.

PS3.15 Table E.1-1 cannot foresee every place a site writes a name or an MRN. The
identifying values of the dataset (names, IDs, accession number, institution, birth
date) are captured before the walk edits anything; kept text is searched for them as
whole words, and cleaned text has them, dates and long numbers removed.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from src.ingestion.encoding.dictionary import tag_for_keyword

if TYPE_CHECKING:  # pydicom is imported only by the pydicom path, when it runs
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.dataset import Dataset

_IDENTIFIER_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "AccessionNumber",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "NameOfPhysiciansReadingStudy",
    "RequestingPhysician",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "MedicalRecordLocator",
    "IssuerOfPatientID",
    "PatientBirthDate",
)
_IDENTIFIER_TAGS = tuple(t for t in map(tag_for_keyword, _IDENTIFIER_KEYWORDS) if t is not None)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1", "replace").strip(" \x00")
    return str(value).strip(" \x00")


def _value(ds: Dataset, tag: int) -> str:
    from src.ingestion.parsing.access import peek

    elem = peek(ds, tag)
    return "" if elem is None or elem.VR == "SQ" else _text(elem.value)


def patient_key(ds: Dataset) -> str:
    """The original patient identity used to key the pseudonym and the date offset."""
    return patient_key_of(
        _value(ds, 0x00100020),
        _value(ds, 0x00100021),
        _value(ds, 0x00100010),
        _value(ds, 0x00100030),
        _value(ds, 0x0020000D),
    )


def patient_key_of(pid: str, issuer: str, name: str, birth: str, study_uid: str) -> str:
    """The patient key from the decoded values: the Patient ID (with its issuer), else the
    name and birth date, else the study."""
    if pid:
        return f"id:{issuer}:{pid}" if issuer else f"id:{pid}"
    if name or birth:
        return f"name:{name}:{birth}"
    return f"study:{study_uid}"


_patient_key = patient_key


class _Identifiers:
    """This dataset's identifying strings, decoded only if some text is to be cleaned.

    The raw elements (or the values of decoded ones) are captured before the walk edits
    anything, so the strings are the originals whenever they are finally needed.
    """

    def __init__(self, ds: Dataset) -> None:
        from pydicom.dataelem import RawDataElement

        self._ds: Dataset | None = ds
        self._captured: list[tuple[int, Any]] = []
        for tag in _IDENTIFIER_TAGS:
            item = ds.get_item(tag)
            if item is None:
                continue
            self._captured.append((tag, item if isinstance(item, RawDataElement) else item.value))
        self._strings: list[str] | None = None
        self._words: set[str] = set()
        self._needles: tuple[tuple[str, ...], tuple[bytes, ...]] | None = None
        self._byte_needles: frozenset[bytes] | None = None
        charset = ds.get_item(0x00080005)
        terms = _text(charset.value if charset is not None else "")
        # Raw bytes can be searched directly only where the needles' bytes are the same
        # (ASCII, Latin-1, UTF-8); other character sets are decoded first.
        self._bytes_searchable = terms in _BYTE_SEARCHABLE

    @classmethod
    def of_values(cls, values: list[tuple[int, Any]], charset: str) -> _Identifiers:
        """The identifiers of decoded ``(tag, value)`` pairs (a str or a list of str),
        as the byte-level engine reads them; ``charset`` is the Specific Character Set."""
        self = cls.__new__(cls)
        self._ds = None
        self._captured = list(values)
        self._strings = None
        self._words = set()
        self._needles = None
        self._byte_needles = None
        self._bytes_searchable = charset in _BYTE_SEARCHABLE
        return self

    def add(self, values: list[tuple[int, Any]]) -> None:
        """More identifying ``(tag, value)`` pairs (before anything is decoded)."""
        self._captured.extend(values)
        self._strings = self._needles = self._byte_needles = None

    def byte_needles(self) -> frozenset[bytes]:
        """The whole words searched for in raw (byte-searchable) values, lowercased.

        From values the byte-level engine decoded (str, or lists of str), each value's
        words are computed once per process; the strings for cleaning text are left
        until some text is cleaned.
        """
        if self._byte_needles is not None:
            return self._byte_needles
        if all(type(item) is str or type(item) is list for _, item in self._captured):
            parts = [
                _value_needles(tag, _text(v))
                for tag, item in self._captured
                for v in (item if type(item) is list else [item])
            ]
            self._byte_needles = frozenset().union(*parts)
            return self._byte_needles
        if self._needles is None:
            if self._strings is None:
                self._strings = self._decode()
            words = {w.lower() for w in self._words}
            self._needles = (
                tuple(words),
                tuple({w.encode(e, "ignore") for w in words for e in ("utf-8", "latin-1")} - {b""}),
            )
        self._byte_needles = frozenset(self._needles[1])
        return self._byte_needles

    def __iter__(self) -> Iterator[str]:
        if self._strings is None:
            self._strings = self._decode()
        return iter(self._strings)

    def found_in(self, elem: DataElement | RawDataElement | None) -> bool:
        """Whether a kept text element holds one of these identifiers as a whole word.

        Raw values are searched as bytes, so a clean value is never decoded. Plain
        substring search: a regex per file would cost more than the whole walk.
        """
        from pydicom.dataelem import RawDataElement
        from pydicom.multival import MultiValue

        if elem is None or elem.value is None:
            return False
        if self._needles is None:
            if self._strings is None:
                self._strings = self._decode()
            words = {w.lower() for w in self._words}
            self._needles = (
                tuple(words),
                tuple({w.encode(e, "ignore") for w in words for e in ("utf-8", "latin-1")}),
            )
        value = elem.value
        if isinstance(value, bytes) and isinstance(elem, RawDataElement):
            if self._bytes_searchable:
                return _contains_word(value.lower(), self._needles[1])
            try:
                from pydicom.dataelem import convert_raw_data_element

                assert self._ds is not None
                value = convert_raw_data_element(
                    elem, encoding=self._ds._character_set, ds=self._ds
                ).value
            except Exception:  # an undecodable value is searched as Latin-1 bytes
                return _contains_word(value.lower(), self._needles[1])
        if isinstance(value, bytes):
            return _contains_word(value.lower(), self._needles[1])
        if isinstance(value, MultiValue | list):
            value = "\\".join(str(v) for v in value)
        return _contains_word(str(value).lower(), self._needles[0])

    def _decode(self) -> list[str]:
        found: set[str] = set()
        for tag, item in self._captured:
            value = item
            if type(item) is list:  # decoded by the byte-level engine
                values = item
            elif type(item) is str:
                values = [item]
            else:  # the pydicom path's elements
                from pydicom.dataelem import RawDataElement, convert_raw_data_element
                from pydicom.multival import MultiValue
                from pydicom.sequence import Sequence as DicomSequence

                if isinstance(item, RawDataElement):
                    try:
                        assert self._ds is not None
                        value = convert_raw_data_element(
                            item, encoding=self._ds._character_set, ds=self._ds
                        ).value
                    except Exception:  # noqa: S112 - an undecodable value cleans nothing
                        continue
                if isinstance(value, DicomSequence):
                    continue
                values = list(value) if isinstance(value, MultiValue | list) else [value]
            for v in values:
                strings, words = _identifier_parts(tag, _text(v))
                found.update(strings)
                self._words.update(words)
        return sorted(found, key=len, reverse=True)


def dataset_names(ds: Dataset, depth: int = 0) -> list[tuple[int, Any]]:
    """Every person name (PN) and institution, station or department value in ``ds`` at
    any depth, as decoded ``(tag, list of str)`` (the pydicom path's
    :func:`~src.ingestion.engines.instance_facts.names_anywhere`)."""
    from pydicom.multival import MultiValue

    from src.ingestion.parsing.access import peek

    out: list[tuple[int, Any]] = []
    for tag in list(ds.keys()):
        elem = peek(ds, int(tag))
        if elem is None or depth > 32:
            continue
        if elem.VR == "SQ":
            for item in ds[tag].value:
                out.extend(dataset_names(item, depth + 1))
        elif elem.VR == "PN" or int(tag) in _INSTITUTION_TAGS:
            value = elem.value
            values = [
                _text(v) for v in (value if isinstance(value, MultiValue | list) else [value])
            ]
            values = [v for v in values if v]
            if values:
                out.append((0x00100010 if elem.VR == "PN" else int(tag), values))
    return out


#: Institution Name and Address, Institutional Department Name, Station Name, Performed
#: Station AE Title and Name: the names of places, wherever they are (Clean options).
_INSTITUTION_TAGS = frozenset(
    {0x00080080, 0x00080081, 0x00081040, 0x00081010, 0x00400241, 0x00400242}
)


@functools.lru_cache(maxsize=65536)
def _identifier_parts(tag: int, text: str) -> tuple[frozenset[str], frozenset[str]]:
    """What one identifying value adds: the strings cleaned from text, and the whole words
    searched for in kept text (name parts of two letters or more, numbers of four digits
    or more, anything else of three; a birth date in the ways people write it). Cached:
    the same names and IDs recur in every file of a study."""
    found: set[str] = set()
    words: set[str] = set()
    if len(text) >= 2:
        found.add(text)
        _word(words, text, tag)
        for part in re.split(r"[\^=\s,]+", text):
            if len(part) >= 2 or _ideographic(part):
                found.add(part)
                _word(words, part, tag)
    if tag == _BIRTH_DATE and re.fullmatch(r"\d{8}", text):
        for rendering in _date_renderings(text):
            found.add(rendering)
            words.add(rendering)
    return frozenset(found), frozenset(words)


@functools.lru_cache(maxsize=65536)
def _value_needles(tag: int, text: str) -> frozenset[bytes]:
    """One identifying value's whole words, lowercased, as UTF-8 and Latin-1 bytes."""
    words = {w.lower() for w in _identifier_parts(tag, text)[1]}
    return frozenset({w.encode(e, "ignore") for w in words for e in ("utf-8", "latin-1")} - {b""})


_CUT = re.compile(rb"[^A-Za-z0-9]")


def holds_word(value: bytes, needles: frozenset[bytes]) -> bool:
    """:func:`_contains_word` for a lowercased byte value, by set lookups.

    A needle counts where it is flanked by non-alphanumeric bytes (or the ends), so
    every candidate is a slice between two such cuts: a short value has few, and each is
    one set lookup. Long values (many cuts) are searched needle by needle.
    """
    cuts = [m.start() for m in _CUT.finditer(value)]
    if len(cuts) > 12:
        return any(map(value.__contains__, needles)) and _contains_word(value, needles)
    starts = [0, *(c + 1 for c in cuts)]
    ends = [*cuts, len(value)]
    return any(value[a:b] in needles for a in starts for b in ends if b > a)


def _word(words: set[str], word: str, tag: int) -> None:
    if word.isdigit():
        if len(word) >= 4:
            words.add(word)
    elif (tag in _NAME_TAGS and len(word) >= 2) or len(word) >= 3:
        words.add(word)


_BYTE_SEARCHABLE = frozenset({"", "ISO_IR 6", "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 6"})
_BIRTH_DATE = 0x00100030
_NAME_TAGS = frozenset(
    t
    for t in map(
        tag_for_keyword,
        ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName"),
    )
    if t is not None
)


def _ideographic(word: str) -> bool:
    """A one-character name part in a script that writes names in one or two characters."""
    return bool(word) and all(ord(c) >= 0x2E80 for c in word)


def _date_renderings(yyyymmdd: str) -> list[str]:
    """A birth date as people write it: 1956-03-07, 07.03.1956, 03/07/1956, 07/03/1956."""
    y, m, d = yyyymmdd[:4], yyyymmdd[4:6], yyyymmdd[6:8]
    return [yyyymmdd, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{m}/{d}/{y}", f"{d}/{m}/{y}"]


def _contains_word(haystack: Any, needles: Iterable[Any]) -> bool:
    """Whether any needle occurs in ``haystack`` not flanked by letters or digits."""
    for needle in needles:
        if not needle:
            continue
        start = haystack.find(needle)
        while start != -1:
            end = start + len(needle)
            before = haystack[start - 1 : start] if start else haystack[:0]
            after = haystack[end : end + 1]
            if not before.isalnum() and not after.isalnum():
                return True
            start = haystack.find(needle, start + 1)
    return False
