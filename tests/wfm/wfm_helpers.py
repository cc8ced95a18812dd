"""Shared pieces of the world-model tests: a tiny model with no zero-initialised layers, a rig, latents to run
it on, and a clip of video."""

from __future__ import annotations

import torch

from drivesim.rigs import load_rig
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.model import WorldModel, model_config

B, V, T, H, W = 2, 6, 3, 8, 16  # latents of 9 frames at 64x128 on the six nuScenes cameras


def randomize_zero_layers(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every all-zero weight random values, so a test exercises the paths a fresh model closes."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.numel() and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def tiny_world_model(seed: int = 0, randomize: bool = True, **overrides) -> WorldModel:
    torch.manual_seed(seed)
    model = WorldModel(model_config({"preset": "tiny", "text": "trained", **overrides}))
    return randomize_zero_layers(model, seed) if randomize else model


def rig_conditions(batch: int = 2, views: int = 6, frames: int = 9, height: int = 64, width: int = 128,
                   speed: float = 0.5) -> dict:
    """Cameras of the nuScenes rig at (width, height) and an ego driving forward and turning gently."""
    rig = load_rig("nuscenes").resized(width, height)
    intrinsics = torch.tensor(rig.intrinsics[:views], dtype=torch.float32)[None].repeat(batch, 1, 1, 1)
    ego_from_cam = torch.tensor(rig.ego_from_cam[:views], dtype=torch.float32)[None].repeat(batch, 1, 1, 1)
    steps = torch.arange(frames, dtype=torch.float32)
    yaw = 0.02 * steps
    poses = torch.eye(4).repeat(batch, frames, 1, 1)
    poses[:, :, 0, 0], poses[:, :, 0, 1] = yaw.cos(), -yaw.sin()
    poses[:, :, 1, 0], poses[:, :, 1, 1] = yaw.sin(), yaw.cos()
    poses[:, :, 0, 3] = speed * steps
    return {"intrinsics": intrinsics, "ego_from_cam": ego_from_cam, "ego0_from_ego": poses}


def latents(seed: int = 0, views: int = V) -> torch.Tensor:
    return torch.randn(B, views, T, 16, H, W, generator=torch.Generator().manual_seed(seed))


def run(model, x, t=None, **overrides):
    conditions = {**rig_conditions(B, x.shape[1]), "captions": ["a wet road at night", "sunny suburb"], **overrides}
    t = torch.tensor([0.3, 0.8]) if t is None else t
    with torch.no_grad():
        return model(x, t, Conditions(**conditions))


def video(views: int = 3, frames: int = 5, seed: int = 0) -> torch.Tensor:
    """Pixels in [-1, 1] at the tiny_wfm_run's 64x32 per camera."""
    return torch.rand(1, views, frames, 3, 32, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1
