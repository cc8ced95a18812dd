"""Haar wavelet patching: a lossless 2x reduction per level in height, width and (causally) time.

In time the first frame pairs with a copy of itself, so 1 + 2k frames become 1 + k and an image stays one
frame. Each transform is the exact inverse of its partner (up to float rounding). Tensors are [N, C, T, H, W].
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

__all__ = ["haar_space", "inverse_haar_space", "haar_time", "inverse_haar_time",
           "WaveletPatch", "WaveletUnpatch"]


def _analysis(even: torch.Tensor, odd: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One Haar step: the mean of a pair and half its difference (values stay in the input's range)."""
    return (even + odd) / 2, (odd - even) / 2


def _synthesis(low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of _analysis: the pair back."""
    return low - high, low + high


def haar_space(x: torch.Tensor) -> torch.Tensor:
    """[N, C, T, H, W] -> [N, 4C, T, H/2, W/2]: the four 2D Haar sub-bands stacked on channels."""
    pairs = rearrange(x, "n c t h (w j) -> j n c t h w", j=2)
    x = torch.stack(_analysis(pairs[0], pairs[1]))  # (bw, n, c, t, h, w/2)
    pairs = rearrange(x, "bw n c t (h i) w -> i bw n c t h w", i=2)
    x = torch.stack(_analysis(pairs[0], pairs[1]))  # (bh, bw, n, c, t, h/2, w/2)
    return rearrange(x, "bh bw n c t h w -> n (bh bw c) t h w")


def inverse_haar_space(x: torch.Tensor) -> torch.Tensor:
    """[N, 4C, T, H, W] -> [N, C, T, 2H, 2W]: the inverse of haar_space."""
    bands = rearrange(x, "n (bh bw c) t h w -> bh bw n c t h w", bh=2, bw=2)
    x = torch.stack(_synthesis(bands[0], bands[1]))  # (i, bw, n, c, t, h, w)
    bands = rearrange(x, "i bw n c t h w -> bw n c t (h i) w")
    x = torch.stack(_synthesis(bands[0], bands[1]))  # (j, n, c, t, 2h, w)
    return rearrange(x, "j n c t h w -> n c t h (w j)")


def haar_time(x: torch.Tensor) -> torch.Tensor:
    """[N, C, 1 + 2k, H, W] -> [N, 2C, 1 + k, H, W]: output frame i holds input frames 2i-1 and 2i."""
    # The first frame pairs with its own copy: no frame sees a later one, and an image stays one frame.
    x = torch.cat([x[:, :, :1], x], dim=2)
    pairs = rearrange(x, "n c (t k) h w -> k n c t h w", k=2)
    x = torch.stack(_analysis(pairs[0], pairs[1]))  # (bt, n, c, 1 + k, h, w)
    return rearrange(x, "bt n c t h w -> n (bt c) t h w")


def inverse_haar_time(x: torch.Tensor) -> torch.Tensor:
    """[N, 2C, 1 + k, H, W] -> [N, C, 1 + 2k, H, W]: the inverse of haar_time."""
    bands = rearrange(x, "n (bt c) t h w -> bt n c t h w", bt=2)
    x = torch.stack(_synthesis(bands[0], bands[1]))  # (k, n, c, 1 + k, h, w)
    x = rearrange(x, "k n c t h w -> n c (t k) h w")
    return x[:, :, 1:]  # drop the copy the first frame was paired with


class WaveletPatch(nn.Module):
    """`levels` levels of 3D Haar: [N, C, 1 + 2^L k, H, W] -> [N, 8^L C, 1 + k, H/2^L, W/2^L]."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.levels):
            x = haar_space(haar_time(x))
        return x

    def time_steps(self) -> list[tuple[str, int]]:
        return [("down", 1)] * self.levels  # output i reads frames 2i-1 and 2i at each level


class WaveletUnpatch(nn.Module):
    """The inverse of WaveletPatch with the same number of levels."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(self.levels):
            x = inverse_haar_time(inverse_haar_space(x))
        return x

    def time_steps(self) -> list[tuple[str, int]]:
        return [("up", 0)] * self.levels
