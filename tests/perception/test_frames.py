"""Single frames of a clip store: every camera at the asked size, and targets that lift back onto the store's
boxes through each camera's own pose."""

import numpy as np
import pytest
import torch

from drivesim.errors import ConfigError, DataError
from drivesim.perception.categories import CLASSES
from drivesim.perception.decode import decode_frame
from drivesim.perception.frames import MAX_GT, StoreFrames
from perception_helpers import perfect_maps


def test_an_item_holds_every_camera_of_one_frame_with_its_targets_and_boxes(painted_store):
    frames = StoreFrames(painted_store, "val", (64, 32), boxes=True)
    assert len(frames) == 6 and frames.items[0] == ("painted-val", 0)
    item = frames[2]
    assert item["image"].shape == (3, 3, 32, 64) and -1 <= item["image"].min() < item["image"].max() <= 1
    assert item["heatmap"].shape == (3, len(CLASSES), 8, 16) and item["regression"].shape == (3, 10, 8, 16)
    assert item["boxes"].shape == (MAX_GT, 9) and item["world_from_ego"].dtype == torch.float64
    labels = item["labels"].numpy()
    assert (labels[:8] >= 0).sum() > 0 and (labels[8:] == -1).all()  # 8 boxes a frame, padded
    assert 3 not in labels  # "animal" is no detector class


def test_the_targets_of_a_stored_frame_lift_back_onto_its_boxes(painted_store):
    item = StoreFrames(painted_store, "val", (64, 32), boxes=True)[3]
    maps = perfect_maps({name: item[name].numpy() for name in ("heatmap", "regression")})
    found = decode_frame(maps["heatmap"][0], maps["regression"][0], item["intrinsics"], item["ego_from_cam"])
    truth = item["boxes"].numpy()[item["labels"].numpy() >= 0]
    assert len(found) > 0
    for box, label in zip(found.boxes, found.labels):
        gaps = np.linalg.norm(truth[:, :3] - box[:3], axis=-1)
        assert gaps.min() < 0.05 and item["labels"][gaps.argmin()] == label


def test_a_resized_frame_keeps_its_boxes_where_the_pixels_show_them(painted_store):
    small, large = (StoreFrames(painted_store, "val", size, boxes=True)[1] for size in ((64, 32), (128, 64)))
    assert large["image"].shape[-2:] == (64, 128)
    np.testing.assert_allclose(large["intrinsics"][:, 0, 0], 2 * small["intrinsics"][:, 0, 0], rtol=1e-6)
    assert torch.equal(large["mask"].sum((1, 2)) > 0, small["mask"].sum((1, 2)) > 0)


def test_training_frames_are_flipped_as_their_seed_says(painted_store):
    frames = StoreFrames(painted_store, "train", (64, 32), flip=True)
    plain = StoreFrames(painted_store, "train", (64, 32))[0]
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        item = frames[0]
        flipped = torch.equal(item["image"], plain["image"].flip(-1))
        assert flipped or torch.equal(item["image"], plain["image"])
        assert torch.equal(item["heatmap"], plain["heatmap"].flip(-1) if flipped else plain["heatmap"])
        seen.add(flipped)
    assert seen == {True, False}


def test_frames_pick_clip_frames_by_count_or_index(painted_store):
    assert [t for _, t in StoreFrames(painted_store, None, (64, 32), frames=2).items] == [0, 5, 0, 5]
    assert [t for _, t in StoreFrames(painted_store, "train", (64, 32), frames=[1, 3]).items] == [1, 3]
    with pytest.raises(ConfigError, match="frames"):
        StoreFrames(painted_store, "train", (64, 32), frames=[9])


def test_bad_stores_splits_and_sizes_are_named(painted_store, tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        StoreFrames(tmp_path / "nowhere", "train", (64, 32))
    with pytest.raises(ConfigError, match="split"):
        StoreFrames(painted_store, "test", (64, 32))
    with pytest.raises(ConfigError, match="multiples of 32"):
        StoreFrames(painted_store, "train", (60, 32))
