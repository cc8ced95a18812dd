"""The clip store: atomic writes, round trips, and `verify` naming what is wrong."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from drivesim.data import store
from drivesim.errors import DataError

SETTINGS = {"width": 16, "height": 8, "frames": 3, "cameras": ["CAM_A", "CAM_B"], "fps": 12.0}


def _clip(clip_id: str = "scene-a-0000", seed: int = 0) -> store.Clip:
    rng = np.random.default_rng(seed)
    frames, views = SETTINGS["frames"], len(SETTINGS["cameras"])
    world_from_ego = np.tile(np.eye(4), (frames, 1, 1))
    world_from_ego[:, 0, 3] = np.arange(frames)
    world_from_ego_cam = np.repeat(world_from_ego[:, None], views, axis=1)
    world_from_ego_cam[:, 1, 0, 3] += 0.3  # the second camera fires a little later
    rotation = rng.normal(size=(4, 4))
    return store.Clip(
        clip_id=clip_id,
        frames=rng.integers(0, 255, (frames, views, 8, 16, 3), dtype=np.uint8),
        intrinsics=np.tile(np.array([[10, 0, 8], [0, 10, 4], [0, 0, 1]], np.float32), (views, 1, 1)),
        ego_from_cam=np.tile(np.eye(4, dtype=np.float32), (views, 1, 1)),
        world_from_ego=world_from_ego,
        timestamps=np.arange(frames, dtype=np.int64) * 83_333,
        boxes=rng.normal(size=(4, 10)).astype(np.float32),
        box_offsets=np.array([0, 1, 3, 4], np.int32),
        box_category=np.array([16, 16, 1, 16], np.int16),
        box_track=np.array([5, 5, 7, 5], np.int32),
        polylines=rng.normal(size=(5, 3)).astype(np.float32),
        poly_offsets=np.array([0, 2, 5], np.int32),
        poly_type=np.array([0, 1], np.int16),
        attrs={"scene": "scene-a", "split": "train", "caption": "day; stopped; no other road users",
               "cameras": SETTINGS["cameras"]},
        world_from_ego_cam=world_from_ego_cam,
        box_rotation=(rotation / np.linalg.norm(rotation, axis=1, keepdims=True)).astype(np.float32))


@pytest.fixture
def clip_store(tmp_path):
    path = tmp_path / "store"
    root = store.create_store(path, SETTINGS, ["vehicle.car"], ["lane"])
    clip = _clip()
    assert store.write_clip(path, clip)
    root.attrs["clips"] = {clip.clip_id: {"scene": "scene-a", "split": "train", "caption": "x"}}
    return path, clip


def test_written_clip_reads_back_exactly(clip_store):
    path, clip = clip_store
    data = store.read_clip(store.open_store(path), clip.clip_id)
    for name in store.ARRAY_DTYPES:
        np.testing.assert_array_equal(data[name], getattr(clip, name))
        assert data[name].dtype == store.ARRAY_DTYPES[name]
    assert data["attrs"]["caption"] == clip.attrs["caption"]


def test_writing_a_clip_leaves_no_partial_files_and_a_second_write_is_a_no_op(clip_store):
    path, clip = clip_store
    assert not any((path / store.PARTIAL).iterdir())
    assert store.write_clip(path, _clip(seed=1)) is False  # same id: the existing clip stays
    np.testing.assert_array_equal(store.read_clip(store.open_store(path), clip.clip_id)["frames"], clip.frames)


def test_fresh_store_verifies_clean(clip_store):
    path, _ = clip_store
    assert store.verify(path) == (1, [])


def test_verify_names_a_flipped_byte_in_the_frames(clip_store):
    path, clip = clip_store
    frames = path / "clips" / clip.clip_id / "frames"
    shard = next(p for p in frames.rglob("*") if p.is_file() and p.name != "zarr.json")
    data = bytearray(shard.read_bytes())
    data[len(data) // 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    checked, problems = store.verify(path)
    assert checked == 1
    assert [p.where for p in problems] == [f"clips/{clip.clip_id}/frames"]
    assert "unreadable" in problems[0].what


def test_verify_names_non_finite_poses_and_broken_offsets(tmp_path):
    path = tmp_path / "store"
    root = store.create_store(path, SETTINGS, [], [])
    clip = _clip()
    clip.world_from_ego[1, 0, 3] = np.nan
    clip.box_offsets = np.array([0, 3, 1, 4], np.int32)
    store.write_clip(path, clip)
    root.attrs["clips"] = {clip.clip_id: {"scene": "scene-a", "split": "train", "caption": "x"}}
    problems = {p.where: p.what for p in store.verify(path)[1]}
    assert "non-finite" in problems[f"clips/{clip.clip_id}/world_from_ego"]
    assert "offsets" in problems[f"clips/{clip.clip_id}/box_offsets"]


def test_verify_names_a_missing_array_and_index_disagreements(clip_store):
    path, clip = clip_store
    import shutil

    shutil.rmtree(path / "clips" / clip.clip_id / "boxes")
    store.write_clip(path, _clip("scene-a-0009"))  # written but never indexed
    (path / store.PARTIAL / "half-written").mkdir()
    where = {p.where for p in store.verify(path)[1]}
    assert f"clips/{clip.clip_id}/boxes" in where
    assert "clips/scene-a-0009" in where
    assert store.PARTIAL in where


def test_verify_names_a_shape_that_disagrees_with_the_settings(tmp_path):
    path = tmp_path / "store"
    root = store.create_store(path, {**SETTINGS, "frames": 4}, [], [])
    store.write_clip(path, _clip())
    root.attrs["clips"] = {"scene-a-0000": {"scene": "scene-a", "split": "train", "caption": "x"}}
    problems = {p.where: p.what for p in store.verify(path)[1]}
    assert "expected (4, 2, 8, 16, 3)" in problems["clips/scene-a-0000/frames"]


def test_removed_clip_disappears_from_the_store(clip_store):
    path, clip = clip_store
    store.remove_clip(path, clip.clip_id)
    assert store.stored_clip_ids(path) == []
    store.remove_clip(path, clip.clip_id)  # removing twice is harmless: resumed runs do it


def test_reopening_with_other_settings_names_the_setting(clip_store):
    path, _ = clip_store
    with pytest.raises(DataError, match="frames: store has 3, this run 5"):
        store.create_store(path, {**SETTINGS, "frames": 5}, [], [])


def test_a_folder_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a clip store"):
        store.create_store(tmp_path, SETTINGS, [], [])
    with pytest.raises(DataError, match="not a clip store"):
        store.open_store(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_frames_are_chunked_per_image_in_one_shard_per_clip(clip_store):
    path, clip = clip_store
    frames = zarr.open_group(str(path), mode="r")["clips"][clip.clip_id]["frames"]
    assert frames.chunks == (1, 1, 8, 16, 3)
    assert frames.shards == frames.shape
    chunk_files = [p for p in (path / "clips" / clip.clip_id / "frames").rglob("*") if p.is_file()
                   and p.name != "zarr.json"]
    assert len(chunk_files) == 1


def test_a_clip_without_camera_poses_or_rotations_is_stored_with_their_stand_ins(tmp_path):
    path = tmp_path / "store"
    store.create_store(path, SETTINGS, [], [])
    clip = _clip()
    clip.world_from_ego_cam = clip.box_rotation = None
    store.write_clip(path, clip)
    data = store.read_clip(store.open_store(path), clip.clip_id)
    np.testing.assert_array_equal(data["world_from_ego_cam"], np.repeat(clip.world_from_ego[:, None], 2, axis=1))
    yaw = clip.boxes[:, 6].astype(np.float64)
    np.testing.assert_allclose(data["box_rotation"][:, [0, 3]], np.stack([np.cos(yaw / 2), np.sin(yaw / 2)], -1),
                               atol=1e-7)
    assert not data["box_rotation"][:, 1:3].any()


def _as_schema_1(path, clip_id: str) -> None:
    """Make a store look as drivesim-clips/1 wrote it: the old schema name, no per-camera poses or rotations."""
    import shutil

    zarr.open_group(str(path), mode="r+").attrs["schema"] = "drivesim-clips/1"
    for name in store.ADDED_IN_2:
        shutil.rmtree(path / "clips" / clip_id / name)


def test_a_schema_1_store_verifies_and_reads_through_the_stand_ins(clip_store):
    path, clip = clip_store
    _as_schema_1(path, clip.clip_id)
    assert store.verify(path) == (1, [])
    root = store.open_store(path)
    data = store.read_clip(root, clip.clip_id)
    assert not set(store.ADDED_IN_2) & set(data)
    group = root["clips"][clip.clip_id]
    for source in (data, group):
        poses = store.camera_poses(source, 1, 3)
        assert poses.shape == (2, 2, 4, 4)
        np.testing.assert_array_equal(poses[:, 1], clip.world_from_ego[1:3])
        np.testing.assert_allclose(store.box_rotations(source)[:, 3], np.sin(clip.boxes[:, 6] / 2), atol=1e-7)
    with pytest.raises(DataError, match="use a new --out"):
        store.create_store(path, SETTINGS, [], [])


def test_verify_names_missing_or_misshapen_camera_poses_and_rotations(clip_store):
    path, clip = clip_store
    group = zarr.open_group(str(path / "clips" / clip.clip_id), mode="r+")
    group.create_array("box_rotation", data=np.ones((4, 4), np.float32), overwrite=True)
    import shutil

    shutil.rmtree(path / "clips" / clip.clip_id / "world_from_ego_cam")
    problems = {p.where: p.what for p in store.verify(path)[1]}
    assert "missing" in problems[f"clips/{clip.clip_id}/world_from_ego_cam"]
    group.create_array("world_from_ego_cam", data=np.tile(np.eye(4), (3, 1, 1, 1)), overwrite=True)
    problems = {p.where: p.what for p in store.verify(path)[1]}
    assert "expected (3, 2, 4, 4)" in problems[f"clips/{clip.clip_id}/world_from_ego_cam"]
    group.create_array("world_from_ego_cam", data=np.tile(np.eye(4), (3, 2, 1, 1)), overwrite=True)
    problems = {p.where: p.what for p in store.verify(path)[1]}
    assert "unit quaternions" in problems[f"clips/{clip.clip_id}/box_rotation"]
