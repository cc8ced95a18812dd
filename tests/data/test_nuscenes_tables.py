"""The nuScenes table writer: a tiny 6-camera log that nuscenes-devkit loads and reads right."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.geometry_utils import BoxVisibility, transform_matrix
from PIL import Image
from pyquaternion import Quaternion

from drivesim.data.nuscenes_tables import NuScenesTableError, NuScenesWriter
from drivesim.errors import DrivesimError

VERSION = "v1.0-mini"
CAMERA_YAWS = {"CAM_FRONT_LEFT": 55.0, "CAM_FRONT": 0.0, "CAM_FRONT_RIGHT": -55.0,
               "CAM_BACK_LEFT": 110.0, "CAM_BACK": 180.0, "CAM_BACK_RIGHT": -110.0}
WIDTH, HEIGHT = 64, 48
START_US = 1_700_000_000_000_000
KEY_FRAME_US = 500_000  # 2 Hz
SWEEP_US = KEY_FRAME_US / 6  # 12 Hz
NUM_KEY_FRAMES = 3
EGO_SPEED, EGO_HEADING = 5.0, 0.3
CAR_START, CAR_VELOCITY = np.array([12.0, 6.0, 0.8]), np.array([4.0, 1.0, 0.0])
PEDESTRIAN_START, PEDESTRIAN_VELOCITY = np.array([9.0, -2.0, 0.9]), np.array([0.0, 1.2, 0.0])

FIELDS = {
    "attribute": {"token", "name", "description"},
    "calibrated_sensor": {"token", "sensor_token", "translation", "rotation", "camera_intrinsic"},
    "category": {"token", "name", "description", "index"},
    "ego_pose": {"token", "timestamp", "rotation", "translation"},
    "instance": {"token", "category_token", "nbr_annotations", "first_annotation_token", "last_annotation_token"},
    "log": {"token", "logfile", "vehicle", "date_captured", "location"},
    "map": {"category", "token", "filename", "log_tokens"},
    "sample": {"token", "timestamp", "prev", "next", "scene_token"},
    "sample_annotation": {"token", "sample_token", "instance_token", "visibility_token", "attribute_tokens",
                          "translation", "size", "rotation", "prev", "next", "num_lidar_pts", "num_radar_pts"},
    "sample_data": {"token", "sample_token", "ego_pose_token", "calibrated_sensor_token", "timestamp",
                    "fileformat", "is_key_frame", "height", "width", "filename", "prev", "next"},
    "scene": {"token", "log_token", "nbr_samples", "first_sample_token", "last_sample_token", "name", "description"},
    "sensor": {"token", "channel", "modality"},
    "visibility": {"description", "token", "level"},
}


def seconds_since_start(timestamp_us: int) -> float:
    return (timestamp_us - START_US) * 1e-6


def world_from_ego(timestamp_us: int) -> np.ndarray:
    distance = EGO_SPEED * seconds_since_start(timestamp_us)
    translation = [distance * np.cos(EGO_HEADING), distance * np.sin(EGO_HEADING), 0.0]
    return transform_matrix(translation, Quaternion(axis=[0, 0, 1], angle=EGO_HEADING))


def ego_from_cam(yaw_degrees: float) -> np.ndarray:
    # OpenCV camera axes (x right, y down, z forward) in the ego frame (x forward, y left, z up).
    cam_axes_in_ego = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    transform = np.eye(4)
    transform[:3, :3] = Quaternion(axis=[0, 0, 1], degrees=yaw_degrees).rotation_matrix @ cam_axes_in_ego
    transform[:3, 3] = [1.5, 0.0, 1.6]
    return transform


def position(start: np.ndarray, velocity: np.ndarray, timestamp_us: int) -> np.ndarray:
    return start + velocity * seconds_since_start(timestamp_us)


def heading(velocity: np.ndarray) -> list[float]:
    return list(Quaternion(axis=[0, 0, 1], angle=float(np.arctan2(velocity[1], velocity[0]))).elements)


def write_jpeg(root: Path, filename: str) -> None:
    path = root / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 150)).save(path, quality=80)


def build_log(root: Path, seed: int = 0) -> dict:
    """Writes the tiny log under root; returns the tokens the tests look up."""
    writer = NuScenesWriter(root, VERSION, seed=seed)
    log = writer.add_log("drivesim-synth-0000", "drivesim-ego", "2024-05-01", "singapore-onenorth")
    map_token = writer.add_map([log])
    (root / "maps").mkdir(parents=True, exist_ok=True)
    Image.new("L", (20, 20), 255).save(root / "maps" / f"{map_token}.png")
    intrinsics = np.array([[40.0, 0.0, WIDTH / 2], [0.0, 40.0, HEIGHT / 2], [0.0, 0.0, 1.0]])
    calibrations = {channel: writer.add_calibrated_sensor(channel, "camera", ego_from_cam(yaw), intrinsics)
                    for channel, yaw in CAMERA_YAWS.items()}

    def add_frame(sample: str, timestamp_us: int, is_key_frame: bool) -> None:
        for channel, calibration in calibrations.items():
            folder = "samples" if is_key_frame else "sweeps"
            filename = f"{folder}/{channel}/drivesim-synth-0000__{channel}__{timestamp_us}.jpg"
            write_jpeg(root, filename)
            writer.add_sample_data(channel, calibration, sample, timestamp_us, world_from_ego(timestamp_us),
                                   filename, WIDTH, HEIGHT, is_key_frame)

    scene = writer.begin_scene("scene-0001", "tiny synthetic drive", log)
    samples, annotations = [], {"car": [], "pedestrian": []}
    for k in range(NUM_KEY_FRAMES):
        key_time = START_US + k * KEY_FRAME_US
        samples.append(writer.add_sample(key_time))
        if k > 0:  # the sweeps before this key frame belong to it
            for s in range(1, 6):
                add_frame(samples[-1], round(key_time - KEY_FRAME_US + s * SWEEP_US), is_key_frame=False)
        add_frame(samples[-1], key_time, is_key_frame=True)
        annotations["car"].append(writer.add_annotation(
            samples[-1], "car-1", "vehicle.car", position(CAR_START, CAR_VELOCITY, key_time), [1.9, 4.5, 1.6],
            heading(CAR_VELOCITY), 4, ["vehicle.moving"], num_lidar_pts=120))
        annotations["pedestrian"].append(writer.add_annotation(
            samples[-1], "pedestrian-1", "human.pedestrian.adult",
            position(PEDESTRIAN_START, PEDESTRIAN_VELOCITY, key_time), [0.6, 0.7, 1.8],
            heading(PEDESTRIAN_VELOCITY), 3, ["pedestrian.moving"], num_lidar_pts=15))
    writer.end_scene()
    writer.write()
    return {"scene": scene, "samples": samples, "annotations": annotations}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("nuscenes")
    return root, build_log(root)


@pytest.fixture(scope="module")
def nusc(built) -> NuScenes:
    root, _ = built
    return NuScenes(version=VERSION, dataroot=str(root), verbose=False)


def channel_chain(nusc: NuScenes, first_token: str) -> list[dict]:
    """All sample_data of one channel, from the first record by following `next`."""
    record = nusc.get("sample_data", first_token)
    while record["prev"]:
        record = nusc.get("sample_data", record["prev"])
    chain = [record]
    while chain[-1]["next"]:
        chain.append(nusc.get("sample_data", chain[-1]["next"]))
    return chain


def test_devkit_loads_the_written_tables(nusc):
    assert len(nusc.scene) == 1 and len(nusc.sample) == NUM_KEY_FRAMES
    assert len(nusc.sample_data) == len(nusc.ego_pose) == 6 * (NUM_KEY_FRAMES + 5 * (NUM_KEY_FRAMES - 1))
    assert nusc.get("log", nusc.scene[0]["log_token"])["map_token"] == nusc.map[0]["token"]


def test_every_table_has_the_nuscenes_v1_fields(built):
    root, _ = built
    for table, fields in FIELDS.items():
        records = json.loads((root / VERSION / f"{table}.json").read_text())
        assert records, table
        for record in records:
            assert set(record) == fields, table
            for key, value in record.items():
                if key == "visibility_token" or (table, key) == ("visibility", "token"):
                    assert value in {"1", "2", "3", "4"}
                elif key == "token" or key.endswith("_token"):
                    assert re.fullmatch(r"[0-9a-f]{32}", value), (table, key, value)
                elif key.endswith("_tokens"):
                    assert all(re.fullmatch(r"[0-9a-f]{32}", token) for token in value), (table, key)


def test_category_attribute_and_visibility_tables_hold_the_nuscenes_taxonomy(nusc):
    assert len(nusc.category) == 23 and len(nusc.attribute) == 8
    assert {c["name"] for c in nusc.category} >= {"vehicle.car", "human.pedestrian.adult", "movable_object.barrier"}
    assert sorted(c["index"] for c in nusc.category) == list(range(1, 24))
    assert [(v["token"], v["level"]) for v in nusc.visibility] == [
        ("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100")]


def test_every_sample_has_all_six_cameras(nusc):
    for sample in nusc.sample:
        assert set(sample["data"]) == set(CAMERA_YAWS)
        assert all(nusc.get("sample_data", token)["timestamp"] == sample["timestamp"]
                   for token in sample["data"].values())
        assert len(sample["anns"]) == 2


def test_scene_records_first_last_and_sample_count(nusc, built):
    _, tokens = built
    scene = nusc.get("scene", tokens["scene"])
    assert scene["nbr_samples"] == NUM_KEY_FRAMES
    assert scene["first_sample_token"] == tokens["samples"][0]
    assert scene["last_sample_token"] == tokens["samples"][-1]
    walked = [scene["first_sample_token"]]
    while nusc.get("sample", walked[-1])["next"]:
        walked.append(nusc.get("sample", walked[-1])["next"])
    assert walked == tokens["samples"]


def test_sample_data_chains_cover_key_frames_and_sweeps_in_time_order(nusc):
    for channel in CAMERA_YAWS:
        chain = channel_chain(nusc, nusc.sample[0]["data"][channel])
        assert {record["channel"] for record in chain} == {channel}
        assert len(chain) == NUM_KEY_FRAMES + 5 * (NUM_KEY_FRAMES - 1)
        times = [record["timestamp"] for record in chain]
        assert times == sorted(set(times))
        assert [r["is_key_frame"] for r in chain] == [True] + [False] * 5 + [True] + [False] * 5 + [True]
        for record in chain:  # key frames under samples/, sweeps under sweeps/, and the files exist
            assert record["filename"].startswith("samples/" if record["is_key_frame"] else "sweeps/")
            assert Image.open(nusc.get_sample_data_path(record["token"])).size == (WIDTH, HEIGHT)


def test_sweeps_name_the_next_key_frame_as_their_sample(nusc):
    for record in nusc.sample_data:
        sample = nusc.get("sample", record["sample_token"])
        if not record["is_key_frame"]:
            assert nusc.get("sample", sample["prev"])["timestamp"] < record["timestamp"] < sample["timestamp"]


def test_sweep_boxes_are_interpolated_between_the_surrounding_key_frames(nusc):
    chain = channel_chain(nusc, nusc.sample[0]["data"]["CAM_FRONT"])
    sweep = chain[3 + 6]  # the third sweep between key frames 1 and 2
    assert not sweep["is_key_frame"]
    t = sweep["timestamp"]
    boxes = {box.name: box for box in nusc.get_boxes(sweep["token"])}
    np.testing.assert_allclose(boxes["vehicle.car"].center, position(CAR_START, CAR_VELOCITY, t), atol=1e-6)
    np.testing.assert_allclose(boxes["human.pedestrian.adult"].center,
                               position(PEDESTRIAN_START, PEDESTRIAN_VELOCITY, t), atol=1e-6)

    # get_sample_data puts the same box in the camera frame, through this sweep's own ego pose.
    _, cam_boxes, intrinsics = nusc.get_sample_data(sweep["token"], box_vis_level=BoxVisibility.NONE)
    cam_from_world = np.linalg.inv(world_from_ego(t) @ ego_from_cam(CAMERA_YAWS["CAM_FRONT"]))
    car = next(box for box in cam_boxes if box.name == "vehicle.car")
    expected = cam_from_world @ np.append(position(CAR_START, CAR_VELOCITY, t), 1.0)
    np.testing.assert_allclose(car.center, expected[:3], atol=1e-6)
    np.testing.assert_allclose(intrinsics, [[40, 0, WIDTH / 2], [0, 40, HEIGHT / 2], [0, 0, 1]])


def test_ego_poses_and_calibrations_round_trip_the_given_transforms(nusc):
    for record in nusc.sample_data:
        pose = nusc.get("ego_pose", record["ego_pose_token"])
        calibration = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
        assert pose["timestamp"] == record["timestamp"]
        np.testing.assert_allclose(transform_matrix(pose["translation"], Quaternion(pose["rotation"])),
                                   world_from_ego(record["timestamp"]), atol=1e-9)
        np.testing.assert_allclose(
            transform_matrix(calibration["translation"], Quaternion(calibration["rotation"])),
            ego_from_cam(CAMERA_YAWS[record["channel"]]), atol=1e-9)


def test_box_velocity_matches_the_constructed_motion(nusc, built):
    _, tokens = built
    for name, velocity in (("car", CAR_VELOCITY), ("pedestrian", PEDESTRIAN_VELOCITY)):
        for token in tokens["annotations"][name]:
            estimate = nusc.box_velocity(token)
            assert np.all(np.isfinite(estimate))
            np.testing.assert_allclose(estimate, velocity, atol=1e-6)


def test_instances_count_and_link_their_annotations(nusc, built):
    _, tokens = built
    assert len(nusc.instance) == 2
    for name, annotation_tokens in tokens["annotations"].items():
        instance = nusc.get("instance", nusc.get("sample_annotation", annotation_tokens[0])["instance_token"])
        assert instance["nbr_annotations"] == NUM_KEY_FRAMES
        assert instance["first_annotation_token"] == annotation_tokens[0]
        assert instance["last_annotation_token"] == annotation_tokens[-1]
        walked = [instance["first_annotation_token"]]
        while nusc.get("sample_annotation", walked[-1])["next"]:
            walked.append(nusc.get("sample_annotation", walked[-1])["next"])
        assert walked == annotation_tokens
        assert nusc.get("sample_annotation", annotation_tokens[0])["prev"] == ""


def test_same_calls_give_byte_identical_files(built, tmp_path):
    root, _ = built
    build_log(tmp_path)
    for table in FIELDS:
        assert (tmp_path / VERSION / f"{table}.json").read_bytes() == (root / VERSION / f"{table}.json").read_bytes()


def test_another_seed_gives_other_record_tokens(tmp_path):
    build_log(tmp_path / "a", seed=0)
    build_log(tmp_path / "b", seed=1)
    scenes = [json.loads((tmp_path / run / VERSION / "scene.json").read_text())[0]["token"] for run in "ab"]
    assert scenes[0] != scenes[1]


# --- bad input ------------------------------------------------------------------------


@pytest.fixture
def open_scene(tmp_path):
    """A writer with an open scene of two key frames and one front camera."""
    writer = NuScenesWriter(tmp_path)
    log = writer.add_log("log", "ego", "2024-05-01", "singapore-onenorth")
    writer.add_map([log])
    camera = writer.add_calibrated_sensor("CAM_FRONT", "camera", ego_from_cam(0.0), np.eye(3))
    writer.begin_scene("scene-0001", "", log)
    samples = [writer.add_sample(START_US), writer.add_sample(START_US + KEY_FRAME_US)]
    return writer, log, camera, samples


def annotate(writer, sample, **changes):
    arguments = dict(sample_token=sample, instance_key="car-1", category="vehicle.car", translation=[1, 2, 0],
                     size_wlh=[1.9, 4.5, 1.6], rotation_wxyz=[1, 0, 0, 0], visibility=4,
                     attributes=["vehicle.parked"])
    return writer.add_annotation(**{**arguments, **changes})


@pytest.mark.parametrize("changes, message", [
    ({"category": "vehicle.spaceship"}, "unknown category 'vehicle.spaceship'"),
    ({"attributes": ["vehicle.flying"]}, "unknown attribute 'vehicle.flying'"),
    ({"attributes": ["pedestrian.standing"]}, "does not fit category 'vehicle.car'"),
    ({"attributes": ["vehicle.parked", "vehicle.moving"]}, "at most one attribute"),
    ({"visibility": 0}, "visibility 0 must be 1..4"),
    ({"visibility": 5}, "visibility 5 must be 1..4"),
    ({"size_wlh": [1.9, 0.0, 1.6]}, "size must be positive"),
    ({"rotation_wxyz": [1, 0, 0]}, "rotation_wxyz must be finite"),
])
def test_bad_annotations_are_rejected_with_the_reason(open_scene, changes, message):
    writer, _, _, samples = open_scene
    with pytest.raises(NuScenesTableError, match=message):
        annotate(writer, samples[0], **changes)


def test_annotation_in_a_sample_of_another_scene_is_rejected(open_scene):
    writer, log, _, samples = open_scene
    writer.end_scene()
    writer.begin_scene("scene-0002", "", log)
    writer.add_sample(START_US + 2 * KEY_FRAME_US)
    with pytest.raises(NuScenesTableError, match="belongs to another scene"):
        annotate(writer, samples[0])


def test_boxes_of_one_object_must_come_in_time_order(open_scene):
    writer, _, _, samples = open_scene
    annotate(writer, samples[1])
    with pytest.raises(NuScenesTableError, match="time order"):
        annotate(writer, samples[0])


def test_non_increasing_timestamps_are_rejected(open_scene):
    writer, _, camera, samples = open_scene
    with pytest.raises(NuScenesTableError, match="does not follow the previous key frame"):
        writer.add_sample(START_US + KEY_FRAME_US)
    writer.add_sample_data("CAM_FRONT", camera, samples[1], START_US + KEY_FRAME_US, np.eye(4), "a.jpg", 8, 8, True)
    with pytest.raises(NuScenesTableError, match="does not follow its previous reading"):
        writer.add_sample_data("CAM_FRONT", camera, samples[1], START_US + 1000, np.eye(4), "b.jpg", 8, 8, False)


def test_a_sweep_must_name_the_next_key_frame(open_scene):
    writer, _, camera, samples = open_scene
    writer.add_sample_data("CAM_FRONT", camera, samples[0], START_US, np.eye(4), "k.jpg", 8, 8, True)
    with pytest.raises(NuScenesTableError, match="must name the first key frame after it"):
        writer.add_sample_data("CAM_FRONT", camera, samples[0], START_US + 80_000, np.eye(4), "s.jpg", 8, 8, False)
    writer.add_sample_data("CAM_FRONT", camera, samples[1], START_US + 80_000, np.eye(4), "s.jpg", 8, 8, False)


def test_bad_sensors_poses_and_scene_order_are_rejected(open_scene):
    writer, log, camera, samples = open_scene
    with pytest.raises(NuScenesTableError, match="needs 3x3 intrinsics"):
        writer.add_calibrated_sensor("CAM_BACK", "camera", np.eye(4), None)
    with pytest.raises(NuScenesTableError, match="not one of"):
        writer.add_calibrated_sensor("LIDAR_TOP", "sonar", np.eye(4))
    with pytest.raises(NuScenesTableError, match="is CAM_FRONT, not CAM_BACK"):
        writer.add_sample_data("CAM_BACK", camera, samples[0], START_US, np.eye(4), "k.jpg", 8, 8, True)
    with pytest.raises(NuScenesTableError, match="not a rotation"):
        writer.add_sample_data("CAM_FRONT", camera, samples[0], START_US, np.diag([2.0, 1, 1, 1]), "k.jpg", 8, 8, True)
    with pytest.raises(NuScenesTableError, match="still open"):
        writer.begin_scene("scene-0002", "", log)
    with pytest.raises(NuScenesTableError, match="still open"):
        writer.write()


def test_a_log_without_a_map_cannot_be_written(tmp_path):
    writer = NuScenesWriter(tmp_path)
    writer.add_log("lonely-log", "ego", "2024-05-01", "boston-seaport")
    with pytest.raises(DrivesimError, match="every log needs a map.*lonely-log"):
        writer.write()
    assert not (tmp_path / VERSION).exists()
