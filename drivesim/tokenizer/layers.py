"""Building blocks of the causal tokenizer: causal convolutions, factorized residual blocks, causal down- and
upsampling, and attention within a frame. Tensors are [N, C, T, H, W].

Layers that move along time describe it with `time_steps()`, a list of steps in the order they run, which
drivesim.tokenizer.chunked walks to compute the receptive field:
  ("conv", b)  output t reads inputs t-b .. t
  ("down", b)  output t reads inputs 2t-b .. 2t
  ("up", 0)    output t reads input (t+1)//2 (each input becomes two frames, and the one before frame 0 is dropped)
Inputs before frame 0 are padding (copies of frame 0).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

__all__ = ["ChannelRMSNorm", "CausalConv3d", "factorized_conv", "ResBlock", "SpatialAttention",
           "Downsample", "Upsample", "collect_time_steps", "pair_mean"]

TimeStep = tuple[str, int]


def collect_time_steps(module: nn.Module) -> list[TimeStep]:
    """The time steps of a module in the order they run: its own if it says, else its children's in order."""
    if hasattr(module, "time_steps"):
        return module.time_steps()
    return [step for child in module.children() for step in collect_time_steps(child)]


class ChannelRMSNorm(nn.Module):
    """RMS normalisation over channels at each position: local in time and space, so causal and tileable."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + self.eps)  # (N, 1, T, H, W)
        return x * scale * rearrange(self.weight, "c -> c 1 1 1")


class CausalConv3d(nn.Module):
    """A 3D convolution padded in time only on the past, with copies of the first frame."""

    def __init__(self, in_channels: int, out_channels: int, time_kernel: int = 1, space_kernel: int = 1,
                 time_stride: int = 1, space_stride: int = 1):
        super().__init__()
        self.time_pad, self.space_pad = time_kernel - 1, space_kernel // 2
        self.time_stride = time_stride
        self.conv = nn.Conv3d(in_channels, out_channels, (time_kernel, space_kernel, space_kernel),
                              stride=(time_stride, space_stride, space_stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Replicate padding in space too: a tile's edge then looks like its neighbourhood, so tiles blend well.
        if self.time_pad or self.space_pad:
            pads = (self.space_pad, self.space_pad, self.space_pad, self.space_pad, self.time_pad, 0)
            x = F.pad(x, pads, mode="replicate")
        return self.conv(x)

    def time_steps(self) -> list[TimeStep]:
        if self.time_stride == 2:
            return [("down", self.time_pad)]
        return [("conv", self.time_pad)] if self.time_pad else []


def factorized_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """A 1x3x3 spatial convolution and a causal 3x1x1 temporal one: cheaper than a full 3x3x3."""
    if out_channels > in_channels:  # widening (the decoder's output to wavelet bands): mix time while narrow
        return nn.Sequential(CausalConv3d(in_channels, in_channels, time_kernel=3),
                             CausalConv3d(in_channels, out_channels, space_kernel=3))
    return nn.Sequential(CausalConv3d(in_channels, out_channels, space_kernel=3),
                         CausalConv3d(out_channels, out_channels, time_kernel=3))


class ResBlock(nn.Module):
    """Residual block of two factorized convolutions, without normalisation.

    Per-position (channel) normalisation, the only kind that stays causal and tileable, throws away each
    position's magnitude, which here is brightness: with it the tokenizer trained several times slower
    (an overfit test went 13 -> 12 dB in 150 steps with it, 21 -> 25 dB without).
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = factorized_conv(in_channels, out_channels)
        self.conv2 = factorized_conv(out_channels, out_channels)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(x))
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SpatialAttention(nn.Module):
    """Self-attention among the positions of each frame; none across time, so the receptive field stays finite."""

    def __init__(self, channels: int, head_dim: int = 64):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = ChannelRMSNorm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, height = x.shape[2], x.shape[3]
        q, k, v = rearrange(self.qkv(self.norm(x)), "n (three heads d) t h w -> three (n t) heads (h w) d",
                            three=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v)  # ((n t), heads, (h w), d)
        out = rearrange(out, "(n t) heads (h w) d -> n (heads d) t h w", t=frames, h=height)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve height and width with a strided convolution, and time too (causally) when asked."""

    def __init__(self, channels: int, time: bool, shortcut: bool = False):
        super().__init__()
        self.space = CausalConv3d(channels, channels, space_kernel=3, space_stride=2)
        # Stride 2 over three frames padded with two copies of the first: 1 + 2k frames -> 1 + k,
        # output i reads frames 2i-2 .. 2i, so frame 0 is again alone.
        self.time = CausalConv3d(channels, channels, time_kernel=3, time_stride=2) if time else None
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # With the shortcut (after DC-AE's residual autoencoding, arXiv 2410.10733) the convolutions learn a
        # correction to plain averaging, so an untrained stage already passes the coarse picture on.
        x = self.space(x) + (F.avg_pool3d(x, (1, 2, 2)) if self.shortcut else 0)
        if self.time is None:
            return x
        return self.time(x) + (pair_mean(x) if self.shortcut else 0)

    def time_steps(self) -> list[TimeStep]:
        return self.time.time_steps() if self.time is not None else []


def pair_mean(x: torch.Tensor) -> torch.Tensor:
    """[N, C, 1 + 2k, H, W] -> [N, C, 1 + k, H, W]: the mean of frames 2i-1 and 2i (frame 0 with itself)."""
    x = torch.cat([x[:, :, :1], x], dim=2)
    return rearrange(x, "n c (t k) h w -> n c t k h w", k=2).mean(dim=3)


class Upsample(nn.Module):
    """Double time (causally, when asked), then height and width (nearest, then a convolution)."""

    def __init__(self, channels: int, time: bool, shortcut: bool = False):
        super().__init__()
        self.time = CausalConv3d(channels, 2 * channels, time_kernel=3) if time else None
        self.space = CausalConv3d(channels, channels, space_kernel=3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time is not None:
            # Each frame becomes two: its copy plus a learned correction. Dropping the frame before frame 0
            # turns 1 + k frames into 1 + 2k, the mirror of the encoder's first-frame-alone grouping.
            pairs = rearrange(self.time(x), "n (k c) t h w -> n c (t k) h w", k=2)
            x = (repeat(x, "n c t h w -> n c (t k) h w", k=2) + pairs)[:, :, 1:]
        x = repeat(x, "n c t h w -> n c t (h i) (w j)", i=2, j=2)
        return self.space(x) + (x if self.shortcut else 0)

    def time_steps(self) -> list[TimeStep]:
        return self.time.time_steps() + [("up", 0)] if self.time is not None else []
