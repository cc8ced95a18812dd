"""What the quality and report tests share: a tiny TorchScript-able stand-in for InceptionV3, the drive the
report's rollouts show, and the ways their frames are spoilt."""

from __future__ import annotations

import numpy as np
import torch


class TinyInception(torch.nn.Module):
    """[N, 3, H, W] of 0..255 at any size -> [N, 2048]: pooled colours through a fixed random projection."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Linear(3 * 16, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, (4, 4))
        return torch.tanh(self.project(pooled.flatten(1)))


def scenario_document(duration: float) -> dict:
    """A front3 drive at 12 fps with a lead car in view of CAM_FRONT, as tests/test_export.py's."""
    return {
        "name": "eval_drive", "prompt": "a sunny road, a car ahead", "rig": "front3", "fps": 12,
        "duration": duration, "seed": 3,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 14 * duration, "y": 0}]},
        "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.85, 4.5, 1.55],
                    "waypoints": [{"t": 0, "x": 12, "y": 0}, {"t": duration, "x": 12 + 14 * duration, "y": 0}]},
                   {"id": "parked", "category": "vehicle.truck", "size": [2.5, 8.0, 3.0],
                    "parked": {"x": 15, "y": -3, "yaw": 0.3}}],
        "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]], [[-10, 5], [100, 5]]]},
    }


def noisy(video: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.clip(video + rng.normal(scale=sigma, size=video.shape), 0, 255).round().astype(np.uint8)


def half_size(video: np.ndarray) -> np.ndarray:
    """[F, V, H, W, 3] -> [F, V, H/2, W/2, 3] with PIL bilinear, as the evaluation resizes references."""
    from PIL import Image

    frames, views, height, width = video.shape[:4]
    return np.stack([[np.asarray(Image.fromarray(video[f, v]).resize((width // 2, height // 2), Image.BILINEAR))
                      for v in range(views)] for f in range(frames)])
