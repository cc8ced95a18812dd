"""Shared helpers for the tokenizer tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import math

import torch

from drivesim.tokenizer.model import CausalVideoTokenizer, tiny

# (temporal, spatial) compressions the issue names; 4x8x8 is the default.
COMPRESSIONS = [(4, 8), (8, 8), (8, 16)]


def tiny_model(temporal: int = 4, spatial: int = 8, seed: int = 0, **overrides) -> CausalVideoTokenizer:
    """A tiny tokenizer with seeded random weights everywhere, in eval mode.

    A fresh model starts its deep path's last layers at zero (beside the linear path); the properties tested
    here (causality, chunking, tiling) must hold for any weights, so those layers are made random too."""
    torch.manual_seed(seed)
    model = CausalVideoTokenizer(tiny(temporal_compression=temporal, spatial_compression=spatial, **overrides))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv3d) and not module.weight.any():
                torch.nn.init.normal_(module.weight, std=0.05)
                torch.nn.init.normal_(module.bias, std=0.05)
    return model.eval()


def smooth_video(frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """[1, 3, frames, height, width] in [-1, 1]: a few low-frequency waves drifting over time."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 1, frames)[:, None, None]
    y = torch.linspace(0, 1, height)[None, :, None]
    x = torch.linspace(0, 1, width)[None, None, :]
    channels = []
    for _ in range(3):
        phase = torch.rand(4, generator=generator) * 2 * math.pi
        channels.append(0.5 * torch.sin(6 * y + phase[0] + phase[1] * t) * torch.cos(6 * x + phase[2])
                        + 0.3 * torch.sin(4 * x + 5 * y + phase[3] + t))
    return torch.stack(channels)[None].clamp(-1, 1)


def random_video(frames: int, height: int, width: int, seed: int = 0, batch: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, height, width, generator=generator) * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for signals in [-1, 1] (peak-to-peak 2)."""
    return 10 * math.log10(4 / ((a - b) ** 2).mean().item())
