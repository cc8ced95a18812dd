"""Which camera pairs cross-view consistency compares: a rig's neighbours, the views whose fields of
view overlap by calibration alone, or pairs given by hand (checked here).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from drivesim import rigs
from drivesim.errors import ConfigError

__all__ = ["MAX_PAIR_ANGLE_DEG", "check_pairs", "overlapping_pairs", "rig_pairs", "view_index"]

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
