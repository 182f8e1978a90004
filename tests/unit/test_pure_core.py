"""The core's import is pure and light: no global state changed, no pydicom on the byte path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom.valuerep
from pydicom.data import get_testdata_file

from src.ingestion.encoding import dictionary


def _python(code: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    return proc.stdout.strip()


def test_the_byte_path_never_imports_pydicom(tmp_path: Path) -> None:
    source = get_testdata_file("CT_small.dcm")
    out = _python(
        "import sys\n"
        "from src.ingestion.deidentifier import Deidentifier\n"
        "d = Deidentifier(key=b'pure core test key 0123')\n"
        f"d.deidentify_file({str(source)!r}, {str(tmp_path / 'out.dcm')!r})\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydicom', 'numpy')))"
    )
    assert out == "[]"
    assert pydicom.dcmread(tmp_path / "out.dcm").PatientIdentityRemoved == "YES"


def test_importing_the_core_changes_no_global_state() -> None:
    out = _python(
        "import logging, warnings\n"
        "import pydicom.config as c\n"
        "before = (c.settings.reading_validation_mode, c.settings.writing_validation_mode,"
        " len(warnings.filters), logging.getLogger('pydicom').level,"
        " logging.getLogger().handlers[:])\n"
        "import src.ingestion.deidentifier, src.instance.pipeline, src.ingestion.annex_e.explain\n"
        "after = (c.settings.reading_validation_mode, c.settings.writing_validation_mode,"
        " len(warnings.filters), logging.getLogger('pydicom').level,"
        " logging.getLogger().handlers[:])\n"
        "print(before == after)"
    )
    assert out == "True"


def test_the_vr_sets_are_pydicoms() -> None:
    assert {str(v) for v in pydicom.valuerep.VR if " or " not in str(v)} == dictionary.VRS
    assert {str(v) for v in pydicom.valuerep.EXPLICIT_VR_LENGTH_32} == (
        dictionary.EXPLICIT_VR_LENGTH_32
    )


def test_the_dictionary_answers_as_pydicoms() -> None:
    from pydicom import datadict

    tags = [*list(datadict.DicomDictionary)[::7], 0x60003000, 0x50000010, 0x00091001, 0x00100000]
    for tag in tags:
        assert dictionary.dictionary_has_tag(tag) == datadict.dictionary_has_tag(tag)
        assert dictionary.keyword_for_tag(tag) == datadict.keyword_for_tag(tag)
        try:
            expected = datadict.dictionary_VR(tag)
        except KeyError:
            expected = None
        assert dictionary.dictionary_vr(tag) == expected
