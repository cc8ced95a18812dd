"""How far a recovered path is from the commanded one: Sim(3) alignment, ATE and RPE, and when a path
cannot tell a video that follows its commands from one that does not (`following_note`).
"""

from __future__ import annotations

import numpy as np

from drivesim.errors import DataError
from drivesim.geometry import invert

__all__ = ["FOLLOWING_KEYS", "following_note", "trajectory_metrics", "umeyama"]

MIN_FOLLOWING_KEYFRAMES = 4   # poses from the video that ATE and RPE need (see following_note)
MIN_BEND_FRACTION = 0.02      # RMS bend of the commanded path, over its length, they need (ditto)
# What following_note withholds: the numbers that compare the video's motion with the commanded one.
FOLLOWING_KEYS = ("ate_m", "ate_scale", "rpe_trans_m", "rpe_rot_deg", "rpe_1s_trans_m", "rpe_1s_rot_deg")


# ---------------------------------------------------------------- Sim(3) alignment


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R [3,3], t [3]) minimising sum |target - (s R source + t)|^2 (Umeyama 1991).

    With with_scale=False, s is 1 (a rigid SE(3) fit). A source with no spread (all points equal)
    fixes no rotation or scale: then s = 1, R = I and t moves its point onto the target's mean.
    """
    source = _points(source, "source")
    target = _points(target, "target")
    if source.shape != target.shape:
        raise DataError(f"umeyama: source {source.shape} and target {target.shape} must both be [N, 3]")
    mean_source, mean_target = source.mean(axis=0), target.mean(axis=0)
    centred_source, centred_target = source - mean_source, target - mean_target
    variance = float(np.mean(np.sum(centred_source**2, axis=1)))
    if variance <= 1e-300:
        return 1.0, np.eye(3), mean_target - mean_source
    covariance = centred_target.T @ centred_source / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    # Flip the weakest axis if the best orthogonal fit is a reflection: R must be a rotation.
    sign = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float(singular @ sign / variance) if with_scale else 1.0
    return scale, rotation, mean_target - scale * rotation @ mean_source


def _points(points, name: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise DataError(f"umeyama: {name} must be [N, 3] points with N >= 1, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise DataError(f"umeyama: {name} has non-finite values")
    return array


# ---------------------------------------------------------------- metrics


def _rotation_degrees(rotation: np.ndarray) -> np.ndarray:
    cosine = (np.trace(rotation, axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _relative_errors(estimated: np.ndarray, commanded: np.ndarray, delta: int) -> tuple[float, float]:
    """RMSE of translation (m) and rotation (deg) of est vs commanded motion over `delta` samples."""
    rel_est = invert(estimated[:-delta]) @ estimated[delta:]
    rel_cmd = invert(commanded[:-delta]) @ commanded[delta:]
    error = invert(rel_cmd) @ rel_est
    translation = np.linalg.norm(error[:, :3, 3], axis=1)
    rotation = _rotation_degrees(error[:, :3, :3])
    return float(np.sqrt(np.mean(translation**2))), float(np.sqrt(np.mean(rotation**2)))


def trajectory_metrics(estimated: np.ndarray, commanded: np.ndarray, samples_per_second: float | None = None) -> dict:
    """Compare two pose sequences [N, 4, 4] (world_from_ego, same start) sample by sample.

    ate_m: RMSE of positions after the Sim(3) alignment of estimated onto commanded (ate_scale: its s);
    rpe_trans_m / rpe_rot_deg: RMSE of the relative pose error between consecutive samples;
    rpe_1s_*: the same over one second (None without a rate or when the sequence is shorter);
    final_drift_m: distance between the last positions, unaligned; path_length_m: of the commanded path.
    """
    estimated = np.asarray(estimated, np.float64)
    commanded = np.asarray(commanded, np.float64)
    if estimated.shape != commanded.shape or estimated.ndim != 3 or estimated.shape[1:] != (4, 4):
        raise DataError(f"trajectory_metrics: estimated {estimated.shape} and commanded {commanded.shape} "
                        "must both be [N, 4, 4]")
    if len(estimated) < 2:
        raise DataError(f"trajectory_metrics: need at least 2 poses, got {len(estimated)}")
    positions_est, positions_cmd = estimated[:, :3, 3], commanded[:, :3, 3]
    scale, rotation, translation = umeyama(positions_est, positions_cmd, with_scale=True)
    aligned = scale * positions_est @ rotation.T + translation
    rpe_trans, rpe_rot = _relative_errors(estimated, commanded, 1)
    metrics = {
        "ate_m": float(np.sqrt(np.mean(np.sum((aligned - positions_cmd) ** 2, axis=1)))),
        "ate_scale": scale,
        "rpe_trans_m": rpe_trans,
        "rpe_rot_deg": rpe_rot,
        "rpe_1s_trans_m": None,
        "rpe_1s_rot_deg": None,
        "final_drift_m": float(np.linalg.norm(positions_est[-1] - positions_cmd[-1])),
        "path_length_m": float(np.sum(np.linalg.norm(np.diff(positions_cmd, axis=0), axis=1))),
    }
    delta = round(samples_per_second) if samples_per_second else 0
    if 1 <= delta < len(estimated):
        metrics["rpe_1s_trans_m"], metrics["rpe_1s_rot_deg"] = _relative_errors(estimated, commanded, delta)
    return metrics


def following_note(commanded_positions: np.ndarray, keyframes: int) -> str | None:
    """Why ATE and RPE cannot tell a video that follows this commanded path from one that does not,
    or None when they can.

    Too short: the chain copies the first pose and every step length from the commands, so of the
    path only the directions between its keyframes come from the video: K keyframes give K - 1
    directions (2 degrees of freedom each), and the Sim(3) alignment's rotation absorbs 3. Two
    keyframes always align to 0 m and three leave one angle; MIN_FOLLOWING_KEYFRAMES (4) leaves three.

    Too straight: the alignment takes out any common heading and scale, so ATE compares shapes, and
    what the step lengths leave a video free to get wrong is where it turns. A video that ignores the
    commands and drives straight on scores about the commanded path's RMS distance from its best
    straight line (its bend), and RPE misses only the commanded turn per step. Faithful visual
    odometry on rendered drives already scores about 1% of the path length (0.03-0.18 m ATE over a
    10.7 m drive), and its error grows with the distance travelled: below a bend of MIN_BEND_FRACTION
    (2%) of the length the two are not told apart, and low numbers would reward a model that ignores
    the trajectory.
    """
    positions = np.asarray(commanded_positions, np.float64).reshape(-1, 3)
    length = float(np.sum(np.linalg.norm(np.diff(positions, axis=0), axis=1)))
    if keyframes < MIN_FOLLOWING_KEYFRAMES:
        return (f"too short to align: {keyframes} of the {len(positions)} poses came from the video (keyframes), "
                f"and Sim(3) alignment fits fewer than {MIN_FOLLOWING_KEYFRAMES} almost exactly")
    if length == 0:
        return "the commanded path stands still: there is no motion to follow"
    singular = np.linalg.svd(positions - positions.mean(axis=0), compute_uv=False)
    bend = float(np.sqrt(np.sum(singular[1:] ** 2) / len(positions)))  # RMS distance from the best line
    if bend < MIN_BEND_FRACTION * length:
        return (f"too straight to test following: the commanded path leaves its best straight line by "
                f"{bend:.2f} m RMS over {length:.1f} m, under {MIN_BEND_FRACTION:.0%}; a video that ignored the "
                "commands and drove straight would score as well")
    return None
