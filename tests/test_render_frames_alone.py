"""Layout maps drawn for many frames at once are the maps each frame gets alone (a rollout keeps the maps of
the frames one chunk shares with the next), and the segment ends and box corners moved into every camera at
once carry the bits one camera at a time gives."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim.geometry import compose, invert, transform_points
from drivesim.render import LayoutFrame, render_layout
from drivesim.rigs import load_rig

WIDTH, HEIGHT = 128, 64


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes", size=(WIDTH, HEIGHT))


def ego_pose(x: float, y: float, yaw: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = x, y
    return pose


def frames(rig, count: int = 4) -> list[LayoutFrame]:
    """A town far from the origin (where float32 would lose centimetres): boxes around an ego that drives and
    turns, lanes and road edges around it, and in one frame cameras that fired at their own poses."""
    rng = np.random.default_rng(0)
    origin = np.array([35_000.0, -12_000.0, 0.0])
    lanes = [origin + np.stack([np.linspace(-60, 60, 25), np.full(25, y), np.zeros(25)], axis=1)
             for y in (-3.5, 0.0, 3.5)]
    edges = [origin + np.stack([np.full(20, x), np.linspace(-60, 60, 20), np.zeros(20)], axis=1) for x in (-7, 7)]
    result = []
    for f in range(count):
        pose = ego_pose(origin[0] + 2 * f, origin[1] + 0.5 * f, 0.2 * f)
        boxes = np.concatenate([origin[:2] + rng.uniform(-25, 25, (6, 2)), np.full((6, 1), 0.8),
                                np.tile([1.9, 4.5, 1.6], (6, 1)), rng.uniform(-3, 3, (6, 1))], axis=1)
        cameras = None
        if f == 2:
            cameras = np.stack([pose @ ego_pose(0.05 * v, 0.0, 0.01 * v) for v in range(len(rig.cameras))])
        result.append(LayoutFrame(pose, boxes.astype(np.float32), ["vehicle.car"] * 3 + ["human.pedestrian"] * 3,
                                  lanes + edges, ["lane"] * 3 + ["road_edge"] * 2, cameras))
    return result


def test_frames_drawn_together_or_one_at_a_time_are_the_same(rig):
    scene = frames(rig)
    together = render_layout(rig, scene)
    assert together[:, :, :6].any(axis=(0, 2, 3, 4)).all()  # every frame draws boxes or lines
    for f, frame in enumerate(scene):
        assert np.array_equal(render_layout(rig, [frame])[:, 0], together[:, f])


def test_points_in_every_camera_at_once_have_each_cameras_bits(rig):
    frame = frames(rig)[1]
    cam_from_worlds = invert(compose(frame.world_from_ego, rig.ego_from_cam))
    ends = np.concatenate([line for line in frame.polylines])
    at_once = transform_points(cam_from_worlds, ends)  # [V, N, 3]
    corners = np.random.default_rng(1).normal(0, 20, (7, 8, 3))
    corners_at_once = transform_points(invert(rig.ego_from_cam)[:, None], corners)  # [V, 7, 8, 3]
    for v in range(len(rig.cameras)):
        assert np.array_equal(at_once[v], transform_points(cam_from_worlds[v], ends))
        assert np.array_equal(corners_at_once[v], transform_points(invert(rig.ego_from_cam)[v], corners))
