"""The store's geometry against nuscenes-devkit: on a log whose cameras fire tens of milliseconds apart
(each image with its own ego pose) and whose boxes are pitched, rolled and moving, every camera's boxes
projected from the store land where the devkit's `get_sample_data` puts them, at 1600x900."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drivesim.data import store
from drivesim.geometry import box_corners
from drivesim.data.ingest import IngestConfig, ingest
from drivesim.data.nuscenes_tables import NuScenesWriter
from drivesim.geometry import (compose, invert, matrix_from_quaternion, matrix_from_yaw, project,
                               quaternion_from_matrix, resize_intrinsics, transform_from, transform_points)
from drivesim.rigs import load_rig

WIDTH, HEIGHT = 1600, 900
KEY_FRAMES = 6
FRAMES = 5  # one clip of the first five key frames (cameras firing after the last sample's time fall outside)
START_US = 1_600_000_000_000_000
ORIGIN = np.array([600.0, 1600.0, 0.0])
SPEED, YAW_RATE = 9.0, 0.2  # m/s, rad/s: a gentle left-hand curve
# Each camera fires this long after the sample's (lidar) time, in microseconds; the reference,
# CAM_FRONT, does too, so a key frame's annotations are not at any camera's time.
FIRES_AFTER_US = {"CAM_FRONT_LEFT": -10_000, "CAM_FRONT": 15_000, "CAM_FRONT_RIGHT": 40_000,
                  "CAM_BACK_LEFT": -25_000, "CAM_BACK": 30_000, "CAM_BACK_RIGHT": 5_000}
CAR_SIZE = (1.9, 4.5, 1.7)  # wlh


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """world_from_body: yaw about z, then pitch about y, then roll about x."""
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    pitch_m = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    roll_m = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ pitch_m @ roll_m


def ego_pose(seconds: float) -> np.ndarray:
    """world_from_ego along the curve, pitching and rolling a little as on a real road."""
    yaw = YAW_RATE * seconds
    position = ORIGIN + [SPEED / YAW_RATE * np.sin(yaw), SPEED / YAW_RATE * (1 - np.cos(yaw)), 0.1 * seconds]
    pose = np.eye(4)
    pose[:3, :3] = _rotation(yaw, 0.03 * np.sin(2 * seconds), 0.02 * np.cos(3 * seconds))
    pose[:3, 3] = position
    return pose


def car_boxes(seconds: float, rig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(instance key, centre, rotation wxyz) of one car 12 m out along each camera's axis, driving with
    the ego but drifting, pitched and rolled, and turning on its own."""
    ego = ego_pose(seconds)
    heading = YAW_RATE * seconds
    boxes = []
    for v, camera in enumerate(rig.cameras):
        axis = camera.ego_from_cam[:3, 2]
        azimuth = np.arctan2(axis[1], axis[0])
        offset = np.array([12 * np.cos(azimuth), 12 * np.sin(azimuth), 0.4]) + [0.8 * seconds, -0.5 * seconds, 0]
        centre = ego[:3, 3] + matrix_from_yaw(np.array(heading)) @ offset
        rotation = _rotation(heading + 0.7 * v + 0.4 * seconds, 0.15 + 0.05 * v, -0.1 + 0.2 * seconds)
        boxes.append((f"car-{camera.name}", centre, quaternion_from_matrix(rotation)))
    return boxes


def _write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Noise passes curation's exposure and blur filters; the devkit reads only the size in sample_data.
    pixels = np.random.default_rng(seed).integers(30, 225, (36, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)


def write_log(root: Path) -> Path:
    """A one-scene nuScenes log of key frames only, at 2 Hz, for the six cameras of views/nuscenes.yaml."""
    rig = load_rig("nuscenes")
    writer = NuScenesWriter(root)
    log = writer.add_log("n000-geometry", "n000", "2020-09-13", "singapore-onenorth")
    writer.add_map([log], "maps/geometry.png")
    (root / "maps").mkdir(parents=True)
    Image.new("L", (8, 8)).save(root / "maps" / "geometry.png")
    calibrated = {c.name: writer.add_calibrated_sensor(c.name, "camera", c.ego_from_cam, c.intrinsics)
                  for c in rig.cameras}
    writer.begin_scene("scene-geometry", "Day, curve, cars all around", log)
    for k in range(KEY_FRAMES):
        when = START_US + 500_000 * k
        sample = writer.add_sample(when)
        for camera in rig.cameras:
            fired = when + FIRES_AFTER_US[camera.name]
            filename = f"samples/{camera.name}/geometry__{camera.name}__{fired}.jpg"
            _write_image(root / filename, fired)
            writer.add_sample_data(camera.name, calibrated[camera.name], sample, fired,
                                   ego_pose((fired - START_US) / 1e6), filename, WIDTH, HEIGHT, is_key_frame=True)
        for key, centre, rotation in car_boxes((when - START_US) / 1e6, rig):
            writer.add_annotation(sample, key, "vehicle.car", centre, CAR_SIZE, rotation, 4, ["vehicle.moving"],
                                  num_lidar_pts=20)
    writer.end_scene()
    writer.write()
    return root


@pytest.fixture(scope="module")
def geometry_store(tmp_path_factory) -> tuple[Path, Path]:
    """(log, store): the log ingested at 160x90, 2 Hz, one clip of the first FRAMES key frames."""
    folder = tmp_path_factory.mktemp("geometry")
    logs = write_log(folder / "log")
    out = folder / "store"
    ingest(IngestConfig(dataroot=logs, out=out, width=160, height=90, frames=FRAMES, fps=2.0), progress=False)
    return logs, out


def _pixel_errors(nusc, clip: dict, poses: np.ndarray, rotations: np.ndarray) -> dict[str, list[float]]:
    """Per camera, the largest distance (pixels at 1600x900) between each box's corners projected from the
    store (through `poses` [T, V, 4, 4] and `rotations` [N, 4]) and those of the devkit's boxes."""
    from nuscenes.utils.geometry_utils import view_points

    track_of_instance = {record["token"]: i for i, record in enumerate(nusc.instance)}
    height, width = clip["frames"].shape[2:4]
    errors = {camera: [] for camera in clip["attrs"]["cameras"]}
    for t, sample_data in enumerate(clip["sample_data"]):
        rows = slice(clip["box_offsets"][t], clip["box_offsets"][t + 1])
        corners = box_corners(clip["boxes"][rows].astype(np.float64), rotations[rows])  # [N, 8, 3] world
        tracks = clip["box_track"][rows].tolist()
        for v, camera in enumerate(clip["attrs"]["cameras"]):
            intrinsics = resize_intrinsics(clip["intrinsics"][v].astype(np.float64), WIDTH / width, HEIGHT / height)
            cam_from_world = invert(compose(poses[t, v], clip["ego_from_cam"][v].astype(np.float64)))
            _, boxes, devkit_intrinsics = nusc.get_sample_data(sample_data[v])
            for box in boxes:
                expected = view_points(box.corners(), devkit_intrinsics, normalize=True)[:2].T  # [8, 2]
                track = track_of_instance[nusc.get("sample_annotation", box.token)["instance_token"]]
                mine, _ = project(intrinsics, transform_points(cam_from_world, corners[tracks.index(track)]))
                errors[camera].append(float(np.abs(mine - expected).max()))
    return errors


@pytest.fixture(scope="module")
def stored(geometry_store):
    from nuscenes.nuscenes import NuScenes

    logs, out = geometry_store
    nusc = NuScenes("v1.0-mini", dataroot=str(logs), verbose=False)
    root = store.open_store(out)
    clip = store.read_clip(root, "scene-geometry-0000")
    # The sample_data of every frame and camera, in the store's camera order: frame t is the key frame
    # whose CAM_FRONT image set its timestamp.
    front = {nusc.get("sample_data", s["data"]["CAM_FRONT"])["timestamp"]: s for s in nusc.sample}
    clip["sample_data"] = [[front[int(when)]["data"][camera] for camera in clip["attrs"]["cameras"]]
                           for when in clip["timestamps"]]
    return nusc, clip


def test_store_boxes_project_within_half_a_pixel_of_the_devkits_in_every_camera(stored):
    nusc, clip = stored
    errors = _pixel_errors(nusc, clip, store.camera_poses(clip), store.box_rotations(clip))
    # Every camera sees boxes: its own car at least, in every key frame.
    assert all(len(per_camera) >= FRAMES for per_camera in errors.values()), errors
    worst = {camera: max(per_camera) for camera, per_camera in errors.items()}
    assert max(worst.values()) < 0.5, worst


def test_the_log_tells_each_geometry_shortcut_apart(stored):
    """The reference camera's pose for every camera, yaw-only boxes, or boxes at the reference camera's
    time instead of the annotations' each miss by pixels here."""
    from drivesim.data.nuscenes import BoxTrack

    nusc, clip = stored
    poses, rotations = store.camera_poses(clip), store.box_rotations(clip)
    reference_pose = np.repeat(clip["world_from_ego"][:, None], len(clip["ego_from_cam"]), axis=1)
    yaw_only = quaternion_from_matrix(matrix_from_yaw(clip["boxes"][:, 6].astype(np.float64)))
    at_camera_time = [BoxTrack(nusc, "scene-geometry").oriented_at(int(when)) for when in clip["timestamps"]]
    late = {**clip, "boxes": np.concatenate([boxes for boxes, *_ in at_camera_time])}
    late_rotations = np.concatenate([rotations for _, rotations, *_ in at_camera_time]).astype(np.float64)
    for shortcut, shortcut_poses, shortcut_rotations in ((clip, reference_pose, rotations), (clip, poses, yaw_only),
                                                         (late, poses, late_rotations)):
        errors = _pixel_errors(nusc, shortcut, shortcut_poses, shortcut_rotations)
        assert max(max(per_camera) for per_camera in errors.values()) > 3.0


def test_key_frame_boxes_are_the_annotations_as_written(stored):
    nusc, clip = stored
    rotations = store.box_rotations(clip)
    assert np.all(clip["boxes"][:, 9] == 1.0)
    for t, sample_data in enumerate(clip["sample_data"]):
        sample = nusc.get("sample", nusc.get("sample_data", sample_data[0])["sample_token"])
        rows = range(clip["box_offsets"][t], clip["box_offsets"][t + 1])
        assert len(rows) == len(sample["anns"])
        annotations = [nusc.get("sample_annotation", token) for token in sample["anns"]]
        by_track = {nusc.getind("instance", a["instance_token"]): a for a in annotations}
        for row in rows:
            annotation = by_track[int(clip["box_track"][row])]
            np.testing.assert_allclose(clip["boxes"][row, :3], annotation["translation"], atol=2e-4)
            np.testing.assert_allclose(matrix_from_quaternion(rotations[row]),
                                       matrix_from_quaternion(np.asarray(annotation["rotation"])), atol=1e-6)


def test_world_from_ego_stays_the_reference_cameras_pose(stored):
    _, clip = stored
    front = clip["attrs"]["cameras"].index("CAM_FRONT")
    np.testing.assert_array_equal(clip["world_from_ego"], clip["world_from_ego_cam"][:, front])
    fired = (clip["timestamps"] - START_US) / 1e6
    np.testing.assert_allclose(clip["world_from_ego"], np.stack([ego_pose(s) for s in fired]), atol=1e-9)
    assert not np.allclose(clip["world_from_ego_cam"][:, 0], clip["world_from_ego"], atol=0.1)


def test_the_ingested_store_verifies_clean(geometry_store):
    assert store.verify(geometry_store[1]) == (1, [])


def test_each_camera_keeps_the_ego_pose_of_its_own_image(stored):
    nusc, clip = stored
    for t, sample_data in enumerate(clip["sample_data"]):
        for v, token in enumerate(sample_data):
            record = nusc.get("ego_pose", nusc.get("sample_data", token)["ego_pose_token"])
            written = transform_from(np.asarray(record["translation"]), np.asarray(record["rotation"]))
            np.testing.assert_allclose(clip["world_from_ego_cam"][t, v], written, atol=1e-9)


def test_a_start_frame_copied_from_the_clip_keeps_its_cameras_poses_and_box_rotations(geometry_store, tmp_path):
    from drivesim.scenario.from_clip import copy_start_frame

    _, out = geometry_store
    copied = copy_start_frame(out, "scene-geometry-0000", tmp_path / "start.zarr", frame=2)
    one = store.read_clip(store.open_store(copied), "scene-geometry-0000")
    whole = store.read_clip(store.open_store(out), "scene-geometry-0000")
    rows = slice(whole["box_offsets"][2], whole["box_offsets"][3])
    np.testing.assert_array_equal(one["world_from_ego_cam"], whole["world_from_ego_cam"][2:3])
    np.testing.assert_array_equal(one["box_rotation"], whole["box_rotation"][rows])
