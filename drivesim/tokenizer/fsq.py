"""Finite scalar quantization (Mentzer et al. 2023, arXiv 2309.15505): each latent dimension is bounded and
rounded to one of a few levels; a code is one level per dimension, an index in [0, prod(levels)).

Codes live on the last axis, [..., len(levels)], scaled to [-1, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from einops import rearrange
from torch import nn

__all__ = ["FSQ"]


class FSQ(nn.Module):
    """Bound, round (straight-through) and index codes over the given levels per dimension."""

    def __init__(self, levels: Sequence[int], eps: float = 1e-3):
        super().__init__()
        levels = [int(level) for level in levels]
        self.codebook_size = math.prod(levels)
        self.eps = eps
        self.register_buffer("levels", torch.tensor(levels), persistent=False)
        # Mixed radix: digit d of an index weighs prod(levels[:d]).
        self.register_buffer("basis", torch.cumprod(torch.tensor([1] + levels[:-1]), dim=0), persistent=False)
        self.register_buffer("half_width", torch.tensor(levels) // 2, persistent=False)

    @property
    def dim(self) -> int:
        return len(self.levels)

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash each dimension into (-L/2, L/2) so that rounding gives exactly L values."""
        half_range = (self.levels - 1) * (1 + self.eps) / 2
        # An even level count has no middle level: shift by half a step, so the L values are -L/2 .. L/2-1.
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0)
        shift = torch.atanh(offset / half_range)
        return torch.tanh(z + shift) * half_range - offset

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[..., D] -> codes [..., D] in [-1, 1]; gradients pass the rounding unchanged (straight-through)."""
        bounded = self.bound(z)
        rounded = bounded + (torch.round(bounded) - bounded).detach()
        return rounded / self.half_width

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """[..., D] codes -> [...] int64 indices."""
        digits = torch.round(codes * self.half_width + self.half_width).long()  # 0 .. L-1 per dimension
        return (digits * self.basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        """[...] int64 indices -> [..., D] codes."""
        digits = (rearrange(indices, "... -> ... 1") // self.basis) % self.levels
        return (digits - self.half_width) / self.half_width
