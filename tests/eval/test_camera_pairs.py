"""Camera pairs (drivesim/eval/camera_pairs.py): the views whose fields of view overlap are a rig's
neighbours, and pairs given by hand are checked."""

from __future__ import annotations

import pytest

from drivesim.errors import ConfigError
from drivesim.eval.camera_pairs import check_pairs, overlapping_pairs, rig_pairs
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
