"""Property tests: random nesting, random VRs, planted markers; and bounded fuzzing of parse."""

from __future__ import annotations

import io
import os

import pydicom
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from src.errors import DeidentificationError, InvalidDICOMError
from src.ingestion.annex_e.profile import Action, ConfidentialityProfile, compile_rules
from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import DICOMParser
from tests.conftest import TEST_KEY

MARK = "Zyxwvut"
EXAMPLES = int(os.environ.get("MEDPIPE_FUZZ_EXAMPLES", "60"))
DEID = Deidentifier(key=TEST_KEY)
RULES = compile_rules(ConfidentialityProfile())
REMOVED = sorted(t for t, a in RULES.by_tag.items() if a == Action.REMOVE and (t >> 16) != 2)

# (keyword, value builder) pairs across VRs; PHI-bearing ones carry the marker.
LEAVES = [
    ("PatientName", lambda: f"{MARK}^Jane"),
    ("ReferringPhysicianName", lambda: f"Dr^{MARK}"),
    ("PersonName", lambda: f"{MARK}^Obs"),
    ("OtherPatientNames", lambda: f"{MARK}^Alias"),
    ("PatientAddress", lambda: f"1 {MARK} Street"),
    ("InstitutionName", lambda: f"{MARK} Hospital"),
    ("StudyDescription", lambda: f"CT for {MARK}"),
    ("ImageComments", lambda: f"seen by {MARK}"),
    ("TextValue", lambda: f"{MARK} was here"),
    ("AccessionNumber", lambda: f"A{MARK}"),
    ("StudyID", lambda: MARK),
    ("Manufacturer", lambda: "ACME"),
    ("SliceThickness", lambda: "2.5"),
    ("Rows", lambda: 16),
    ("StudyDate", lambda: "20200101"),
    ("StudyInstanceUID", lambda: "1.2.3.4"),
    ("CodeMeaning", lambda: "Chest"),
]
SEQUENCES = [
    "ReferencedSeriesSequence",
    "RequestAttributesSequence",
    "ContentSequence",
    "AnatomicRegionSequence",
    "OtherPatientIDsSequence",
    "ProcedureCodeSequence",
]


@st.composite
def datasets(draw, depth=0):  # type: ignore[no-untyped-def]
    ds = Dataset()
    for keyword, make in draw(
        st.lists(st.sampled_from(LEAVES), max_size=6, unique_by=lambda x: x[0])
    ):
        setattr(ds, keyword, make())
    if draw(st.booleans()):
        block = ds.private_block(0x0009 + 2 * draw(st.integers(0, 3)), "HYPO", create=True)
        block.add_new(0x01, "LO", MARK)
    if depth < 4:
        for keyword in draw(st.lists(st.sampled_from(SEQUENCES), max_size=2, unique=True)):
            items = draw(st.lists(datasets(depth=depth + 1), min_size=1, max_size=2))
            setattr(ds, keyword, Sequence(items))
    return ds


def _roundtrip(ds: Dataset) -> Dataset:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets())
def test_random_trees_keep_no_marker_and_no_removed_tag(ds):
    DEID.deidentify(ds)
    back = _roundtrip(ds)
    for elem in back.iterall():
        assert int(elem.tag) not in REMOVED, elem.keyword
        assert not elem.tag.is_private
        if elem.VR != "SQ":
            assert MARK not in str(elem.value), elem.keyword
    assert back.PatientIdentityRemoved == "YES"


VRS = [
    "AE",
    "AS",
    "CS",
    "DA",
    "DS",
    "DT",
    "IS",
    "LO",
    "LT",
    "PN",
    "SH",
    "ST",
    "TM",
    "UI",
    "UT",
    "US",
    "SS",
    "UL",
    "SL",
    "FL",
    "FD",
    "OB",
    "OW",
]


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0x0008, 0x0050), st.integers(0x0001, 0xFFFF), st.sampled_from(VRS)),
        max_size=12,
    )
)
# Found by hypothesis in CI: Series in Study (0020,1000), an IS, stored as OB holding bytes
# that are no number.
@example([(16, 4096, "OB")])
def test_random_tags_and_vrs_never_crash(elements):
    ds = Dataset()
    ds.PatientID = "p"
    values = {
        "AS": "010Y",
        "DA": "20200101",
        "DS": "1.5",
        "DT": "20200101",
        "IS": "3",
        "TM": "1010",
        "UI": "1.2.3",
        "US": 1,
        "SS": -1,
        "UL": 2,
        "SL": -2,
        "FL": 1.5,
        "FD": 2.5,
        "OB": b"\x01\x02",
        "OW": b"\x01\x02",
        "UN": b"\x01\x02",
    }
    for group, element, vr in elements:
        tag = ((group * 2) << 16) | element  # even groups: public, known or not
        if element == 0 or (group * 2) == 0x0002:
            continue
        ds.add_new(tag, vr, values.get(vr, f"{MARK}"))
    # Every value is valid for its VR, so nothing here may be refused: a refusal would
    # make this property pass without checking anything.
    DEID.deidentify(ds)
    back = _roundtrip(ds)
    for elem in back.iterall():
        if elem.VR in ("PN", "LT", "ST", "UT"):
            assert MARK not in str(elem.value)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(min_size=0, max_size=600), st.integers(0, 3))
def test_fuzzed_bytes_parse_or_raise_the_project_error(noise, where):
    from pydicom.data import get_testdata_file

    base = open(get_testdata_file("CT_small.dcm"), "rb").read()
    cut = [132, 400, 2000, 9000][where]
    data = base[:cut] + noise + base[cut + len(noise) :]
    try:
        ds = DICOMParser().parse_bytes(data)
    except InvalidDICOMError:
        assert noise, "the untouched file must parse"
        return
    # What parses must de-identify, or be refused with the project's error.
    try:
        DEID.deidentify(ds)
    except DeidentificationError:
        pass


@given(
    value=st.binary(max_size=40).map(bytes.lower)
    | st.text("ab1 ^-.+/\\x", max_size=30).map(str.encode),
    needles=st.frozensets(
        st.text("ab1 ^-.+/\\x", min_size=1, max_size=4).map(str.encode), max_size=6
    ),
)
def test_the_set_lookup_word_search_is_the_needle_by_needle_search(value, needles):
    """holds_word (cuts and set lookups, the byte engine's) == _contains_word (the pydicom
    path's needle-by-needle search) for any value and needles."""
    from src.ingestion.annex_e.safety_net import _contains_word, holds_word

    assert holds_word(value, needles) == _contains_word(value, needles)
