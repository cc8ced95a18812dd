"""ClipDataset(layout=True): the layout maps of the returned cameras and frames, at the returned size,
drawn from the clip's own boxes, polylines, poses and calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from drivesim.data import ClipDataset, make_loader
from drivesim.data import store as clip_store
from drivesim.errors import ConfigError
from drivesim.geometry import compose, invert, project, resize_intrinsics, transform_points
from drivesim.rigs import load_rig
from drivesim.render import LAYOUT_CHANNELS

RIG = load_rig("nuscenes")
STORED_WIDTH, STORED_HEIGHT, FRAMES = 64, 32, 5
ORIGIN = np.array([250_000.0, -40_000.0, 0.0])  # far from the world origin, as logs are
CAR = np.array([14.0, 0.0, 0.9, 1.9, 4.5, 1.8, 0.0, 0.0, 0.0, 1.0])  # world, relative to ORIGIN


def poses() -> np.ndarray:
    """The ego drives +1 m along world x per frame."""
    world_from_ego = np.tile(np.eye(4), (FRAMES, 1, 1))
    world_from_ego[:, :3, 3] = ORIGIN + np.c_[np.arange(FRAMES), np.zeros(FRAMES), np.zeros(FRAMES)]
    return world_from_ego


def make_clip(clip_id: str) -> clip_store.Clip:
    car = CAR.copy()
    car[:3] += ORIGIN
    x = np.linspace(-50.0, 80.0, 40)
    lines = [np.c_[x, np.full_like(x, y), np.zeros_like(x)] + ORIGIN for y in (1.75, -5.0, -1.75)]
    intrinsics = resize_intrinsics(RIG.intrinsics, STORED_WIDTH / RIG.width, STORED_HEIGHT / RIG.height)
    return clip_store.Clip(
        clip_id=clip_id, frames=np.zeros((FRAMES, 6, STORED_HEIGHT, STORED_WIDTH, 3), np.uint8),
        intrinsics=intrinsics, ego_from_cam=RIG.ego_from_cam, world_from_ego=poses(),
        timestamps=1_700_000_000_000_000 + 100_000 * np.arange(FRAMES),
        boxes=np.tile(car, (FRAMES, 1)), box_offsets=np.arange(FRAMES + 1), box_category=np.zeros(FRAMES),
        box_track=np.ones(FRAMES), polylines=np.concatenate(lines), poly_offsets=np.array([0, 40, 80, 120]),
        poly_type=np.array([0, 1, 2]), attrs={"split": "train", "caption": "", "cameras": list(RIG.names)})


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layout") / "store"
    settings = {"width": STORED_WIDTH, "height": STORED_HEIGHT, "frames": FRAMES, "fps": 10.0,
                "cameras": list(RIG.names)}
    clip_store.create_store(path, settings, ["vehicle.car"], ["lane", "road_edge", "lane_divider"])
    clips = [make_clip("clip-0"), make_clip("clip-1")]
    for clip in clips:
        clip_store.write_clip(path, clip)
    root = clip_store.open_store(path, "r+")
    root.attrs["clips"] = {c.clip_id: {"scene": "scene-0001", "split": "train", "caption": ""} for c in clips}
    return path


def test_layout_is_off_by_default(store):
    assert "layout" not in ClipDataset(store)[0]


def test_layout_has_the_returned_views_frames_and_size(store):
    dataset = ClipDataset(store, frames=3, views=["CAM_FRONT", "CAM_BACK"], size=(32, 16), layout=True)
    layout = dataset[0]["layout"]
    assert layout.shape == (2, 3, len(LAYOUT_CHANNELS), 16, 32) and layout.dtype == torch.float32


def test_layout_draws_the_clips_box_where_its_geometry_puts_it(store):
    dataset = ClipDataset(store, views=["CAM_FRONT", "CAM_BACK"], size=(128, 64), random_crop=False, layout=True)
    item = dataset[0]
    layout = item["layout"].numpy()
    boxes = layout[:, :, :3].any(axis=2)  # [V, T, H, W]
    assert not boxes[1].any()  # nothing behind
    car = CAR[:3] + ORIGIN
    for t, world_from_ego in enumerate(poses()):
        cam_from_world = invert(compose(world_from_ego, item["ego_from_cam"][0].numpy().astype(np.float64)))
        pixels, _ = project(item["intrinsics"][0].numpy().astype(np.float64),
                            transform_points(cam_from_world, car[None]))
        column, row = np.round(pixels[0]).astype(int)
        assert boxes[0, t, row, column]
    # The ego closes in on the car: it grows frame by frame.
    areas = boxes[0].sum(axis=(1, 2))
    assert np.all(np.diff(areas) > 0)
    # Lanes and road edges are drawn; the lane divider is not a layout line.
    assert layout[0, :, LAYOUT_CHANNELS.index("lane")].any() and layout[0, :, LAYOUT_CHANNELS.index("road_edge")].any()


def test_layout_follows_the_temporal_crop(store):
    full = ClipDataset(store, random_crop=False, size=(32, 16), layout=True)[0]["layout"]
    torch.manual_seed(3)
    dataset = ClipDataset(store, frames=2, size=(32, 16), layout=True)
    for _ in range(4):
        # Every window differs (the car grows), so the match says which crop was drawn.
        layout = dataset[0]["layout"]
        assert any(torch.equal(full[:, s:s + 2], layout) for s in range(FRAMES - 1))


def test_loader_batches_carry_layout(store):
    batch = next(iter(make_loader(store, batch_size=2, frames=3, size=(32, 16), layout=True)))
    assert batch["layout"].shape == (2, 6, 3, len(LAYOUT_CHANNELS), 16, 32)


def test_layout_must_be_a_bool(store):
    with pytest.raises(ConfigError, match="layout"):
        ClipDataset(store, layout="yes")
