"""Generated samples behave like a scanner's series (so volume converters keep them whole)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pydicom

from src.synthetic import write_corpus


def test_a_series_is_one_acquisition_and_a_study_has_one_set_of_study_values(
    tmp_path: Path,
) -> None:
    corpus = write_corpus(tmp_path, seed=5, patients=2, series_per_study=2, instances_per_series=6)
    times: dict[str, set[tuple[str, str]]] = defaultdict(set)
    positions: dict[str, list[float]] = defaultdict(list)
    study: dict[str, set[tuple[str, ...]]] = defaultdict(set)
    for path in corpus.files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.Modality in ("CT", "MR"):
            times[ds.SeriesInstanceUID].add((ds.AcquisitionTime, ds.ContentTime))
            positions[ds.SeriesInstanceUID].append(float(ds.ImagePositionPatient[2]))
        study[ds.StudyInstanceUID].add(
            (ds.StudyTime, ds.StudyID, str(ds.ReferringPhysicianName), ds.InstitutionName)
        )
    assert len(times) == 4 and all(len(t) == 1 for t in times.values())
    for z in positions.values():  # evenly spaced slices, no gap, no repeat
        steps = {round(b - a, 3) for a, b in zip(sorted(z), sorted(z)[1:], strict=False)}
        assert steps == {2.5}
    assert len(study) == 2 and all(len(v) == 1 for v in study.values())
