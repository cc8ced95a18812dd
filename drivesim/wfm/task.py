"""The `wfm` training task: clips from the store, encoded on the fly by a frozen tokenizer, learnt
with the rectified-flow loss; each condition dropped now and then for classifier-free guidance, and
the first k latent frames given clean so one model does Text2World, Image2World and Video2World."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from einops import rearrange

from drivesim.errors import ConfigError
from drivesim.tokenizer.model import CausalVideoTokenizer, flatten_views, unflatten_views
from drivesim.train.config import from_dict
from drivesim.wfm import flow
from drivesim.wfm.dit import DiTBlock
from drivesim.wfm.conditions import CONDITIONS, Conditions
from drivesim.wfm.generate import SamplingConfig
from drivesim.wfm.model import WorldModel, model_config, with_tokenizer
from drivesim.wfm.pipeline import WorldModelPipeline, load_tokenizer
from drivesim.wfm.windows import LatentClips


@dataclass
class WfmData:
    """Which clips, which cameras, at what size, and the tokenizer whose latents the model learns."""

    store: str = ""
    tokenizer: str = ""                 # a tokenizer run or checkpoint folder (drivesim train tokenizer)
    frames: int = 9                     # 1 + 4k video frames
    views: list[str] | None = None      # fixed cameras, in rig order; or
    num_views: int | None = None        # this many drawn at random per clip; neither: every camera
    size: list[int] | None = None       # resize the stored frames (width, height)
    # Render layout maps into every batch: true or sparse (drivesim/render.py), dense (drivesim/scene_maps.py).
    layout: bool | str = False
    # Keep this many GB of training windows encoded (latents and layout maps, windows.py) so a window met
    # again skips reading, resizing, rendering and the tokenizer; 0: compute every window every time.
    cache_gb: float = 0.0

    def __post_init__(self):  # from_dict builds it: a bad value is refused with the config's other errors
        if not (isinstance(self.layout, bool) or self.layout in ("sparse", "dense")):
            raise ConfigError(f"data.layout must be true, false, sparse or dense, got {self.layout!r}")


@dataclass
class DropRates:
    """Per-sample probability of training without each condition (classifier-free guidance)."""

    text: float = 0.1
    layout: float = 0.1
    trajectory: float = 0.1
    rays: float = 0.0


@dataclass
class WfmLoss:
    time_shift: float = 1.0        # logit-normal flow time, shifted toward noise when > 1
    time_mean: float = 0.0
    time_std: float = 1.0
    clean_frames: list[float] = field(default_factory=lambda: [0.5, 0.3, 0.2])  # P(k = 0, 1, 2, ...)
    drop: DropRates = field(default_factory=DropRates)
    # uniform: every latent channel counts the same. pixel: each channel weighed by the picture energy a
    # unit of it carries through the tokenizer's decoder (channel_energy), mean 1. The CPU tokenizer's
    # whitened latents put ~90% of the picture in one channel of 16, which uniform weights train as 1/16.
    channel_weights: str = "uniform"

    def validate(self) -> WfmLoss:
        probabilities = self.clean_frames
        if not probabilities or any(not 0 <= p <= 1 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-6:
            raise ConfigError(f"loss.clean_frames must be probabilities of k = 0, 1, ... clean latent frames that "
                              f"sum to 1, got {probabilities}")
        for name in CONDITIONS:
            if not 0 <= getattr(self.drop, name) <= 1:
                raise ConfigError(f"loss.drop.{name} must be in [0, 1], got {getattr(self.drop, name)}")
        if self.channel_weights not in ("uniform", "pixel"):
            raise ConfigError(f"loss.channel_weights must be uniform or pixel, got {self.channel_weights!r}")
        if not self.time_shift > 0 or not self.time_std > 0:
            raise ConfigError("loss.time_shift and loss.time_std must be > 0")
        return self


@torch.no_grad()
def channel_energy(tokenizer: CausalVideoTokenizer, latent_mean: torch.Tensor, latent_std: torch.Tensor,
                   size: int = 4) -> torch.Tensor:
    """[C] the mean squared pixel change the decoder makes for one standard deviation of each latent channel,
    around the mean latent (a size x size grid, two latent frames), normalised to mean 1."""
    channels = latent_mean.shape[0]
    device = latent_mean.device
    base = latent_mean.float()[None, :, None, None, None].expand(1, channels, 2, size, size).contiguous()
    reference = tokenizer.decode(base)
    energy = torch.empty(channels, device=device)
    for c in range(channels):
        moved = base.clone()
        moved[:, c] += latent_std[c].float()
        energy[c] = (tokenizer.decode(moved) - reference).float().square().mean()
    return energy / energy.mean().clamp_min(1e-12)


def _unwrap(model: torch.nn.Module) -> WorldModel:
    return getattr(model, "module", model)


class WfmTask:
    name = "wfm"
    block_types = (DiTBlock,)

    def __init__(self):
        self.weights = WfmLoss()
        self.tokenizer: CausalVideoTokenizer | None = None
        self.layout = False  # data.layout, known once datasets() has run
        self._channel_weights: torch.Tensor | None = None  # loss.channel_weights: pixel, on the first loss

    def configure_loss(self, loss_section: dict) -> None:
        self.weights = from_dict(WfmLoss, loss_section, "loss").validate()

    def datasets(self, data_section: dict):
        from drivesim.data.dataset import ClipDataset

        config = from_dict(WfmData, data_section, "data")
        if not config.store:
            raise ConfigError("data.store is required: a clip store made by `drivesim ingest`")
        if not config.tokenizer:
            raise ConfigError("data.tokenizer is required: a run folder of `drivesim train tokenizer`")
        self.tokenizer = load_tokenizer(config.tokenizer)
        tc = self.tokenizer.config.temporal_compression
        if (config.frames - 1) % tc:
            raise ConfigError(f"data.frames={config.frames} must be 1 + a multiple of {tc} (the tokenizer's "
                              "temporal compression)")
        size = tuple(config.size) if config.size else None
        if not (isinstance(config.layout, bool) or config.layout in ("sparse", "dense")):
            raise ConfigError(f"data.layout must be true, false, sparse or dense, got {config.layout!r}")
        self.layout = "sparse" if config.layout is True else config.layout

        if not 0 <= config.cache_gb < float("inf"):
            raise ConfigError(f"data.cache_gb must be a number of gigabytes >= 0, got {config.cache_gb}")
        options = dict(frames=config.frames, views=config.views, num_views=config.num_views, size=size,
                       layout=config.layout, skip_damaged=True)  # a damaged clip is skipped, counted
        if config.cache_gb > 0:
            train = LatentClips(config.store, self._encode_window, tc, int(config.cache_gb * 1e9), split="train",
                                random_crop=True, **options)
        else:
            train = ClipDataset(config.store, split="train", random_crop=True, **options)
        width, height = size or (train.settings["width"], train.settings["height"])
        unit = self.tokenizer.config.spatial_compression * 2
        if width % unit or height % unit:
            raise ConfigError(f"frames of {width}x{height} must be multiples of {unit} (tokenizer {unit // 2}x "
                              "times the 2x2 patches): set data.size")
        try:
            val = ClipDataset(config.store, split="val", random_crop=False, **options)
        except ConfigError:
            val = None
        return train, val

    def build_model(self, model_section: dict) -> torch.nn.Module:
        section = dict(model_section or {})
        if self.tokenizer is not None:
            section = with_tokenizer(section, self.tokenizer.config)
        config = model_config(section)
        if self.layout:
            from drivesim.scene_maps import channel_count

            channels = channel_count(self.layout)
            if config.layout_channels != channels or config.layout_maps != self.layout:
                raise ConfigError(f"data.layout={self.layout} renders {channels} channels of {self.layout} maps but "
                                  "the "
                                  f"model takes model.layout_channels={config.layout_channels} of "
                                  f"model.layout_maps={config.layout_maps}: set model.layout_channels={channels} "
                                  f"model.layout_maps={self.layout}")
        return WorldModel(config)

    @torch.no_grad()
    def _encode_window(self, video: torch.Tensor) -> torch.Tensor:
        """One window's video [V, F, 3, H, W] -> the tokenizer's latents [V, T, C, h, w] on the CPU."""
        device = next(self.tokenizer.parameters()).device
        latents = self.tokenizer.encode(flatten_views(video[None].to(device)))
        return unflatten_views(latents, video.shape[0])[0].cpu()

    @torch.no_grad()
    def encode(self, model: torch.nn.Module, video: torch.Tensor) -> torch.Tensor:
        """Video [B, V, F, 3, H, W] -> the model's normalised latents [B, V, T, C, h, w]."""
        return self.pipeline(model).encode_views(video)

    def clean_latents(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """A batch's normalised latents: encoded already (data.cache_gb) or now."""
        if "latents" in batch:
            return _unwrap(model).normalize(batch["latents"].float())
        return self.encode(model, batch["video"])

    def pipeline(self, model: torch.nn.Module) -> WorldModelPipeline:
        """The model being trained (unwrapped from DDP/FSDP) with the task's tokenizer, on the model's device."""
        if self.tokenizer is None:
            raise ConfigError("the wfm task has no tokenizer: call datasets() with data.tokenizer first")
        world = _unwrap(model)
        self.tokenizer.to(world.latent_mean.device)
        return WorldModelPipeline(world, self.tokenizer)

    def initialize(self, model, train_set, seed: int, clips: int = 8):
        """Set the latent mean and scale per channel from `clips` training clips."""
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            picks = torch.randint(len(train_set), (clips,)).tolist()
            items = [train_set[i] for i in picks]
        world = _unwrap(model)
        world.latent_mean.zero_()
        world.latent_std.fill_(1)
        batch = {key: torch.stack([item[key] for item in items]).to(world.latent_mean.device)
                 for key in ("latents", "video") if key in items[0]}
        latents = self.clean_latents(model, batch)
        per_channel = rearrange(latents, "b v t c h w -> c (b v t h w)")
        world.latent_mean.copy_(per_channel.mean(dim=1))
        world.latent_std.copy_(per_channel.std(dim=1).clamp_min(1e-6))
        yield (f"latent statistics from {clips} training clips: mean |mu| {world.latent_mean.abs().mean():.3f}, "
               f"std {world.latent_std.min():.3f}..{world.latent_std.max():.3f}")

    def _draw(self, batch: int, frames: int, device) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Clean-frame mask [B, T] and per-condition keep flags, from the trainer's seeded RNG."""
        probabilities = torch.tensor(self.weights.clean_frames[:frames])
        k = torch.multinomial(probabilities / probabilities.sum(), batch, replacement=True)
        clean = torch.arange(frames)[None, :] < k[:, None]
        keep = {name: torch.rand(batch) >= getattr(self.weights.drop, name) for name in CONDITIONS}
        return clean.to(device), {name: value.to(device) for name, value in keep.items()}

    def loss(self, model, batch):
        x0 = self.clean_latents(model, batch)
        size = x0.shape[0]
        weights = self.weights
        t = flow.sample_time(size, shift=weights.time_shift, mean=weights.time_mean, std=weights.time_std,
                             device=x0.device)
        noise = torch.randn_like(x0)
        clean, keep = self._draw(size, x0.shape[2], x0.device)
        conditions = Conditions.from_batch(batch).replace(clean=clean, keep=keep)
        loss = flow.flow_loss(lambda x, time: model(x, time, conditions),
                              x0, t, noise, clean, channel_weights=self.channel_weights(model))
        return loss, {"flow": float(loss.detach()), "clean_frames": float(clean.sum(1).float().mean())}

    def channel_weights(self, model) -> torch.Tensor | None:
        """The loss's per-channel weights (None for uniform); pixel weights are measured once, after the
        latent statistics are set (or restored from a checkpoint)."""
        if self.weights.channel_weights == "uniform":
            return None
        if self._channel_weights is None:
            world = _unwrap(model)
            self.tokenizer.to(world.latent_mean.device)
            self._channel_weights = channel_energy(self.tokenizer, world.latent_mean, world.latent_std)
        return self._channel_weights

    def validate(self, model, batches: Iterable[dict]) -> dict[str, float]:
        """The flow loss at fixed times and seeded noise, one clean frame: comparable across steps. With
        loss.channel_weights: pixel, also that weighted loss (pixel_loss), which training minimises."""
        generator = torch.Generator().manual_seed(0)
        losses, pixel_losses = [], []
        weights = self.channel_weights(model)
        for batch in batches:
            x0 = self.encode(model, batch["video"])
            size = x0.shape[0]
            clean = torch.zeros(size, x0.shape[2], dtype=torch.bool, device=x0.device)
            clean[:, :1] = True
            conditions = Conditions.from_batch(batch).replace(clean=clean)
            for time in (0.1, 0.3, 0.5, 0.7, 0.9):
                noise = torch.randn(x0.shape, generator=generator).to(x0.device)
                t = torch.full((size,), time, device=x0.device)
                called: list[torch.Tensor] = []  # one model call serves both losses (same x_t and t)

                def velocity(x, tt):
                    if not called:
                        called.append(model(x, tt, conditions))
                    return called[0]

                losses.append(flow.flow_loss(velocity, x0, t, noise, clean))
                if weights is not None:
                    pixel_losses.append(flow.flow_loss(velocity, x0, t, noise, clean, weights))
        found = {"loss": float(torch.stack(losses).mean())}
        if pixel_losses:
            found["pixel_loss"] = float(torch.stack(pixel_losses).mean())
        return found

    def samples(self, model, batch):
        """The last frame of every view: the clip above, a sample from its first latent frame below."""
        pipeline = self.pipeline(model)
        x0 = pipeline.encode_views(batch["video"][:1])
        conditions = Conditions.from_batch(batch).rows(slice(0, 1))
        sampled = pipeline.sample(conditions, tuple(x0.shape), SamplingConfig(steps=10), clean_latents=x0)
        video = pipeline.decode_views(sampled)
        pair = torch.stack([batch["video"][0, :, -1], video[0, :, -1].clamp(-1, 1)])  # [2, V, 3, H, W]
        image = rearrange(pair, "r v c h w -> c (r h) (v w)")
        return {"clip_over_sample": (image.float() + 1) / 2}
