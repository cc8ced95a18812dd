"""Trajectory following: does a generated video move the way its scenario commanded?

Visual odometry on one camera (SIFT matches, essential matrix with the known intrinsics, pose
recovery) gives the camera's rotation and the direction of its translation between frames. The
monocular scale is unknowable from the images, so each step takes its length from the commanded
motion; rotation and heading come from the video alone. The recovered ego path is then compared
with the commanded one (path_metrics.py): ATE after a Sim(3) (Umeyama) alignment, relative pose
errors per step and per second, drift at the end, and the share of frames whose motion could be
recovered at all. A frame pair whose motion cannot be recovered, for too few matches or because
OpenCV's solvers fail on it, counts as not recovered; it never stops the trajectory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError
from drivesim.eval.failures import describe, pair_failures
from drivesim.eval.path_metrics import FOLLOWING_KEYS, following_note, trajectory_metrics
from drivesim.geometry import invert

__all__ = ["DEFAULT_CAMERA", "EgoPath", "TrajectoryFollowing", "TrajectoryReport", "relative_motion",
           "recover_ego_trajectory", "trajectory_camera", "trajectory_report"]

MIN_MATCHES = 8        # below this the essential matrix is not worth estimating (5-point RANSAC needs margin)
RATIO = 0.75           # Lowe's ratio test: keep a match only if clearly better than the second best
RANSAC_PIXELS = 0.5    # epipolar distance of an inlier: SIFT locates to a fraction of a pixel, and at 12 fps
                       # the few-pixel shifts between frames drown in a looser bound
RANSAC_CONFIDENCE = 0.999
MIN_PARALLAX_PIXELS = 4.0  # median shift of matches, rotation undone, that a keyframe needs
DEFAULT_CAMERA = "CAM_FRONT"


# ---------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class EgoPath:
    """The frames used, and at each the commanded and the recovered ego pose."""

    indices: np.ndarray                   # int [N]: the frames used
    commanded_world_from_ego: np.ndarray  # [N, 4, 4]
    estimated_world_from_ego: np.ndarray  # [N, 4, 4]: recovered from the video
    recovered: np.ndarray                 # bool [N]: its motion from the last keyframe was recovered
    keyframe: np.ndarray                  # bool [N]: its pose comes straight from a visual motion
    inliers: np.ndarray                   # int [N]: 0 where not recovered


@dataclass(frozen=True, eq=False)
class TrajectoryFollowing:
    """The path one camera's video shows against the commanded one, and the metrics between them
    (path_metrics.trajectory_metrics); FOLLOWING_KEYS are None when `note` says why the path cannot
    test following."""

    ate_m: float | None
    ate_scale: float | None
    rpe_trans_m: float | None
    rpe_rot_deg: float | None
    rpe_1s_trans_m: float | None
    rpe_1s_rot_deg: float | None
    final_drift_m: float
    path_length_m: float
    note: str | None
    frames_recovered: float   # share of the N - 1 frames after the first whose motion was recovered
    failed_frames: int        # frame pairs not recovered
    solver_errors: int        # of those, the pairs OpenCV's solvers failed on
    solver_error: str | None  # the first such error
    keyframes: int
    path: EgoPath


@dataclass(frozen=True, eq=False)
class TrajectoryReport(TrajectoryFollowing):
    """TrajectoryFollowing of one stored clip, with what was measured."""

    store: str
    clip_id: str
    camera: str
    frames: int
    step: int
    fps: float | None


# ---------------------------------------------------------------- two-view motion


@dataclass
class _Features:
    """SIFT keypoints of one image as pixel coordinates, with their descriptors."""

    points: np.ndarray        # float32 [N, 2]
    descriptors: np.ndarray   # float32 [N, 128], or [0, 128]


def _grey(image: np.ndarray, name: str) -> np.ndarray:
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    elif image.ndim != 2:
        raise DataError(f"{name} must be an [H, W, 3] RGB or [H, W] grey uint8 image, got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8)


def _features(image: np.ndarray, name: str = "image") -> _Features:
    import cv2

    keypoints, descriptors = cv2.SIFT_create().detectAndCompute(_grey(image, name), None)
    points = np.array([k.pt for k in keypoints], dtype=np.float32).reshape(-1, 2)
    return _Features(points, descriptors if descriptors is not None else np.zeros((0, 128), np.float32))


def _match(a: _Features, b: _Features) -> tuple[np.ndarray, np.ndarray]:
    """Distinct matched pixel pairs ([M, 2] in a, [M, 2] in b) that pass the ratio test."""
    import cv2

    if len(a.descriptors) < 2 or len(b.descriptors) < 2:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    matched = np.c_[a.points[[m.queryIdx for m in good]].reshape(-1, 2),
                    b.points[[m.trainIdx for m in good]].reshape(-1, 2)]
    # SIFT gives a keypoint one descriptor per dominant orientation, so a pixel pair can match several
    # times (a quarter of all matches on rendered drives): copies add no evidence. A pixel matched to
    # two different ones is ambiguous: at most one of its matches is right. RANSAC samples holding
    # either are degenerate, and opencv 5.x's five-point solver then fails in solvePoly.
    matched = np.unique(matched, axis=0)
    unique = np.ones(len(matched), bool)
    for side in (matched[:, :2], matched[:, 2:]):
        _, inverse, counts = np.unique(side, axis=0, return_inverse=True, return_counts=True)
        unique &= counts[inverse.ravel()] == 1
    return matched[unique, :2], matched[unique, 2:]


def _check_intrinsics(intrinsics) -> np.ndarray:
    k = np.asarray(intrinsics, dtype=np.float64)
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise DataError(f"intrinsics K must be a finite [3, 3] matrix with positive focal lengths, got {k.tolist()}")
    return k


@dataclass
class _Motion:
    """cam_b_from_cam_a as rotation and unit translation, with the evidence behind it."""

    rotation: np.ndarray   # [3, 3]
    direction: np.ndarray  # [3], unit
    inliers: int           # matches that agree with the essential matrix
    parallax: float        # median pixel shift of those matches once the rotation is undone


def _parallax(points_a: np.ndarray, points_b: np.ndarray, rotation: np.ndarray, intrinsics: np.ndarray) -> float:
    """How far matches moved because the camera moved, not because it turned: only this shift
    tells the direction of travel, so a small one means a poorly known direction."""
    rays_b = np.c_[points_b, np.ones(len(points_b))] @ np.linalg.inv(intrinsics).T
    unrotated = (rays_b @ rotation) @ intrinsics.T  # rotation.T applied to each ray: back into a's orientation
    shift = unrotated[:, :2] / unrotated[:, 2:] - points_a
    return float(np.median(np.linalg.norm(shift, axis=1)))


def _skew(vector: np.ndarray) -> np.ndarray:
    x, y, z = vector
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def _refine(rotation: np.ndarray, direction: np.ndarray, points_a: np.ndarray, points_b: np.ndarray,
            intrinsics: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Polish (R, unit t) over all inliers by minimising their Sampson errors (pixels).

    RANSAC keeps the model of its best 5-point sample; with the few-pixel shifts of 12 fps video that
    sample's noise decides the direction of travel, and all the inliers together pin it down far better.
    """
    import cv2
    from scipy.optimize import least_squares

    inverse_k = np.linalg.inv(intrinsics)
    homogeneous_a = np.c_[points_a, np.ones(len(points_a))]
    homogeneous_b = np.c_[points_b, np.ones(len(points_b))]
    # The unit translation moves on its sphere: two coordinates in the plane tangent at the start.
    tangent = np.linalg.svd(direction[None])[2][1:]

    def pose(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        turned = cv2.Rodrigues(params[:3])[0] @ rotation
        moved = direction + params[3:] @ tangent
        return turned, moved / np.linalg.norm(moved)

    def sampson(params: np.ndarray) -> np.ndarray:
        turned, moved = pose(params)
        fundamental = inverse_k.T @ _skew(moved) @ turned @ inverse_k
        line_b, line_a = homogeneous_a @ fundamental.T, homogeneous_b @ fundamental
        algebraic = np.sum(homogeneous_b * line_b, axis=1)
        return algebraic / np.sqrt(line_b[:, 0]**2 + line_b[:, 1]**2 + line_a[:, 0]**2 + line_a[:, 1]**2 + 1e-12)

    # Huber at the RANSAC bound: an inlier that is only nearly one cannot pull the fit far.
    fit = least_squares(sampson, np.zeros(5), loss="huber", f_scale=RANSAC_PIXELS, method="trf")
    refined = pose(fit.x)
    return refined if all(np.all(np.isfinite(m)) for m in refined) else (rotation, direction)


def _motion(a: _Features, b: _Features, intrinsics: np.ndarray) -> _Motion | None:
    """cam_b_from_cam_a from two feature sets, or None when too few matches agree; may raise one of
    `pair_failures()` on degenerate matches (see `_try_motion`)."""
    import cv2

    points_a, points_b = _match(a, b)
    # A match that has not moved (within the inlier bound) fits every motion without rotation, so it
    # says nothing about the direction of travel: (nearly) identical frames have none to recover, and
    # OpenCV's answer to them changes with its version (4.x returns some E, 5.x fails in solvePoly).
    moved = np.linalg.norm(points_b - points_a, axis=1) > RANSAC_PIXELS
    if np.count_nonzero(moved) < MIN_MATCHES:
        return None
    essential, mask = cv2.findEssentialMat(points_a, points_b, intrinsics, method=cv2.RANSAC,
                                           prob=RANSAC_CONFIDENCE, threshold=RANSAC_PIXELS)
    if essential is None or mask is None or int(mask.sum()) < MIN_MATCHES:
        return None
    best = None
    # Degenerate samples can yield several stacked 3x3 solutions: keep the one most points agree with.
    for candidate in np.asarray(essential, np.float64).reshape(-1, 3, 3):
        in_front, rotation, translation, _ = cv2.recoverPose(candidate, points_a, points_b, intrinsics,
                                                             mask=mask.copy())
        if best is None or in_front > best[0]:
            best = (in_front, rotation, translation.reshape(3))
    _, rotation, translation = best
    norm = np.linalg.norm(translation)
    if not np.isfinite(norm) or norm == 0:
        return None
    inlier = mask.ravel().astype(bool)
    rotation, direction = _refine(rotation, translation / norm, points_a[inlier], points_b[inlier], intrinsics)
    return _Motion(rotation, direction, int(inlier.sum()),
                   _parallax(points_a[inlier], points_b[inlier], rotation, intrinsics))


def _try_motion(a: _Features, b: _Features, intrinsics: np.ndarray) -> tuple[_Motion | None, str | None]:
    """(`_motion`, None), or (None, what the solver raised): a pair whose solver fails is not recovered,
    like one with too few matches, so one degenerate pair never stops a whole trajectory."""
    try:
        return _motion(a, b, intrinsics), None
    except pair_failures() as error:
        return None, describe(error)


def relative_motion(frame_a: np.ndarray, frame_b: np.ndarray, intrinsics) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Camera motion cam_b_from_cam_a between two images of one camera with intrinsics K.

    Returns (R [3,3], t_unit [3], inliers): a point X_a in camera a's frame is R X_a + s t_unit in
    camera b's, for the unknown scale s > 0; inliers counts the matches that agree with the motion.
    None when it cannot be recovered: fewer than 8 matches (or inliers) remain, or OpenCV's solvers
    fail on the matches (degenerate ones: a blank, repeated or noise image).
    """
    k = _check_intrinsics(intrinsics)
    motion, _ = _try_motion(_features(frame_a, "frame_a"), _features(frame_b, "frame_b"), k)
    return None if motion is None else (motion.rotation, motion.direction, motion.inliers)


# ---------------------------------------------------------------- trajectories


def _check_transforms(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != shape or not np.all(np.isfinite(array)):
        raise DataError(f"{name} must be finite with shape {shape}, got {array.shape}")
    return array


def _interpolate(a_pose: np.ndarray, b_pose: np.ndarray, fraction: float) -> np.ndarray:
    """The pose `fraction` of the way from a to b: rotation about one axis, translation on a line."""
    import cv2

    relative = invert(a_pose) @ b_pose
    rotation_vector = cv2.Rodrigues(relative[:3, :3])[0]
    step = np.eye(4)
    step[:3, :3] = cv2.Rodrigues(rotation_vector * fraction)[0]
    step[:3, 3] = relative[:3, 3] * fraction
    return a_pose @ step


@dataclass
class _Chain:
    """Camera poses chained from visual motions, and what happened at each sample."""

    poses: np.ndarray       # [N, 4, 4] world_from_cam
    recovered: np.ndarray   # bool [N]: its motion from the last keyframe was recovered
    keyframe: np.ndarray    # bool [N]: its pose comes straight from a visual motion
    inliers: np.ndarray     # int [N]
    solver_errors: dict[int, str]  # sample -> what the solver raised on its pair (not recovered)


def _chain(features, world_from_cam_cmd: np.ndarray, intrinsics: np.ndarray, min_parallax: float) -> _Chain:
    """Chain visual motions from the commanded first camera pose, keyframe to keyframe.

    `features(n)` gives sample n's SIFT features. A sample whose matches with the last keyframe have
    moved less than `min_parallax` pixels (rotation undone) is no keyframe: so little shift leaves the
    direction of travel poorly known (tens of degrees off at 1 px), and its pose is interpolated
    between the keyframes around it instead. Step lengths come from the commanded camera path.
    """
    count = len(world_from_cam_cmd)
    poses = np.full((count, 4, 4), np.nan)
    recovered, keyframe = np.zeros(count, bool), np.zeros(count, bool)
    inliers = np.zeros(count, np.int64)
    poses[0], recovered[0], keyframe[0] = world_from_cam_cmd[0], True, True
    travelled = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(world_from_cam_cmd[:, :3, 3], axis=0), axis=1))]
    anchor, anchor_features, waiting = 0, features(0), []

    def commit(n: int, motion: _Motion) -> None:
        # Monocular motion has no scale: take the commanded camera displacement (the camera sits ahead
        # of the ego origin, so in a turn it travels further than the ego does).
        length = np.linalg.norm(world_from_cam_cmd[n, :3, 3] - world_from_cam_cmd[anchor, :3, 3])
        cam_n_from_anchor = np.eye(4)
        cam_n_from_anchor[:3, :3], cam_n_from_anchor[:3, 3] = motion.rotation, motion.direction * length
        poses[n], keyframe[n] = poses[anchor] @ invert(cam_n_from_anchor), True
        span = travelled[n] - travelled[anchor]
        for m in waiting:
            if m < n:  # between the keyframes: placed by the commanded distance covered so far
                fraction = (travelled[m] - travelled[anchor]) / span if span > 0 else (m - anchor) / (n - anchor)
                poses[m] = _interpolate(poses[anchor], poses[n], fraction)

    motions: dict[int, _Motion] = {}
    solver_errors: dict[int, str] = {}
    for n in range(1, count):
        current = features(n)
        motion, error = _try_motion(anchor_features, current, intrinsics)
        if error is not None:
            solver_errors[n] = error
        if motion is None:
            continue
        recovered[n], inliers[n], motions[n] = True, motion.inliers, motion
        if motion.parallax >= min_parallax or n == count - 1:
            commit(n, motion)
            anchor, anchor_features, waiting = n, current, []
        else:
            waiting.append(n)
    if waiting:  # the clip ended before enough parallax: the last waiting sample's own motion will do
        last = waiting.pop()
        commit(last, motions[last])
    for n in range(1, count):  # what could not be recovered holds the last pose
        if not np.isfinite(poses[n]).all():
            poses[n] = poses[n - 1]
    return _Chain(poses, recovered, keyframe, inliers, solver_errors)


def _orthonormal(transform: np.ndarray) -> np.ndarray:
    """The rigid transform nearest to one stored in float32, so that inverting it by transposing is exact."""
    u, _, vt = np.linalg.svd(transform[:3, :3])
    out = transform.copy()
    out[:3, :3] = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    return out


def _check_step(step) -> None:
    if not (isinstance(step, (int, np.integer)) and not isinstance(step, bool) and step >= 1):
        raise ConfigError(f"step must be an integer >= 1, got {step!r}")


def recover_ego_trajectory(frames: np.ndarray, intrinsics, ego_from_cam, world_from_ego: np.ndarray, step: int = 1,
                           fps: float | None = None, min_parallax: float = MIN_PARALLAX_PIXELS) -> TrajectoryFollowing:
    """The ego path one camera's video shows, next to the commanded path, and the metrics between them.

    frames [F, H, W, 3] uint8 of one camera with intrinsics K [3,3] and pose ego_from_cam [4,4];
    world_from_ego [F, 4, 4] is the commanded motion. Every `step`-th frame is used. The path starts
    at the commanded first pose; each keyframe's camera pose is the previous keyframe's moved by the
    visual motion between them, its length set to the commanded camera displacement. Frames with too
    little parallax (`min_parallax` pixels) to a keyframe are placed between keyframes; a frame whose
    motion cannot be recovered holds the previous pose and the next frame is matched against the last
    keyframe again, so one bad frame costs no lasting drift. `fps` (of the frames) enables the
    one-second RPE.

    Returns the metrics of `trajectory_metrics`, with FOLLOWING_KEYS None when `following_note` says
    the path cannot test following (`note`: why, else None), the counts of what was recovered, and
    the two paths (`path`: the first sample, the anchor, is recovered and a keyframe).
    """
    _check_step(step)
    if not (isinstance(min_parallax, (int, float)) and min_parallax >= 0):
        raise ConfigError(f"min_parallax must be a number of pixels >= 0, got {min_parallax!r}")
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise DataError(f"frames must be [F, H, W, 3] images of one camera, got shape {frames.shape}")
    k = _check_intrinsics(intrinsics)
    ego_from_cam = _orthonormal(_check_transforms(ego_from_cam, "ego_from_cam", (4, 4)))
    commanded_all = _check_transforms(world_from_ego, "world_from_ego", (len(frames), 4, 4))
    indices = np.arange(0, len(frames), step)
    if len(indices) < 2:
        raise DataError(f"need at least 2 frames {step} apart to follow a trajectory, got {len(frames)} frames")
    commanded = commanded_all[indices]

    def features(n: int) -> _Features:
        return _features(frames[indices[n]], f"frames[{indices[n]}]")

    chain = _chain(features, commanded @ ego_from_cam, k, float(min_parallax))
    estimated = chain.poses @ invert(ego_from_cam)
    metrics = trajectory_metrics(estimated, commanded, fps / step if fps else None)
    note = following_note(commanded[:, :3, 3], int(np.count_nonzero(chain.keyframe)))
    if note is not None:
        metrics.update(dict.fromkeys(FOLLOWING_KEYS))
    return TrajectoryFollowing(
        **metrics,
        note=note,
        frames_recovered=float(np.count_nonzero(chain.recovered[1:]) / (len(indices) - 1)),
        failed_frames=int(np.count_nonzero(~chain.recovered)),
        solver_errors=len(chain.solver_errors),
        solver_error=next(iter(chain.solver_errors.values()), None),
        keyframes=int(np.count_nonzero(chain.keyframe)),
        path=EgoPath(indices, commanded, estimated, chain.recovered, chain.keyframe, chain.inliers),
    )


# ---------------------------------------------------------------- clip stores


def _choose_clip(path: Path, clip_id: str | None) -> str:
    from drivesim.data.store import stored_clip_ids

    clips = stored_clip_ids(path)
    if not clips:
        raise DataError(f"store {path} holds no clips")
    if clip_id is None:
        if len(clips) > 1:
            shown = ", ".join(clips[:5]) + (", ..." if len(clips) > 5 else "")
            raise ConfigError(f"store {path} holds {len(clips)} clips ({shown}): name one with clip_id")
        return clips[0]
    if clip_id not in clips:
        raise ConfigError(f"clip_id {clip_id!r} is not in store {path}")
    return clip_id


def trajectory_camera(cameras: list[str]) -> str:
    """The camera whose video trajectory_report follows by default: CAM_FRONT, else a front camera that
    is neither left nor right, else the first."""
    if DEFAULT_CAMERA in cameras:
        return DEFAULT_CAMERA
    fronts = [c for c in cameras if "FRONT" in c.upper() and not {"LEFT", "RIGHT"} & set(c.upper().split("_"))]
    return (fronts or list(cameras))[0]


def trajectory_report(store_path: str | os.PathLike, clip_id: str | None = None, camera: str | None = None,
                      step: int = 1) -> TrajectoryReport:
    """Trajectory following of one store clip: the camera's video against the clip's world_from_ego.

    store_path is a clip store (a rollout's rollout.zarr, or the rollout folder itself); clip_id may be
    left out when the store holds one clip; camera None takes `trajectory_camera`'s choice. Returns
    `recover_ego_trajectory`'s result with what was measured (store, clip_id, camera, frames, step, fps).
    """
    from drivesim.data.store import open_clip, open_store, read_clip
    from drivesim.rollout import store_folder

    _check_step(step)
    path = store_folder(Path(store_path))
    root = open_store(path)
    clip_id = _choose_clip(path, clip_id)
    clip = read_clip(root, clip_id, ("intrinsics", "ego_from_cam", "world_from_ego", "timestamps"))
    cameras = list(clip["attrs"].get("cameras") or root.attrs.get("settings", {}).get("cameras")
                   or [str(v) for v in range(len(clip["intrinsics"]))])
    camera = trajectory_camera(cameras) if camera is None else camera
    if camera not in cameras:
        raise ConfigError(f"camera {camera!r} is not in clip {clip_id!r} of {path}; it has {', '.join(cameras)}")
    view = cameras.index(camera)
    frames = open_clip(root, clip_id)["frames"][:, view]  # one image per chunk: only this camera's are read
    steps_us = np.diff(clip["timestamps"])
    fps = 1e6 / float(np.median(steps_us)) if len(steps_us) and np.median(steps_us) > 0 else None
    result = recover_ego_trajectory(frames, clip["intrinsics"][view], clip["ego_from_cam"][view],
                                    clip["world_from_ego"], step=step, fps=fps)
    measured = {field.name: getattr(result, field.name) for field in fields(result)}
    return TrajectoryReport(**measured, store=str(path), clip_id=clip_id, camera=camera, frames=int(len(frames)),
                            step=int(step), fps=fps)
