"""The rollout's pictures: the camera grid laid out like the car."""

from __future__ import annotations

from rollout_helpers import CAMERAS

from drivesim.media import grid_layout


def test_grid_layout_follows_the_car():
    nuscenes = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
    shuffled = [nuscenes[i] for i in (1, 2, 5, 4, 3, 0)]
    assert grid_layout(shuffled) == [[5, 0, 1], [4, 3, 2]]
    assert grid_layout(CAMERAS) == [[0, 1, 2]]
