"""Invented patients, staff and institutions; every value is fake, none is a real person."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from pydicom.uid import (
    generate_uid,
)

UID_PREFIX = "1.2.826.0.1.3680043.8.498."
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
BASIC_TEXT_SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"

_FIRST = [
    "Jonathan",
    "Margaret",
    "Priyanka",
    "Bartholomew",
    "Genevieve",
    "Oluwaseun",
    "Henrietta",
    "Maximilian",
    "Rosalind",
    "Thaddeus",
    "Evangeline",
    "Leopold",
]
_LAST = [
    "Whitfield",
    "Okonkwo",
    "Castellano",
    "Lindqvist",
    "Abernathy",
    "Nakamura",
    "Fairbanks",
    "Delacroix",
    "Hargreaves",
    "Montgomery",
    "Vasquez",
    "Ravensworth",
]
_STREETS = ["Juniper Lane", "Harbour Road", "Elmwood Avenue", "Quarry Street", "Bellflower Way"]
_CITIES = ["Springfield", "Riverton", "Ashford", "Lakeview", "Brookhaven"]
_HOSPITALS = [
    "St Aldhelm General Hospital",
    "Riverton University Medical Centre",
    "Ashford Royal Infirmary",
    "Lakeview Community Clinic",
]
_DOCTORS = [
    "Prescott^Eleanor^^Dr",
    "Kowalczyk^Tomasz^^Dr",
    "Adeyemi^Folake^^Dr",
    "Brennan^Siobhan^^Dr",
    "Ferreira^Duarte^^Dr",
]
_TECHS = ["Holloway^Rupert", "Sandoval^Marisol", "Ingram^Desmond", "Takahashi^Emiko"]


@dataclass
class FakePatient:
    """One invented patient; every field is PHI for the purpose of the tests."""

    name: str
    patient_id: str
    other_id: str
    birth_date: str
    sex: str
    address: str
    phone: str
    accession_base: str
    charset: str = "ISO_IR 100"

    def identifiers(self) -> list[str]:
        """The planted values that must never appear in any output or log."""
        family, given = self.name.split("^")[:2]
        return [
            family,
            given,
            self.patient_id,
            self.other_id,
            self.birth_date,
            self.address,
            self.phone,
            self.accession_base,
        ]


@dataclass
class Corpus:
    """What :func:`write_corpus` wrote."""

    root: Path
    files: list[Path] = field(default_factory=list)
    patients: list[FakePatient] = field(default_factory=list)
    planted: set[str] = field(default_factory=set)


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(UID_PREFIX, entropy_srcs=[str(seed), *map(str, parts)]))


def make_patient(rng: random.Random, index: int) -> FakePatient:
    """Invent a patient; one in three has a name outside ASCII (Latin-1 or UTF-8)."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    charset = "ISO_IR 100"
    if index % 3 == 1:
        last, charset = last + "-Müller", "ISO_IR 100"
    elif index % 3 == 2:
        first, charset = first + "-Zoë", "ISO_IR 192"
    birth = date(1935, 1, 1) + timedelta(days=rng.randrange(0, 365 * 70))
    return FakePatient(
        name=f"{last}^{first}",
        patient_id=f"MRN{rng.randrange(10**7, 10**8)}",
        other_id=f"NHS{rng.randrange(10**9, 10**10)}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=rng.choice("MF"),
        address=f"{rng.randrange(1, 999)} {rng.choice(_STREETS)}, {rng.choice(_CITIES)}",
        phone=f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
        accession_base=f"ACC{rng.randrange(10**6, 10**7)}",
        charset=charset,
    )
