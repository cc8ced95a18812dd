"""The causal video tokenizer (after Cosmos Tokenizer, arXiv 2501.03575): Haar patching, factorized causal
residual stages, spatial attention in the bottleneck; continuous latents, or FSQ-discrete ones.

Videos are [N, 3, T, H, W] in [-1, 1] with T = 1 + tc*k; latents are [N, latent_channels, 1 + k, H/s, W/s].
The first frame is encoded alone, so an image (T = 1) is one latent frame.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from drivesim.errors import ConfigError
from drivesim.tokenizer.fsq import FSQ
from drivesim.tokenizer.lapped import LappedLinear
from drivesim.tokenizer.layers import Downsample, ResBlock, SpatialAttention, Upsample, factorized_conv
from drivesim.tokenizer.wavelet import WaveletPatch, WaveletUnpatch

__all__ = ["TokenizerConfig", "CausalVideoTokenizer", "ShapeError", "PRESETS", "tiny", "small", "base",
           "flatten_views", "unflatten_views"]

VIDEO_CHANNELS = 3


class ShapeError(ConfigError, ValueError):
    """A video or latent tensor whose shape the tokenizer cannot take."""


@dataclass
class TokenizerConfig:
    """A causal video tokenizer: its compressions, widths and depth, and whether latents are quantized."""

    temporal_compression: int = 4  # frames per latent frame after the first: 4 or 8
    spatial_compression: int = 8  # pixels per latent pixel along height and width: 8 or 16
    latent_channels: int = 16
    channels: int = 64  # width of the first stage
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)  # stage widths; the first 1 + downsamples are used
    blocks_per_stage: int = 2
    attention: bool = True  # spatial self-attention in the bottleneck
    wavelet_levels: int = 2  # Haar levels before the first convolution, each 2x in time, height and width
    discrete: bool = False
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    # Parameter-free shortcuts around every resampling and around the latent (DC-AE's residual autoencoding):
    # averaging on the way down, repetition on the way up; the layers learn corrections to them.
    shortcuts: bool = True
    # A linear path beside the deep one: the video cut into tc x s x s pixel blocks, one 1x1 projection to the
    # latent and one back, fitted to the blocks' principal components (fit_linear_path) and then frozen;
    # the deep path learns what a linear map per block cannot.
    linear_path: bool = True
    # A lapped linear path in the decoder (lapped.py): each latent pixel also paints a 2s x 2s window
    # centred on its block, zero at the start, so the decoder can blend blocks into their neighbours.
    lapped: bool = False

    @property
    def downsamples(self) -> int:
        """Stride-2 spatial steps in the encoder, beyond the wavelet levels."""
        return int(math.log2(self.spatial_compression)) - self.wavelet_levels

    @property
    def time_downsamples(self) -> int:
        """Stride-2 temporal steps in the encoder, beyond the wavelet levels (the last ones of the downsamples)."""
        return int(math.log2(self.temporal_compression)) - self.wavelet_levels

    @property
    def stage_widths(self) -> list[int]:
        return [self.channels * m for m in self.channel_multipliers[:self.downsamples + 1]]

    def validate(self) -> TokenizerConfig:
        def fail(field: str, why: str):
            raise ConfigError(f"TokenizerConfig.{field}={getattr(self, field)!r}: {why}")

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        if self.temporal_compression not in (4, 8) or not is_int(self.temporal_compression):
            fail("temporal_compression", "must be 4 or 8")
        if self.spatial_compression not in (8, 16) or not is_int(self.spatial_compression):
            fail("spatial_compression", "must be 8 or 16")
        for field in ("latent_channels", "channels", "blocks_per_stage"):
            if not is_int(getattr(self, field)) or getattr(self, field) < 1:
                fail(field, "must be a positive integer")
        if not is_int(self.wavelet_levels) or not 1 <= self.wavelet_levels <= 2:
            fail("wavelet_levels", "must be 1 or 2 (at most log2 of the temporal compression 4)")
        multipliers = self.channel_multipliers
        if (not isinstance(multipliers, (tuple, list)) or len(multipliers) < self.downsamples + 1
                or not all(is_int(m) and m >= 1 for m in multipliers)):
            fail("channel_multipliers", f"must hold at least {self.downsamples + 1} positive integers "
                 f"(one per stage at spatial compression {self.spatial_compression} with "
                 f"{self.wavelet_levels} wavelet levels)")
        for field in ("attention", "discrete", "shortcuts", "linear_path", "lapped"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "must be true or false")
        if (not isinstance(self.fsq_levels, (tuple, list)) or not self.fsq_levels
                or not all(is_int(level) and level >= 2 for level in self.fsq_levels)):
            fail("fsq_levels", "must be a non-empty list of integers >= 2")
        return self

    def to_dict(self) -> dict:
        """Plain types only, for yaml.safe_dump."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping) -> TokenizerConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"tokenizer config must be a mapping of fields, not {type(data).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"tokenizer config has unknown field(s) {', '.join(map(str, unknown))}; "
                              f"known: {', '.join(sorted(known))}")
        values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
        return cls(**values).validate()


def bottleneck(width: int, attention: bool) -> nn.Sequential:
    """Residual block, spatial attention (optional), residual block: the lowest resolution sees the whole frame."""
    layers = [ResBlock(width, width)] + ([SpatialAttention(width)] if attention else []) + [ResBlock(width, width)]
    return nn.Sequential(*layers)


def zero_last(module: nn.Module) -> None:
    """Zero the last convolution of a module, so it starts as nothing beside a parallel path."""
    last = [m for m in module.modules() if isinstance(m, nn.Conv3d)][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


class BlockLinear(nn.Module):
    """The linear path: video <-> latents through whole tc x s x s pixel blocks and one 1x1 projection.

    Frame 0 is repeated to fill a block of its own, so blocks follow the latent grouping (frame 0 alone,
    then frames 1..tc, ...) and the path is causal; it reads only its own block, so it tiles exactly.
    `fit_linear_path` sets both projections to the blocks' principal components before training.
    """

    def __init__(self, config: TokenizerConfig, to_latent: bool):
        super().__init__()
        self.tc, self.s = config.temporal_compression, config.spatial_compression
        block = VIDEO_CHANNELS * self.tc * self.s ** 2
        self.to_latent = to_latent
        self.proj = (nn.Conv3d(block, config.latent_channels, 1) if to_latent
                     else nn.Conv3d(config.latent_channels, block, 1))

    def blocks(self, video: torch.Tensor) -> torch.Tensor:
        """[N, 3, 1 + tc*k, H, W] -> [N, 3*tc*s*s, 1 + k, H/s, W/s]."""
        video = torch.cat([video[:, :, :1].expand(-1, -1, self.tc - 1, -1, -1), video], dim=2)
        return rearrange(video, "n c (t a) (h i) (w j) -> n (c a i j) t h w", a=self.tc, i=self.s, j=self.s)

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        """Video -> latents, or latents -> video (added into `add_to`, a video, when given). Frame 0's block
        (its copies) is never materialised: its projection sums (or averages) the copies' weights instead."""
        return self._to_latents(x) if self.to_latent else self._to_video(x, add_to)

    def _to_latents(self, video: torch.Tensor) -> torch.Tensor:
        n, c, frames, height, width = video.shape
        tc, s, k, h, w = self.tc, self.s, (frames - 1) // self.tc, height // self.s, width // self.s
        weight = self.proj.weight.view(-1, c, tc, s, s)  # (latent, c, a, i, j)
        first = video[:, :, 0].reshape(n, c, h, s, w, s).permute(0, 2, 4, 1, 3, 5).reshape(n, 1, h, w, c * s * s)
        later = video[:, :, 1:].reshape(n, c, k, tc, h, s, w, s).permute(0, 2, 4, 6, 1, 3, 5, 7)
        latents = torch.cat([F.linear(first, weight.sum(2).flatten(1), self.proj.bias),
                             F.linear(later.reshape(n, k, h, w, c * tc * s * s), weight.flatten(1), self.proj.bias)],
                            dim=1)  # (N, 1 + k, h, w, latent)
        return latents.permute(0, 4, 1, 2, 3)

    def _to_video(self, latents: torch.Tensor, add_to: torch.Tensor | None) -> torch.Tensor:
        n, channels, latent_frames, h, w = latents.shape
        c, tc, s, k = VIDEO_CHANNELS, self.tc, self.s, latent_frames - 1
        weight, bias = self.proj.weight.view(c, tc, s, s, channels), self.proj.bias.view(c, tc, s, s)
        rows = latents.permute(0, 2, 3, 4, 1).reshape(n, 1 + k, h * w, channels)
        first = F.linear(rows[:, 0].reshape(-1, channels), weight.mean(1).flatten(0, 2),
                         bias.mean(1).flatten())  # ((N h w), (c i j)): frame 0 is the mean of its copies
        later = F.linear(rows[:, 1:].reshape(-1, channels), weight.flatten(0, 3), bias.flatten())  # (c a i j) rows
        video = latents.new_zeros(n, c, 1 + tc * k, h * s, w * s) if add_to is None else add_to
        video[:, :, 0].view(n, c, h, s, w, s).add_(first.view(n, h, w, c, s, s).permute(0, 3, 1, 4, 2, 5))
        video[:, :, 1:].view(n, c, k, tc, h, s, w, s).add_(
            later.view(n, k, h, w, c, tc, s, s).permute(0, 4, 1, 5, 2, 6, 3, 7))
        return video

    def time_steps(self) -> list[tuple[str, int]]:
        # A parallel path whose reach (its own block) lies inside the deep path's: it adds no steps.
        return []


@torch.no_grad()
def fit_linear_path(model: "CausalVideoTokenizer", videos: torch.Tensor) -> float:
    """Set the linear path to the principal components of the blocks of `videos` [N, 3, T, H, W]: the best
    linear block code in mean squared error, with whitened (unit-variance) latents. Returns the fraction of
    the block variance it keeps."""
    encoder, decoder = model.encoder.linear, model.decoder.linear
    if encoder is None:
        raise ConfigError("fit_linear_path needs TokenizerConfig.linear_path=True")
    blocks = rearrange(encoder.blocks(videos.float()), "n d t h w -> (n t h w) d").double()
    mean = blocks.mean(dim=0)
    covariance = torch.cov((blocks - mean).T)
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)  # ascending
    k = encoder.proj.out_channels
    basis = eigenvectors[:, -k:].flip(-1).T  # (k, d): the top k components, largest first
    # Whitened: each latent channel has unit variance on the data, whatever its component's energy, so the
    # deep path (and later the world model) sees inputs of one scale; the decoder scales back.
    scale = eigenvalues[-k:].flip(-1).clamp_min(1e-12).sqrt()  # (k,)
    encoder.proj.weight.copy_((basis / scale[:, None]).view(k, -1, 1, 1, 1))
    encoder.proj.bias.copy_(-(basis @ mean) / scale)
    decoder.proj.weight.copy_((basis.T * scale).reshape(-1, k, 1, 1, 1))
    decoder.proj.bias.copy_(mean)
    return float(eigenvalues[-k:].sum() / eigenvalues.sum().clamp_min(1e-12))


class Encoder(nn.Module):
    """Video [N, 3, T, H, W] -> continuous latents [N, latent_channels, 1 + (T-1)/tc, H/s, W/s]."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = config.stage_widths
        # Temporal steps go to the deepest downsamples, so the high-resolution stages keep every frame.
        first_time_step = config.downsamples - config.time_downsamples
        # Registration order is run order: collect_time_steps walks the children in this order.
        self.patch = WaveletPatch(config.wavelet_levels)
        self.conv_in = factorized_conv(VIDEO_CHANNELS * 8 ** config.wavelet_levels, widths[0])
        stages, width = [], widths[0]
        for i, stage_width in enumerate(widths):
            blocks = []
            for _ in range(config.blocks_per_stage):
                blocks.append(ResBlock(width, stage_width))
                width = stage_width
            if i < config.downsamples:
                blocks.append(Downsample(width, time=i >= first_time_step, shortcut=config.shortcuts))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.mid = bottleneck(width, config.attention)
        self.conv_out = factorized_conv(width, config.latent_channels)
        # The linear path is the latent's shortcut when there is one; the deep path then starts at zero.
        self.linear = BlockLinear(config, to_latent=True) if config.linear_path else None
        self.shortcut = config.shortcuts and not config.linear_path and width % config.latent_channels == 0
        if config.linear_path:
            zero_last(self.conv_out)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = self.patch(video)  # (N, 3*8^L, 1 + (T-1)/2^L, H/2^L, W/2^L)
        x = self.stages(self.conv_in(x))  # (N, widths[-1], 1 + (T-1)/tc, H/s, W/s)
        x = self.mid(x)
        latents = self.conv_out(F.silu(x))  # (N, latent_channels, 1 + (T-1)/tc, H/s, W/s)
        if self.shortcut:  # each latent channel also carries the mean of its group of bottleneck channels
            latents = latents + rearrange(x, "n (l g) t h w -> n l g t h w", l=latents.shape[1]).mean(dim=2)
        if self.linear is not None:
            latents = latents + self.linear(video)
        return latents.contiguous()  # the layers ran channels-last; callers get the plain layout


class Decoder(nn.Module):
    """Latents [N, latent_channels, 1 + k, h, w] -> video [N, 3, 1 + tc*k, s*h, s*w]: the encoder mirrored."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = config.stage_widths
        first_time_step = config.downsamples - config.time_downsamples
        width = widths[-1]
        self.conv_in = factorized_conv(config.latent_channels, width)
        self.shortcut = config.shortcuts and width % config.latent_channels == 0
        self.mid = bottleneck(width, config.attention)
        stages = []
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(config.blocks_per_stage):
                blocks.append(ResBlock(width, widths[i]))
                width = widths[i]
            if i > 0:
                blocks.append(Upsample(width, time=i - 1 >= first_time_step, shortcut=config.shortcuts))
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.conv_out = factorized_conv(width, VIDEO_CHANNELS * 8 ** config.wavelet_levels)
        self.unpatch = WaveletUnpatch(config.wavelet_levels)
        self.linear = BlockLinear(config, to_latent=False) if config.linear_path else None
        if config.linear_path:
            zero_last(self.conv_out)
        self.lapped = (LappedLinear(config.latent_channels, config.temporal_compression, config.spatial_compression)
                       if config.lapped else None)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(latents)  # (N, widths[-1], 1 + k, h, w)
        if self.shortcut:  # the mirror of the encoder's: each latent channel repeated over its group
            x = (x.unflatten(1, (latents.shape[1], -1)) + latents.unsqueeze(2)).flatten(1, 2)
        x = self.mid(x)
        x = self.stages(x)  # (N, widths[0], 1 + tc*k/2^L, s*h/2^L, s*w/2^L)
        x = self.conv_out(F.silu(x))  # (N, 3*8^L, ...)
        video = self.unpatch(x)  # (N, 3, 1 + tc*k, s*h, s*w), a new tensor: the linear path adds into it
        if self.lapped is not None:
            video = video + self.lapped(latents)
        return self.linear(latents, add_to=video) if self.linear is not None else video


class CausalVideoTokenizer(nn.Module):
    """Encoder and decoder; with config.discrete, FSQ codes between them (projected to and from len(levels) dims)."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config.validate()
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        if config.linear_path:
            # Fitted to the data (fit_linear_path), then kept: gradient steps on a fitted principal basis
            # only disturbed it (25.4 -> 25.3 dB over 180 steps), while the deep path learns the rest.
            for parameter in [*self.encoder.linear.parameters(), *self.decoder.linear.parameters()]:
                parameter.requires_grad_(False)
        if config.discrete:
            self.quant_proj = nn.Conv3d(config.latent_channels, len(config.fsq_levels), 1)
            self.fsq = FSQ(config.fsq_levels)
            self.post_quant_proj = nn.Conv3d(len(config.fsq_levels), config.latent_channels, 1)

    def check_video(self, video: torch.Tensor) -> None:
        """Raise ShapeError unless video is [N, 3, 1 + tc*k, H, W] with H and W multiples of s."""
        tc, s = self.config.temporal_compression, self.config.spatial_compression
        if video.dim() != 5 or video.shape[1] != VIDEO_CHANNELS:
            raise ShapeError(f"video has shape {tuple(video.shape)}; the tokenizer takes [N, 3, T, H, W] "
                             "(flatten_views turns [B, V, T, C, H, W] into that)")
        frames, height, width = video.shape[2:]
        if (frames - 1) % tc:
            below = 1 + tc * ((frames - 1) // tc)
            raise ShapeError(f"video has {frames} frames; at temporal compression {tc} the tokenizer takes "
                             f"1 + {tc}k frames (the first frame is encoded alone), e.g. {below} or {below + tc}")
        if height % s or width % s:
            raise ShapeError(f"video is {height}x{width} (HxW); height and width must be multiples of the "
                             f"spatial compression {s}")

    def check_latents(self, latents: torch.Tensor) -> None:
        """Raise ShapeError unless latents are [N, latent_channels, T', h, w]."""
        if latents.dim() != 5 or latents.shape[1] != self.config.latent_channels:
            raise ShapeError(f"latents have shape {tuple(latents.shape)}; the decoder takes "
                             f"[N, {self.config.latent_channels}, T', h, w]")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(channels, latent frames, height, width) of the latents of a [*, 3, frames, height, width] video."""
        tc, s = self.config.temporal_compression, self.config.spatial_compression
        return self.config.latent_channels, 1 + (frames - 1) // tc, height // s, width // s

    def _quantize(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous latents -> (FSQ codes [N, T', h, w, D], the latents they stand for)."""
        codes = self.fsq(rearrange(self.quant_proj(latents), "n d t h w -> n t h w d"))
        return codes, self.post_quant_proj(rearrange(codes, "n t h w d -> n d t h w"))

    def _encode(self, video: torch.Tensor) -> tuple[torch.Tensor, dict]:
        self.check_video(video)
        latents = self.encoder(video)  # (N, latent_channels, T', h, w)
        if not self.config.discrete:
            return latents, {}
        codes, quantized = self._quantize(latents)
        return quantized, {"codes": codes, "indices": self.fsq.codes_to_indices(codes)}

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """[N, 3, T, H, W] -> [N, latent_channels, T', h, w]; discrete: the quantized latents, projected back."""
        return self._encode(video)[0]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[N, latent_channels, T', h, w] -> [N, 3, 1 + tc*(T'-1), s*h, s*w]."""
        self.check_latents(latents)
        return self.decoder(latents)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(reconstruction, latents, extras); extras of a discrete model: FSQ `codes` and `indices`."""
        latents, extras = self._encode(video)
        return self.decode(latents), latents, extras

    def encode_indices(self, video: torch.Tensor) -> torch.Tensor:
        """[N, 3, T, H, W] -> int64 codes [N, T', h, w] in [0, prod(fsq_levels)); discrete models only."""
        self._require_discrete("encode_indices")
        return self._encode(video)[1]["indices"]

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """int64 codes [N, T', h, w] -> video [N, 3, T, H, W]; discrete models only."""
        self._require_discrete("decode_indices")
        codes = rearrange(self.fsq.indices_to_codes(indices), "n t h w d -> n d t h w").to(
            self.post_quant_proj.weight.dtype)
        return self.decode(self.post_quant_proj(codes))

    def _require_discrete(self, method: str) -> None:
        if not self.config.discrete:
            raise ConfigError(f"{method} needs a discrete tokenizer (TokenizerConfig.discrete=True)")


def flatten_views(video: torch.Tensor) -> torch.Tensor:
    """Batch-contract video [B, V, T, C, H, W] -> tokenizer layout [(B V), C, T, H, W]."""
    return rearrange(video, "b v t c h w -> (b v) c t h w")


def unflatten_views(x: torch.Tensor, num_views: int) -> torch.Tensor:
    """Tokenizer layout [(B V), C, T, H, W] (video or latents) -> [B, V, T, C, H, W]."""
    return rearrange(x, "(b v) c t h w -> b v t c h w", v=num_views)


# Size presets; any compression combines with any of them, e.g. small(temporal_compression=8).
# Parameters (continuous; discrete adds 214), checked by tests/tokenizer/test_model.py; the linear path's
# share (frozen after fitting) is 2 * 16 * 3*tc*s*s + 16 + 3*tc*s*s: 25,360 at 4x8x8, 50,704 at 8x8x8.
#          4x8x8        8x8x8       8x16x16
#   tiny     104,432      131,544      301,248
#   small  3,129,216    3,265,472    4,537,088
#   base  15,843,584   16,311,936   65,526,528
def tiny(**overrides) -> TokenizerConfig:
    """For tests: seconds on a CPU."""
    return dataclasses.replace(TokenizerConfig(channels=8, channel_multipliers=(1, 2, 2, 2), blocks_per_stage=1),
                               **overrides).validate()


def small(**overrides) -> TokenizerConfig:
    """Trainable on a CPU."""
    return dataclasses.replace(TokenizerConfig(channels=64, channel_multipliers=(1, 2, 2, 2), blocks_per_stage=1),
                               **overrides).validate()


def base(**overrides) -> TokenizerConfig:
    """For one GPU."""
    return dataclasses.replace(TokenizerConfig(channels=128, channel_multipliers=(1, 2, 4, 4), blocks_per_stage=2),
                               **overrides).validate()


PRESETS = {"tiny": tiny, "small": small, "base": base}
