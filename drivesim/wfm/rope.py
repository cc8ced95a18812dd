"""3D rotary position embedding (RoFormer's RoPE over time, height and width) for attention within a view.

Rotating queries and keys by angles proportional to their token coordinates makes every q·k depend on the
coordinate difference only, so a patch grid of any size and any clip length needs no learned positions.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor, nn

from drivesim.errors import ConfigError

__all__ = ["Rope3D", "rotate"]


class Rope3D(nn.Module):
    """Rotates channel pairs of [B, H, L, D] queries or keys by their tokens' (t, h, w) coordinates.

    The head dim splits into time, height and width channels (dt, dh, dw) with dh = dw = 2 * (D // 6) and
    time taking the rest; within each part pair i turns at frequency theta ** (-2i / part)."""

    def __init__(self, head_dim: int, theta: float = 10000.0):
        super().__init__()
        if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim < 6 or head_dim % 2:
            raise ConfigError(f"Rope3D head_dim={head_dim!r}: must be an even integer of at least 6 "
                              "(a channel pair for each of time, height and width)")
        if not isinstance(theta, (int, float)) or not math.isfinite(theta) or theta <= 1:
            raise ConfigError(f"Rope3D theta={theta!r}: must be a finite number above 1")
        self.head_dim = head_dim
        self.theta = float(theta)
        spatial = 2 * (head_dim // 6)
        self.axis_dims = (head_dim - 2 * spatial, spatial, spatial)  # (t, h, w)
        # Per (grid, device, dtype); a plain dict, not buffers: nothing here belongs in a checkpoint.
        self._cache: dict[tuple, tuple[Tensor, Tensor]] = {}

    def forward(self, x: Tensor, grid: tuple[int, int, int]) -> Tensor:
        """x [B, H, L, D] with L = T * h * w tokens in (t, h, w) row-major order -> x rotated, same dtype."""
        grid = self._check(x, grid)
        return rotate(x, self.rotation(grid, x.device, x.dtype))

    def rotation(self, grid: tuple[int, int, int], device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(cos, sin) [L, D/2] of the tokens of `grid`, for queries and keys of `dtype` (see rotate): once per
        forward pass, then every block's attention rotates with them."""
        # Half precision rotates in float32: bf16 angles would be off by whole degrees at large positions.
        key = (tuple(grid), device, torch.promote_types(dtype, torch.float32))
        if key not in self._cache:
            angles = self._angles(key[0])
            self._cache[key] = (angles.cos().to(device, key[2]), angles.sin().to(device, key[2]))
        return self._cache[key]

    def _angles(self, grid: tuple[int, int, int]) -> Tensor:
        """(L, D/2) angles in float64 on the CPU (every device gets the same, exact positions)."""
        axes = torch.meshgrid(*(torch.arange(size, dtype=torch.float64) for size in grid), indexing="ij")
        coordinates = rearrange(torch.stack(axes), "coordinate t h w -> (t h w) coordinate")
        parts = []
        for axis, part in enumerate(self.axis_dims):
            frequencies = self.theta ** (-torch.arange(0, part, 2, dtype=torch.float64) / part)
            parts.append(coordinates[:, axis, None] * frequencies)  # (L, part/2)
        return torch.cat(parts, dim=-1)

    def _check(self, x: Tensor, grid) -> tuple[int, int, int]:
        if (not isinstance(grid, (tuple, list)) or len(grid) != 3
                or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in grid)):
            raise ConfigError(f"Rope3D grid={grid!r}: must be three positive integers (T, h, w)")
        grid = tuple(grid)
        if x.dim() != 4 or x.shape[-1] != self.head_dim or x.shape[2] != math.prod(grid):
            raise ConfigError(f"Rope3D takes [B, H, L, {self.head_dim}] with L = T*h*w = {math.prod(grid)} for "
                              f"grid {grid}; got {tuple(x.shape)}")
        return grid

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, theta={self.theta:g}, axis_dims={self.axis_dims}"


def rotate(x: Tensor, rotation: tuple[Tensor, Tensor]) -> Tensor:
    """x [B, H, L, D] rotated by Rope3D.rotation's (cos, sin) [L, D/2], in their (float32 or wider) precision;
    the result has x's dtype. Unchecked: the hot path of every block (Rope3D.forward checks)."""
    cos, sin = rotation
    pairs = rearrange(x.to(cos.dtype), "b h l (d two) -> b h l d two", two=2)
    first, second = pairs.unbind(dim=-1)
    rotated = torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rearrange(rotated, "b h l d two -> b h l (d two)").to(x.dtype)
