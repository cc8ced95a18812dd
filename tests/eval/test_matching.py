"""Tests for drivesim.eval.matching: the Sampson error of matches under a fundamental matrix (exact
correspondences, offsets off the epipolar line, a rectified pair, bad inputs) and SIFT matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError, DataError
from drivesim.eval.matching import match_features, sampson_error
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


# ---------------------------------------------------------------- SIFT matches


def _texture(height: int = 128, width: int = 160) -> np.ndarray:
    """Blurred noise: blobs at many scales, which SIFT finds and tells apart."""
    import cv2

    noise = np.random.default_rng(0).random((height, width)).astype(np.float32)
    blurred = cv2.GaussianBlur(noise, (0, 0), 2.0)
    gray = (255 * (blurred - blurred.min()) / (blurred.max() - blurred.min())).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=2)


def test_match_features_is_deterministic_and_finds_the_shift():
    image = _texture()
    moved = np.roll(image, 3, axis=1)  # the same picture 3 px to the right
    first = match_features(image, moved)
    second = match_features(image, moved)
    assert first[0].shape == first[1].shape and first[0].shape[1] == 2 and len(first[0]) > 50
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    shift = first[1] - first[0]
    assert np.median(shift[:, 0]) == pytest.approx(3.0, abs=0.1) and np.median(np.abs(shift[:, 1])) < 0.1
    fewer = match_features(image, moved, max_features=30)
    assert 8 <= len(fewer[0]) <= 30
    with pytest.raises(DataError, match="image_b"):
        match_features(image, image.astype(np.float32))
    with pytest.raises(ConfigError, match="ratio"):
        match_features(image, image, ratio=1.5)
