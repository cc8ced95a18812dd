"""The world model's geometric and layout conditions as patch-grid features and tokens: per-pixel camera
rays (Plücker) in the first frame's ego frame, the ego trajectory, and layout maps. Text is in text.py."""

from __future__ import annotations

import math

import torch
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from drivesim import geometry
from drivesim.errors import ConfigError

__all__ = ["LayoutEncoder", "RayEncoder", "TrajectoryEncoder", "plucker_maps", "pool_time"]

# A clip's ego travels tens of metres and a rig spans a few: features in units of 10 m stay near 1.
METRES_PER_UNIT = 10.0


def _is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_shape(name: str, tensor: Tensor, expected: tuple[int | None, ...], layout: str) -> None:
    """ConfigError unless tensor matches `expected` (None: any size)."""
    shape = tuple(tensor.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        raise ConfigError(f"{name} has shape {shape}, expected {layout}")


def plucker_maps(intrinsics: Tensor, ego_from_cam: Tensor, ego0_from_ego: Tensor, image_size: tuple[int, int],
                 grid: tuple[int, int], samples: int = 4) -> Tensor:
    """Plücker rays of every view and video frame in frame 0's ego frame, pooled to a patch grid.

    intrinsics [B, V, 3, 3] at image_size = (width, height); ego_from_cam [B, V, 4, 4]; ego0_from_ego
    [B, F, 4, 4]; grid = (rows, columns) of cells, dividing the image exactly. Returns [B, V, F, 6, rows,
    columns]: per cell, the mean over its pixels of (direction, moment), both divided by the mean direction's
    length, so each cell holds the Plücker ray through the camera centre along the cell's mean direction.
    The mean is taken over samples x samples points spread evenly over each cell (every pixel centre when a
    cell is no larger), so the full-resolution map is never built. Computed in float32 at least.
    """
    width, height = image_size
    rows, columns = grid
    if not all(_is_positive_int(v) for v in (width, height, rows, columns, samples)):
        raise ConfigError(f"plucker_maps: image_size {image_size!r}, grid {grid!r} and samples {samples!r} "
                          "must be positive integers")
    if width % columns or height % rows:
        raise ConfigError(f"plucker_maps: image {width}x{height} (width x height) does not split into a grid "
                          f"of {rows} rows x {columns} columns")
    _check_shape("intrinsics", intrinsics, (None, None, 3, 3), "[B, V, 3, 3]")
    batch, views = intrinsics.shape[:2]
    _check_shape("ego_from_cam", ego_from_cam, (batch, views, 4, 4), f"[{batch}, {views}, 4, 4] like intrinsics")
    _check_shape("ego0_from_ego", ego0_from_ego, (batch, None, 4, 4), f"[{batch}, F, 4, 4]")

    cell_height, cell_width = height // rows, width // columns
    samples_y, samples_x = min(samples, cell_height), min(samples, cell_width)
    dtype = torch.promote_types(intrinsics.dtype, torch.float32)
    # bf16 autocast would round the matrix products and, with them, the rays' directions.
    with torch.autocast(device_type=intrinsics.device.type, enabled=False):
        ego0_from_cam = geometry.compose(rearrange(ego0_from_ego.to(dtype), "b f i j -> b 1 f i j"),
                                         rearrange(ego_from_cam.to(dtype), "b v i j -> b v 1 i j"))
        # The sample image: samples_x x samples_y pixels per cell whose centres sit evenly inside the cell.
        sample_intrinsics = geometry.resize_intrinsics(intrinsics.to(dtype), samples_x / cell_width,
                                                       samples_y / cell_height)
        rays = geometry.plucker_rays(rearrange(sample_intrinsics, "b v i j -> b v 1 i j"), ego0_from_cam,
                                     columns * samples_x, rows * samples_y)  # [B, V, F, H', W', 6]
        rays = reduce(rays, "b v f (gh sy) (gw sx) c -> b v f c gh gw", "mean", sy=samples_y, sx=samples_x)
        # Every sample shares the camera centre o, so the mean moment is o x (mean direction).
        return rays / torch.linalg.vector_norm(rays[:, :, :, :3], dim=3, keepdim=True)


def pool_time(x: Tensor, temporal_compression: int = 4, dim: int = 2) -> Tensor:
    """Per-video-frame values -> per-latent-frame values, as the causal tokenizer groups frames: frame 0
    alone, then the mean of each following group of `temporal_compression` frames (F = 1 + k*tc)."""
    if not _is_positive_int(temporal_compression):
        raise ConfigError(f"pool_time: temporal_compression must be a positive integer, got {temporal_compression!r}")
    if not -x.dim() <= dim < x.dim():
        raise ConfigError(f"pool_time: dim {dim} is out of range for a tensor of shape {tuple(x.shape)}")
    frames = x.shape[dim]
    if frames < 1 or (frames - 1) % temporal_compression:
        raise ConfigError(f"pool_time: {frames} frames along dim {dim} of {tuple(x.shape)}; need "
                          f"1 + k*{temporal_compression} frames (k >= 0)")
    by_frame = x.movedim(dim, 0)
    if frames == 1:
        return x.clone()
    groups = reduce(by_frame[1:], "(latent frame) ... -> latent ...", "mean", frame=temporal_compression)
    return torch.cat([by_frame[:1], groups]).movedim(0, dim)


class RayEncoder(nn.Module):
    """Pooled Plücker rays (6 channels per patch) -> one embedding per patch token."""

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(6, dim), nn.SiLU(), nn.Linear(dim, dim))
        # Directions are unit already; moments are metres (origin x direction).
        self.register_buffer("scale", torch.tensor([1.0] * 3 + [1 / METRES_PER_UNIT] * 3), persistent=False)

    def forward(self, rays: Tensor) -> Tensor:
        """[B, V, T, 6, h, w] -> [B, V, T, h, w, dim]."""
        _check_shape("rays", rays, (None, None, None, 6, None, None), "[B, V, T, 6, h, w]")
        features = rearrange(rays, "b v t c h w -> b v t h w c")
        return self.mlp((features * self.scale).to(self.mlp[0].weight.dtype))


class TrajectoryEncoder(nn.Module):
    """The ego's pose at every video frame, in frame 0's ego frame -> one token per frame."""

    FEATURES = 3 + 6 + 1  # translation, the rotation's first two columns, time in the clip

    def __init__(self, dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(self.FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, ego0_from_ego: Tensor) -> Tensor:
        """[B, F, 4, 4] -> [B, F, dim]."""
        _check_shape("ego0_from_ego", ego0_from_ego, (None, None, 4, 4), "[B, F, 4, 4]")
        batch, frames = ego0_from_ego.shape[:2]
        translation = ego0_from_ego[..., :3, 3] / METRES_PER_UNIT
        # Two columns fix a rotation and, unlike angles, vary continuously with it.
        rotation = rearrange(ego0_from_ego[..., :3, :2], "b f i j -> b f (i j)")
        index = torch.arange(frames, device=ego0_from_ego.device, dtype=ego0_from_ego.dtype) / frames
        features = torch.cat([translation, rotation, repeat(index, "f -> b f 1", b=batch)], dim=-1)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class LayoutEncoder(nn.Module):
    """Layout control maps per view and video frame -> per-patch features added to the latent tokens.

    Starts at exactly zero (zero-initialised projection), so adding it leaves a pretrained model unchanged
    until training teaches it what the maps mean.
    """

    BASE_WIDTH = 32  # channels of the full-resolution convolution, doubled at every downsampling
    KINDS = ("conv", "patch")
    UNSHUFFLE = 4  # patch: pixels folded into channels per side before the first convolution

    def __init__(self, channels: int, dim: int, spatial: int = 16, temporal: int = 4, kind: str = "conv"):
        super().__init__()
        if not all(_is_positive_int(v) for v in (channels, dim, spatial, temporal)):
            raise ConfigError(f"LayoutEncoder: channels {channels!r}, dim {dim!r}, spatial {spatial!r} and "
                              f"temporal {temporal!r} must be positive integers")
        if spatial & (spatial - 1):
            raise ConfigError(f"LayoutEncoder: spatial must be a power of two (pixels per patch), got {spatial}")
        if kind not in self.KINDS:
            raise ConfigError(f"LayoutEncoder: kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        self.channels, self.spatial, self.temporal = channels, spatial, temporal
        if kind == "patch" and spatial >= self.UNSHUFFLE:
            layers, width = self._patch_layers(channels, dim, spatial)
        else:
            layers, width = self._conv_layers(channels, dim, spatial)
        self.convs = nn.Sequential(*layers)
        self.project = nn.Linear(width, dim)
        nn.init.zeros_(self.project.weight)
        nn.init.zeros_(self.project.bias)

    def _conv_layers(self, channels: int, dim: int, spatial: int) -> tuple[list[nn.Module], int]:
        """conv: a 3x3 convolution at full resolution, then one stride-2 convolution per halving."""
        downsamples = int(math.log2(spatial))
        widths = [min(dim, self.BASE_WIDTH * 2 ** i) for i in range(downsamples + 1)]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1), nn.SiLU()]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1), nn.SiLU()]
        return layers, widths[-1]

    def _patch_layers(self, channels: int, dim: int, spatial: int) -> tuple[list[nn.Module], int]:
        """patch: each 4x4 pixel block folded into channels (nothing is lost), mixed by a 1x1 convolution,
        then stride-2 convolutions down to the patch grid. At 256x128 and 16-pixel patches this is about a
        sixth of `conv`'s multiply-adds, whose first two layers at full and half resolution cost the most."""
        unshuffle = self.UNSHUFFLE
        downsamples = int(math.log2(spatial // unshuffle))
        widths = [min(dim, 2 * self.BASE_WIDTH * 2 ** i) for i in range(downsamples + 1)]
        layers: list[nn.Module] = [nn.PixelUnshuffle(unshuffle), nn.Conv2d(channels * unshuffle ** 2, widths[0], 1),
                                   nn.SiLU()]
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1), nn.SiLU()]
        return layers, widths[-1]
    def forward(self, layout: Tensor) -> Tensor:
        """[B, V, F, C, H, W] at pixel resolution -> [B, V, T, H/spatial, W/spatial, dim], T latent frames."""
        _check_shape("layout", layout, (None, None, None, self.channels, None, None),
                     f"[B, V, F, {self.channels}, H, W]")
        height, width = layout.shape[-2:]
        if height % self.spatial or width % self.spatial:
            raise ConfigError(f"layout maps of {width}x{height} pixels do not split into {self.spatial}-pixel "
                              "patches")
        batch, views = layout.shape[:2]
        # Pooled before the convolutions: one image per latent frame is 4x cheaper than one per video frame.
        pooled = pool_time(layout, self.temporal, dim=2)
        images = rearrange(pooled, "b v t c h w -> (b v t) c h w").to(self.project.weight.dtype)
        features = rearrange(self.convs(images), "(b v t) c h w -> b v t h w c", b=batch, v=views)
        return self.project(features)
