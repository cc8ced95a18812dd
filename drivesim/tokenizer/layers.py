"""Building blocks of the causal tokenizer: causal convolutions, factorized residual blocks, causal down- and
upsampling, and attention within a frame. Tensors are [N, C, T, H, W].

Layers that move along time describe it with `time_steps()`, a list of steps in the order they run, which
drivesim.tokenizer.chunked walks to compute the receptive field:
  ("conv", b)  output t reads inputs t-b .. t
  ("down", b)  output t reads inputs 2t-b .. 2t
  ("up", 0)    output t reads input (t+1)//2 (each input becomes two frames, and the one before frame 0 is dropped)
Inputs before frame 0 are padding (copies of frame 0).

The layers keep activations channels-last (torch.channels_last_3d, memory order N, T, H, W, C): spatial
convolutions then run as 2D ones over all frames at once, 1x1x1 ones as one matrix product, and attention
reads its queries, keys and values as views; oneDNN runs all of these without reordering. The parameters
and what each layer computes are those of plain nn.Conv3d layers on [N, C, T, H, W] (tests/tokenizer/
test_fast_paths.py checks this against the plain code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

__all__ = ["ChannelRMSNorm", "CausalConv3d", "factorized_conv", "ResBlock", "SpatialAttention",
           "Downsample", "Upsample", "collect_time_steps", "pair_mean", "channels_last", "pointwise"]

TimeStep = tuple[str, int]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """x [N, C, T, H, W] in memory order N, T, H, W, C (no copy if it is already)."""
    return x.contiguous(memory_format=torch.channels_last_3d)


def as_frames(x: torch.Tensor) -> torch.Tensor:
    """Channels-last [N, C, T, H, W] -> [(N T), C, H, W], channels-last 2D frames: a view."""
    return channels_last(x).transpose(1, 2).flatten(0, 1)


def from_frames(frames: torch.Tensor, batch: int) -> torch.Tensor:
    """The inverse of as_frames: [(N T), C, H, W] -> [N, C, T, H, W], a view."""
    return frames.unflatten(0, (batch, -1)).transpose(1, 2)


def prepared_weight(conv: nn.Conv3d, make=lambda w: w.contiguous(memory_format=torch.channels_last_3d)):
    """make(conv.weight): by default the weight in the channels-last order oneDNN computes in, which it
    would otherwise copy it to at every call. Outside autograd the result is kept on the module until the
    weight changes (an optimizer step or load_state_dict raises its version)."""
    weight = conv.weight
    if weight.requires_grad and torch.is_grad_enabled():
        return make(weight)
    key = (make, id(weight), weight.data_ptr(), weight._version, weight.dtype, weight.device)
    if getattr(conv, "_prepared", (None,))[0] != key:
        with torch.inference_mode(False):  # an ordinary tensor, usable by later calls whatever their mode
            conv._prepared = (key, make(weight.detach()))
    return conv._prepared[1]


def pointwise(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 nn.Conv3d applied as one matrix product over the channels-last positions."""
    out = F.linear(channels_last(x).permute(0, 2, 3, 4, 1), conv.weight.flatten(1), conv.bias)  # (N, T, H, W, C')
    return out.permute(0, 4, 1, 2, 3)


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
        # Each kind runs as a 2D convolution, which oneDNN takes for any width (PyTorch sends small 3D ones
        # to a slower fallback): over all frames at once, or over time with the pixels in a row.
        weight, bias, (time_stride, space_stride, _) = prepared_weight(self.conv), self.conv.bias, self.conv.stride
        if self.time_pad == 0:
            frames = as_frames(x)
            if self.space_pad:
                frames = F.pad(frames, (self.space_pad,) * 4, mode="replicate")
            return from_frames(F.conv2d(frames, weight.squeeze(2), bias, stride=space_stride), x.shape[0])
        padded = F.pad(channels_last(x), (self.space_pad,) * 4 + (self.time_pad, 0), mode="replicate")
        if self.space_pad:  # not used by the tokenizer's layers
            return F.conv3d(padded, weight, bias, self.conv.stride)
        n, _, _, height, width = padded.shape
        out = F.conv2d(padded.flatten(3), weight.flatten(3), bias, stride=(time_stride, 1))  # (N, C', T', (H W))
        return out.unflatten(3, (height, width))

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
        x = channels_last(x)
        h = self.conv1(F.silu(x))
        h = self.conv2(F.silu(h))
        return (x if isinstance(self.skip, nn.Identity) else pointwise(self.skip, x)) + h


class SpatialAttention(nn.Module):
    """Self-attention among the positions of each frame; none across time, so the receptive field stays finite."""

    def __init__(self, channels: int, head_dim: int = 64):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = ChannelRMSNorm(channels)
        self.qkv = nn.Conv3d(channels, 3 * channels, 1)
        self.proj = nn.Conv3d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, channels, frames, height, width = x.shape
        x = channels_last(x)
        tokens = self.norm(x).permute(0, 2, 3, 4, 1).reshape(n * frames, height * width, channels)  # a view
        qkv = F.linear(tokens, self.qkv.weight.flatten(1), self.qkv.bias)  # ((n t), (h w), (three heads d))
        # Views with the head dimension innermost, which the fused (flash) CPU kernel takes; the plain
        # rearrange's strided ones sent PyTorch to its 3.5x slower math path.
        q, k, v = qkv.unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # each ((n t), heads, (h w), d)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)  # ((n t), (h w), (heads d))
        out = F.linear(out, self.proj.weight.flatten(1), self.proj.bias)
        return x + out.view(n, frames, height, width, channels).permute(0, 4, 1, 2, 3)


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
        x = self.space(x) + (from_frames(F.avg_pool2d(as_frames(x), 2), x.shape[0]) if self.shortcut else 0)
        if self.time is None:
            return x
        return self.time(x) + (pair_mean(x) if self.shortcut else 0)

    def time_steps(self) -> list[TimeStep]:
        return self.time.time_steps() if self.time is not None else []


def pair_mean(x: torch.Tensor) -> torch.Tensor:
    """[N, C, 1 + 2k, H, W] -> [N, C, 1 + k, H, W]: the mean of frames 2i-1 and 2i (frame 0 with itself)."""
    x = torch.cat([x[:, :, :1], x], dim=2)
    return rearrange(x, "n c (t k) h w -> n c t k h w", k=2).mean(dim=3)


def _phase_taps(weight: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A 3-tap kernel along `dim` applied to a nearest-doubled input, as two 2-tap kernels on the undoubled
    one: output 2y reads inputs y-1, y with taps (w0, w1 + w2); output 2y+1 reads y, y+1 with (w0 + w1, w2)."""
    before, centre, after = weight.unbind(dim)
    return torch.stack([before, centre + after], dim), torch.stack([before + centre, after], dim)


def _subpixel_kernels(weight: torch.Tensor) -> torch.Tensor:
    """(C', C, 1, 3, 3) -> (4 C', C, 2, 2): one 2x2 kernel per output phase (row parity, column parity)."""
    kernels = [kernel for rows in _phase_taps(weight.squeeze(2), 2) for kernel in _phase_taps(rows, 3)]
    return torch.cat(kernels).contiguous(memory_format=torch.channels_last)


class Upsample(nn.Module):
    """Double time (causally, when asked), then height and width (nearest, then a convolution).

    The spatial step runs as four 2x2 convolutions of the undoubled frames, one per output phase: the same
    sums as the 3x3 convolution of the doubled frames (whose replicate padding is the doubled padding) in
    4/9 of the multiply-adds, and the doubled frames are never made.
    """

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
        return from_frames(self._double_space(as_frames(x)), x.shape[0])

    def _double_space(self, frames: torch.Tensor) -> torch.Tensor:
        """[F, C, H, W] channels-last -> the convolution of their nearest doubling (plus it, with the shortcut)."""
        count, _, height, width = frames.shape
        conv, out_channels = self.space.conv, self.space.conv.out_channels
        phases = F.conv2d(F.pad(frames, (1, 1, 1, 1), mode="replicate"), prepared_weight(conv, _subpixel_kernels),
                          conv.bias.repeat(4))  # (F, 4 C', H + 1, W + 1): phase (p, q) at y + p, x + q
        windows = {(p, q): phases[:, (2 * p + q) * out_channels:(2 * p + q + 1) * out_channels,
                                  p:p + height, q:q + width] for p in (0, 1) for q in (0, 1)}
        if torch.is_grad_enabled():  # differentiable: the phases interleaved by stacking
            pixels = {key: (window + frames if self.shortcut else window).permute(0, 2, 3, 1)
                      for key, window in windows.items()}  # each (F, H, W, C')
            rows = [torch.stack([pixels[p, 0], pixels[p, 1]], dim=3) for p in (0, 1)]  # (F, H, W, 2, C')
            out = torch.stack(rows, dim=2).view(count, 2 * height, 2 * width, out_channels)
            return out.permute(0, 3, 1, 2)
        out = torch.empty(count, out_channels, 2 * height, 2 * width, dtype=frames.dtype, device=frames.device,
                          memory_format=torch.channels_last)
        for (p, q), window in windows.items():  # written straight into their interleaved places
            if self.shortcut:
                torch.add(window, frames, out=out[:, :, p::2, q::2])
            else:
                out[:, :, p::2, q::2] = window
        return out

    def time_steps(self) -> list[TimeStep]:
        return self.time.time_steps() + [("up", 0)] if self.time is not None else []
