"""A tiny clip store for the from-clip tests: a car driving ahead of the ego and a standing pedestrian."""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.fixture
def clip_store(tmp_path):
    from drivesim.data import store

    frames, cameras = 13, ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    settings_ = {"width": 32, "height": 16, "frames": frames, "cameras": cameras, "fps": 12.0}
    path = tmp_path / "store"
    root = store.create_store(path, settings_, ["vehicle.car", "human.pedestrian.adult", "other"],
                              ["lane", "road_edge", "lane_divider"])
    times = np.arange(frames) / 12.0
    world_from_ego = np.tile(np.eye(4), (frames, 1, 1))
    world_from_ego[:, :3, :3] = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # heading +y in the world
    world_from_ego[:, 0, 3], world_from_ego[:, 1, 3] = 100.0, 200.0 + 10.0 * times
    rows, offsets = [], [0]
    for t in times:
        rows.append([100.0, 220.0 + 12.0 * t, 0.8, 1.8, 4.5, 1.6, math.pi / 2, 0, 12, 1])  # car ahead
        rows.append([104.0, 215.0, 0.9, 0.6, 0.7, 1.8, 0.0, 0, 0, 1])  # standing pedestrian
        offsets.append(len(rows))
    rig = __import__("drivesim.rigs", fromlist=["load_rig"]).load_rig("front3", (32, 16))
    clip = store.Clip(
        clip_id="scene-a-0000", frames=np.zeros((frames, 3, 16, 32, 3), np.uint8),
        intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
        world_from_ego=world_from_ego, timestamps=(times * 1e6).astype(np.int64),
        boxes=np.array(rows, np.float32), box_offsets=np.array(offsets, np.int32),
        box_category=np.tile(np.array([0, 1], np.int16), frames), box_track=np.tile(np.array([3, 4], np.int32), frames),
        polylines=np.array([[100, 190, 0], [100, 260, 0], [98, 190, 0], [98, 260, 0], [0, 0, 0], [1, 1, 0]],
                           np.float32),
        poly_offsets=np.array([0, 2, 4, 6], np.int32), poly_type=np.array([0, 1, 2], np.int16),
        attrs={"scene": "scene-a", "split": "train", "caption": "day; a car ahead", "cameras": cameras, "fps": 12.0})
    store.write_clip(path, clip)
    root.attrs["clips"] = {clip.clip_id: {"scene": "scene-a", "split": "train", "caption": "x"}}
    return path
