"""The world model: the conditions embedded (camera rays, layout maps, trajectory, text, clean
frames) and handed to the multi-view DiT, which predicts the flow velocity of every view's latents."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from einops import rearrange, repeat
from torch import nn

from drivesim.errors import ConfigError
from drivesim.wfm.conditions import Conditions, Prepared
from drivesim.wfm.conditioning import LayoutEncoder, RayEncoder, TrajectoryEncoder, plucker_maps, pool_time
from drivesim.wfm.dit import PRESETS, DiTConfig, MultiViewDiT, azimuth_neighbours
from drivesim.wfm.text import ENCODERS, text_encoder

PREDICTIONS = ("velocity", "data")
ANCHORS = ("none", "last_clean")


def velocity_from_data(x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """The flow velocity of the `data` prediction: x_t [B, ...] at times t [B], network output [B, ...].

    With x_t = (1 - t) x0 + t noise and unit-variance data, EDM's preconditioning reads
    x0_hat = c_skip x_t + c_out output, c_skip = (1 - t) / n2, c_out = t / sqrt(n2), n2 = (1 - t)^2 + t^2,
    so the target of `output` has unit variance at every t, and a network that outputs zero already
    predicts the mean latent (a flat mean image, not noise). velocity = (x_t - x0_hat) / t simplifies to
    ((2t - 1) x_t - sqrt(n2) output) / n2, finite at t = 0, and the rectified-flow loss on it weighs
    the output's error by 1 / n2, between 1 and 2.
    """
    time = t.to(torch.float32).reshape(-1, *[1] * (x_t.dim() - 1))
    n2 = (1 - time).square() + time.square()
    velocity = ((2 * time - 1) * x_t.float() - n2.sqrt() * output.float()) / n2
    return velocity.to(output.dtype)


@dataclass
class WorldModelConfig(DiTConfig):
    """The DiT's shape plus how conditions enter it."""

    temporal_compression: int = 4   # the tokenizer's: video frames per latent frame after the first
    spatial_compression: int = 8    # the tokenizer's: pixels per latent pixel
    text: str = "wordllama"         # wordllama | trained | t5 | none (see wfm/text.py)
    text_options: dict = field(default_factory=dict)  # e.g. {path: /models/t5-base} for t5
    layout_channels: int = 0        # channels of the layout maps; 0: no layout input
    # Which maps: sparse (render.py: boxes and two kinds of line, the shipped weights before issue 23) or
    # dense (scene_maps.py: every pixel classed, depth, edges, the look).
    layout_maps: str = "sparse"
    # conv: convolutions from full resolution (the shipped weights). patch: 4x4 pixels folded into channels
    # first, about 6x fewer multiply-adds for the same patch-grid features (conditioning.LayoutEncoder).
    layout_encoder: str = "conv"
    # What the DiT's output means. velocity: the flow velocity itself (Cosmos-Predict2.5). data: a
    # unit-variance correction to a skip path that already estimates the clean latents (EDM's
    # preconditioning, as Cosmos-Predict1), turned into a velocity here; see velocity_from_data.
    prediction: str = "velocity"
    # With prediction: data, what the skip path starts from. none: the mean latent (zero). last_clean:
    # the last latent frame given clean, so a fresh model continues a given frame by holding it and
    # learns the change on top (no clean frame: the mean, as none).
    anchor: str = "none"

    def validate(self) -> WorldModelConfig:
        super().validate()
        for name in ("temporal_compression", "spatial_compression"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        if isinstance(self.layout_channels, bool) or not isinstance(self.layout_channels, int) \
                or self.layout_channels < 0:
            raise ConfigError(f"model.layout_channels must be an integer >= 0, got {self.layout_channels!r}")
        from drivesim.scene_maps import KINDS

        if self.layout_maps not in KINDS:
            raise ConfigError(f"model.layout_maps must be one of {', '.join(KINDS)}, got {self.layout_maps!r}")
        if self.text not in (*ENCODERS, "none"):
            raise ConfigError(f"model.text must be one of {', '.join((*ENCODERS, 'none'))}, got {self.text!r}")
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"model.prediction must be one of {', '.join(PREDICTIONS)}, got {self.prediction!r}")
        if self.layout_encoder not in LayoutEncoder.KINDS:
            raise ConfigError(f"model.layout_encoder must be one of {', '.join(LayoutEncoder.KINDS)}, "
                              f"got {self.layout_encoder!r}")
        if self.anchor not in ANCHORS:
            raise ConfigError(f"model.anchor must be one of {', '.join(ANCHORS)}, got {self.anchor!r}")
        if self.anchor != "none" and self.prediction != "data":
            raise ConfigError(f"model.anchor={self.anchor} needs model.prediction=data")
        if not isinstance(self.text_options, dict):
            raise ConfigError(f"model.text_options must be a mapping, got {self.text_options!r}")
        return self

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["patch"] = list(self.patch)
        return data


def model_config(section: dict) -> WorldModelConfig:
    """`model: {preset: small, views: all, text: trained, ...}` -> a validated WorldModelConfig."""
    section = dict(section or {})
    preset = section.pop("preset", "small")
    if preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    known = {f.name for f in dataclasses.fields(WorldModelConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"model: unknown key {unknown[0]!r} (known: preset, {', '.join(sorted(known))})")
    values = {**dataclasses.asdict(PRESETS[preset]()), **section}
    values["patch"] = tuple(values["patch"]) if isinstance(values["patch"], (list, tuple)) else values["patch"]
    return WorldModelConfig(**values).validate()


def with_tokenizer(section: dict | None, tokenizer) -> dict:
    """The model section with the tokenizer's compression and latent channels (TokenizerConfig), which the
    model must share: filled in where absent, ConfigError naming the key where the section disagrees."""
    section = dict(section or {})
    for name in ("temporal_compression", "spatial_compression", "latent_channels"):
        value = getattr(tokenizer, name)
        if section.setdefault(name, value) != value:
            raise ConfigError(f"model.{name}={section[name]} but the tokenizer has {value}")
    return section


def last_clean_frame(latents: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """[B, V, 1, C, h, w]: each sample's last latent frame given clean (zeros where none is)."""
    frames = latents.shape[2]
    index = torch.arange(frames, device=latents.device)
    last = torch.where(clean, index, torch.full_like(index, -1)).amax(dim=1)  # [B], -1: no clean frame
    picked = latents[torch.arange(latents.shape[0], device=latents.device), :, last.clamp(min=0)]  # [B, V, C, h, w]
    return torch.where((last >= 0)[:, None, None, None, None], picked, torch.zeros_like(picked))[:, :, None]


class WorldModel(nn.Module):
    """velocity = model(noisy latents, flow time, cameras, trajectory, clean frames, text, layout)."""

    def __init__(self, config: WorldModelConfig):
        super().__init__()
        self.config = config.validate()
        dim, channels = config.dim, config.latent_channels
        self.rays = RayEncoder(dim)
        pt, ph, pw = config.patch
        self.layout = (LayoutEncoder(config.layout_channels, dim, spatial=config.spatial_compression * ph,
                                     temporal=config.temporal_compression, kind=config.layout_encoder)
                       if config.layout_channels else None)
        self.trajectory = TrajectoryEncoder(config.condition_dim)
        options = dict(config.text_options)
        if config.text == "trained":  # sized with the model unless the config says otherwise
            options.setdefault("dim", config.condition_dim)
            options.setdefault("vocab_size", 4096)
        encoder = text_encoder(config.text, **options) if config.text != "none" else None
        # The trained encoder is an nn.Module, a submodule whose weights live in the checkpoint; the frozen ones
        # (wordllama, T5) are not modules, so they stay out of it and ship with their packages (text.py).
        self.text = encoder
        self.text_proj = nn.Linear(encoder.dim, config.condition_dim) if encoder is not None else None
        # Always one key for cross-attention, so a sample with every condition dropped still attends.
        self.null_token = nn.Parameter(torch.randn(1, 1, config.condition_dim) * 0.02)
        self.dit = MultiViewDiT(config, in_channels=channels + 1)  # + 1: the clean-frame mask
        # The tokenizer's latent statistics (set by the training task): the DiT sees unit-variance latents.
        self.register_buffer("latent_mean", torch.zeros(channels))
        self.register_buffer("latent_std", torch.ones(channels))

    def normalize(self, latents: torch.Tensor) -> torch.Tensor:
        """Tokenizer latents [B, V, T, C, h, w] -> the model's unit-variance space."""
        return (latents - self.latent_mean[:, None, None]) / self.latent_std[:, None, None]

    def denormalize(self, latents: torch.Tensor) -> torch.Tensor:
        return latents * self.latent_std[:, None, None] + self.latent_mean[:, None, None]

    def check_inputs(self, latents: torch.Tensor, conditions: Conditions) -> None:
        """ConfigError naming the condition whose shape does not fit latents [B, V, T, C, h, w]."""
        if latents.dim() != 6 or latents.shape[3] != self.config.latent_channels:
            raise ConfigError(f"latents have shape {tuple(latents.shape)}; the world model takes "
                              f"[B, V, T, {self.config.latent_channels}, h, w]")
        batch, views, frames = latents.shape[:3]
        video_frames = 1 + self.config.temporal_compression * (frames - 1)
        expected = {"intrinsics": (conditions.intrinsics, (batch, views, 3, 3)),
                    "ego_from_cam": (conditions.ego_from_cam, (batch, views, 4, 4)),
                    "ego0_from_ego": (conditions.ego0_from_ego, (batch, video_frames, 4, 4))}
        if conditions.clean is not None:
            expected["clean"] = (conditions.clean, (batch, frames))
        for name, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise ConfigError(f"{name} has shape {tuple(value.shape)}, expected {shape} for latents "
                                  f"{tuple(latents.shape)}")
        if conditions.layout is not None and self.layout is not None:
            s = self.config.spatial_compression
            shape = (batch, views, video_frames, self.config.layout_channels,
                     latents.shape[4] * s, latents.shape[5] * s)
            if tuple(conditions.layout.shape) != shape:
                raise ConfigError(f"layout has shape {tuple(conditions.layout.shape)}, expected {shape}")
        if self.text is not None and conditions.captions is not None and len(conditions.captions) != batch:
            raise ConfigError(f"{len(conditions.captions)} captions for a batch of {batch}")

    def prepare(self, conditions: Conditions, latent_shape: tuple[int, ...]) -> Prepared:
        """What every call on latents of `latent_shape` [B, V, T, C, h, w] under these conditions shares: the
        cameras' rays, the neighbouring views and the caption tokens. A sampler prepares once per chunk."""
        frames, height, width = latent_shape[2], latent_shape[4], latent_shape[5]
        config, device = self.config, conditions.intrinsics.device
        rays = self.camera_rays(conditions.intrinsics, conditions.ego_from_cam, conditions.ego0_from_ego,
                                (frames, height, width))
        neighbours = None
        if config.views in ("neighbours", "all"):
            count = config.neighbours if config.views == "neighbours" else latent_shape[1] - 1
            neighbours = azimuth_neighbours(conditions.ego_from_cam, count)
        text = None
        if self.text is not None:
            captions = conditions.captions if conditions.captions is not None else [""] * latent_shape[0]
            text = self.text.encode(list(captions), device)
        dtype = self.dit.patch_in.weight.dtype
        layout_tokens = None
        if self.layout is not None and conditions.layout is not None:
            layout_tokens = self.layout(conditions.layout.to(dtype))
            if config.patch[0] > 1:
                layout_tokens = rearrange(layout_tokens, "b v (t pt) h w d -> b v t pt h w d",
                                          pt=config.patch[0]).mean(dim=3)
        return Prepared(rays, neighbours, text, self.rays(rays.to(dtype)), layout_tokens)

    def forward(self, latents: torch.Tensor, t: torch.Tensor, conditions: Conditions,
                prepared: Prepared | None = None) -> torch.Tensor:
        """latents [B, V, T, C, h, w] (normalised; clean frames hold their clean values), t [B] -> velocity
        [B, V, T, C, h, w]. prepared: self.prepare(conditions, latents.shape), when the caller has it already
        (a sampler calls the model many times with the same conditions, and checked them when it prepared)."""
        if prepared is None:
            self.check_inputs(latents, conditions)
            prepared = self.prepare(conditions, latents.shape)
        config = self.config
        batch, views, frames, _, height, width = latents.shape
        dtype = self.dit.patch_in.weight.dtype
        kept = conditions.kept(latents.device)

        clean = conditions.clean
        if clean is None:
            clean = torch.zeros(batch, frames, dtype=torch.bool, device=latents.device)
        mask = repeat(clean.to(latents.dtype), "b t -> b v t 1 h w", v=views, h=height, w=width)
        x = torch.cat([latents, mask], dim=3)

        ray_tokens = prepared.ray_tokens if prepared.ray_tokens is not None else self.rays(prepared.rays.to(dtype))
        extra = ray_tokens * kept["rays"].to(dtype)[:, None, None, None, None, None]
        if prepared.layout_tokens is not None:
            extra = extra + prepared.layout_tokens * kept["layout"].to(dtype)[:, None, None, None, None, None]

        context, context_mask = self._context(conditions.ego0_from_ego, prepared.text, kept, batch, latents.device,
                                              dtype)
        output = self.dit(x.to(dtype), t, extra, context, context_mask, prepared.neighbours)
        if config.prediction == "data":
            if config.anchor == "last_clean":
                # x_t - (1 - t) r is the noisy residual x0 - r; its velocity is the latents' minus r
                anchor = last_clean_frame(latents, clean)
                time = t.to(latents.dtype).reshape(-1, 1, 1, 1, 1, 1)
                return velocity_from_data(latents - (1 - time) * anchor, t, output) - anchor.to(output.dtype)
            return velocity_from_data(latents, t, output)
        return output

    def camera_rays(self, intrinsics, ego_from_cam, ego0_from_ego, latent_shape: tuple[int, int, int]):
        """Plücker rays pooled to the patch grid of latents of (frames, height, width): [B, V, T', 6, h', w']."""
        config = self.config
        frames, height, width = latent_shape
        pt = config.patch[0]
        grid = self.dit.patch_grid(frames, height, width)
        s = config.spatial_compression
        rays = plucker_maps(intrinsics.float(), ego_from_cam.float(), ego0_from_ego.float(),
                            image_size=(width * s, height * s), grid=(grid[1], grid[2]))
        rays = pool_time(rays, config.temporal_compression, dim=2)
        if pt > 1:
            rays = rearrange(rays, "b v (t pt) c h w -> b v t pt c h w", pt=pt).mean(dim=3)
        return rays

    def _context(self, ego0_from_ego, text, kept, batch, device, dtype):
        """Condition tokens [B, N, D] and their mask [B, N]: null token, trajectory, text (prepared tokens)."""
        parts = [self.null_token.to(dtype).expand(batch, -1, -1)]
        masks = [torch.ones(batch, 1, dtype=torch.bool, device=device)]
        trajectory = self.trajectory(ego0_from_ego.to(dtype))
        parts.append(trajectory)
        masks.append(kept["trajectory"][:, None].expand(-1, trajectory.shape[1]))
        if self.text is not None:
            tokens, text_mask = text
            parts.append(self.text_proj(tokens.to(dtype)))
            masks.append(text_mask.to(device) & kept["text"][:, None])
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1)
