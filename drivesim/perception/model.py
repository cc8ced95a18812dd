"""The detector network: one small residual CNN with a top-down (FPN) neck run on every camera image with
shared weights, and CenterNet heads at stride 4. Cameras enter through per-pixel rays only, so it takes any
rig and any number of cameras."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from drivesim.errors import ConfigError
from drivesim.geometry import camera_rays
from drivesim.perception.categories import CLASSES
from drivesim.perception.targets import REGRESSION, STRIDE

GROUPS = 8          # GroupNorm groups: batch-size independent, as a frame's cameras share one batch
HEAT_PRIOR = 0.01   # initial heat-map probability: the focal loss starts near its background value
# Initial regression outputs: about 10 m away at the reference focal length, about a car's size (log metres),
# so the first steps learn the scene, not the units.
REGRESSION_START = {"log_depth": 2.3, "log_w": 0.5, "log_l": 1.2, "log_h": 0.5, "cos_alpha": 0.5}


@dataclass
class DetectorConfig:
    """The network's size; the classes and the output stride are fixed (categories.py, targets.py)."""

    channels: tuple[int, ...] = (32, 64, 128, 192)   # per stage, at strides 4, 8, 16, 32
    blocks: tuple[int, ...] = (1, 2, 2, 1)           # residual blocks per stage
    neck: int = 64                                   # channels of the stride-4 map the heads read
    head: int = 64                                   # hidden channels of each head

    def validate(self) -> DetectorConfig:
        if len(self.channels) != 4 or len(self.blocks) != 4:
            raise ConfigError(f"model.channels and model.blocks need 4 values (strides 4 to 32), got "
                              f"{list(self.channels)} and {list(self.blocks)}")
        for name, value in (("channels", self.channels), ("neck", (self.neck,)), ("head", (self.head,))):
            if any(c < GROUPS or c % GROUPS for c in value):
                raise ConfigError(f"model.{name} must be multiples of {GROUPS}, got {value}")
        if any(b < 0 for b in self.blocks):
            raise ConfigError(f"model.blocks must be >= 0, got {list(self.blocks)}")
        return self


def conv_norm(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                         nn.GroupNorm(GROUPS, out_channels), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Two 3x3 convolutions and a skip (ResNet's basic block, GroupNorm)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(conv_norm(channels, channels), nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
                                  nn.GroupNorm(GROUPS, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


def head(in_channels: int, hidden: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, hidden, 3, 1, 1), nn.ReLU(inplace=True),
                         nn.Conv2d(hidden, out_channels, 1))


def levelled_rays(intrinsics: torch.Tensor, ego_from_cam: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """[..., 3, H, W] unit ray per pixel in the ego frame turned about z to the camera's heading: (forward, left,
    up). It carries focal length, principal point, pitch and roll; not the camera's azimuth, which a single
    image cannot see, so every camera of a rig looks alike to the network."""
    rays = camera_rays(intrinsics, width, height)                  # [..., H, W, 3] camera frame
    rotation = ego_from_cam[..., :3, :3]
    rays = rays @ rotation[..., None, :, :].transpose(-1, -2)       # [..., H, W, 3] ego frame
    axis = rotation[..., :, 2]                                      # [..., 3] optical axis in the ego frame
    heading = torch.atan2(axis[..., 1], axis[..., 0])[..., None, None]
    cos, sin = torch.cos(heading), torch.sin(heading)
    forward = cos * rays[..., 0] + sin * rays[..., 1]
    left = -sin * rays[..., 0] + cos * rays[..., 1]
    return torch.stack([forward, left, rays[..., 2]], dim=-3)     # [..., 3, H, W]


class CameraDetector(nn.Module):
    """Images [B, V, 3, H, W] in [-1, 1] with their cameras -> heat-map logits [B, V, C, H/4, W/4] and
    regression [B, V, R, H/4, W/4] (targets.REGRESSION). H and W must be multiples of 32."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.config = config.validate()
        c = config.channels
        # 6 input channels: the picture and its levelled rays (where the pixel looks: the horizon, the ground).
        half = max(GROUPS, c[0] // 2 // GROUPS * GROUPS)
        self.stem = nn.Sequential(conv_norm(6, half, 2), conv_norm(half, c[0], 2))
        self.stages = nn.ModuleList()
        for i, (channels, blocks) in enumerate(zip(c, config.blocks)):
            down = [conv_norm(c[i - 1], channels, 2)] if i else []
            self.stages.append(nn.Sequential(*down, *(ResBlock(channels) for _ in range(blocks))))
        self.laterals = nn.ModuleList(nn.Conv2d(channels, config.neck, 1) for channels in c)
        self.smooth = conv_norm(config.neck, config.neck)
        # The heads see the rays again at stride 4: depth from one image is mostly "how far below the horizon".
        self.heat = head(config.neck + 3, config.head, len(CLASSES))
        self.box = head(config.neck + 3, config.head, len(REGRESSION))
        nn.init.constant_(self.heat[-1].bias, float(torch.logit(torch.tensor(HEAT_PRIOR))))
        with torch.no_grad():
            for name, value in REGRESSION_START.items():
                self.box[-1].bias[REGRESSION.index(name)] = value

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor, ego_from_cam: torch.Tensor) -> dict:
        views, height, width = images.shape[1], images.shape[-2], images.shape[-1]
        if height % 32 or width % 32:
            raise ConfigError(f"the detector takes images whose sides are multiples of 32, got {width}x{height}")
        rays = levelled_rays(intrinsics.float(), ego_from_cam.float(), width, height).to(images.dtype)
        x = rearrange(torch.cat([images, rays], dim=2), "b v c h w -> (b v) c h w")  # (B V, 6, H, W)
        features = []
        x = self.stem(x)                                                             # (B V, c0, H/4, W/4)
        for stage in self.stages:
            x = stage(x)
            features.append(x)                                                       # strides 4, 8, 16, 32
        top = self.laterals[-1](features[-1])                                        # (B V, neck, H/32, W/32)
        for lateral, feature in zip(reversed(self.laterals[:-1]), reversed(features[:-1])):
            top = F.interpolate(top, size=feature.shape[-2:], mode="nearest") + lateral(feature)
        neck = self.smooth(top)                                                      # (B V, neck, H/4, W/4)
        coarse_rays = F.avg_pool2d(rearrange(rays, "b v c h w -> (b v) c h w"), STRIDE)
        neck = torch.cat([neck, coarse_rays], dim=1)                                 # (B V, neck + 3, H/4, W/4)
        return {"heatmap": rearrange(self.heat(neck), "(b v) c h w -> b v c h w", v=views),
                "regression": rearrange(self.box(neck), "(b v) c h w -> b v c h w", v=views)}
