"""The series table's geometry, on series built from known geometry (expected values come
from the construction: positions laid out along a normal computed here with numpy)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from src.records.series_table import SERIES_COLUMNS, series_rows


def _oblique(degrees: float) -> list[float]:
    """Row and column directions rotated about the patient's x axis."""
    a = math.radians(degrees)
    return [1.0, 0.0, 0.0, 0.0, math.cos(a), math.sin(a)]


def _series(
    offsets_mm: list[float],
    *,
    orientation: list[float] | None = None,
    uid: str = "2.25.7",
    drift: list[float] | None = None,
    **image: object,
) -> list[dict]:
    """Index rows of one series: slice i at ``origin + offsets_mm[i] * normal``."""
    orientation = orientation or [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([-120.0, -80.5, 33.0])
    rows = []
    for i, offset in enumerate(offsets_mm):
        position = origin + offset * normal + (np.array(drift) * i if drift else 0)
        rows.append(
            {
                "patient": {"patient_id": "ANON-1"},
                "study": {"study_instance_uid": "2.25.1", "study_date": "20200101"},
                "series": {"series_instance_uid": uid, "modality": "CT", "series_number": 3},
                "image": {
                    "sop_instance_uid": f"{uid}.{i}",
                    "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2",
                    "instance_number": i + 1,
                    "rows": 512,
                    "columns": 512,
                    "pixel_spacing": [0.7, 0.7],
                    "image_position_patient": [float(v) for v in position],
                    "image_orientation_patient": orientation,
                    "frame_of_reference_uid": "2.25.99",
                    **image,
                },
                "acquisition": {
                    "acquisition_date": "20200101",
                    "acquisition_time": f"1015{i:02d}",
                    "slice_thickness": 2.0,
                },
            }
        )
    return rows


def test_a_regular_oblique_stack_is_complete_uniform_and_consistent():
    row = series_rows(_series([2.0 * i for i in range(40)], orientation=_oblique(23)))[0]
    assert set(row) == set(SERIES_COLUMNS)
    assert row["number_of_instances"] == 40 and row["number_of_frames"] == 40
    assert row["measured_slice_spacing"] == pytest.approx(2.0)
    assert row["uniform_spacing"] is True and row["complete"] is True
    assert row["geometry_consistent"] is True
    assert row["rows"] == 512 and row["pixel_spacing"] == [0.7, 0.7]
    assert str(row["first_acquisition_datetime"]) == "2020-01-01 10:15:00"
    assert str(row["last_acquisition_datetime"]) == "2020-01-01 10:15:39"


def test_order_of_arrival_does_not_matter():
    rows = _series([1.5 * i for i in range(12)])
    assert series_rows(rows) == series_rows(list(reversed(rows)))


def test_a_missing_slice_is_a_gap():
    offsets = [2.0 * i for i in range(20) if i != 7]
    row = series_rows(_series(offsets))[0]
    assert row["complete"] is False and row["uniform_spacing"] is False
    assert row["measured_slice_spacing"] == pytest.approx(2.0)


def test_varying_spacing_is_not_uniform_but_may_be_complete():
    offsets = [0.0, 1.0, 2.2, 3.2, 4.3, 5.3]  # steps 1.0, 1.2, 1.0, 1.1, 1.0
    row = series_rows(_series(offsets))[0]
    assert row["uniform_spacing"] is False and row["complete"] is True
    assert row["measured_slice_spacing"] == pytest.approx(1.0)  # the median step


def test_time_points_at_the_same_positions_are_one_stack():
    offsets = [3.0 * i for i in range(10)] * 4  # four time points
    row = series_rows(_series(offsets))[0]
    assert row["number_of_instances"] == 40
    assert row["measured_slice_spacing"] == pytest.approx(3.0)
    assert row["complete"] is True and row["uniform_spacing"] is True


def test_a_position_seen_more_often_than_the_others_is_incomplete():
    offsets = [3.0 * i for i in range(10)] * 2 + [0.0]
    assert series_rows(_series(offsets))[0]["complete"] is False


def test_gantry_tilt_is_off_the_normal_line_and_not_consistent():
    rows = _series([2.0 * i for i in range(10)], drift=[0.0, 0.5, 0.0])
    row = series_rows(rows)[0]
    assert row["geometry_consistent"] is False


def test_mixed_matrices_and_orientations_have_no_shared_value():
    rows = _series([2.0 * i for i in range(4)])
    rows[2]["image"]["rows"] = 256
    rows[3]["image"]["image_orientation_patient"] = _oblique(90)
    row = series_rows(rows)[0]
    assert row["rows"] is None and row["columns"] == 512
    assert row["image_orientation_patient"] is None
    assert row["geometry_consistent"] is False


def test_an_image_without_a_place_in_patient_space_has_no_geometry():
    rows = _series([0.0])
    del rows[0]["image"]["image_position_patient"], rows[0]["image"]["image_orientation_patient"]
    row = series_rows(rows)[0]
    assert row["measured_slice_spacing"] is None and row["complete"] is None
    assert row["geometry_consistent"] is None


def test_series_are_separated_and_multi_frame_instances_count_their_frames():
    one = _series([2.0 * i for i in range(3)], uid="2.25.7")
    two = _series([0.0], uid="2.25.8", number_of_frames=25)
    rows = series_rows(one + two)
    assert [r["series_instance_uid"] for r in rows] == ["2.25.7", "2.25.8"]
    assert rows[1]["number_of_frames"] == 25 and rows[1]["number_of_instances"] == 1


def test_contrast_is_any_instance_with_a_contrast_agent():
    rows = _series([0.0, 2.0])
    assert series_rows(rows)[0]["contrast"] is False
    rows[1]["acquisition"]["contrast_bolus_agent"] = "ANONYMIZED"  # a dummy says "given"
    assert series_rows(rows)[0]["contrast"] is True
