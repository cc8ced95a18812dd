"""Camera pairs (drivesim/eval/camera_pairs.py): the views whose fields of view overlap are a rig's
neighbours, pairs given by hand are checked, and each pair's calibrated geometry (F, shared view)."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim.errors import ConfigError, DataError
from drivesim.eval.camera_pairs import calibrated_pairs, check_pairs, overlapping_pairs, rig_pairs
from drivesim.eval.matching import sampson_error
from drivesim.geometry import invert, project, transform_points
from drivesim.rigs import load_rig


def test_overlapping_pairs_are_the_rig_neighbours():
    for name in ("nuscenes", "front3"):
        rig = load_rig(name, (448, 256))
        assert overlapping_pairs(rig.intrinsics, rig.ego_from_cam, rig.width) == rig_pairs(rig)
    rig = load_rig("nuscenes", (448, 256))
    # By camera name into another order: CAM_FRONT (index 1 of the rig) neighbours both front corners.
    assert rig_pairs(rig, ["CAM_FRONT", "CAM_FRONT_LEFT", "CAM_FRONT_RIGHT"]) == [(0, 1), (0, 2)]


def test_pairs_given_by_hand_are_checked_naming_the_bad_one():
    cameras = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    assert check_pairs([("CAM_FRONT", "CAM_FRONT_LEFT"), (1, 2)], cameras) == [(1, 0), (1, 2)]
    for pairs, message in (([(0, 0)], "with itself"), ([(0, 1), (1, 0)], "paired twice"),
                           ([("CAM_BACK", 0)], "CAM_BACK"), ([(0, 3)], "view index"), (["ab"], "two views")):
        with pytest.raises(ConfigError, match=message):
            check_pairs(pairs, cameras)


def test_calibrated_pairs_hold_each_pairs_fundamental_matrix_and_shared_view():
    rig = load_rig("front3", (448, 256))
    cameras = list(rig.names)
    calibrated = calibrated_pairs(rig.intrinsics, rig.ego_from_cam, None, cameras, (448, 256), 0.1)
    assert calibrated.pairs == rig_pairs(rig) and calibrated.margin_px == pytest.approx(44.8)
    a, b = calibrated.pairs[0]  # CAM_FRONT_LEFT, CAM_FRONT
    ahead_left = np.array([[40.0, 23.0, 1.0]])  # ego frame: 30 degrees left, where both cameras look
    pixels_a, _ = project(rig.intrinsics[a], transform_points(invert(rig.ego_from_cam[a]), ahead_left))
    pixels_b, _ = project(rig.intrinsics[b], transform_points(invert(rig.ego_from_cam[b]), ahead_left))
    assert sampson_error(calibrated.fundamentals[0], pixels_a, pixels_b)[0] < 1e-6
    left_edge = np.array([[2.0, 128.0]])  # CAM_FRONT_LEFT's far left: out of CAM_FRONT's view
    seen_a, seen_b = calibrated.overlap(0, np.concatenate([pixels_a, left_edge]), pixels_b)
    assert seen_a.tolist() == [True, False] and seen_b.tolist() == [True]
    assert calibrated_pairs(rig.intrinsics, rig.ego_from_cam, None, cameras, (448, 256), None).overlap(
        0, pixels_a, pixels_b) == (None, None)  # no margin: every feature takes part
    with pytest.raises(ConfigError, match="overlap_margin"):
        calibrated_pairs(rig.intrinsics, rig.ego_from_cam, None, cameras, (448, 256), -0.1)
    with pytest.raises(DataError, match="intrinsics"):
        calibrated_pairs(rig.intrinsics[:2], rig.ego_from_cam, None, cameras, (448, 256), 0.1)
