"""Clean Descriptors and Clean Structured Content clean *all* identifying information
(#32): whole words only (no identifier cuts a word apart), every person's and
institution's name the instance holds, persons named with a title, and patterns for IDs,
phone numbers, e-mail and street addresses.

The attributes are the rows of the shipped Table E.1-1 whose Clean Descriptors code is C;
the planted names are not the synthetic corpus's. Run with ``-s`` to see the recall by
kind of mention.
"""

from __future__ import annotations

import itertools

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, generate_uid

from src.ingestion.annex_e.free_text import _clean_text
from src.ingestion.annex_e.profile import ConfidentialityProfile, load_table_e1_1
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.encoding.dictionary import dictionary_vr, keyword_for_tag
from tests.conftest import TEST_KEY

#: Other persons: (family, given). None of them is the patient.
OTHERS = [
    ("Miller", "Hannah"),
    ("Osei", "Kwame"),
    ("Nakamura", "Yuki"),
    ("Fernández", "Lucía"),
    ("O'Brien", "Sean"),
    ("Kowalski", "Piotr"),
    ("Haddad", "Leila"),
    ("Lindqvist", "Erik"),
    ("Adeyemi", "Tolu"),
    ("Dubois", "Claire"),
    ("Petrov", "Ivan"),
    ("Okafor", "Chidi"),
]
#: A person the instance names elsewhere (a PN at some depth), mentioned in text.
KNOWN = ["Discussed with {given} {family} by phone", "{family}, {given} reviewed", "per {family}"]
#: A person named nowhere else, with a title or a role.
TITLED = ["Findings discussed with Dr {family}", "Nurse {given} {family} present", "Prof. {family}"]
#: Named nowhere else, introduced by a relation.
RELATIVE = ["Wife {given} {family} accompanied the patient", "son {given} {family} called"]
#: Named nowhere else, bare: a named-entity recogniser's case.
BARE = ["{given} {family} called about the results"]
#: Text attributes Clean Descriptors keeps cleaned (code C), of a text VR.
CLEANED = [
    keyword_for_tag(row.tag)
    for row in load_table_e1_1()
    if row.tag is not None
    and row.options.get("clean_descriptors") == "C"
    and dictionary_vr(row.tag) in ("LO", "LT", "ST", "UT", "SH")
    and keyword_for_tag(row.tag)
    in (
        "ImageComments",
        "StudyComments",
        "AdditionalPatientHistory",
        "ReasonForStudy",
        "RequestedProcedureComments",
        "AcquisitionComments",
        "PatientComments",
    )
]


def _instance(texts: dict[str, str], known: list[tuple[str, str]]) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitfield^Ada", "MRN-CLEAN-7", "OT"
    ds.InstitutionName = "St Agnes Hospital"
    # The persons the text mentions, named in the instance: one at the top level (not a
    # patient attribute), the others inside a sequence.
    ds.PhysiciansOfRecord = "^".join(known[0]) if known else ""
    steps = []
    for family, given in known[1:]:
        step = Dataset()
        step.ScheduledPerformingPhysicianName = f"{family}^{given}"
        steps.append(step)
    ds.ScheduledProcedureStepSequence = Sequence(steps)
    for keyword, text in texts.items():
        setattr(ds, keyword, text)
    return ds


def _roundtrip(ds: Dataset, tmp_path, syntax: str, profile: ConfidentialityProfile) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    source, out = tmp_path / "in.dcm", tmp_path / "out.dcm"
    ds.save_as(source, enforce_file_format=True)
    Deidentifier(profile=profile, key=TEST_KEY).deidentify_file(source, out)
    return pydicom.dcmread(out)


def test_the_table_gives_text_attributes_to_clean():
    assert len(CLEANED) >= 4, CLEANED


def test_an_identifier_never_cuts_a_word_apart():
    # "ST" (a two-letter name part) and "Agnes" are identifiers; "CHEST" holds "ST".
    ids = ["St", "Agnes", "Mary"]
    assert _clean_text("CT CHEST", ids, "LO") == "CT CHEST"
    assert _clean_text("Chest CT", ids, "LO") == "Chest CT"
    assert _clean_text("Chest CT St Agnes protocol", ids, "LO") == "Chest CT protocol"
    # Case, accents and compatibility forms are folded: the name goes however written.
    assert _clean_text("seen by JOSÉ núñez", ["Jose", "Nunez"], "LO") == "seen by"
    assert _clean_text("ＭＡＲＹ called", ids, "LO") == "called"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_clean_descriptors_removes_other_persons_names(tmp_path, syntax, capsys):
    profile = ConfidentialityProfile(clean_descriptors=True)
    found = {"known": [0, 0], "titled": [0, 0], "relative": [0, 0], "bare": [0, 0]}
    people = itertools.cycle(OTHERS)
    for round_no in range(4):
        texts, planted, known = {}, [], []
        for n, keyword in enumerate(CLEANED):
            kind = ("known", "titled", "relative", "bare")[(n + round_no) % 4]
            family, given = next(people)
            templates = {"known": KNOWN, "titled": TITLED, "relative": RELATIVE, "bare": BARE}[kind]
            template = templates[round_no % len(templates)]
            texts[keyword] = "Chest CT. " + template.format(family=family, given=given)
            planted.append((kind, keyword, family, given))
            if kind == "known":
                known.append((family, given))
        out = _roundtrip(_instance(texts, known), tmp_path, syntax, profile)
        for kind, keyword, family, given in planted:
            value = str(out.get(keyword, ""))
            found[kind][1] += 1
            found[kind][0] += all(n.lower() not in value.lower() for n in (family, given))
            assert "chest ct" in value.lower() or keyword not in out, (keyword, value)
    recall = {k: f"{a}/{b}" for k, (a, b) in found.items()}
    with capsys.disabled():
        print(f"\nother persons' names removed ({syntax.name}): {recall}")
    assert found["known"][0] == found["known"][1]  # named in the instance: every one
    assert found["titled"][0] == found["titled"][1]  # titled: every one
    assert found["relative"][0] == found["relative"][1]


def test_patterns_for_ids_phones_mail_and_addresses():
    text = (
        "Call 555-867-5309 or (02) 9876 5432, mail h.miller@clinic.example, "
        "lives at 42 Harbour View Road; MRN: A12345; acc# 7781-22. Chest CT"
    )
    cleaned = _clean_text(text, [], "LT")
    for leak in ("867", "9876", "miller@", "42 Harbour", "A12345", "7781"):
        assert leak not in cleaned, (leak, cleaned)
    assert "Chest CT" in cleaned


def test_without_a_clean_option_other_names_are_not_sought(tmp_path):
    # The default removes these descriptors anyway (X); the name list is Clean's alone.
    ds = _instance({"ImageComments": "Discussed with Hannah Miller"}, [("Miller", "Hannah")])
    out = _roundtrip(ds, tmp_path, ExplicitVRLittleEndian, ConfidentialityProfile())
    assert "ImageComments" not in out


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_clean_structured_content_removes_other_persons_names_from_sr_text(tmp_path, syntax):
    ds = _instance({}, [])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.Modality = "SR"
    observer = Dataset()
    observer.VerifyingObserverName = "Kowalski^Piotr"
    observer.VerifyingOrganization = "Harbour Imaging"
    ds.VerifyingObserverSequence = Sequence([observer])
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator = "121071", "DCM"
    concept.CodeMeaning = "Finding"
    item = Dataset()
    item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
    item.ConceptNameCodeSequence = Sequence([concept])
    item.TextValue = (
        "Nodule stable. Verified by Piotr Kowalski; discussed with Dr Haddad and wife "
        "Claire Dubois, tel 020 7946 0958."
    )
    ds.ContentSequence = Sequence([item])
    out = _roundtrip(ds, tmp_path, syntax, ConfidentialityProfile(clean_structured_content=True))
    text = str(out.ContentSequence[0].TextValue)
    assert "Nodule stable" in text
    for leak in ("Kowalski", "Piotr", "Haddad", "Claire", "Dubois", "7946"):
        assert leak not in text, (leak, text)


def test_timezone_offset_goes_with_the_utc_offsets_of_shifted_datetimes(tmp_path):
    """PS3.15 E.3.6 (Modified Dates): the offset names a region and no shifted value needs
    it; Retain Full Dates keeps both."""
    for profile, kept in (
        (ConfidentialityProfile(), False),
        (
            ConfidentialityProfile(
                retain_longitudinal_full_dates=True, retain_longitudinal_modified_dates=False
            ),
            True,
        ),
    ):
        for syntax in (ExplicitVRLittleEndian, ExplicitVRBigEndian):
            ds = _instance({}, [])
            ds.TimezoneOffsetFromUTC = "-0500"
            ds.AcquisitionDateTime = "20240305101500-0500"
            out = _roundtrip(ds, tmp_path, syntax, profile)
            assert ("TimezoneOffsetFromUTC" in out) is kept
            assert str(out.AcquisitionDateTime).endswith("-0500") is kept


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_presentation_state_text_follows_its_stricter_sequence(tmp_path, syntax):
    """Clean Descriptors makes Unformatted Text Value C, but inside a Graphic Annotation
    Sequence (D without Clean Graphics) it follows the sequence: dummied, not cleaned."""
    from src.ingestion.annex_e.profile import load_table_e1_1

    codes = {row.keyword: row for row in load_table_e1_1()}
    assert codes["GraphicAnnotationSequence"].basic == "D"
    assert codes["UnformattedTextValue"].options["clean_descriptors"] == "C"
    ds = _instance({}, [])
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State
    ds.Modality = "PR"
    text = Dataset()
    text.UnformattedTextValue = "Left lung nodule, Dr Miller"
    annotation = Dataset()
    annotation.GraphicLayer = "LAYER1"
    annotation.TextObjectSequence = Sequence([text])
    ds.GraphicAnnotationSequence = Sequence([annotation])
    out = _roundtrip(ds, tmp_path, syntax, ConfidentialityProfile(clean_descriptors=True))
    inner = out.GraphicAnnotationSequence[0].TextObjectSequence[0]
    assert "nodule" not in str(inner.UnformattedTextValue)  # dummied whole
    assert "Miller" not in str(inner.UnformattedTextValue)
