"""Mutated inputs never become unreadable outputs, and never raise past the pipeline.

hypothesis mutates the project's own corpus (``medpipe samples``' generator) and pydicom's
files the way a careless link, disk or device does: a flipped bit, a truncation, a length
overwritten with a huge, odd or undefined value, a VR overwritten, a run of bytes deleted
or duplicated, a transfer syntax that contradicts the data. Each mutant goes through the
product path (``InstancePipeline.process``, what ``run``, ``receive`` and the Lambda pass
call). It holds that the input is processed or quarantined with a data reason (never
``internal-error``, never an exception past the pipeline), and that whatever was written
parses with pydicom (no ``force``, every value decoded) and with dcmdump.

Rerun with another seed or more examples::

    MEDPIPE_MUTATION_SEED=11 MEDPIPE_MUTATION_EXAMPLES=2000 MEDPIPE_PRINT_MUTATIONS=1 \\
        .venv/bin/pytest -s tests/integration/test_mutations.py
"""

from __future__ import annotations

import collections
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pydicom
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from src.ingestion.deidentifier import Deidentifier
from src.instance.pipeline import InstancePipeline, InstanceRefusedError, Reason, schema_validation
from src.synthetic import write_corpus

SEED = int(os.environ.get("MEDPIPE_MUTATION_SEED", "20261207"))
EXAMPLES = int(os.environ.get("MEDPIPE_MUTATION_EXAMPLES", "150"))
SYNTAXES = [b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.5\x00", b"1.2.840.10008.1.2.4.90"]
COUNTS: collections.Counter[str] = collections.Counter()


def _seeds() -> list[bytes]:
    folder = Path(tempfile.mkdtemp(prefix="medpipe-mutants-"))
    corpus = write_corpus(
        folder, seed=5, patients=2, series_per_study=1, instances_per_series=2, rows=16, columns=16
    )
    files = [p.read_bytes() for p in corpus.files]
    for name in ("CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "JPEG2000.dcm", "SC_rgb_rle.dcm"):
        files.append(Path(get_testdata_file(name)).read_bytes())
    shutil.rmtree(folder, ignore_errors=True)
    return files


SEEDS = _seeds()


@st.composite
def mutants(draw: st.DrawFn) -> tuple[str, bytes]:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    n = len(data)
    at = draw(st.integers(132, n - 8))
    kind = draw(
        st.sampled_from(
            ["flip", "truncate", "length16", "length32", "vr", "delete", "duplicate", "syntax"]
        )
    )
    if kind == "flip":
        data[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        del data[at:]
    elif kind == "length16":
        struct.pack_into("<H", data, at, draw(st.sampled_from([0xFFFF, 3, 1, 0])))
    elif kind == "length32":
        struct.pack_into("<L", data, at, draw(st.sampled_from([0xFFFFFFFF, 0x7FFFFFFF, 3, 1])))
    elif kind == "vr":
        data[at : at + 2] = draw(st.sampled_from([b"SQ", b"US", b"UN", b"OB", b"XX"]))
    elif kind in ("delete", "duplicate"):
        stop = min(n, at + draw(st.integers(1, 64)))
        if kind == "delete":
            del data[at:stop]
        else:
            data[stop:stop] = data[at:stop]
    else:
        old = b"1.2.840.10008.1.2.1\x00"
        where = data.find(old, 132, 400)
        new = draw(st.sampled_from(SYNTAXES))
        if where > 0 and len(new) == len(old):
            data[where : where + len(old)] = new
    return kind, bytes(data)


def _parses(path: Path) -> str | None:
    """Why ``path`` is not readable (``None`` when pydicom and dcmdump both read it)."""
    try:
        pydicom.dcmread(path).walk(lambda ds, elem: elem.value)
    except Exception as exc:  # any failure to read is the finding
        return f"pydicom: {type(exc).__name__}"
    if shutil.which("dcmdump"):
        done = subprocess.run(
            ["dcmdump", "-q", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        if done.returncode != 0 or "E:" in done.stderr:
            return f"dcmdump: {done.stderr[:200]}"
    return None


@pytest.fixture(scope="module")
def pipeline() -> InstancePipeline:
    yield InstancePipeline(Deidentifier(key=b"mutation-test-key-0123456789abcd"), schema_validation)
    if os.environ.get("MEDPIPE_PRINT_MUTATIONS"):
        print(f"\nmutants (seed {SEED}): {sum(COUNTS.values())} inputs, {dict(COUNTS)}")


@seed(SEED)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutant=mutants())
def test_a_mutant_is_processed_readably_or_quarantined_with_a_data_reason(
    pipeline, tmp_path, mutant
):
    kind, data = mutant
    source, output = tmp_path / "in.dcm", tmp_path / "out.dcm"
    source.write_bytes(data)
    output.unlink(missing_ok=True)
    try:
        pipeline.process(str(source), str(output), label="mutant")
    except InstanceRefusedError as exc:
        COUNTS[f"quarantined {exc.reason.value}"] += 1
        assert exc.reason is not Reason.INTERNAL_ERROR, (kind, exc.message)
        assert not output.exists(), "a refused input left an output behind"
        return
    COUNTS["processed"] += 1
    why = _parses(output)
    if why:
        COUNTS["unparsable"] += 1
    assert why is None, (kind, why)
