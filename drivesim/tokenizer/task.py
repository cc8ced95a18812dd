"""The `tokenizer` training task: clips from the store, cropped to single-view windows; L1 plus an
edge (image-gradient) and SSIM loss, as no pretrained perceptual network can be had; PSNR and SSIM
on validation clips; reconstructions beside their originals for TensorBoard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from einops import rearrange

from drivesim.errors import ConfigError
from drivesim.tokenizer.discriminator import PatchDiscriminator, TokenizerGAN
from drivesim.tokenizer.lapped import fit_lapped_path
from drivesim.tokenizer.layers import ResBlock
from drivesim.tokenizer.metrics import gradient_loss, psnr, ssim
from drivesim.tokenizer.model import PRESETS, CausalVideoTokenizer, TokenizerConfig, fit_linear_path
from drivesim.train.config import from_dict


@dataclass
class TokenizerData:
    """Which clips, and the window each training item is cut to."""

    store: str = ""
    frames: int = 9                                       # 1 + 4k for 4x temporal compression
    crop: list[int] = field(default_factory=lambda: [128, 128])  # width, height; random in train, centred in val
    size: list[int] | None = None                         # resize the stored frames first (width, height)


@dataclass
class TokenizerLoss:
    """L1 + gradient_weight * edge L1 + ssim_weight * (1 - SSIM) [+ adversarial_weight * hinge GAN]."""

    gradient_weight: float = 0.5
    ssim_weight: float = 0.2
    adversarial_weight: float = 0.0   # > 0 adds a patch discriminator (see discriminator.py)
    grid_weight: float = 0.0          # > 0: edge L1 across the latent grid's block edges only (grid_loss)
    discriminator_channels: int = 32

    def validate(self) -> "TokenizerLoss":
        for name in ("gradient_weight", "ssim_weight", "adversarial_weight", "grid_weight"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.discriminator_channels < 1:
            raise ConfigError(f"loss.discriminator_channels must be >= 1, got {self.discriminator_channels}")
        return self


def grid_loss(reconstruction: torch.Tensor, target: torch.Tensor, grid: int) -> torch.Tensor:
    """L1 between the neighbour differences of two videos [N, C, T, H, W] across the block edges of a
    grid x grid latent grid only: the seams a block code leaves, which the all-pixel edge loss weighs as
    2 boundaries in 2 * grid."""
    def across(video):
        return (video[..., :, grid::grid] - video[..., :, grid - 1:-1:grid],
                video[..., grid::grid, :] - video[..., grid - 1:-1:grid, :])

    (rx, ry), (tx, ty) = across(reconstruction), across(target)
    return ((rx - tx).abs().mean() + (ry - ty).abs().mean()) / 2


class CroppedViews(torch.utils.data.Dataset):
    """One random camera of a clip, a random (or centred) crop: video [3, T, h, w] in [-1, 1]."""

    def __init__(self, config: TokenizerData, split: str, random_crop: bool):
        from drivesim.data.dataset import ClipDataset

        size = tuple(config.size) if config.size else None
        # Training skips a damaged clip (counted, reported) rather than stopping on it.
        self.clips = ClipDataset(config.store, split=split, frames=config.frames, num_views=1, size=size,
                                 random_crop=random_crop, skip_damaged=True)
        width, height = size or (self.clips.settings["width"], self.clips.settings["height"])
        self.crop, self.random = config.crop, random_crop
        if config.crop[0] > width or config.crop[1] > height:
            raise ConfigError(f"data.crop={config.crop} is larger than the frames ({width}x{height})")
        self.width, self.height = width, height

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        video = self.clips[index]["video"][0]  # [T, 3, H, W] of the one chosen view
        crop_w, crop_h = self.crop
        if self.random:
            left = int(torch.randint(self.width - crop_w + 1, ()))
            top = int(torch.randint(self.height - crop_h + 1, ()))
        else:
            left, top = (self.width - crop_w) // 2, (self.height - crop_h) // 2
        window = video[:, :, top:top + crop_h, left:left + crop_w]
        return {"video": rearrange(window, "t c h w -> c t h w").contiguous()}


def model_config(section: dict) -> TokenizerConfig:
    """`model: {preset: small, temporal_compression: 4, ...}` -> a validated TokenizerConfig."""
    section = dict(section)
    preset = section.pop("preset", "small")
    if preset not in PRESETS:
        raise ConfigError(f"model.preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    known = set(TokenizerConfig.__dataclass_fields__)
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"model: unknown key {unknown[0]!r} (known: preset, {', '.join(sorted(known))})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}
    return PRESETS[preset](**values)


class TokenizerTask:
    name = "tokenizer"
    block_types = (ResBlock,)

    def __init__(self):
        self.weights = TokenizerLoss()

    def configure_loss(self, loss_section: dict) -> None:
        self.weights = from_dict(TokenizerLoss, loss_section, "loss").validate()

    def build_model(self, model_section: dict) -> torch.nn.Module:
        tokenizer = CausalVideoTokenizer(model_config(model_section))
        if self.weights.adversarial_weight > 0:
            return TokenizerGAN(tokenizer, PatchDiscriminator(self.weights.discriminator_channels))
        return tokenizer

    def initialize(self, model, train_set, seed: int, windows: int = 32):
        """Fit the linear path to the principal components of blocks of `windows` training windows."""
        tokenizer = model.tokenizer if isinstance(model, TokenizerGAN) else model
        if not tokenizer.config.linear_path:
            return
        with torch.random.fork_rng():  # the windows depend on the seed only, and the run's RNG is untouched
            torch.manual_seed(seed)
            picks = torch.randint(len(train_set), (windows,)).tolist()
            videos = torch.stack([train_set[i]["video"] for i in picks])
        device = next(tokenizer.parameters()).device
        kept = fit_linear_path(tokenizer, videos.to(device))
        yield (f"linear path: fitted to the principal components of {windows} training windows "
               f"({100 * kept:.1f}% of the block variance kept)")
        yield from self.initialize_loaded(model, train_set, seed, windows)

    def initialize_loaded(self, model, train_set, seed: int, windows: int = 16):
        """With a lapped path still at zero (a fresh one, or one new to the weights init_from loaded): fit it
        to what the rest of the decoder leaves of `windows` training windows."""
        tokenizer = model.tokenizer if isinstance(model, TokenizerGAN) else model
        path = tokenizer.decoder.lapped
        if path is None or any(p.any() for p in path.parameters()):
            return
        with torch.random.fork_rng():
            torch.manual_seed(seed + 1)
            picks = torch.randint(len(train_set), (windows,)).tolist()
            videos = torch.stack([train_set[i]["video"] for i in picks])
        before, after = fit_lapped_path(tokenizer, videos.to(next(tokenizer.parameters()).device), steps=200)
        yield (f"lapped path: fitted to the decoder's residual on {windows} training windows (mean squared error "
               f"{before:.5f} -> {after:.5f})")

    def datasets(self, data_section: dict):
        config = from_dict(TokenizerData, data_section, "data")
        if not config.store:
            raise ConfigError("data.store is required: a clip store made by `drivesim ingest`")
        train = CroppedViews(config, "train", random_crop=True)
        try:
            val = CroppedViews(config, "val", random_crop=False)
        except ConfigError:
            val = None  # a store without val clips: train only
        return train, val

    def loss(self, model, batch):
        video, weights = batch["video"], self.weights
        adversarial = weights.adversarial_weight > 0
        reconstruction, _, extras = model(video, adversarial=True) if adversarial else model(video)
        l1 = (reconstruction - video).abs().mean()
        edges = gradient_loss(reconstruction, video)
        structure = 1 - ssim(reconstruction, video).mean()
        loss = l1 + weights.gradient_weight * edges + weights.ssim_weight * structure
        if weights.grid_weight > 0:
            grid = getattr(model, "tokenizer", model).config.spatial_compression
            loss = loss + weights.grid_weight * grid_loss(reconstruction, video, grid)
        values = {"l1": float(l1.detach()), "psnr": float(psnr(reconstruction.detach(), video).mean())}
        if adversarial:
            # One sum, one optimizer step: the two terms reach disjoint weights (see TokenizerGAN).
            loss = loss + weights.adversarial_weight * extras["generator_loss"] + extras["discriminator_loss"]
            values.update(generator=float(extras["generator_loss"].detach()),
                          discriminator=float(extras["discriminator_loss"].detach()))
        return loss, values

    def validate(self, model, batches: Iterable[dict]) -> dict[str, float]:
        scores = {"psnr": [], "ssim": [], "l1": []}
        for batch in batches:
            reconstruction = model(batch["video"])[0].clamp(-1, 1)
            scores["psnr"].append(psnr(reconstruction, batch["video"]))
            scores["ssim"].append(ssim(reconstruction, batch["video"]))
            scores["l1"].append((reconstruction - batch["video"]).abs().flatten(1).mean(1))
        return {name: float(torch.cat(values).mean()) for name, values in scores.items()}

    def samples(self, model, batch):
        video = batch["video"][:1]
        reconstruction = model(video)[0].clamp(-1, 1)
        frames = torch.linspace(0, video.shape[2] - 1, 3).round().long()
        pair = torch.cat([video[:, :, frames], reconstruction[:, :, frames]], dim=-2)  # original above
        image = rearrange(pair[0], "c t h w -> c h (t w)")
        return {"original_over_reconstruction": (image + 1) / 2}


def load_trained(path: str | Path, ema: bool = True, device: str = "cpu") -> CausalVideoTokenizer:
    """A tokenizer from a training checkpoint folder (or a run folder: its newest checkpoint)."""
    from drivesim.train.checkpoint import load_weights, resolve_checkpoint

    path, document = resolve_checkpoint(Path(path), "tokenizer")
    model = CausalVideoTokenizer(model_config(document.get("model", {})))
    weights = path / ("ema.safetensors" if ema and (path / "ema.safetensors").is_file() else "model.safetensors")
    state = load_weights(weights)
    if any(name.startswith("tokenizer.") for name in state):  # trained with a discriminator: drop it
        state = {name[len("tokenizer."):]: t for name, t in state.items() if name.startswith("tokenizer.")}
    model.load_state_dict(state)
    return model.to(device).eval()
