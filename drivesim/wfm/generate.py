"""Sampling the world model for one batch of conditions: noise -> latents -> video, with the first
k latent frames given clean (k = 0: Text2World, 1: Image2World, more: Video2World) and separate
guidance scales for text and layout."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from drivesim.errors import ConfigError
from drivesim.wfm import flow
from drivesim.wfm.conditions import CONDITIONS, Conditions
from drivesim.wfm.model import WorldModel


@dataclass
class SamplingConfig:
    steps: int = 20
    method: str = "euler"        # euler | heun (see flow.sample)
    shift: float = 3.0           # time-grid shift: more steps near t = 1, where the layout is decided
    clean_frames: int = 1        # latent frames taken from the given latents
    text_scale: float = 1.0      # 1: no text guidance (one model call per step)
    layout_scale: float = 1.0
    seed: int = 0
    # The starting noise is scaled by this: 1 samples the model's distribution; below 1 trades variety
    # for the likelier, smoother picture (0: the deterministic path from the mean, as a flow's temperature).
    temperature: float = 1.0
    # The flow time sampling starts from: 1 is pure noise; below 1 starts from init latents noised to that
    # time (sample_latents' init), so the model keeps their layout and finishes the picture (SDEdit).
    start: float = 1.0

    def validate(self, names: dict[str, str] | None = None) -> SamplingConfig:
        """Every limit of sampling, checked once per call of sample_latents (not per step); errors name the
        field, or what `names` calls it (a rollout's `strength` is the sampler's `start`)."""
        name = {field: field for field in ("steps", "method", "shift", "clean_frames", "text_scale", "layout_scale",
                                           "seed", "temperature", "start")} | (names or {})
        if not flow.is_int(self.steps) or self.steps < 1:
            raise ConfigError(f"{name['steps']} must be an integer >= 1, got {self.steps!r}")
        if self.method not in flow.METHODS:
            raise ConfigError(f"{name['method']} must be one of {', '.join(flow.METHODS)}, got {self.method!r}")
        if not flow.is_number(self.shift) or not math.isfinite(self.shift) or self.shift <= 0:
            raise ConfigError(f"{name['shift']} must be a finite number > 0, got {self.shift!r}")
        if not flow.is_int(self.clean_frames) or self.clean_frames < 0:
            raise ConfigError(f"{name['clean_frames']} must be an integer >= 0, got {self.clean_frames!r}")
        for field in ("text_scale", "layout_scale"):
            value = getattr(self, field)
            if not flow.is_number(value) or not math.isfinite(value):
                raise ConfigError(f"{name[field]} must be a finite number, got {value!r}")
        if not flow.is_int(self.seed) or not 0 <= self.seed < flow.MAX_SEED:
            raise ConfigError(f"{name['seed']} must be an integer in 0..2**63-1, got {self.seed!r}")
        if not flow.is_number(self.temperature) or not 0 <= self.temperature <= 2:
            raise ConfigError(f"{name['temperature']} must be from 0 to 2, got {self.temperature!r}")
        if not flow.is_number(self.start) or not 0 < self.start <= 1:
            raise ConfigError(f"{name['start']} must be a flow time in (0, 1], got {self.start!r}")
        return self


@torch.no_grad()
def sample_latents(model: WorldModel, conditions: Conditions, shape: tuple[int, ...], config: SamplingConfig,
                   clean_latents: torch.Tensor | None = None, progress: bool = False,
                   init: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised latents [B, V, T, C, h, w] sampled under `conditions` (see WorldModel.forward);
    the first config.clean_frames latent frames are copied from clean_latents (normalised too). init
    (normalised, the shape's): a guess of the latents, noised to config.start and finished from there;
    needed when config.start < 1."""
    config.validate()
    batch, views, frames = shape[:3]
    k = config.clean_frames
    if not 0 <= k < frames:
        raise ConfigError(f"clean_frames={k} must be from 0 to {frames - 1} (latent frames: {frames})")
    if k and clean_latents is None:
        raise ConfigError(f"clean_frames={k} needs the clean latents of those frames")
    device = next(model.parameters()).device
    clean = torch.zeros(batch, frames, dtype=torch.bool, device=device)
    clean[:, :k] = True
    noise = flow.noise_like(shape, config.seed, device) * config.temperature
    if config.start < 1:
        if init is None or tuple(init.shape) != tuple(shape):
            raise ConfigError(f"start={config.start} needs init latents of shape {tuple(shape)}, got "
                              f"{None if init is None else tuple(init.shape)}")
        noise = (1 - config.start) * init.to(device=device, dtype=noise.dtype) + config.start * noise
    conditions = conditions.replace(clean=clean)
    model.check_inputs(noise, conditions)  # once: the calls below pass `prepared`, which skips the check
    # The cameras and the prompt do not change between steps: rays, neighbours and text tokens once.
    prepared = model.prepare(conditions, shape)

    def velocity(x, t, drops):
        # One frozenset of dropped conditions per row: guidance stacks its predictions along the batch.
        keep = {name: torch.tensor([name not in drop for drop in drops], dtype=torch.bool, device=device)
                for name in CONDITIONS}
        repeats = x.shape[0] // batch  # guidance batches the conditional and unconditional calls together
        return model(x, t, conditions.repeat(repeats).replace(keep=keep), prepared.repeat(repeats)).float()

    guided = flow.guided(velocity, text_scale=config.text_scale, layout_scale=config.layout_scale)
    return flow.sample(guided, noise, config.steps, method=config.method, shift=config.shift,
                       clean_latents=clean_latents if k else None, clean=clean if k else None, progress=progress,
                       start=config.start)
