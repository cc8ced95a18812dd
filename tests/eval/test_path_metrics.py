"""Path metrics (drivesim/eval/path_metrics.py): Sim(3) alignment, and when ATE and RPE cannot tell a
video that follows its commanded path from one that does not."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import DataError
from drivesim.eval.path_metrics import MIN_BEND_FRACTION, following_note, trajectory_metrics, umeyama

# ---------------------------------------------------------------- umeyama


def _rotation(quaternion: np.ndarray) -> np.ndarray:
    from drivesim.geometry import matrix_from_quaternion

    return matrix_from_quaternion(quaternion)


quaternions = st.lists(st.floats(-1, 1), min_size=4, max_size=4).map(np.array).filter(
    lambda q: np.linalg.norm(q) > 0.2)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**31), count=st.integers(3, 40), scale=st.floats(0.05, 20),
       quaternion=quaternions, shift=st.lists(st.floats(-100, 100), min_size=3, max_size=3).map(np.array))
def test_umeyama_recovers_a_similarity(seed, count, scale, quaternion, shift):
    # Points from a seeded normal cloud: full rank, so the transform is unique.
    source = np.random.default_rng(seed).normal(size=(count, 3)) * 3
    rotation = _rotation(quaternion)
    target = scale * source @ rotation.T + shift
    s, r, t = umeyama(source, target)
    assert s == pytest.approx(scale, rel=1e-6)
    np.testing.assert_allclose(r, rotation, atol=1e-6)
    np.testing.assert_allclose(t, shift, atol=1e-6 * max(1.0, np.abs(shift).max()))
    assert np.linalg.det(r) == pytest.approx(1.0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), quaternion=quaternions)
def test_umeyama_without_scale_fits_a_rigid_motion(seed, quaternion):
    source = np.random.default_rng(seed).normal(size=(10, 3))
    rotation = _rotation(quaternion)
    target = 2.5 * source @ rotation.T  # scaled, but the fit may only rotate and shift
    s, r, _ = umeyama(source, target, with_scale=False)
    assert s == 1.0
    np.testing.assert_allclose(r, rotation, atol=1e-6)  # the best rotation ignores a uniform scale


def test_umeyama_of_a_single_point_moves_it():
    s, r, t = umeyama(np.array([[1.0, 2.0, 3.0]] * 4), np.array([[0.0, 0.0, 1.0]] * 4))
    assert s == 1.0 and np.array_equal(r, np.eye(3))
    np.testing.assert_allclose(t, [-1.0, -2.0, -2.0])


def test_umeyama_rejects_mismatched_points():
    with pytest.raises(DataError, match="source"):
        umeyama(np.zeros((4, 3)), np.zeros((5, 3)))
    with pytest.raises(DataError, match="target"):
        umeyama(np.zeros((4, 3)), np.zeros((4, 2)))


# ---------------------------------------------------------------- when following can be tested


def poses_at(positions: np.ndarray) -> np.ndarray:
    """world_from_ego [N, 4, 4] at the given x, y positions, heading along the path."""
    positions = np.asarray(positions, np.float64)
    heading = np.arctan2(*np.gradient(positions, axis=0)[:, ::-1].T)
    poses = np.tile(np.eye(4), (len(positions), 1, 1))
    poses[:, 0, 0], poses[:, 0, 1] = np.cos(heading), -np.sin(heading)
    poses[:, 1, 0], poses[:, 1, 1] = np.sin(heading), np.cos(heading)
    poses[:, :2, 3] = positions
    return poses


def arc(radius: float, degrees: float, count: int) -> np.ndarray:
    """count x, y points along a left turn of `radius` metres through `degrees`, from the origin heading +x."""
    angle = np.radians(np.linspace(0.0, degrees, count))
    return np.c_[radius * np.sin(angle), radius * (1 - np.cos(angle))]


def line(length: float, count: int) -> np.ndarray:
    return np.c_[np.linspace(0.0, length, count), np.zeros(count)]


def with_height(xy: np.ndarray) -> np.ndarray:
    return np.c_[xy, np.zeros(len(xy))]


def test_three_frames_are_too_short_to_align():
    # Three poses of a sharp turn, all from the video: Sim(3) leaves one angle to compare.
    note = following_note(with_height(arc(6.0, 90.0, 3)), keyframes=3)
    assert note is not None and note.startswith("too short") and "3 of the 3 poses" in note
    # Many frames, but only three of them keyframes (the rest interpolated between them): still too short.
    assert following_note(with_height(arc(6.0, 90.0, 17)), keyframes=3).startswith("too short")


def test_a_straight_path_is_too_straight_to_test_following():
    note = following_note(with_height(line(10.7, 17)), keyframes=17)
    assert note is not None and note.startswith("too straight") and "10.7 m" in note
    # A long, gentle curve (radius 200 m over 10 m) bends by under 2% of its length: straight still.
    assert following_note(with_height(arc(200.0, 3.0, 17)), keyframes=17).startswith("too straight")


def test_a_long_curved_path_tests_following():
    commanded = arc(6.0, 90.0, 17)
    assert following_note(with_height(commanded), keyframes=5) is None
    # There, a path that ignored the turn and drove straight on scores far worse than one that followed it.
    length = np.sum(np.linalg.norm(np.diff(commanded, axis=0), axis=1))
    followed = poses_at(commanded)
    followed[:, :2, 3] += np.random.default_rng(0).normal(scale=0.05, size=commanded.shape)  # odometry noise
    straight = trajectory_metrics(poses_at(line(length, 17)), poses_at(commanded))
    faithful = trajectory_metrics(followed, poses_at(commanded))
    assert straight["ate_m"] > MIN_BEND_FRACTION * length > faithful["ate_m"]
    assert straight["rpe_rot_deg"] > 5 * faithful["rpe_rot_deg"]


def test_a_standing_ego_cannot_test_following():
    assert "stands still" in following_note(np.zeros((9, 3)), keyframes=9)
