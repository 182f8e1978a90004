"""The index row and the validated metadata from the byte engine's raw values, against
the pydicom extractor on the same files read back by pydicom (the oracle), for every
corpus file: pydicom's test files and the generated multi-patient corpus (#28 item 1).

The raw route builds no Dataset; where it cannot decode alone it says so (None) and the
Dataset route runs. The test asserts how many files took the raw route, so that a
regression to "always the Dataset" fails too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pydicom

from src.ingestion.deidentifier import Deidentifier
from src.ingestion.dicom_parser import is_image
from src.ingestion.metadata_extractor import MetadataExtractor
from src.instance.header_facts import is_image_header, is_media_directory, layout_key
from src.instance.output_layout import output_key
from src.instance.pipeline import InstancePipeline, InstanceRefusedError
from tests.conftest import pydicom_files

KEY = b"index row differential key 0123456789"
EXTRAS = ("output", "output_blake3", "burned_in_annotation_risk", "clean_pixel_data", "pixel_boxes")


def _files(corpus) -> list[str]:  # type: ignore[no-untyped-def]
    return [*pydicom_files(), *(str(p) for p in corpus.files)]


def _oracle(path: str) -> dict | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM, or pydicom cannot read it without force
        return None
    return MetadataExtractor().extract_metadata(ds)


def test_original_metadata_from_raw_values_equals_pydicom(corpus):
    deid, extractor = Deidentifier(key=KEY), MetadataExtractor()
    raw_route = 0
    for path in _files(corpus):
        try:
            plan = deid.plan_file(path, describe="header")
        except Exception:  # refused: nothing to validate
            continue
        with plan:
            if plan.header is None:  # the pydicom engine's file
                continue
            ts = plan.header.meta_text(0x00020010) or None
            raw = extractor.extract_elements(plan.header, ts)
            original = plan.original
            assert original is not None
            assert is_media_directory(plan.header) == is_media_directory(original), path
            assert is_image_header(plan.header) == is_image(original), path
            if raw is None:
                continue
            raw_route += 1
            expected = _oracle(path)
            if expected is not None:
                assert raw == expected, os.path.basename(path)
            assert raw == extractor.extract_metadata(original), os.path.basename(path)
    assert raw_route >= 150


def test_the_index_row_equals_pydicom_on_the_written_output(corpus):
    pipe = InstancePipeline(Deidentifier(key=KEY), validate=None)
    compared = 0
    with tempfile.TemporaryDirectory() as scratch:
        for n, path in enumerate(_files(corpus)):
            out = Path(scratch) / f"{n}.dcm"
            try:
                result = pipe.process(path, out)
            except InstanceRefusedError:
                continue
            row = {k: v for k, v in result.index.items() if k not in EXTRAS}
            written = pydicom.dcmread(out, stop_before_pixels=True)
            assert row == MetadataExtractor().extract_metadata(written), os.path.basename(path)
            assert result.output_key == output_key(written, result.report.patient_pseudonym)
            assert layout_key(row, result.report.patient_pseudonym) in (None, result.output_key)
            compared += 1
    assert compared >= 115


def test_the_byte_path_builds_no_dataset_view(corpus, tmp_path, monkeypatch):
    """A plain instance goes through the pipeline without a pydicom view of either header."""
    from src.ingestion.engines import byte_engine

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("a Dataset view was built")

    monkeypatch.setattr(byte_engine, "dataset_of", refuse)
    monkeypatch.setattr(byte_engine, "raw_dataset", refuse)
    pipe = InstancePipeline(Deidentifier(key=KEY))  # with the schema validation
    ct = next(p for p in corpus.files if "CT" in str(pydicom.dcmread(p).Modality))
    result = pipe.process(ct, tmp_path / "out.dcm")
    assert result.index["series"]["modality"] == "CT"
