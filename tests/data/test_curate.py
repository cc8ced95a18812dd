"""Curation stages: windows cover a log exactly, unusable clips are dropped for the right reason,
captions describe the clip, near duplicates and splits are deterministic."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data.curate import (
    REASONS,
    CurationConfig,
    CurationReport,
    assign_splits,
    blur,
    caption,
    clip_hashes,
    clip_starts,
    conditions,
    count_agents,
    ego_motion,
    ego_travel,
    exposure,
    hamming,
    luma,
    near_duplicates,
    official_splits,
    perceptual_hash,
    sharpness,
    static_ego,
)
from drivesim.errors import ConfigError

CONFIG = CurationConfig()
FPS = 10


def _timestamps(n: int) -> np.ndarray:
    return (np.arange(n) * 1_000_000 // FPS).astype(np.int64)


def _poses(x: np.ndarray, y: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    world_from_ego = np.tile(np.eye(4), (len(x), 1, 1))
    world_from_ego[:, 0, 0] = world_from_ego[:, 1, 1] = np.cos(yaw)
    world_from_ego[:, 1, 0], world_from_ego[:, 0, 1] = np.sin(yaw), -np.sin(yaw)
    world_from_ego[:, 0, 3], world_from_ego[:, 1, 3] = x, y
    return world_from_ego


def _straight(speed: float, n: int = 50) -> np.ndarray:
    t = np.arange(n) / FPS
    return _poses(speed * t, np.zeros(n), np.zeros(n))


def _arc(speed: float, degrees: float, left: bool, radius: float = 15.0) -> np.ndarray:
    """A constant-speed circular arc turning `degrees` to the left or right."""
    sweep = math.radians(degrees)
    n = int(round(sweep * radius / speed * FPS)) + 1
    theta = np.linspace(0.0, sweep, n)
    side = 1.0 if left else -1.0
    return _poses(radius * np.sin(theta), side * radius * (1 - np.cos(theta)), side * theta)


def _texture(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A smooth random pattern with fine grain on top, like a street scene's mix of scales."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    image += rng.integers(-30, 31, image.shape, dtype=np.int16)
    return np.clip(image, 0, 255).astype(np.uint8)


def _clip(image: np.ndarray, frames: int = 3, views: int = 2) -> np.ndarray:
    return np.broadcast_to(image, (frames, views, *image.shape)).copy()


# --- split ------------------------------------------------------------------------------------

@given(st.integers(0, 200), st.integers(1, 40), st.integers(1, 40))
def test_clip_starts_cover_the_log_with_full_windows_stride_apart(num_frames, frames, stride):
    starts = clip_starts(num_frames, frames, stride)
    assert all(0 <= s and s + frames <= num_frames for s in starts)
    assert all(b - a == stride for a, b in zip(starts, starts[1:]))
    if starts:
        assert starts[0] == 0
        assert starts[-1] + stride + frames > num_frames  # no further window fits
    else:
        assert num_frames < frames


def test_clip_starts_rejects_empty_windows_and_strides():
    with pytest.raises(ValueError):
        clip_starts(10, 0, 1)
    with pytest.raises(ValueError):
        clip_starts(10, 5, 0)


# --- ego motion -------------------------------------------------------------------------------

def test_ego_travel_of_a_straight_drive_is_its_distance():
    assert ego_travel(_straight(5.0, n=51)) == pytest.approx(25.0)


def test_a_parked_ego_is_static_and_a_driving_one_is_not():
    parked = np.tile(np.eye(4), (20, 1, 1))
    assert static_ego(parked, CONFIG) == "static ego"
    assert static_ego(_straight(5.0), CONFIG) is None


@pytest.mark.parametrize("left, expected", [(True, "turning left"), (False, "turning right")])
def test_a_quarter_circle_is_a_turn_to_that_side_at_the_driven_speed(left, expected):
    world_from_ego = _arc(6.0, 90.0, left)
    manoeuvre, speed = ego_motion(world_from_ego, _timestamps(len(world_from_ego)))
    assert manoeuvre == expected
    assert speed == pytest.approx(6.0, abs=0.1)


def test_straight_and_stopped_motion():
    assert ego_motion(_straight(8.0), _timestamps(50)) == ("driving straight", pytest.approx(8.0))
    assert ego_motion(_straight(0.2), _timestamps(50))[0] == "stopped"


def test_heading_change_wraps_across_pi():
    # heading from 170 to -170 degrees is a 25 degree bend to the left over 30 m, not a 335 degree right turn
    n = 30
    yaw = np.radians(np.linspace(170.0, 195.0, n))
    world_from_ego = _poses(np.linspace(0, -30, n), np.zeros(n), np.arctan2(np.sin(yaw), np.cos(yaw)))
    assert ego_motion(world_from_ego, _timestamps(n))[0] == "curving left"


@pytest.mark.parametrize("left, expected", [(True, "curving left"), (False, "curving right")])
def test_a_15_degree_bend_of_the_road_is_a_curve_not_straight(left, expected):
    world_from_ego = _arc(10.0, 15.0, left, radius=80.0)
    manoeuvre, speed = ego_motion(world_from_ego, _timestamps(len(world_from_ego)))
    assert manoeuvre == expected and speed == pytest.approx(10.0, abs=0.1)
    assert caption("", world_from_ego, _timestamps(len(world_from_ego)), {}) == \
        f"day; {expected} at 10 m/s; no other road users"


def test_a_short_clip_of_a_tight_turn_is_a_turn_and_a_slight_drift_is_straight():
    tight = _arc(5.0, 30.0, left=False, radius=12.0)  # 1.3 s of an intersection turn: 30 degrees so far
    assert ego_motion(tight, _timestamps(len(tight)))[0] == "turning right"
    drift = _arc(10.0, 6.0, left=True, radius=80.0)
    assert ego_motion(drift, _timestamps(len(drift)))[0] == "driving straight"


def test_a_single_frame_is_not_static_and_its_caption_claims_no_motion():
    one = np.eye(4)[None]
    assert static_ego(one, CONFIG) is None
    assert caption("Night", one, _timestamps(1), {1: "vehicle.car"}) == "night; 1 car"


# --- exposure and blur ------------------------------------------------------------------------

def test_luma_is_per_image_rec601():
    images = np.zeros((2, 3, 4, 5, 3), dtype=np.uint8)
    images[1, 2] = (255, 0, 0)
    y = luma(images)
    assert y.shape == (2, 3)
    assert y[1, 2] == pytest.approx(0.299 * 255)
    assert y[0, 0] == 0


def test_black_clip_is_too_dark_white_is_overexposed_texture_passes():
    assert exposure(np.zeros((3, 2, 16, 16, 3), np.uint8), CONFIG) == "too dark"
    assert exposure(np.full((3, 2, 16, 16, 3), 255, np.uint8), CONFIG) == "overexposed"
    checkerboard = ((np.indices((16, 16)).sum(0) % 2) * 255).astype(np.uint8)
    assert exposure(_clip(np.repeat(checkerboard[..., None], 3, axis=-1)), CONFIG) is None
    assert exposure(_clip(_texture(0)), CONFIG) is None


def test_clip_is_dropped_only_when_more_than_the_fraction_is_dark():
    frames = _clip(_texture(0), frames=4, views=1)
    frames[:2] = 0  # exactly half dark: kept
    assert exposure(frames, CONFIG) is None
    frames[2] = 0
    assert exposure(frames, CONFIG) == "too dark"


def test_gaussian_blurred_texture_is_blurred_and_sharp_one_passes():
    sharp = _texture(1)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 5)
    assert sharpness(_clip(sharp)).shape == (3, 2)
    assert blur(_clip(sharp), CONFIG) is None
    assert blur(_clip(blurred), CONFIG) == "blurred"


# --- perceptual hash and near duplicates ------------------------------------------------------

def test_identical_images_hash_equal_and_hashes_are_64_bit():
    image = _texture(2)
    h = perceptual_hash(image)
    assert isinstance(h, int) and 0 <= h < 2**64
    assert hamming(h, perceptual_hash(image.copy())) == 0


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_brightened_or_recompressed_copy_stays_within_4_bits(seed):
    image = _texture(seed)
    brighter = np.clip(image.astype(np.int16) + 12, 0, 255).astype(np.uint8)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    recompressed = cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)
    assert hamming(perceptual_hash(image), perceptual_hash(brighter)) <= 4
    assert hamming(perceptual_hash(image), perceptual_hash(recompressed)) <= 4


def test_unrelated_textures_hash_far_apart():
    hashes = [perceptual_hash(_texture(seed)) for seed in range(6)]
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1:]) > 16


def test_clip_hashes_hash_each_view_of_the_middle_frame():
    frames = np.zeros((5, 2, 120, 160, 3), np.uint8)
    frames[2, 0], frames[2, 1] = _texture(6), _texture(7)
    assert clip_hashes(frames) == [perceptual_hash(_texture(6)), perceptual_hash(_texture(7))]


def test_near_duplicates_point_at_the_earliest_kept_clip():
    a, b = 0x0123456789ABCDEF, 0xFEDCBA9876543210
    hashes = {
        "scene-2/0": [a ^ 0b11, b],      # 2 bits from scene-1/0
        "scene-1/0": [a, b],
        "scene-1/1": [a ^ 0b1, b ^ 0b1],  # 2 bits: duplicate of scene-1/0
        "scene-3/0": [a ^ 0xFF, b],     # 8 bits: different
        "scene-4/0": [a],               # other view count never matches
    }
    assert near_duplicates(hashes, 4) == {"scene-1/1": "scene-1/0", "scene-2/0": "scene-1/0"}


def test_a_duplicate_of_a_dropped_clip_is_not_dropped_through_it():
    # c is near b, b near a, but c is far from a: only b is dropped, c is kept
    hashes = {"a": [0], "b": [0b1111], "c": [0b11111111]}
    assert near_duplicates(hashes, 4) == {"b": "a"}


_clip_sets = st.dictionaries(
    st.text("abcxyz/-0123", min_size=1, max_size=6),
    st.lists(st.integers(0, 255), min_size=1, max_size=2),
    max_size=12,
)


@settings(max_examples=60, deadline=None)
@given(_clip_sets, st.randoms(use_true_random=False))
def test_near_duplicates_ignore_the_order_clips_arrive_in(hashes, random):
    items = list(hashes.items())
    random.shuffle(items)
    result = near_duplicates(hashes, 2)
    assert near_duplicates(dict(items), 2) == result
    for clip, original in result.items():
        assert original < clip and original not in result
        assert len(hashes[clip]) == len(hashes[original])
        assert all(hamming(x, y) <= 2 for x, y in zip(hashes[clip], hashes[original]))


# --- caption ----------------------------------------------------------------------------------

@pytest.mark.parametrize("description, expected", [
    ("Night, rain, peds, turn right", ["night", "rain"]),
    ("Wait at intersection, peds, bicycle", []),
    ("night, rain, left turn at intersection, ego waits, 14 vehicles, 3 pedestrians", ["night", "rain"]),
    ("Rainy dusk, FOG", ["dusk", "rain", "fog"]),
    ("raining after snow", ["rain", "snow"]),
    ("nightclub, brainstorm, foggle", []),  # whole words only
])
def test_conditions_are_found_case_insensitively_in_a_fixed_order(description, expected):
    assert conditions(description) == expected


def test_count_agents_groups_nuscenes_categories_and_skips_objects():
    tracks = {1: "vehicle.car", 2: "vehicle.emergency.police", 3: "vehicle.bus.bendy",
              4: "vehicle.construction", 5: "human.pedestrian.adult", 6: "movable_object.trafficcone",
              7: "animal", 8: "static_object.bicycle_rack", 9: "vehicle.trailer"}
    counts = count_agents(tracks)
    assert counts == {"car": 2, "truck": 2, "bus": 1, "pedestrian": 1}
    assert list(counts) == ["car", "truck", "bus", "pedestrian"]


def test_caption_of_a_rainy_night_left_turn():
    world_from_ego = _arc(6.0, 90.0, left=True)
    tracks = {1: "vehicle.car", 2: "vehicle.car", 3: "vehicle.car", 4: "vehicle.emergency.police",
              5: "human.pedestrian.adult", 6: "movable_object.barrier"}
    text = caption("Night, rain, peds, turn left", world_from_ego, _timestamps(len(world_from_ego)), tracks)
    assert text == "night, rain; turning left at 6 m/s; 4 cars, 1 pedestrian"


def test_caption_of_a_stopped_ego_and_an_empty_road():
    parked = np.tile(np.eye(4), (20, 1, 1))
    stamps = _timestamps(20)
    assert caption("night", parked, stamps, {1: "vehicle.car", 2: "vehicle.car"}) == "night; stopped; 2 cars"
    assert caption("Parking lot", parked, stamps, {}) == "day; stopped; no other road users"
    assert caption("", _straight(10.0), _timestamps(50), {1: "vehicle.bus.rigid", 2: "vehicle.bus.rigid"}) \
        == "day; driving straight at 10 m/s; 2 buses"


# --- splits -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=8), unique=True, max_size=30),
       st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9, 1.0]), st.randoms(use_true_random=False))
def test_splits_depend_only_on_the_set_of_scene_names(names, fraction, random):
    splits = assign_splits(names, fraction)
    shuffled = list(names)
    random.shuffle(shuffled)
    assert assign_splits(shuffled, fraction) == splits
    assert set(splits) == set(names) and set(splits.values()) <= {"train", "val"}
    n_val = sum(split == "val" for split in splits.values())
    if len(names) >= 2:
        assert n_val < len(names)
        assert (n_val >= 1) == (fraction > 0)


def test_split_size_follows_the_fraction():
    names = [f"scene-{i:04d}" for i in range(100)]
    assert sum(s == "val" for s in assign_splits(names, 0.2).values()) == 20


def test_official_splits_are_used_only_when_they_cover_every_scene():
    official = {"scene-a": "val", "scene-b": "train", "scene-c": "train"}
    assert assign_splits(["scene-b", "scene-a"], 0.0, official) == {"scene-a": "val", "scene-b": "train"}
    # scene-z is not in the official splits, so all scenes get the hash split instead
    assert assign_splits(["scene-a", "scene-z"], 0.0, official) == {"scene-a": "train", "scene-z": "train"}


def test_official_nuscenes_mini_splits():
    pytest.importorskip("nuscenes.utils.splits")
    mini = official_splits("v1.0-mini")
    assert sorted(mini.values()).count("val") == 2 and len(mini) == 10
    assert mini["scene-0103"] == "val" and mini["scene-0061"] == "train"
    assert set(official_splits("v1.0-trainval").values()) == {"train", "val"}
    assert official_splits("v1.0-test") == {}


# --- report and config ------------------------------------------------------------------------

def test_reports_merge_and_survive_json():
    a, b = CurationReport(scenes=1, windows=5, kept=3, by_split={"train": 3}), CurationReport(scenes=2, windows=7)
    a.drop("static ego", 2)
    b.drop("static ego")
    b.drop("blurred", 2)
    b.kept, b.by_split = 4, {"train": 3, "val": 1}
    a.merge(b)
    assert (a.scenes, a.windows, a.kept) == (3, 12, 7)
    assert a.dropped == {"static ego": 3, "blurred": 2} and a.by_split == {"train": 6, "val": 1}
    assert CurationReport.from_dict(json.loads(json.dumps(a.to_dict()))) == a


def test_report_table_lists_every_reason_most_common_first_and_aligned():
    report = CurationReport(scenes=3, windows=40, kept=4, by_split={"val": 1, "train": 3})
    for i, reason in enumerate(REASONS):
        report.drop(reason, i + 1)
    lines = report.table().splitlines()
    assert lines[0].split() == ["stage", "clips"]
    dropped = [line for line in lines if line.startswith("dropped: ")]
    assert [line[len("dropped: "):].rsplit(None, 1)[0] for line in dropped] == list(reversed(REASONS))
    assert [line.split() for line in lines[-2:]] == [["train", "3"], ["val", "1"]]
    assert len({len(line) for line in lines}) == 1  # counts right-aligned in one column


@pytest.mark.parametrize("field, value", [
    ("min_travel_m", -1.0), ("dark_luma", -5.0), ("bright_luma", 300.0), ("bright_luma", 10.0),
    ("exposure_fraction", 1.5), ("min_sharpness", float("nan")), ("blur_fraction", -0.1),
    ("max_hash_distance", -1), ("max_hash_distance", 2.5), ("val_fraction", 2.0),
])
def test_config_validate_names_the_bad_field(field, value):
    with pytest.raises(ConfigError, match=field):
        CurationConfig(**{field: value}).validate()


def test_default_config_is_valid():
    CONFIG.validate()
