"""Reading nuScenes-format logs: the hand-written tiny set proves nothing depends on drivesim's own logs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data import nuscenes as logs
from drivesim.errors import DataError
from tests.data.conftest import retime

KEY0, SWEEP, KEY1 = ("5d000000000000000000000000000001", "5d000000000000000000000000000002",
                     "5d000000000000000000000000000003")


def test_timeline_takes_key_frames_and_sweeps_at_the_asked_rate(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    timeline = logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=4)
    assert [row[0] for row in timeline.tokens] == [KEY0, SWEEP, KEY1]
    assert np.diff(timeline.timestamps).tolist() == [250_000, 250_000]
    assert timeline.description == "Night, rain, parked car, peds"


def test_timeline_at_2_hz_keeps_only_key_frames(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    assert [row[0] for row in logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=2).tokens] == [KEY0, KEY1]


def test_a_rate_faster_than_the_cameras_is_refused(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    with pytest.raises(DataError, match="--fps 12 is faster than the log's CAM_FRONT"):
        logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=12)


def test_boxes_are_interpolated_between_key_frames(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    track = logs.BoxTrack(nusc, "scene-tiny")
    t0 = track.times[0]
    boxes, categories, tracks = track.at(t0 + 250_000)
    by_category = {logs.CATEGORIES[c]: box for c, box in zip(categories, boxes)}
    pedestrian, car = by_category["human.pedestrian.adult"], by_category["vehicle.car"]
    np.testing.assert_allclose(pedestrian[:3], [615.0, 1595.35, 0.9], atol=1e-4)
    np.testing.assert_allclose(pedestrian[7:9], [0.0, 1.4], atol=1e-4)  # velocity from the devkit
    np.testing.assert_allclose(car[:7], [610.0, 1598.0, 0.9, 1.9, 4.6, 1.7, 0.0], atol=1e-4)
    assert pedestrian[9] == 0.0 and car[9] == 0.0  # interpolated, not annotated
    key_boxes, _, key_tracks = track.at(t0)
    assert key_boxes[:, 9].tolist() == [1.0, 1.0]
    assert sorted(tracks.tolist()) == sorted(key_tracks.tolist())  # the same two tracks throughout


def _yaw_quaternion(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def test_yaw_is_interpolated_along_the_shorter_arc(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    track = logs.BoxTrack(nusc, "scene-tiny")
    first, second = track.key_frames
    instance = next(iter(first.boxes))
    first.rotations[instance], second.rotations[instance] = _yaw_quaternion(np.pi - 0.1), _yaw_quaternion(-np.pi + 0.1)
    boxes, _, tracks = track.at(track.times[0] + 250_000)
    yaw = boxes[tracks == track.instance_index[instance]][0, 6]
    assert abs(abs(yaw) - np.pi) < 1e-5  # through +-pi, not through 0


def test_full_rotations_are_kept_on_key_frames_and_slerped_between(tiny_logs):
    from pyquaternion import Quaternion

    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    track = logs.BoxTrack(nusc, "scene-tiny")
    first, second = track.key_frames
    instance = next(iter(first.boxes))
    pitched = Quaternion(axis=[0.3, 1.0, 0.2], angle=0.4)
    rolled = Quaternion(axis=[1.0, -0.2, 0.5], angle=-0.3) * pitched
    first.rotations[instance], second.rotations[instance] = pitched.q, rolled.q
    for when, expected in ((track.times[0], pitched), (track.times[1], rolled),
                           (track.times[0] + 150_000, Quaternion.slerp(pitched, rolled, 0.3))):
        boxes, rotations, _, tracks = track.oriented_at(when)
        mine = rotations[tracks == track.instance_index[instance]][0].astype(np.float64)
        np.testing.assert_allclose(Quaternion(mine).rotation_matrix, expected.rotation_matrix, atol=1e-6)
        row = boxes[tracks == track.instance_index[instance]][0]
        heading = expected.rotation_matrix[:, 0]  # the yaw column is the heading of the box's x axis
        assert row[6] == pytest.approx(np.arctan2(heading[1], heading[0]), abs=1e-5)


def test_calibration_is_rescaled_to_the_stored_size(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    intrinsics, ego_from_cam = logs.calibration(nusc, [KEY0], (160, 90))
    # 320x180 -> 160x90: focal halves; the principal point keeps its place between pixel centres.
    np.testing.assert_allclose(intrinsics[0], [[126.64, 0, (163.26 + 0.5) / 2 - 0.5],
                                               [0, 126.64, (98.3 + 0.5) / 2 - 0.5], [0, 0, 1]], rtol=1e-5)
    # The camera looks along ego +x from 1.7 m ahead of the rear axle.
    np.testing.assert_allclose(ego_from_cam[0, :3, 2], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(ego_from_cam[0, :3, 3], [1.70, 0.01, 1.51], atol=1e-6)


def test_images_are_resized_and_bad_images_are_named(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    path = logs.image_path(nusc, KEY0)
    assert logs.load_image(path, (96, 54)).shape == (54, 96, 3)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DataError, match=f"{path}: corrupt image"):
        logs.load_image(path, (96, 54))
    path.unlink()
    with pytest.raises(FileNotFoundError, match=str(path)):
        logs.load_image(path, (96, 54))


def test_a_missing_table_is_named(tiny_logs):
    (tiny_logs / "v1.0-mini" / "sample_data.json").unlink()
    with pytest.raises(DataError, match="sample_data.json: table missing"):
        logs.open_log(tiny_logs, "v1.0-mini")


def test_a_truncated_table_is_named(tiny_logs):
    table = tiny_logs / "v1.0-mini" / "ego_pose.json"
    table.write_text(table.read_text()[:-40])
    with pytest.raises(DataError, match="ego_pose.json: not valid JSON"):
        logs.open_log(tiny_logs, "v1.0-mini")


def test_an_unknown_version_lists_the_versions_there(tiny_logs):
    with pytest.raises(DataError, match=r"--version v1.0-trainval: .* \(versions in .*: v1.0-mini\)"):
        logs.open_log(tiny_logs, "v1.0-trainval")


def test_cameras_come_in_the_nuscenes_rig_order(synthetic_logs):
    nusc = logs.open_log(synthetic_logs, "v1.0-mini")
    assert logs.camera_channels(nusc) == list(logs.CAMERA_ORDER)


def test_key_frame_boxes_equal_the_devkit_annotations(synthetic_logs):
    nusc = logs.open_log(synthetic_logs, "v1.0-mini")
    scene = nusc.scene[0]
    sample = nusc.get("sample", scene["first_sample_token"])
    boxes, categories, tracks = logs.BoxTrack(nusc, scene["name"]).at(sample["timestamp"])
    expected = {nusc.get("sample_annotation", a)["instance_token"]: nusc.get_box(a) for a in sample["anns"]}
    instance_of_track = {i: record["token"] for i, record in enumerate(nusc.instance)}
    assert len(boxes) == len(expected) > 0
    for box, category, track in zip(boxes, categories, tracks):
        reference = expected[instance_of_track[int(track)]]
        np.testing.assert_allclose(box[:3], reference.center, atol=1e-3)
        np.testing.assert_allclose(box[3:6], reference.wlh, atol=1e-5)
        assert abs((box[6] - reference.orientation.yaw_pitch_roll[0] + np.pi) % (2 * np.pi) - np.pi) < 1e-4
        assert logs.CATEGORIES[category] == reference.name


def test_synthetic_logs_give_lanes_and_road_edges_near_the_ego(synthetic_logs):
    nusc = logs.open_log(synthetic_logs, "v1.0-mini")
    timeline = logs.scene_timeline(nusc, nusc.scene[0]["name"], list(logs.CAMERA_ORDER), fps=12)
    poses = logs.world_from_ego(nusc, [row[timeline.reference] for row in timeline.tokens])
    points, offsets, types = logs.polylines_near(str(synthetic_logs), timeline.location, poses, radius=40.0)
    kinds = {logs.POLY_TYPES[t] for t in types}
    assert {"lane", "road_edge", "lane_divider"} <= kinds
    distance = np.linalg.norm(points[:, None, :2] - poses[None, :, :2, 3], axis=-1).min(axis=1)
    assert distance.max() <= 40.0 + 1e-3
    assert offsets[0] == 0 and offsets[-1] == len(points) and np.all(np.diff(offsets) >= 2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=0, max_size=30),
       st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=5),
       st.floats(0.5, 40))
def test_polyline_pieces_are_near_runs_of_the_original(points, centres, radius):
    line, centres = np.asarray(points, np.float64).reshape(-1, 2), np.asarray(centres, np.float64)
    pieces = logs._runs_near(line, centres, radius)
    rows = {tuple(p) for p in line.tolist()}
    for piece in pieces:
        assert len(piece) >= 2
        assert np.linalg.norm(piece[:, None] - centres[None], axis=-1).min(axis=1).max() <= radius
        assert all(tuple(p) in rows for p in piece.tolist())
    assert sum(len(p) for p in pieces) <= len(line)


def test_frames_a_few_microseconds_short_of_the_period_are_all_kept(tiny_logs):
    retime(tiny_logs, 99_997)  # three 10 Hz frames spanning 199 994 us
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    timeline = logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=10)
    assert [row[0] for row in timeline.tokens] == [KEY0, SWEEP, KEY1]
    assert np.diff(timeline.timestamps).tolist() == [99_997, 99_997]


def test_a_camera_a_few_percent_slower_than_the_fps_keeps_every_frame(tiny_logs):
    retime(tiny_logs, 104_000)  # 9.6 Hz resampled at 10: no frame is lost to drift
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    assert [row[0] for row in logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=10).tokens] == \
        [KEY0, SWEEP, KEY1]


@pytest.mark.parametrize("step_us, rate", [(99_997, 10.0), (250_000, 4.0), (83_333, 12.0), (133_333, 7.5)])
def test_the_camera_rate_is_measured_and_whole_rates_are_kept_whole(tiny_logs, step_us, rate):
    retime(tiny_logs, step_us)
    assert logs.scene_rate(logs.open_log(tiny_logs, "v1.0-mini"), "scene-tiny", ["CAM_FRONT"]) == rate


def test_ego_poses_around_a_frame_are_its_neighbours(tiny_logs):
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    times = logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=4).timestamps
    around, poses = logs.ego_poses_around(nusc, "scene-tiny", "CAM_FRONT", int(times[1]))
    assert around.tolist() == [times[0], times[2]]
    np.testing.assert_allclose(poses[:, 0, 3], [600.0, 602.0])
    assert logs.ego_poses_around(nusc, "scene-tiny", "CAM_FRONT", int(times[0]))[0].tolist() == [times[0], times[1]]
    assert logs.ego_poses_around(nusc, "scene-tiny", "CAM_FRONT", int(times[0]) + 5) is None


def test_a_camera_firing_after_the_last_samples_lidar_time_keeps_its_last_key_frame(tiny_logs):
    import json

    # nuScenes' sample time is the lidar's; a camera fires when the sweep passes it, up to ~40 ms later.
    path = tiny_logs / "v1.0-mini" / "sample.json"
    samples = json.loads(path.read_text())
    for sample in samples:
        sample["timestamp"] -= 20_000
    path.write_text(json.dumps(samples))
    nusc = logs.open_log(tiny_logs, "v1.0-mini")
    assert [row[0] for row in logs.scene_timeline(nusc, "scene-tiny", ["CAM_FRONT"], fps=4).tokens] == \
        [KEY0, SWEEP, KEY1]
