"""A tiny clip store for the detector tests, built in a second: the front3 rig at 64x32, cars and pedestrians
around a driving ego, each painted into the images as a flat patch of its class's colour (so there is
something to learn), one train clip and one val clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from drivesim.geometry import box_corners, compose, invert, project, transform_points

WIDTH, HEIGHT, FRAMES = 64, 32, 6
CATEGORIES = ["vehicle.car", "human.pedestrian.adult", "movable_object.trafficcone", "animal"]
COLOURS = np.array([[40, 90, 240], [240, 60, 40], [250, 220, 30], [120, 120, 120]], np.uint8)


def _paint(image: np.ndarray, boxes: np.ndarray, categories: np.ndarray, intrinsics, cam_from_world) -> None:
    """Fill each box's projected rectangle with its category's colour, farthest first."""
    depth = transform_points(cam_from_world, boxes[:, :3])[:, 2]
    for row in np.argsort(-depth):
        corners = transform_points(cam_from_world, box_corners(boxes[row:row + 1, :7])[0])
        if depth[row] < 1 or (corners[:, 2] < 0.1).any():
            continue
        pixels, _ = project(intrinsics, corners)
        (left, top), (right, bottom) = pixels.min(0).clip(0, [WIDTH, HEIGHT]), pixels.max(0).clip(0, [WIDTH, HEIGHT])
        image[int(top):int(np.ceil(bottom)), int(left):int(np.ceil(right))] = COLOURS[categories[row]]


def _clip(clip_id: str, split: str, seed: int, rig):
    from drivesim.data import store

    rng = np.random.default_rng(seed)
    world_from_ego = np.tile(np.eye(4), (FRAMES, 1, 1))
    world_from_ego[:, 0, 3] = 500.0 + 0.8 * np.arange(FRAMES)  # driving along +x at 10 m/s, 12 Hz
    count = 8
    category = rng.integers(0, len(CATEGORIES), count).astype(np.int16)
    sizes = np.array([[1.9, 4.5, 1.6], [0.7, 0.7, 1.8], [0.4, 0.4, 0.8], [0.5, 1.0, 0.8]])[category]
    # On the ground (ego z = 0), 6 to 30 m ahead.
    start = np.stack([500 + rng.uniform(6, 30, count), rng.uniform(-12, 12, count), sizes[:, 2] / 2], -1)
    speed = np.where(category == 0, rng.uniform(0, 8, count), 0.0)
    rows, offsets = [], [0]
    frames = np.full((FRAMES, len(rig.cameras), HEIGHT, WIDTH, 3), 90, np.uint8)
    frames[:, :, HEIGHT // 2:] = 60  # the ground
    for t in range(FRAMES):
        centres = start + np.stack([speed * t / 12, np.zeros(count), np.zeros(count)], -1)
        boxes = np.concatenate([centres, sizes, np.zeros((count, 1)), speed[:, None], np.zeros((count, 2))], -1)
        rows.append(boxes)
        offsets.append(offsets[-1] + count)
        for v, cam in enumerate(rig.cameras):
            cam_from_world = invert(compose(world_from_ego[t], cam.ego_from_cam))
            _paint(frames[t, v], boxes, category, cam.intrinsics, cam_from_world)
    return store.Clip(
        clip_id=clip_id, frames=frames, intrinsics=rig.intrinsics.astype(np.float32),
        ego_from_cam=rig.ego_from_cam.astype(np.float32), world_from_ego=world_from_ego,
        timestamps=(np.arange(FRAMES) * 1e6 / 12).astype(np.int64), boxes=np.concatenate(rows).astype(np.float32),
        box_offsets=np.array(offsets, np.int32), box_category=np.tile(category, FRAMES),
        box_track=np.tile(np.arange(count, dtype=np.int32), FRAMES), polylines=np.zeros((0, 3), np.float32),
        poly_offsets=np.zeros(1, np.int32), poly_type=np.zeros(0, np.int16),
        attrs={"scene": clip_id, "split": split, "caption": "", "cameras": list(rig.names), "fps": 12.0})


@pytest.fixture(scope="session")
def painted_store(tmp_path_factory) -> Path:
    from drivesim.data import store
    from drivesim.rigs import load_rig

    rig = load_rig("front3", (WIDTH, HEIGHT))
    path = tmp_path_factory.mktemp("perception") / "store"
    settings = {"width": WIDTH, "height": HEIGHT, "frames": FRAMES, "cameras": list(rig.names), "fps": 12.0}
    root = store.create_store(path, settings, CATEGORIES, ["lane"])
    index = {}
    for clip_id, split, seed in (("painted-train", "train", 0), ("painted-val", "val", 1)):
        store.write_clip(path, _clip(clip_id, split, seed, rig))
        index[clip_id] = {"scene": clip_id, "split": split, "caption": ""}
    root.attrs["clips"] = index
    return path
