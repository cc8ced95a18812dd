"""Haar wavelet patching: a lossless 2x reduction per level in height, width and (causally) time.

In time the first frame pairs with a copy of itself, so 1 + 2k frames become 1 + k and an image stays one
frame. Each transform is the exact inverse of its partner (up to float rounding). Tensors are [N, C, T, H, W].

L levels map each 2^L x 2^L x 2^L block of pixels (frames 1..2^L, 2^L+1..2^(L+1), ...; frame 0 alone, as if
repeated 2^L times) to 8^L bands at one position. WaveletPatch and WaveletUnpatch apply that map as one
matrix product per block, the matrix read off the level-by-level transforms below: several times faster
than running the levels (each a chain of copies), and the bands come out channels-last.
"""

from __future__ import annotations

import functools

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


def _levels_forward(x: torch.Tensor, levels: int) -> torch.Tensor:
    for _ in range(levels):
        x = haar_space(haar_time(x))
    return x


def _levels_inverse(x: torch.Tensor, levels: int) -> torch.Tensor:
    for _ in range(levels):
        x = inverse_haar_time(inverse_haar_space(x))
    return x


@functools.lru_cache(maxsize=16)
def _block_maps(levels: int, channels: int) -> tuple[torch.Tensor, ...]:
    """The transforms of `levels` levels on `channels` channels as matrices (float64), read off the
    level-by-level code on unit inputs: (patch of frame 0 [(c i j), bands], patch of a later block
    [(c a i j), bands], unpatch to frame 0 [bands, (c i j)], unpatch to a later block [bands, (c a i j)])."""
    b, bands = 2 ** levels, channels * 8 ** levels
    first = torch.eye(channels * b * b, dtype=torch.float64).view(-1, channels, 1, b, b)
    later = torch.zeros(bands, channels, 1 + b, b, b, dtype=torch.float64)
    later[:, :, 1:] = torch.eye(bands, dtype=torch.float64).view(bands, channels, b, b, b)
    unit_bands = torch.zeros(bands, bands, 2, 1, 1, dtype=torch.float64)
    unit_bands[:, :, 1] = torch.eye(bands, dtype=torch.float64)[..., None, None]
    return (_levels_forward(first, levels).flatten(1), _levels_forward(later, levels)[:, :, 1].flatten(1),
            _levels_inverse(torch.eye(bands, dtype=torch.float64).view(bands, bands, 1, 1, 1), levels).flatten(1),
            _levels_inverse(unit_bands, levels)[:, :, 1:].flatten(1))


class WaveletPatch(nn.Module):
    """`levels` levels of 3D Haar: [N, C, 1 + 2^L k, H, W] -> [N, 8^L C, 1 + k, H/2^L, W/2^L]."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, frames, height, width = x.shape
        b = 2 ** self.levels
        k, h, w = (frames - 1) // b, height // b, width // b
        first_map, later_map = (m.to(x) for m in _block_maps(self.levels, c)[:2])
        out = x.new_empty(n, 1 + k, h, w, first_map.shape[1])  # (N, T', h, w, bands): channels-last
        first = x[:, :, 0].reshape(n, c, h, b, w, b).permute(0, 2, 4, 1, 3, 5).reshape(n, 1, h, w, c * b * b)
        later = x[:, :, 1:].reshape(n, c, k, b, h, b, w, b).permute(0, 2, 4, 6, 1, 3, 5, 7)
        later = later.reshape(n, k, h, w, c * b ** 3)  # (N, k, h, w, (c a i j)): each block's pixels
        if torch.is_grad_enabled() and x.requires_grad:  # differentiable, without out=
            return torch.cat([first @ first_map, later @ later_map], dim=1).permute(0, 4, 1, 2, 3)
        for i in range(n):  # plain matrix products into the output, whose per-video slices are contiguous
            torch.mm(first[i].view(h * w, -1), first_map, out=out[i, 0].view(h * w, -1))
            if k:
                torch.mm(later[i].view(k * h * w, -1), later_map, out=out[i, 1:].view(k * h * w, -1))
        return out.permute(0, 4, 1, 2, 3)

    def time_steps(self) -> list[tuple[str, int]]:
        return [("down", 1)] * self.levels  # output i reads frames 2i-1 and 2i at each level


class WaveletUnpatch(nn.Module):
    """The inverse of WaveletPatch with the same number of levels."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, bands, latent_frames, h, w = x.shape
        b, k = 2 ** self.levels, latent_frames - 1
        c = bands // 8 ** self.levels
        first_map, later_map = (m.to(x) for m in _block_maps(self.levels, c)[2:])
        rows = x.permute(0, 2, 3, 4, 1).reshape(n, 1 + k, h * w, bands)  # a view of channels-last bands
        video = x.new_empty(n, c, 1 + b * k, b * h, b * w)
        first = (rows[:, 0].reshape(n * h * w, bands) @ first_map).view(n, h, w, c, b, b)
        video[:, :, 0] = first.permute(0, 3, 1, 4, 2, 5).reshape(n, c, b * h, b * w)
        if k:
            later = (rows[:, 1:].reshape(n * k * h * w, bands) @ later_map).view(n, k, h, w, c, b, b, b)
            video[:, :, 1:].view(n, c, k, b, h, b, w, b).copy_(later.permute(0, 4, 1, 5, 2, 6, 3, 7))
        return video

    def time_steps(self) -> list[tuple[str, int]]:
        return [("up", 0)] * self.levels
