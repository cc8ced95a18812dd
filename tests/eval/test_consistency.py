"""Tests for drivesim.eval.consistency: Sampson error, SIFT matching, cross-view and temporal Sampson
error on a small synthetic drive, and the clip-store report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError, DataError
from drivesim.eval.consistency import (
    consistency_report,
    cross_view_sampson,
    match_features,
    sampson_error,
    temporal_sampson,
)
from drivesim.geometry import fundamental_matrix, invert, project, transform_from, transform_points

FAST = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------- strategies: two cameras and points both see

coordinate = st.floats(-1.0, 1.0, allow_nan=False)
unit_quaternions = (st.tuples(coordinate, coordinate, coordinate, coordinate)
                    .filter(lambda q: math.hypot(*q) > 0.1)
                    .map(lambda q: np.array(q) / math.hypot(*q)))
baselines = st.tuples(*[st.floats(-3.0, 3.0)] * 3).map(np.array).filter(lambda t: np.linalg.norm(t) > 0.05)
intrinsics = st.builds(lambda fx, aspect, cx, cy: np.array([[fx, 0.0, cx], [0.0, fx * aspect, cy], [0.0, 0.0, 1.0]]),
                       st.floats(100.0, 2000.0), st.floats(0.8, 1.25), st.floats(0.0, 1600.0), st.floats(0.0, 900.0))
# (x / z, y / z, z): inside a 90 degree cone in front of camera a, 1 to 100 m away.
points_a = st.lists(st.tuples(st.floats(-1.0, 1.0), st.floats(-1.0, 1.0), st.floats(1.0, 100.0)),
                    min_size=1, max_size=20).map(np.array)


def _views(k_a, k_b, quaternion, baseline, points):
    """(F, pixels in a, pixels in b, epipole in a, epipole in b) of points (x, y as a fraction of z) in front
    of camera a, keeping those camera b also sees in front of it."""
    cam_b_from_cam_a = transform_from(baseline, quaternion)
    cam_a = np.stack([points[:, 0] * points[:, 2], points[:, 1] * points[:, 2], points[:, 2]], axis=1)
    cam_b = transform_points(cam_b_from_cam_a, cam_a)
    seen = cam_b[:, 2] > 0.1
    pixels_a, _ = project(k_a, cam_a[seen])
    pixels_b, _ = project(k_b, cam_b[seen])
    F = fundamental_matrix(k_a, k_b, cam_b_from_cam_a)
    return F, pixels_a, pixels_b, _epipole(k_a, invert(cam_b_from_cam_a)), _epipole(k_b, cam_b_from_cam_a)


def _epipole(k, cam_from_other):
    """Where the other camera's centre projects (None when at infinity)."""
    centre = cam_from_other[:3, 3]
    return None if abs(centre[2]) < 1e-9 else (k @ centre)[:2] / (k @ centre)[2]


def _far_from(pixels, epipole, distance):
    """Rows of pixels at least `distance` from the epipole: there Sampson error is undefined (0 / 0)."""
    return np.ones(len(pixels), bool) if epipole is None else np.linalg.norm(pixels - epipole, axis=1) >= distance


# ---------------------------------------------------------------- Sampson error


@FAST
@given(intrinsics, intrinsics, unit_quaternions, baselines, points_a)
def test_sampson_error_is_zero_for_exact_correspondences(k_a, k_b, quaternion, baseline, points):
    F, pixels_a, pixels_b, epipole_a, epipole_b = _views(k_a, k_b, quaternion, baseline, points)
    keep = _far_from(pixels_a, epipole_a, 1.0) & _far_from(pixels_b, epipole_b, 1.0)
    assume(keep.any())
    error = sampson_error(F, pixels_a[keep], pixels_b[keep])
    assert error.shape == (keep.sum(),)
    assert np.all(error < 1e-6)


@FAST
@given(intrinsics, intrinsics, unit_quaternions, baselines, points_a)
def test_sampson_error_grows_with_an_offset_off_the_epipolar_line(k_a, k_b, quaternion, baseline, points):
    """Point b moved d px along the normal of its epipolar line: the error rises with d, stays within d
    (moving b back is one way to fix the match), and matches the optimal correction (Hartley-Sturm)."""
    import cv2

    F, pixels_a, pixels_b, epipole_a, epipole_b = _views(k_a, k_b, quaternion, baseline, points)
    keep = _far_from(pixels_a, epipole_a, 100.0) & _far_from(pixels_b, epipole_b, 100.0)
    assume(keep.any())
    pixels_a, pixels_b = pixels_a[keep], pixels_b[keep]
    line_b = np.c_[pixels_a, np.ones(len(pixels_a))] @ F.T
    normal = line_b[:, :2] / np.linalg.norm(line_b[:, :2], axis=1, keepdims=True)
    errors = []
    for offset in (0.25, 0.5, 1.0, 2.0):
        moved = pixels_b + offset * normal
        error = sampson_error(F, pixels_a, moved)
        assert np.all(error <= offset * (1 + 1e-6))
        optimal_a, optimal_b = cv2.correctMatches(F, pixels_a[None], moved[None])
        optimal = np.sqrt(((optimal_a[0] - pixels_a) ** 2).sum(1) + ((optimal_b[0] - moved) ** 2).sum(1))
        np.testing.assert_allclose(error, optimal, rtol=0.05, atol=1e-3)
        errors.append(error)
    assert np.all(np.diff(np.stack(errors), axis=0) > 0)


def test_sampson_error_of_a_rectified_pair_is_the_offset_over_root_two():
    """Side-by-side cameras, same K: epipolar lines are image rows; a point d rows off scores d / sqrt(2),
    the cheapest fix moving each point d / 2 (so the sqrt form reads as pixels of total correction)."""
    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    F = fundamental_matrix(k, k, transform_from(np.array([-0.5, 0.0, 0.0]), np.array([1.0, 0.0, 0.0, 0.0])))
    pixels_a = np.array([[100.0, 50.0], [320.0, 240.0], [600.0, 400.0]])
    pixels_b = pixels_a - [[40.0, 0.0]]
    np.testing.assert_allclose(sampson_error(F, pixels_a, pixels_b), 0.0, atol=1e-9)
    for offset in (0.5, 1.0, 3.0):
        np.testing.assert_allclose(sampson_error(F, pixels_a, pixels_b + [[0.0, offset]]), offset / math.sqrt(2),
                                   rtol=1e-9)


def test_sampson_error_names_bad_inputs():
    with pytest.raises(DataError, match="F"):
        sampson_error(np.eye(2), np.zeros((1, 2)), np.zeros((1, 2)))
    with pytest.raises(DataError, match="points_b"):
        sampson_error(np.eye(3), np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(DataError, match="pair up"):
        sampson_error(np.eye(3), np.zeros((2, 2)), np.zeros((3, 2)))
    assert sampson_error(np.eye(3), np.zeros((0, 2)), np.zeros((0, 2))).shape == (0,)


# ---------------------------------------------------------------- a small synthetic drive at SIFT-friendly size


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """`drivesim synth` (front3 rig, 0.5 s, 448x256) ingested as one 7-frame clip: a clip store."""
    from drivesim.data.ingest import IngestConfig, ingest
    from drivesim.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("consistency")
    generate(SynthConfig(out=root / "logs", scenes=1, seconds=0.5, width=448, height=256, fps=12, seed=0,
                         rig="front3"), progress=False)
    ingest(IngestConfig(dataroot=root / "logs", out=root / "store", width=448, height=256, frames=7),
           progress=False)
    return root / "store"


@pytest.fixture(scope="module")
def clip(drive) -> dict:
    from drivesim.data.store import open_store, read_clip, stored_clip_ids

    (clip_id,) = stored_clip_ids(drive)
    return read_clip(open_store(drive), clip_id, ("frames", "intrinsics", "ego_from_cam"))


@pytest.fixture(scope="module")
def report(drive) -> dict:
    return consistency_report(drive)


def test_match_features_is_deterministic_and_finds_the_overlap(clip):
    frames = clip["frames"]
    first = match_features(frames[0, 1], frames[1, 1])
    second = match_features(frames[0, 1], frames[1, 1])
    assert first[0].shape == first[1].shape and first[0].shape[1] == 2 and len(first[0]) > 100
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    fewer = match_features(frames[0, 1], frames[1, 1], max_features=100)
    assert 8 <= len(fewer[0]) <= 100
    with pytest.raises(DataError, match="image_b"):
        match_features(frames[0, 1], frames[0, 1].astype(np.float32))
    with pytest.raises(ConfigError, match="ratio"):
        match_features(frames[0, 1], frames[0, 1], ratio=1.5)


def test_report_of_a_real_clip_is_small(report):
    assert report["cameras"] == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    assert report["frames"] == 7 and report["size"] == [448, 256]
    cross, temporal = report["cross_view"], report["temporal"]
    assert list(cross["pairs"]) == ["CAM_FRONT_LEFT-CAM_FRONT", "CAM_FRONT-CAM_FRONT_RIGHT"]
    assert cross["note"] is None and cross["measured"] >= 10 and cross["matches"] >= 100
    assert cross["cse"] < 0.5, cross
    assert all(pair["cse"] < 0.75 for pair in cross["pairs"].values()), cross
    assert temporal["note"] is None and temporal["measured"] == 18 and temporal["skipped"] == 0
    assert temporal["tse"] < 0.5 and temporal["inlier_ratio"] > 0.5, temporal
    json.dumps(report)  # plain types: the report goes into JSON files as it is


def test_cross_view_error_is_large_when_views_are_swapped(clip, report):
    frames, names = clip["frames"], ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    swapped = frames[:, [2, 1, 0]]  # left and right corner cameras trade images
    result = cross_view_sampson(swapped, clip["intrinsics"], clip["ego_from_cam"], cameras=names)
    assert result["note"] is None and result["measured"] >= 1
    assert result["cse"] > 10 * report["cross_view"]["cse"] and result["cse"] > 3.0, result
    # The middle view 4 rows low, as if its camera were tilted: the same content still matches, now off
    # the nearly horizontal epipolar lines by about 4 px, which reads as about 4 / sqrt(2).
    shifted = frames[:3].copy()
    shifted[:, 1] = np.roll(frames[:3, 1], 4, axis=1)
    result = cross_view_sampson(shifted, clip["intrinsics"], clip["ego_from_cam"])
    assert result["skipped"] == 0 and 0.5 * 4 / math.sqrt(2) < result["cse"] < 4.0, result
    # Named pairs and index pairs are the same pairs.
    by_name = cross_view_sampson(frames[:2], clip["intrinsics"], clip["ego_from_cam"], cameras=names,
                                 pairs=[("CAM_FRONT_LEFT", "CAM_FRONT")])
    by_index = cross_view_sampson(frames[:2], clip["intrinsics"], clip["ego_from_cam"], cameras=names,
                                  pairs=[(0, 1)])
    assert by_name == by_index and list(by_name["pairs"]) == ["CAM_FRONT_LEFT-CAM_FRONT"]


def test_temporal_error_is_large_for_unrelated_or_wobbling_frames(clip, report):
    import cv2

    frames = clip["frames"][:4, 1:]  # 4 frames of two cameras keep it quick
    unrelated = frames.copy()
    unrelated[1::2] = frames[1::2, ::-1]  # every other frame from the other camera
    result = temporal_sampson(unrelated)
    real = report["temporal"]["tse"]
    assert result["note"] is None and result["tse"] > 5 * real, (result, real)
    # A non-rigid wobble, different every frame: no single epipolar geometry explains it.
    height, width = frames.shape[2:4]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)

    def wobble(image, phase):
        return cv2.remap(image, cols + 3 * np.sin(rows / 10 + phase), rows + 3 * np.sin(cols / 15 + phase),
                         cv2.INTER_LINEAR)

    wobbling = np.stack([[wobble(frames[t, v], 1.7 * t) for v in range(2)] for t in range(len(frames))])
    result = temporal_sampson(wobbling, cameras=["CAM_FRONT", "CAM_FRONT_RIGHT"])
    assert result["note"] is None and result["tse"] > 5 * real, (result, real)
    assert result["inlier_ratio"] < report["temporal"]["inlier_ratio"]
    assert set(result["cameras"]) == {"CAM_FRONT", "CAM_FRONT_RIGHT"}


def test_noise_frames_have_no_matches_and_say_so():
    noise = np.random.default_rng(0).integers(0, 256, (3, 1, 128, 160, 3), dtype=np.uint8)
    result = temporal_sampson(noise)
    assert math.isnan(result["tse"]) and result["skipped"] == 2 and "fewer than 8" in result["note"]


def test_a_repeated_frame_or_repeated_noise_is_measured_without_raising(clip):
    # Every point matches itself: degenerate for F, and which OpenCV versions raise on it changes.
    for frame in (clip["frames"][0, 1], np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)):
        result = temporal_sampson(np.repeat(frame[None, None], 3, axis=0))
        assert result["measured"] + result["skipped"] == 2


def test_an_opencv_error_skips_the_pair_and_is_counted(clip, monkeypatch):
    import cv2

    def fail(*args, **kwargs):
        raise cv2.error("OpenCV(test) findFundamentalMat: (-215:Assertion failed) in function 'solvePoly'")

    monkeypatch.setattr(cv2, "findFundamentalMat", fail)
    result = temporal_sampson(clip["frames"][:3, 1:], cameras=["CAM_FRONT", "CAM_FRONT_RIGHT"])
    assert math.isnan(result["tse"]) and result["skipped"] == 4 and result["solver_errors"] == 4
    assert result["solver_error"].startswith("cv2.error: OpenCV(test) findFundamentalMat")
    assert "OpenCV failed on it" in result["note"]
    assert result["cameras"]["CAM_FRONT"]["solver_errors"] == 2
    # Cross-view scores under the calibration's F, no fit: it still measures.
    cross = cross_view_sampson(clip["frames"][:1], clip["intrinsics"], clip["ego_from_cam"])
    assert cross["note"] is None and math.isfinite(cross["cse"])


def test_blank_frames_give_nan_and_a_note(clip):
    blank = np.zeros((2, 3, 64, 96, 3), np.uint8)
    points_a, points_b = match_features(blank[0, 0], blank[0, 1])
    assert points_a.shape == points_b.shape == (0, 2)
    cross = cross_view_sampson(blank, clip["intrinsics"], clip["ego_from_cam"])
    temporal = temporal_sampson(np.full((3, 2, 64, 96, 3), 128, np.uint8))
    for result, key in ((cross, "cse"), (temporal, "tse")):
        assert math.isnan(result[key]) and math.isnan(result["median"]) and result["matches"] == 0
        assert result["measured"] == 0 and result["skipped"] > 0 and "featureless" in result["note"]
    assert math.isnan(temporal["inlier_ratio"])
    one_frame = temporal_sampson(blank[:1])
    assert math.isnan(one_frame["tse"]) and "no consecutive frames" in one_frame["note"]
    one_view = cross_view_sampson(blank[:, :1], clip["intrinsics"][:1], clip["ego_from_cam"][:1])
    assert math.isnan(one_view["cse"]) and "one view" in one_view["note"]


def test_report_reads_a_rollout_folder_and_checks_its_inputs(drive, clip, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "rollout.zarr").symlink_to(drive, target_is_directory=True)
    result = consistency_report(run, frame_step=6, rig="front3")  # frames 0 and 6 only
    assert result["frame_step"] == 6 and result["temporal"]["measured"] == 3
    assert list(result["cross_view"]["pairs"]) == ["CAM_FRONT_LEFT-CAM_FRONT", "CAM_FRONT-CAM_FRONT_RIGHT"]
    with pytest.raises(DataError, match="no clip 'nope'"):
        consistency_report(drive, clip_id="nope")
    with pytest.raises(DataError, match="not a clip store"):
        consistency_report(tmp_path)
    with pytest.raises(ConfigError, match="frame_step"):
        consistency_report(drive, frame_step=0)
    frames, k, pose = clip["frames"][:1], clip["intrinsics"], clip["ego_from_cam"]
    with pytest.raises(ConfigError, match=r"pairs\[0\]"):
        cross_view_sampson(frames, k, pose, pairs=[(0, 0)])
    with pytest.raises(ConfigError, match="CAM_BACK"):
        cross_view_sampson(frames, k, pose, pairs=[("CAM_BACK", "CAM_FRONT")],
                           cameras=["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"])
    with pytest.raises(DataError, match="intrinsics"):
        cross_view_sampson(frames, k[:2], pose)
    with pytest.raises(DataError, match="frames"):
        temporal_sampson(frames.astype(np.float32))
    with pytest.raises(ConfigError, match="camera_indices"):
        temporal_sampson(frames, camera_indices=[3])
