"""Trajectory following (drivesim/eval/trajectory.py): two-view motion on rendered image pairs with known
poses, degenerate pairs and OpenCV failures counted as not recovered, the recovered path of a curved
drive through a rendered room, and of a synthetic (straight) drive, against their commands."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError, DataError
from drivesim.eval.path_metrics import FOLLOWING_KEYS, trajectory_metrics
from drivesim.eval.trajectory import recover_ego_trajectory, relative_motion, trajectory_camera, trajectory_report

# ---------------------------------------------------------------- two-view motion on rendered rooms

WIDTH, HEIGHT = 512, 384
K = np.array([[340.0, 0.0, 255.5], [0.0, 340.0, 191.5], [0.0, 0.0, 1.0]])
# The inside of a box around the camera, in camera a's frame (x right, y down, z forward): walls
# from 3 to 20 m away give the depth spread two-view geometry needs (one plane would be degenerate).
ROOM = ((0, -8.0), (0, 8.0), (1, -5.0), (1, 3.0), (2, -6.0), (2, 20.0))
TEXELS_PER_METRE, TEXTURE = 32.0, 1024  # a texture spans 32 m, more than any wall


@pytest.fixture(scope="module")
def textures() -> list[np.ndarray]:
    """One blob texture per wall: random noise summed over octaves, so SIFT finds features at every scale."""
    rng = np.random.default_rng(7)
    out = []
    for _ in ROOM:
        texture = sum(cv2.resize(rng.random((cells, cells), dtype=np.float32), (TEXTURE, TEXTURE),
                                 interpolation=cv2.INTER_CUBIC) for cells in (8, 32, 128))
        texture = (texture - texture.min()) / (texture.max() - texture.min())
        out.append((texture * 255).astype(np.float32))
    return out


def _render(world_from_cam: np.ndarray, textures: list[np.ndarray]) -> np.ndarray:
    """Ray-cast the textured room from one camera pose: grey uint8 [H, W]."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float64)
    pixels = np.stack([cols, rows, np.ones_like(cols)], axis=-1)
    rays = pixels @ np.linalg.inv(K).T @ world_from_cam[:3, :3].T
    origin = world_from_cam[:3, 3]
    nearest = np.full((HEIGHT, WIDTH), np.inf)
    image = np.zeros((HEIGHT, WIDTH), np.float32)
    for (axis, offset), texture in zip(ROOM, textures):
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = (offset - origin[axis]) / rays[..., axis]
        hit = origin + np.nan_to_num(distance, posinf=0.0, neginf=0.0)[..., None] * rays
        u, v = (hit[..., a] * TEXELS_PER_METRE + TEXTURE / 2 for a in range(3) if a != axis)
        sample = cv2.remap(texture, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
        closer = (distance > 0) & (distance < nearest)
        image[closer], nearest[closer] = sample[closer], distance[closer]
    return np.clip(image, 0, 255).astype(np.uint8)


def _angle_degrees(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1.0, 1.0)))


@settings(max_examples=6, deadline=None)
@given(rotation_vector=st.lists(st.floats(-0.08, 0.08), min_size=3, max_size=3).map(np.array),
       direction=st.lists(st.floats(-1, 1), min_size=3, max_size=3).map(np.array).filter(
           lambda d: np.linalg.norm(d) > 0.3),
       length=st.floats(0.5, 1.5))
def test_relative_motion_recovers_a_known_camera_motion(textures, rotation_vector, direction, length):
    world_from_b = np.eye(4)
    world_from_b[:3, :3] = cv2.Rodrigues(rotation_vector)[0]
    world_from_b[:3, 3] = direction / np.linalg.norm(direction) * length
    frame_a, frame_b = _render(np.eye(4), textures), _render(world_from_b, textures)  # camera a is the world

    result = relative_motion(np.repeat(frame_a[..., None], 3, -1), np.repeat(frame_b[..., None], 3, -1), K)

    assert result is not None
    rotation, translation, inliers = result
    b_from_a = np.linalg.inv(world_from_b)
    assert inliers >= 100
    assert np.linalg.norm(translation) == pytest.approx(1.0)
    assert math.degrees(np.linalg.norm(cv2.Rodrigues(rotation @ b_from_a[:3, :3].T)[0])) < 1.0
    assert _angle_degrees(translation, b_from_a[:3, 3]) < 5.0


def _rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, -1)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


@pytest.mark.parametrize("pair", ["blank", "one repeated frame", "one repeated noise frame", "two noise frames"])
def test_relative_motion_of_a_degenerate_pair_is_none(textures, pair):
    # A repeated frame matches every point onto itself: no direction of travel to recover (opencv 4.x's
    # findEssentialMat returns some E for it, 5.1's fails in solvePoly); noise matches itself likewise,
    # and nothing in another noise image.
    room = _rgb(_render(np.eye(4), textures))
    frames = {"blank": (np.full((HEIGHT, WIDTH, 3), 128, np.uint8),) * 2, "one repeated frame": (room, room),
              "one repeated noise frame": (_noise(0), _noise(0)), "two noise frames": (_noise(0), _noise(1))}[pair]
    assert relative_motion(*frames, K) is None


def _failing(name: str):
    def fail(*args, **kwargs):
        raise cv2.error(f"OpenCV(test) {name}: (-215:Assertion failed) in function 'solvePoly'")
    return fail


def test_an_opencv_error_leaves_the_pair_not_recovered(textures, monkeypatch):
    moved = np.eye(4)
    moved[:3, 3] = [0.3, 0.0, 1.0]
    frames = _rgb(_render(np.eye(4), textures)), _rgb(_render(moved, textures))
    assert relative_motion(*frames, K) is not None
    monkeypatch.setattr(cv2, "findEssentialMat", _failing("findEssentialMat"))
    assert relative_motion(*frames, K) is None


def test_relative_motion_rejects_bad_intrinsics():
    flat = np.full((64, 64, 3), 128, np.uint8)
    with pytest.raises(DataError, match="intrinsics"):
        relative_motion(flat, flat, np.zeros((3, 3)))


# ---------------------------------------------------------------- a curved drive through the room


def _arc(radius: float, degrees: float, count: int, straight: bool = False) -> np.ndarray:
    """world_from_cam [count, 4, 4] along a turn of `radius` metres through `degrees` (about the room's
    y axis, which points down), or, straight=True, straight ahead over the same distance."""
    poses = np.tile(np.eye(4), (count, 1, 1))
    for pose, angle in zip(poses, np.radians(np.linspace(0.0, degrees, count))):
        if straight:
            pose[:3, 3] = [0.0, 0.0, radius * angle]
        else:
            pose[:3, :3] = cv2.Rodrigues(np.array([0.0, angle, 0.0]))[0]
            pose[:3, 3] = [radius * (1 - math.cos(angle)), 0.0, radius * math.sin(angle)]
    return poses


@pytest.fixture(scope="module")
def curve(textures) -> dict:
    """Nine frames along a 60 degree turn of radius 8 m (8.4 m long), the camera as the ego."""
    commanded = _arc(8.0, 60.0, 9)
    return {"commanded": commanded, "frames": np.stack([_rgb(_render(pose, textures)) for pose in commanded])}


def test_a_curved_drive_that_follows_its_commands_scores_near_zero(curve):
    result = recover_ego_trajectory(curve["frames"], K, np.eye(4), curve["commanded"], fps=12.0)
    assert result.note is None and result.keyframes == 9 and result.failed_frames == 0
    assert result.ate_m < 0.05 and result.rpe_trans_m < 0.05 and result.rpe_rot_deg < 0.5


def test_a_video_that_ignores_the_turn_scores_far_worse(curve, textures):
    ahead = np.stack([_rgb(_render(pose, textures)) for pose in _arc(8.0, 60.0, 9, straight=True)])
    result = recover_ego_trajectory(ahead, K, np.eye(4), curve["commanded"], fps=12.0)
    assert result.note is None
    assert result.ate_m > 0.2 and result.rpe_rot_deg > 5.0


def test_three_frames_of_the_curve_are_too_short_for_ate_and_rpe(curve):
    result = recover_ego_trajectory(curve["frames"], K, np.eye(4), curve["commanded"], step=4)
    assert list(result.path.indices) == [0, 4, 8] and result.frames_recovered == 1.0
    assert result.note.startswith("too short") and all(getattr(result, key) is None for key in FOLLOWING_KEYS)


# ---------------------------------------------------------------- a synthetic drive

# The nuScenes front camera alone: rendering one camera instead of six keeps the fixture cheap.
FRONT_RIG = """name: front
image_size: {width: 1600, height: 900}
cameras:
  - name: CAM_FRONT
    intrinsics: {fx: 1266.417, fy: 1266.417, cx: 816.267, cy: 491.507}
    translation: [1.70079, 0.01595, 1.51096]
    rotation: [0.499802, -0.503032, 0.499780, -0.497371]
    neighbours: []
"""


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """A rollout-like folder: rollout.zarr holds one 17-frame 448x256 synthetic clip (1.4 s at 12 Hz)."""
    from drivesim.data import synth
    from drivesim.data.ingest import IngestConfig, ingest

    root = tmp_path_factory.mktemp("drive")
    (root / "front.yaml").write_text(FRONT_RIG)
    synth.generate(synth.SynthConfig(out=root / "logs", scenes=1, seconds=1.5, width=448, height=256, fps=12,
                                     seed=0, rig=str(root / "front.yaml")), progress=False)
    folder = root / "rollout"
    ingest(IngestConfig(dataroot=root / "logs", out=folder / "rollout.zarr", width=448, height=256, frames=17),
           progress=False)
    return folder


@pytest.fixture(scope="module")
def clip(drive) -> dict:
    from drivesim.data.store import open_store, read_clip, stored_clip_ids

    store = drive / "rollout.zarr"
    (clip_id,) = stored_clip_ids(store)
    return read_clip(open_store(store), clip_id)


def _recover(clip: dict, frames: np.ndarray) -> dict:
    """The path `frames` (the first len(frames) of the clip's, in any order) show against the clip's commands."""
    return recover_ego_trajectory(frames, clip["intrinsics"][0], clip["ego_from_cam"][0],
                                  clip["world_from_ego"][:len(frames)], fps=12.0)


@pytest.fixture(scope="module")
def followed(clip) -> dict:
    return _recover(clip, clip["frames"][:, 0])


def _raw(result: dict) -> dict:
    """ATE and RPE of a recovered path whatever the path, as trajectory_metrics gives them: what the
    chain of visual motions did, which following_note may withhold from a report."""
    return trajectory_metrics(result.path.estimated_world_from_ego, result.path.commanded_world_from_ego, 12.0)


def test_recovered_path_follows_the_commanded_one(followed):
    assert followed.path_length_m > 5  # the ego really drives: ~10 m in 1.4 s
    assert followed.frames_recovered == 1.0 and followed.failed_frames == 0
    assert followed.solver_errors == 0 and followed.solver_error is None
    assert followed.final_drift_m < 1.5
    raw = _raw(followed)
    assert raw["ate_m"] < 0.5 and raw["ate_scale"] == pytest.approx(1.0, abs=0.1)
    assert raw["rpe_rot_deg"] < 0.5 and raw["rpe_1s_trans_m"] < 1.0
    path = followed.path
    np.testing.assert_allclose(path.estimated_world_from_ego[0], path.commanded_world_from_ego[0],
                               atol=1e-9)  # the path starts where the commands do


def test_a_straight_drive_reports_no_ate_or_rpe(followed):
    # The synthetic drive keeps to its lane: a video that ignored the commands would score as well.
    assert followed.note.startswith("too straight") and "10.7 m" in followed.note
    assert all(getattr(followed, key) is None for key in FOLLOWING_KEYS)


def test_shuffled_frames_do_not_follow(clip, followed):
    order = np.random.default_rng(0).permutation(len(clip["frames"]))
    shuffled, raw = _raw(_recover(clip, clip["frames"][order, 0])), _raw(followed)
    assert shuffled["ate_m"] > max(1.0, 5 * raw["ate_m"])
    assert shuffled["rpe_trans_m"] > 3 * raw["rpe_trans_m"]
    assert shuffled["final_drift_m"] > 3.0


def test_a_blank_frame_holds_the_pose_and_costs_no_drift(clip, followed):
    frames = clip["frames"][:, 0].copy()
    frames[8] = 128
    result = _recover(clip, frames)
    assert result.failed_frames == 1 and not result.path.recovered[8]
    assert result.frames_recovered == pytest.approx(15 / 16)
    poses = result.path.estimated_world_from_ego
    np.testing.assert_array_equal(poses[8], poses[7])
    assert _raw(result)["ate_m"] < 0.5 and result.final_drift_m < 1.5


def test_a_repeated_frame_is_not_recovered_and_raises_nothing(clip):
    result = _recover(clip, np.repeat(clip["frames"][:1, 0], 5, axis=0))
    assert result.failed_frames == 4 and result.frames_recovered == 0.0
    assert result.note.startswith("too short") and result.ate_m is None


def test_opencv_errors_on_every_pair_are_counted_not_raised(clip, monkeypatch):
    monkeypatch.setattr(cv2, "findEssentialMat", _failing("findEssentialMat"))
    result = _recover(clip, clip["frames"][:5, 0])
    assert result.failed_frames == 4 and result.solver_errors == 4
    assert result.solver_error.startswith("cv2.error: OpenCV(test) findEssentialMat")
    assert result.note.startswith("too short") and result.rpe_trans_m is None


def test_step_uses_every_other_frame(clip):
    result = recover_ego_trajectory(clip["frames"][:, 0], clip["intrinsics"][0], clip["ego_from_cam"][0],
                                    clip["world_from_ego"], step=2)
    assert list(result.path.indices) == list(range(0, 17, 2))
    assert result.rpe_1s_trans_m is None  # no rate given
    assert result.failed_frames == 0 and _raw(result)["ate_m"] < 0.5


def test_report_reads_a_rollout_folder_or_its_store(drive, followed):
    report = trajectory_report(drive)
    assert trajectory_report(drive / "rollout.zarr", step=8).store == report.store  # step 8: 3 frames, quick
    # The report carries the paths it measured: the same as recovering them from the arrays.
    assert report.path.commanded_world_from_ego.shape == (17, 4, 4)
    np.testing.assert_array_equal(report.path.estimated_world_from_ego, followed.path.estimated_world_from_ego)
    assert report.camera == "CAM_FRONT" and report.frames == 17 and report.step == 1
    assert report.fps == pytest.approx(12.0, rel=1e-3)
    for key in ("final_drift_m", "frames_recovered", "path_length_m"):
        assert getattr(report, key) == pytest.approx(getattr(followed, key))
    assert report.note == followed.note and report.ate_m is None


def test_report_names_what_is_wrong(drive, tmp_path):
    with pytest.raises(ConfigError, match="CAM_BACK"):
        trajectory_report(drive, camera="CAM_BACK")
    with pytest.raises(ConfigError, match="nope"):
        trajectory_report(drive, clip_id="nope")
    with pytest.raises(ConfigError, match="step"):
        trajectory_report(drive, step=0)
    with pytest.raises(DataError, match="not a clip store"):
        trajectory_report(tmp_path)


def test_commanded_poses_must_match_the_frames(clip):
    with pytest.raises(DataError, match="world_from_ego"):
        recover_ego_trajectory(clip["frames"][:, 0], clip["intrinsics"][0], clip["ego_from_cam"][0],
                               clip["world_from_ego"][:-1])


def test_the_default_camera_is_the_front_one():
    assert trajectory_camera(["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_BACK"]) == "CAM_FRONT"
    assert trajectory_camera(["CAM_FRONT_LEFT", "CAM_FRONT_WIDE", "CAM_BACK"]) == "CAM_FRONT_WIDE"
    assert trajectory_camera(["0", "1"]) == "0"
