"""Which camera pairs cross-view consistency compares: a rig's neighbours, the views whose fields of
view overlap by calibration alone, or pairs given by hand (checked here); and what calibration says
about each pair (`CalibratedPairs`: its fundamental matrix, and where each view sees the other's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from drivesim import geometry, rigs
from drivesim.errors import ConfigError, DataError

__all__ = ["MAX_PAIR_ANGLE_DEG", "CalibratedPairs", "calibrated_pairs", "check_pairs", "overlapping_pairs",
           "rig_pairs", "view_index"]

MAX_PAIR_ANGLE_DEG = 80.0  # default overlap rule: optical axes at most this far apart (and FOVs overlap)


def rig_pairs(rig: rigs.Rig, cameras: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """Neighbouring views of `rig` (its `neighbours`) as index pairs (a < b) into `cameras` (default: the rig's)."""
    cameras = list(rig.names if cameras is None else cameras)
    pairs = set()
    for name, others in rig.neighbours.items():
        for other in others:
            if name in cameras and other in cameras:
                a, b = cameras.index(name), cameras.index(other)
                pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


def overlapping_pairs(intrinsics, ego_from_cam, width: int,
                      max_angle_deg: float = MAX_PAIR_ANGLE_DEG) -> list[tuple[int, int]]:
    """View pairs (a < b) whose optical axes are at most `max_angle_deg` apart and whose horizontal fields
    of view overlap: the pairs a cross-view match can exist for, read from calibration alone."""
    intrinsics = np.asarray(intrinsics, np.float64)
    axes = np.asarray(ego_from_cam, np.float64)[:, :3, 2]
    axes = axes / np.linalg.norm(axes, axis=1, keepdims=True)
    # Half the horizontal field of view: to the farther image edge from the principal point.
    half_fov = np.arctan(np.maximum(intrinsics[:, 0, 2] + 0.5, width - 0.5 - intrinsics[:, 0, 2]) / intrinsics[:, 0, 0])
    pairs = []
    for a in range(len(axes)):
        for b in range(a + 1, len(axes)):
            angle = math.acos(float(np.clip(axes[a] @ axes[b], -1.0, 1.0)))
            if angle <= math.radians(max_angle_deg) and angle < half_fov[a] + half_fov[b]:
                pairs.append((a, b))
    return pairs


def view_index(value, cameras: list[str], where: str) -> int:
    """A view given by index or camera name -> its index; ConfigError naming `where` otherwise."""
    if isinstance(value, str):
        if value not in cameras:
            raise ConfigError(f"{where}: no camera {value!r}; cameras: {', '.join(cameras)}")
        return cameras.index(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < len(cameras):
        raise ConfigError(f"{where}: {value!r} is not a view index in [0, {len(cameras)}) or a camera name")
    return int(value)


def check_pairs(pairs, cameras: list[str]) -> list[tuple[int, int]]:
    """View pairs given by hand (indices or camera names) -> index pairs; ConfigError naming the bad one."""
    checked = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, str) or len(pair) != 2:
            raise ConfigError(f"pairs[{i}]: expected two views (indices or camera names), got {pair!r}")
        a, b = (view_index(v, cameras, f"pairs[{i}]") for v in pair)
        if a == b:
            raise ConfigError(f"pairs[{i}]: pairs a view with itself ({cameras[a]})")
        if (a, b) in checked or (b, a) in checked:
            raise ConfigError(f"pairs[{i}]: {cameras[a]} and {cameras[b]} are paired twice")
        checked.append((a, b))
    return checked


# ---------------------------------------------------------------- what calibration says about a view pair


def _check_calibration(intrinsics, ego_from_cam, views: int) -> tuple[np.ndarray, np.ndarray]:
    intrinsics = np.asarray(intrinsics, np.float64)
    ego_from_cam = np.asarray(ego_from_cam, np.float64)
    if intrinsics.shape != (views, 3, 3) or not np.all(np.isfinite(intrinsics)):
        raise DataError(f"intrinsics: expected finite [{views}, 3, 3] for {views} views, got {list(intrinsics.shape)}")
    if ego_from_cam.shape != (views, 4, 4) or not np.all(np.isfinite(ego_from_cam)):
        raise DataError(f"ego_from_cam: expected finite [{views}, 4, 4] for {views} views, "
                        f"got {list(ego_from_cam.shape)}")
    return intrinsics, ego_from_cam


@dataclass(frozen=True, eq=False)
class CalibratedPairs:
    """The view pairs to compare, with what calibration says about each: F [P, 3, 3] (x_b^T F x_a = 0),
    the rotation cam_b_from_cam_a [P, 3, 3], and the intrinsics, image size and margin for `overlap`."""

    pairs: list[tuple[int, int]]
    fundamentals: np.ndarray
    rotations: np.ndarray
    intrinsics: np.ndarray
    size: tuple[int, int]
    margin_px: float | None

    def _sees(self, points: np.ndarray, k_from: np.ndarray, k_to: np.ndarray, to_from: np.ndarray) -> np.ndarray:
        """Which pixels of one view the other view sees, for scene points at infinity, widened by the margin."""
        rays = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.linalg.inv(k_from).T @ to_from.T
        pixels = rays @ k_to.T
        ahead = pixels[:, 2] > 1e-9
        depth = np.where(ahead, pixels[:, 2], 1.0)
        u, v = pixels[:, 0] / depth, pixels[:, 1] / depth
        (width, height), margin = self.size, self.margin_px
        return ahead & (u > -margin) & (u < width - 1 + margin) & (v > -margin) & (v < height - 1 + margin)

    def overlap(self, p: int, points_a: np.ndarray,
                points_b: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Which pixels [N, 2] of pair p's two views lie where the other view also looks: bool masks, or
        None for all of them (no margin given).

        Only there can the views show the same thing; matching the whole images lets repeated
        texture (rows of windows, lane marks) match across unrelated parts and swamp the median.
        """
        if self.margin_px is None:
            return None, None
        i, j = self.pairs[p]
        rotation = self.rotations[p]
        return (self._sees(points_a, self.intrinsics[i], self.intrinsics[j], rotation),
                self._sees(points_b, self.intrinsics[j], self.intrinsics[i], rotation.T))


def calibrated_pairs(intrinsics, ego_from_cam, pairs, cameras: list[str], size: tuple[int, int],
                     overlap_margin: float | None) -> CalibratedPairs:
    """Checked pairs (None: those whose views overlap) with their calibrated F and rotations, for views
    `cameras` of `size` (width, height) pixels; overlap_margin: a fraction of the image width, or None."""
    if overlap_margin is not None and (isinstance(overlap_margin, bool) or not isinstance(overlap_margin, (int, float))
                                       or not overlap_margin >= 0):
        raise ConfigError(f"overlap_margin must be None or a fraction of the image width >= 0, got {overlap_margin!r}")
    intrinsics, ego_from_cam = _check_calibration(intrinsics, ego_from_cam, len(cameras))
    width, height = size
    pairs = check_pairs(overlapping_pairs(intrinsics, ego_from_cam, width) if pairs is None else pairs, cameras)
    if pairs:
        a, b = (np.array(side) for side in zip(*pairs))
        cam_b_from_cam_a = geometry.compose(geometry.invert(ego_from_cam[b]), ego_from_cam[a])
        fundamentals = geometry.fundamental_matrix(intrinsics[a], intrinsics[b], cam_b_from_cam_a)
        rotations = cam_b_from_cam_a[:, :3, :3]
    else:
        fundamentals = rotations = np.zeros((0, 3, 3))
    margin = None if overlap_margin is None else float(overlap_margin) * width
    return CalibratedPairs(pairs, fundamentals, rotations, intrinsics, (int(width), int(height)), margin)
