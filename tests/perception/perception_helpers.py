"""Cameras and perfect network outputs for the perception tests."""

from __future__ import annotations

import numpy as np
import torch

from drivesim.geometry import matrix_from_yaw

# Camera axes (x right, y down, z forward) in the ego frame (x forward, y left, z up), looking forward.
CAM_AXES = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera(azimuth: float, pitch: float = 0.0, height: float = 1.5, focal: float = 120.0, width: int = 256,
           height_px: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsics [3, 3], ego_from_cam [4, 4]) of a camera at `height` m looking along `azimuth`, tilted down
    by `pitch` (radians)."""
    intrinsics = np.array([[focal, 0.0, (width - 1) / 2], [0.0, focal, (height_px - 1) / 2], [0.0, 0.0, 1.0]])
    tilt = np.array([[np.cos(pitch), 0.0, np.sin(pitch)], [0.0, 1.0, 0.0], [-np.sin(pitch), 0.0, np.cos(pitch)]])
    ego_from_cam = np.eye(4)
    ego_from_cam[:3, :3] = matrix_from_yaw(np.float64(azimuth)) @ tilt @ CAM_AXES
    ego_from_cam[:3, 3] = [0.5, 0.0, height]
    return intrinsics, ego_from_cam


def perfect_maps(targets: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """What a perfect network would output for these targets (frames.py item of one frame): the heat map as
    logits, the regression as given; a batch of one."""
    heat = np.clip(targets["heatmap"], 1e-6, 1 - 1e-6)
    logits = np.log(heat / (1 - heat))
    return {"heatmap": torch.from_numpy(logits).float()[None],
            "regression": torch.from_numpy(targets["regression"]).float()[None]}
