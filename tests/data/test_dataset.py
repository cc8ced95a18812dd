"""ClipDataset and make_loader: batches follow the contract, crops and view subsets pick the right
stored images, resizing keeps intrinsics true, loaders repeat for a seed, bad options are named."""

from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim.data import ClipDataset, make_loader
from drivesim.data import store as clip_store
from drivesim.errors import ConfigError, DataError
from drivesim.geometry import project, transform_from, unproject

CAMERAS = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
WIDTH, HEIGHT, FRAMES = 32, 16, 9
FRAME_US = 100_000  # 10 fps
TRAIN, VAL = [f"clip-{i}" for i in range(8)], ["clip-8", "clip-9"]


def yaw_pose(yaw: float, x: float, y: float) -> np.ndarray:
    """world_from_ego for an ego at (x, y) heading `yaw`."""
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = x, y
    return pose


def driving_poses(frames: int) -> np.ndarray:
    """+1 m along world x per frame while yawing 0.1 rad per frame, far from the world origin."""
    return np.stack([yaw_pose(0.1 * t, 250_000.0 + t, -40_000.0) for t in range(frames)])


def make_clip(clip_id: str, split: str, views: int = len(CAMERAS), frames: int = FRAMES,
              world_from_ego: np.ndarray | None = None, width: int = WIDTH, height: int = HEIGHT) -> clip_store.Clip:
    """Channel 0 of image (t, v) is 10 t + v everywhere; channels 1 and 2 are 8 row and 4 column."""
    images = np.zeros((frames, views, height, width, 3), np.uint8)
    images[..., 0] = (10 * np.arange(frames)[:, None] + np.arange(views))[:, :, None, None]
    images[..., 1] = 8 * np.arange(height)[:, None]
    images[..., 2] = 4 * np.arange(width)
    intrinsics = np.array([[[20.0 + v, 0, width / 2], [0, 10.0 + v, height / 2], [0, 0, 1]] for v in range(views)])
    ego_from_cam = np.stack([transform_from(np.array([v, 0.0, 1.5]), np.array([1.0, 0, 0, 0])) for v in range(views)])
    return clip_store.Clip(
        clip_id=clip_id, frames=images, intrinsics=intrinsics, ego_from_cam=ego_from_cam,
        world_from_ego=driving_poses(frames) if world_from_ego is None else world_from_ego,
        timestamps=1_700_000_000_000_000 + FRAME_US * np.arange(frames),
        boxes=np.zeros((0, 10)), box_offsets=np.zeros(frames + 1), box_category=np.zeros(0),
        box_track=np.zeros(0), polylines=np.zeros((0, 3)), poly_offsets=np.zeros(1), poly_type=np.zeros(0),
        attrs={"split": split, "caption": f"caption of {clip_id}", "cameras": CAMERAS[:views]})


def build_store(path: Path, clips: list[clip_store.Clip], views: int = len(CAMERAS)) -> Path:
    """A store holding `clips`, indexed as ingest would."""
    first = clips[0]
    settings = {"width": first.frames.shape[3], "height": first.frames.shape[2], "frames": len(first.frames),
                "fps": 10.0, "cameras": CAMERAS[:views]}
    clip_store.create_store(path, settings, ["vehicle.car"], ["lane"])
    for clip in clips:
        clip_store.write_clip(path, clip)
    root = clip_store.open_store(path, "r+")
    root.attrs["clips"] = {c.clip_id: {"scene": "scene-0001", "split": c.attrs["split"],
                                       "caption": c.attrs["caption"]} for c in clips}
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    clips = [make_clip(c, "train") for c in TRAIN] + [make_clip(c, "val") for c in VAL]
    return build_store(tmp_path_factory.mktemp("dataset") / "store", clips)


def stored_index(video: torch.Tensor) -> np.ndarray:
    """(V, T, 3, H, W) video -> (V, T) the 10 t + v value each image was stored with."""
    return np.rint((video[:, :, 0].mean(dim=(-1, -2)).numpy() + 1) * 127.5).astype(int)


def test_loader_batches_follow_the_batch_contract(store):
    batch = next(iter(make_loader(store, batch_size=2, frames=5)))
    shapes = {"video": (2, 6, 5, 3, HEIGHT, WIDTH), "intrinsics": (2, 6, 3, 3), "ego_from_cam": (2, 6, 4, 4),
              "ego0_from_ego": (2, 5, 4, 4), "time": (2, 5)}
    for name, shape in shapes.items():
        assert batch[name].shape == shape, name
        assert batch[name].dtype == torch.float32, name
    assert batch["video"].min() >= -1 and batch["video"].max() <= 1
    assert isinstance(batch["caption"], list) and all(isinstance(c, str) for c in batch["caption"])
    assert batch["caption"] == [f"caption of {c}" for c in batch["clip_id"]]


def test_item_carries_the_stored_cameras_and_times(store):
    item = ClipDataset(store, frames=4, random_crop=False)[0]
    assert item["clip_id"] == "clip-0"
    np.testing.assert_array_equal(stored_index(item["video"]), 10 * np.arange(4) + np.arange(6)[:, None])
    np.testing.assert_allclose(item["intrinsics"][:, 0, 0], 20.0 + np.arange(6))
    np.testing.assert_allclose(item["ego_from_cam"][:, 0, 3], np.arange(6))
    np.testing.assert_allclose(item["time"], [0.0, 0.1, 0.2, 0.3], atol=1e-6)


def test_ego0_from_ego_is_the_motion_since_the_first_returned_frame(store):
    torch.manual_seed(3)
    dataset = ClipDataset(store, frames=4, views=["CAM_FRONT_LEFT"])
    for _ in range(5):
        item = dataset[0]
        start = stored_index(item["video"])[0, 0] // 10
        expected = [np.linalg.inv(yaw_pose(0.1 * start, start, 0)) @ yaw_pose(0.1 * t, t, 0)
                    for t in range(start, start + 4)]
        np.testing.assert_allclose(item["ego0_from_ego"][0], np.eye(4), atol=1e-6)
        np.testing.assert_allclose(item["ego0_from_ego"], np.stack(expected), atol=1e-5)
        np.testing.assert_allclose(item["time"], 0.1 * np.arange(4), atol=1e-6)


unit_quaternions = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rotations=st.lists(unit_quaternions, min_size=5, max_size=5),
       steps=st.lists(st.lists(st.floats(-50, 50), min_size=3, max_size=3), min_size=5, max_size=5),
       origin=st.lists(st.floats(-3e5, 3e5), min_size=3, max_size=3),
       frames=st.integers(1, 5), seed=st.integers(0, 100))
def test_ego0_from_ego_matches_a_float64_reference_for_any_rigid_trajectory(rotations, steps, origin, frames, seed):
    translations = np.array(origin) + np.cumsum(steps, axis=0)
    world_from_ego = transform_from(translations, np.array(rotations))
    with tempfile.TemporaryDirectory() as folder:
        path = build_store(Path(folder) / "store", [make_clip("c", "train", views=1, frames=5, width=4, height=4,
                                                              world_from_ego=world_from_ego)], views=1)
        torch.manual_seed(seed)
        item = ClipDataset(path, frames=frames)[0]
    start = stored_index(item["video"])[0, 0] // 10
    reference = np.linalg.inv(world_from_ego[start]) @ world_from_ego[start:start + frames]
    assert item["ego0_from_ego"].dtype == torch.float32
    np.testing.assert_allclose(item["ego0_from_ego"][0], np.eye(4), atol=1e-6)
    np.testing.assert_allclose(item["ego0_from_ego"], reference, atol=1e-4)


def test_temporal_crop_returns_consecutive_frames_from_every_start(store):
    torch.manual_seed(0)
    dataset = ClipDataset(store, frames=4, views=["CAM_FRONT"])
    starts = set()
    for _ in range(40):
        frames = stored_index(dataset[1]["video"])[0]
        start = frames[0] // 10
        np.testing.assert_array_equal(frames, 10 * np.arange(start, start + 4) + 1)
        starts.add(start)
    assert starts == set(range(FRAMES - 4 + 1))


def test_no_random_crop_starts_at_the_first_frame(store):
    dataset = ClipDataset(store, frames=3, views=["CAM_FRONT"], random_crop=False)
    for _ in range(3):
        np.testing.assert_array_equal(stored_index(dataset[0]["video"])[0], [1, 11, 21])


def test_views_returns_those_cameras_in_the_given_order(store):
    dataset = ClipDataset(store, frames=2, views=["CAM_BACK", "CAM_FRONT_LEFT", "CAM_FRONT"], random_crop=False)
    item = dataset[0]
    np.testing.assert_array_equal(stored_index(item["video"])[:, 0], [4, 0, 1])
    np.testing.assert_allclose(item["intrinsics"][:, 0, 0], [24.0, 20.0, 21.0])
    np.testing.assert_allclose(item["ego_from_cam"][:, 0, 3], [4.0, 0.0, 1.0])


def test_num_views_draws_that_many_cameras_in_store_order(store):
    torch.manual_seed(0)
    dataset = ClipDataset(store, frames=1, num_views=3)
    subsets = set()
    for _ in range(20):
        item = dataset[0]
        views = stored_index(item["video"])[:, 0] % 10
        assert len(views) == 3 and list(views) == sorted(set(views))
        np.testing.assert_allclose(item["intrinsics"][:, 0, 0], 20.0 + views)  # geometry follows the images
        subsets.add(tuple(views))
    assert len(subsets) > 1


def test_size_resizes_video_and_intrinsics_describe_the_resized_image(store):
    width, height = 64, 8  # x up 2, y down 2: the axes scale independently
    item = ClipDataset(store, frames=2, views=["CAM_FRONT_RIGHT"], size=(width, height), random_crop=False)[0]
    assert item["video"].shape == (1, 2, 3, height, width)
    np.testing.assert_array_equal(stored_index(item["video"])[0], [2, 12])  # flat images stay flat
    stored_k = make_clip("c", "train").intrinsics[2].astype(np.float64)
    resized_k = item["intrinsics"][0].double().numpy()
    # A point seen at interior pixel (40, 4) of the resized image ...
    point = unproject(resized_k, np.array([[40.0, 4.0]]), np.array([5.0]))
    (u, v), = project(stored_k, point)[0]
    # ... sits where the stored image's row/column ramps (8 row, 4 column) say it does.
    image = (item["video"][0, 0].double().numpy() + 1) * 127.5
    assert image[1, 4, 40] == pytest.approx(8 * v, abs=0.5)
    assert image[2, 4, 40] == pytest.approx(4 * u, abs=0.5)
    np.testing.assert_allclose(u, (40 + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(v, (4 + 0.5) * 2 - 0.5)


def test_split_selects_its_clips(store):
    assert ClipDataset(store, "train").clip_ids == TRAIN
    assert ClipDataset(store, "val").clip_ids == VAL
    assert ClipDataset(store, None).clip_ids == TRAIN + VAL
    assert [item["clip_id"] for item in ClipDataset(store, "val", frames=1, num_views=1)] == VAL


def test_cameras_and_settings_come_from_the_store(store):
    dataset = ClipDataset(store)
    assert dataset.cameras == CAMERAS
    assert dataset.settings["frames"] == FRAMES and dataset.settings["width"] == WIDTH


@pytest.mark.parametrize("options, named", [
    ({"split": "test"}, "split"),
    ({"frames": 0}, "frames"),
    ({"frames": FRAMES + 1}, "frames"),
    ({"frames": 2.5}, "frames"),
    ({"views": ["CAM_FRONT", "CAM_ROOF"]}, "views"),
    ({"views": "CAM_FRONT"}, "views"),
    ({"views": []}, "views"),
    ({"views": ["CAM_FRONT", "CAM_FRONT"]}, "views"),
    ({"num_views": 0}, "num_views"),
    ({"num_views": len(CAMERAS) + 1}, "num_views"),
    ({"num_views": 2, "views": ["CAM_FRONT"]}, "num_views"),
    ({"size": (0, 8)}, "size"),
    ({"size": (32,)}, "size"),
    ({"size": (32.0, 16)}, "size"),
])
def test_bad_options_raise_config_error_naming_the_option(store, options, named):
    with pytest.raises(ConfigError, match=named):
        ClipDataset(store, **options)


def test_unknown_camera_error_lists_the_stores_cameras(store):
    with pytest.raises(ConfigError, match="CAM_BACK_RIGHT"):
        ClipDataset(store, views=["CAM_ROOF"])


def test_split_without_clips_is_a_config_error(tmp_path):
    path = build_store(tmp_path / "store", [make_clip("only", "train", views=1)], views=1)
    with pytest.raises(ConfigError, match="has no 'val' clips"):
        ClipDataset(path, "val")


def test_a_path_that_is_not_a_store_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        ClipDataset(tmp_path / "missing")
    with pytest.raises(DataError, match="not a clip store"):
        ClipDataset(tmp_path)


def test_dataset_pickles_without_its_store_handle(store):
    dataset = ClipDataset(store, frames=2, random_crop=False)
    first = dataset[0]  # opens the handle
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._root is None
    torch.testing.assert_close(copy[0]["video"], first["video"])


def test_workers_load_the_same_batches_for_the_same_seed(store):
    def epoch(seed: int) -> list[dict]:
        loader = make_loader(store, batch_size=2, num_workers=2, seed=seed, frames=3, num_views=2)
        return list(loader)

    ClipDataset(store)[0]  # a handle open in the parent must not leak into forked workers
    first, again, other = epoch(0), epoch(0), epoch(1)
    assert sorted(c for batch in first for c in batch["clip_id"]) == TRAIN
    for a, b in zip(first, again, strict=True):
        assert a["clip_id"] == b["clip_id"]
        torch.testing.assert_close(a["video"], b["video"])  # same crops and views too
    assert [c for b in first for c in b["clip_id"]] != [c for b in other for c in b["clip_id"]]


def test_spawned_worker_opens_the_store_itself(store):
    dataset = ClipDataset(store, "val", frames=2, views=["CAM_FRONT"], random_crop=False)
    dataset[0]
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=1, multiprocessing_context="spawn")
    batch = next(iter(loader))
    assert batch["clip_id"] == VAL
    np.testing.assert_array_equal(stored_index(batch["video"][0]), [[1, 11]])


def test_loader_shuffles_train_only_by_default(store):
    assert [c for b in make_loader(store, "val", frames=1, num_views=1) for c in b["clip_id"]] == VAL
    orders = {tuple(c for b in make_loader(store, seed=s, frames=1, num_views=1) for c in b["clip_id"])
              for s in range(3)}
    assert len(orders) > 1


def test_importing_the_data_package_does_not_import_torch():
    code = "import sys, drivesim.data; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
