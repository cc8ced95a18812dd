"""Rectified flow on latents: the training loss, the samplers and classifier-free guidance.

x_t = (1 - t) * x0 + t * noise with t in [0, 1] (t = 1 is pure noise); the model predicts the velocity
v = noise - x0, and sampling integrates dx/dt = v from t = 1 down to t = 0. Latents are [B, V, T, C, h, w];
the first latent frames of a sample may be given clean (Image2World, Video2World): they get no loss,
and every sampler puts them back exactly after each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from einops import rearrange, repeat
from torch import Tensor

from drivesim.errors import ConfigError

__all__ = ["MAX_SEED", "METHODS", "TEXT", "LAYOUT", "VelocityFn", "GuidedVelocityFn", "is_int", "is_number",
           "sample_time", "time_grid", "clean_frames",
           "flow_loss", "sample", "guided", "noise_like"]

METHODS = ("euler", "heun", "unipc")
TEXT, LAYOUT = "text", "layout"  # the conditions guidance drops
# Noise seeds: torch's 64-bit generator takes 0 .. 2**63 - 1. Scenario and rollout seeds stop at 2**62 - 1
# (scenario.MAX_SEED), so a rollout's seed + chunk index always fits here.
MAX_SEED = 2**63

# velocity_fn(x_t [B, V, T, C, h, w], t [B]) -> v like x_t
VelocityFn = Callable[[Tensor, Tensor], Tensor]
# velocity_fn3(x_t, t, drop) -> v, where drop[i] names the conditions row i of the batch is generated without
GuidedVelocityFn = Callable[[Tensor, Tensor, tuple[frozenset[str], ...]], Tensor]

# sample_time keeps t this far from 0 and 1: the far tails of the logit-normal round to exactly 0 or 1 in
# float32, where the training pair degenerates (x_t is all data or all noise).
_TIME_MARGIN = 1e-5


# ---------------------------------------------------------------- checks

def is_number(value) -> bool:
    """An int or float, not a bool: the type every numeric option of sampling and rollouts takes."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value) -> bool:
    """An int, not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_positive(name: str, value) -> float:
    if not is_number(value) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_finite(name: str, value) -> float:
    if not is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_latents(name: str, x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.ndim != 6:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{name} must be latents [B, V, T, C, h, w], got {shape}")


def _check_clean(clean: Tensor, like: Tensor) -> None:
    batch, frames = like.shape[0], like.shape[2]
    if not isinstance(clean, Tensor) or clean.dtype != torch.bool or tuple(clean.shape) != (batch, frames):
        got = f"{clean.dtype} {tuple(clean.shape)}" if isinstance(clean, Tensor) else type(clean).__name__
        raise ConfigError(f"clean must be a bool tensor [B, T] = [{batch}, {frames}] (latent frames given clean), "
                          f"got {got}")


# ---------------------------------------------------------------- time

def _shift(t: Tensor, shift: float) -> Tensor:
    """Warp t toward 1 (shift > 1) or 0 (shift < 1), keeping 0 and 1 fixed: larger latents need more noise
    for the same signal-to-noise ratio (SD3's resolution shift)."""
    return shift * t / (1 + (shift - 1) * t)


def sample_time(batch: int, shift: float = 1.0, mean: float = 0.0, std: float = 1.0, generator=None,
                device=None) -> Tensor:
    """[batch] training times in (0, 1): logit-normal (sigmoid of N(mean, std)), then shifted.

    The normals are drawn on the generator's device (the CPU without one) and moved to `device`, so a seeded
    generator gives the same times on every device."""
    _check_count("batch", batch)
    shift = _check_positive("shift", shift)
    mean = _check_finite("mean", mean)
    std = _check_positive("std", std)
    draw_on = generator.device if generator is not None else torch.device("cpu")
    # float64 so the sigmoid's tails and the shift do not round before the margin is applied
    normal = torch.randn(batch, generator=generator, device=draw_on, dtype=torch.float64)
    t = _shift(torch.sigmoid(normal * std + mean), shift).clamp(_TIME_MARGIN, 1 - _TIME_MARGIN)
    return t.to(device=device if device is not None else draw_on, dtype=torch.float32)


def _grid(steps: int, shift: float) -> list[float]:
    """steps + 1 times from exactly 1 to exactly 0 (float64), uniform before the shift."""
    uniform = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    times = _shift(uniform, shift).tolist()
    # 1 + (shift - 1) need not equal shift in floating point: pin the ends so sampling starts at pure noise
    times[0], times[-1] = 1.0, 0.0
    return times


def time_grid(steps: int, shift: float = 1.0, device=None) -> Tensor:
    """[steps + 1] sampling times from 1 to 0: the times samplers step between (shift > 1 spends more steps
    near the noise, where large latents need them)."""
    _check_count("steps", steps)
    shift = _check_positive("shift", shift)
    return torch.tensor(_grid(steps, shift), dtype=torch.float32, device=device)


# ---------------------------------------------------------------- training

def clean_frames(k: int | Tensor, batch: int, frames: int, device=None) -> Tensor:
    """bool [batch, frames]: True on the first k latent frames (k an int, or one per sample as a [batch]
    tensor). k = 0 is Text2World, 1 Image2World, more Video2World."""
    _check_count("batch", batch)
    _check_count("frames", frames)
    if isinstance(k, Tensor):
        if k.shape != (batch,) or k.dtype.is_floating_point or k.dtype == torch.bool:
            raise ConfigError(f"k must be an int or an integer tensor [batch] = [{batch}], got {k.dtype} "
                              f"{tuple(k.shape)}")
        counts = k.to(device=device)
        low, high = int(counts.min()), int(counts.max())
    else:
        _check_count("k", k, minimum=0)
        counts = torch.full((batch,), k, device=device)
        low, high = k, k
    if low < 0 or high > frames:
        raise ConfigError(f"k (clean latent frames) must be in 0..{frames} (the latent frames), got {low}..{high}")
    return torch.arange(frames, device=counts.device) < rearrange(counts, "b -> b 1")


def flow_loss(velocity_fn: VelocityFn, x0: Tensor, t: Tensor, noise: Tensor, clean: Tensor | None,
              channel_weights: Tensor | None = None) -> Tensor:
    """The rectified-flow loss: mean squared error of the predicted velocity against noise - x0, over the
    noisy frames only. x0 and noise [B, V, T, C, h, w], t [B], clean bool [B, T] or None (all noisy).
    channel_weights [C]: each latent channel's error weighed by it (None: all 1), e.g. by how much of
    the picture the channel carries (WfmTask's loss.channel_weights: pixel).

    Clean frames enter x_t as x0 itself, as they will at sampling time. A batch whose frames are all clean
    has nothing to learn: its loss is a zero still attached to the graph, so every rank can call backward."""
    _check_latents("x0", x0)
    if not isinstance(noise, Tensor) or noise.shape != x0.shape:
        raise ConfigError(f"noise must have the shape of x0 {tuple(x0.shape)}, got "
                          f"{tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__}")
    if not isinstance(t, Tensor) or t.shape != (x0.shape[0],):
        raise ConfigError(f"t must be a tensor [B] = [{x0.shape[0]}], got "
                          f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}")
    time = rearrange(t.to(x0.dtype), "b -> b 1 1 1 1 1")
    x_t = (1 - time) * x0 + time * noise
    if clean is None:
        clean = torch.zeros(x0.shape[0], x0.shape[2], dtype=torch.bool, device=x0.device)
    _check_clean(clean, x0)
    clean_mask = rearrange(clean.to(x0.device), "b t -> b 1 t 1 1 1")
    x_t = torch.where(clean_mask, x0, x_t)
    velocity = velocity_fn(x_t, t)
    if velocity.shape != x0.shape:
        raise ConfigError(f"velocity_fn returned {tuple(velocity.shape)}, expected the latents' {tuple(x0.shape)}")
    squared = (velocity.float() - (noise - x0).float()).square()
    if channel_weights is not None:
        if not isinstance(channel_weights, Tensor) or tuple(channel_weights.shape) != (x0.shape[3],):
            got = tuple(channel_weights.shape) if isinstance(channel_weights, Tensor) else channel_weights
            raise ConfigError(f"channel_weights must be a tensor [C] = [{x0.shape[3]}], got {got}")
        squared = squared * channel_weights.to(squared)[:, None, None]
    # where, not a multiply by the mask: a non-finite prediction on a clean frame must not leak into the loss
    squared = torch.where(clean_mask, torch.zeros((), device=squared.device), squared)
    noisy_values = (~clean).sum() * (squared.numel() // (clean.shape[0] * clean.shape[1]))
    return squared.sum() / noisy_values.clamp(min=1)


# ---------------------------------------------------------------- sampling

def _log_snr(t: float) -> float:
    """log(alpha / sigma) of x_t = alpha x0 + sigma noise, alpha = 1 - t, sigma = t."""
    if t >= 1.0:
        return -math.inf
    if t <= 0.0:
        return math.inf
    return math.log1p(-t) - math.log(t)


def _unipc_update(x: Tensor, t_from: float, t_to: float, data: Tensor, earlier: tuple[float, Tensor] | None,
                  data_to: Tensor | None) -> Tensor:
    """One UniPC-bh2 update in data prediction (Zhao et al. 2023, arXiv 2302.04867) from x at t_from to t_to,
    with the coefficients diffusers' UniPCMultistepScheduler uses.

    data: the model's x0 estimate at (x, t_from); earlier: (log-SNR, x0 estimate) of the point before, for the
    second-order term; data_to: the x0 estimate at t_to for the corrector (UniC), None for the predictor (UniP).
    Stepping out of t = 1 the log-SNR step is infinite; the formulas keep their limits there (exp(-inf) = 0)."""
    log_snr_from = _log_snr(t_from)
    h = _log_snr(t_to) - log_snr_from
    phi_1 = math.expm1(-h)  # exp(-h) - 1
    b_h = phi_1  # bh2: B(h) = exp(-h) - 1
    alpha_to, sigma_to = 1.0 - t_to, t_to
    # the exact step were the x0 estimate constant over the interval (a DDIM step)
    base = (sigma_to / t_from) * x - (alpha_to * phi_1) * data
    if earlier is not None:
        ratio = (earlier[0] - log_snr_from) / h
        earlier_slope = (earlier[1] - data) / ratio
    if data_to is None:
        if earlier is None:
            return base
        return base - (alpha_to * b_h * 0.5) * earlier_slope
    slope = data_to - data
    if earlier is None:
        return base - (alpha_to * b_h * 0.5) * slope
    # order 2 corrector: weights solving the order conditions [[1, 1], [ratio, 1]] rho = [b_1, b_2]
    # (ratio < 0: the earlier point is noisier, so 1 - ratio > 1)
    phi_2 = phi_1 / -h - 1.0
    phi_3 = phi_2 / -h - 0.5
    b_1, b_2 = phi_2 / b_h, 2.0 * phi_3 / b_h
    rho_earlier = (b_1 - b_2) / (1.0 - ratio)
    rho_new = b_1 - rho_earlier
    return base - alpha_to * b_h * (rho_earlier * earlier_slope + rho_new * slope)


def sample(velocity_fn: VelocityFn, noise: Tensor, steps: int, method: str = "euler", shift: float = 1.0,
           clean_latents: Tensor | None = None, clean: Tensor | None = None, progress: bool = False,
           start: float = 1.0) -> Tensor:
    """Integrate from noise at t = 1 to latents at t = 0 on time_grid(steps, shift); the result has noise's
    shape, in float32 at least.

    euler: one velocity per step, first order. heun: two per step (the last step, to t = 0, is an Euler step:
    2 * steps - 1 in all), second order. unipc: UniPC-bh2, a multistep predictor-corrector of order 2 that
    reuses each velocity, one per step. clean_latents [B, V, T, C, h, w] with clean bool [B, T]: the frames
    given clean, put back exactly at the start and after every step, so they come out bit for bit (the model
    sees them clean at every time). Deterministic: all randomness is in `noise` (see noise_like). Runs
    without autograd. start < 1: `noise` is a partly noised state x_start = (1 - start) x0 + start noise,
    integrated from t = start over the grid scaled by start (SDEdit: an image guess the model finishes)."""
    _check_count("steps", steps)
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    shift = _check_positive("shift", shift)
    _check_latents("noise", noise)
    if (clean_latents is None) != (clean is None):
        raise ConfigError("clean_latents and clean come together: give both (frames given clean) or neither")
    dtype = torch.promote_types(noise.dtype, torch.float32)
    if clean is not None:
        if not isinstance(clean_latents, Tensor) or clean_latents.shape != noise.shape:
            raise ConfigError(f"clean_latents must have the shape of noise {tuple(noise.shape)}, got "
                              f"{tuple(clean_latents.shape) if isinstance(clean_latents, Tensor) else clean_latents}")
        _check_clean(clean, noise)
        clean_mask = rearrange(clean.to(noise.device), "b t -> b 1 t 1 1 1")
        given = clean_latents.to(device=noise.device, dtype=dtype)

    def restore(state: Tensor) -> Tensor:
        return state if clean is None else torch.where(clean_mask, given, state)

    from tqdm import tqdm

    if isinstance(start, bool) or not isinstance(start, (int, float)) or not 0 < start <= 1:
        raise ConfigError(f"start must be a flow time in (0, 1], got {start!r}")
    times = [start * time for time in _grid(steps, shift)]
    batch = noise.shape[0]

    def velocity(state: Tensor, t: float) -> Tensor:
        v = velocity_fn(state, torch.full((batch,), t, dtype=torch.float32, device=noise.device))
        if v.shape != state.shape:
            raise ConfigError(f"velocity_fn returned {tuple(v.shape)}, expected the latents' {tuple(state.shape)}")
        return v

    x = restore(noise.to(dtype))
    history: list[tuple[float, Tensor]] = []  # (log-SNR, x0 estimate) of the points UniPC has evaluated
    pending = None  # UniPC: the last predictor step, for the corrector to redo with the new estimate
    with torch.no_grad():
        for index in tqdm(range(steps), desc=f"sample ({method})", unit="step", disable=not progress):
            t_now, t_next = times[index], times[index + 1]
            v = velocity(x, t_now)
            if method == "euler":
                x = x + (t_next - t_now) * v
            elif method == "heun":
                guess = x + (t_next - t_now) * v
                # the velocity field at t = 0 need not be finite (a point mass gives (x - x0) / t)
                x = guess if t_next == 0 else x + (t_next - t_now) * 0.5 * (v + velocity(restore(guess), t_next))
            else:
                data = x - t_now * v
                if pending is not None:
                    x = restore(_unipc_update(*pending, data_to=data))
                history.append((_log_snr(t_now), data))
                # second order needs a finite earlier point; the step to t = 0 returns the last x0 estimate
                earlier = history[-2] if len(history) > 1 and math.isfinite(history[-2][0]) and t_next > 0 else None
                pending = (x, t_now, t_next, data, earlier)
                x = _unipc_update(*pending, data_to=None)
                del history[:-2]
            x = restore(x)
    return x


def guided(velocity_fn3: GuidedVelocityFn, text_scale: float, layout_scale: float) -> VelocityFn:
    """Classifier-free guidance with separate scales for text and layout, as a velocity_fn for sample():

        v = v(drop text, layout) + layout_scale * (v(drop text) - v(drop text, layout))
                                 + text_scale * (v(drop nothing) - v(drop text))

    velocity_fn3(x, t, drop) takes drop as one frozenset per batch row (the conditions that row goes without),
    so the predictions guidance needs run as one forward over the batch repeated along B. Only the predictions
    with a non-zero weight are computed: scales 1, 1 is one plain conditional call."""
    text_scale = _check_finite("text_scale", text_scale)
    layout_scale = _check_finite("layout_scale", layout_scale)
    # the formula regrouped by prediction; the weights sum to 1
    weights = {frozenset(): text_scale, frozenset({TEXT}): layout_scale - text_scale,
               frozenset({TEXT, LAYOUT}): 1.0 - layout_scale}
    needed = [(drop, weight) for drop, weight in weights.items() if weight != 0]

    def velocity_fn(x: Tensor, t: Tensor) -> Tensor:
        batch, count = x.shape[0], len(needed)
        drops = tuple(drop for drop, _ in needed for _ in range(batch))
        if count == 1:  # the weights sum to 1, so the one prediction is the answer as it is
            return velocity_fn3(x, t, drops)
        together = velocity_fn3(repeat(x, "b ... -> (n b) ...", n=count), repeat(t, "b -> (n b)", n=count), drops)
        predictions = rearrange(together, "(n b) ... -> n b ...", n=count)
        return sum(weight * prediction for (_, weight), prediction in zip(needed, predictions, strict=True))

    return velocity_fn


def noise_like(shape: Sequence[int], seed: int, device=None) -> Tensor:
    """Standard normal float32 noise of `shape`, the same for a seed on every device: drawn on the CPU with its
    own generator (the global RNG is left alone), then moved."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ConfigError(f"seed must be an integer in 0..2**63-1, got {seed!r}")
    shape = tuple(shape)
    if not shape or any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in shape):
        raise ConfigError(f"shape must be positive integers, got {shape}")
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device)
