"""WorldModelPipeline: a trained world model with everything it needs to turn conditions into pixels, in
diffusers' shape. It owns the network, the tokenizer (its latents normalised by the model's statistics),
the frozen text encoder (inside the network) and the frame count and image size it was trained at, and is
the one way from conditions to pixels: rollouts, the training task's samples, the editor, pack-weights and
the benchmarks all go through it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from drivesim.errors import ConfigError, DataError
from drivesim.tokenizer.model import CausalVideoTokenizer, flatten_views, unflatten_views
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.generate import SamplingConfig, sample_latents
from drivesim.wfm.model import WorldModel, model_config, with_tokenizer

__all__ = ["DEFAULT_FRAMES", "WorldModelPipeline", "load_tokenizer", "resolve_device"]

DEFAULT_FRAMES = 9  # chunk length of a checkpoint whose config names no data.frames
PALETTE_FILE = "palette.json"  # beside the weights: the colours Text2World's painted starts use


def resolve_device(device: str | torch.device) -> torch.device:
    """auto (CUDA when present), cpu or cuda; ConfigError naming the device otherwise."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(device)


@dataclass(eq=False)
class WorldModelPipeline:
    """A world model and its tokenizer, with the chunk length and size (width, height) they were trained at
    (size None: not recorded, and the training store not at hand)."""

    model: WorldModel
    tokenizer: CausalVideoTokenizer
    frames: int = DEFAULT_FRAMES
    size: tuple[int, int] | None = None
    palette: object | None = None  # a paint_baseline.Palette when the weights have one (init painted)

    # ---------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> WorldModelPipeline:
        """From a `drivesim train wfm` run folder (its newest complete checkpoint), one checkpoint folder or
        packed weights (drivesim/weights.py): EMA weights when present, in eval mode on `device`."""
        from drivesim.train.checkpoint import load_weights, resolve_checkpoint

        device = resolve_device(device)
        path, document = resolve_checkpoint(Path(folder), "wfm", report=lambda text: None)
        tokenizer_path = _resolve_tokenizer(path, document)
        try:
            tokenizer = load_tokenizer(tokenizer_path)
        except ConfigError as error:
            raise ConfigError(f"--checkpoint {path}: its tokenizer {tokenizer_path}: {error}") from None
        try:
            model = WorldModel(model_config(with_tokenizer(document.get("model"), tokenizer.config)))
        except ConfigError as error:
            raise ConfigError(f"--checkpoint {path}: {error}") from None
        weights = path / ("ema.safetensors" if (path / "ema.safetensors").is_file() else "model.safetensors")
        try:
            state = load_weights(weights)
            # EMA files written before ema.persistent_buffers also hold non-persistent buffers: not weights.
            stale = _non_persistent_names(model)
            model.load_state_dict({name: tensor for name, tensor in state.items() if name not in stale})
        except RuntimeError as error:
            raise ConfigError(f"--checkpoint {weights} does not fit its config.yaml: "
                              f"{str(error).splitlines()[0]}") from None
        data = document.get("data") or {}
        pipeline = cls(model.eval(), tokenizer.eval(), int(data.get("frames", DEFAULT_FRAMES)), _trained_size(data))
        if (path / PALETTE_FILE).is_file():  # the painted starts of Text2World (paint_baseline.py)
            from drivesim.paint_baseline import Palette

            pipeline.palette = Palette.load(path / PALETTE_FILE)
        return pipeline.to(device)

    def to(self, device: str | torch.device) -> WorldModelPipeline:
        self.model.to(device)
        self.tokenizer.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def config(self):
        """The world model's config (WorldModelConfig)."""
        return self.model.config

    def trained_size(self) -> tuple[int, int]:
        """(width, height) the model was trained at; ConfigError when the checkpoint does not say."""
        if self.size is None:
            raise ConfigError("the checkpoint's config has no data.size and its data.store cannot be read: "
                              "pass size=(width, height)")
        return self.size

    # ---------------------------------------------------------------- pixels <-> latents

    def encode_views(self, video: torch.Tensor) -> torch.Tensor:
        """Video [B, V, F, 3, H, W] in [-1, 1] -> the model's normalised latents [B, V, T, C, h, w]."""
        latents = unflatten_views(self.tokenizer.encode(flatten_views(video.float())), video.shape[1])
        return self.model.normalize(latents.float())

    def decode_views(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents [B, V, T, C, h, w] -> video [B, V, F, 3, H, W] (about [-1, 1]; not clamped)."""
        video = self.tokenizer.decode(flatten_views(self.model.denormalize(latents.float())))
        return unflatten_views(video, latents.shape[1])

    # ---------------------------------------------------------------- sampling

    def guidance_scales(self, guidance: float, use_layout: bool) -> dict[str, float]:
        """text_scale and layout_scale for a guidance of `guidance`: 1 (none) for a condition the model lacks
        or is not given, so no model call is spent on it."""
        return {"text_scale": guidance if self.model.text is not None else 1.0,
                "layout_scale": guidance if self.model.layout is not None and use_layout else 1.0}

    def sample(self, conditions: Conditions, shape: tuple[int, ...], config: SamplingConfig,
               clean_latents: torch.Tensor | None = None, init: torch.Tensor | None = None,
               progress: bool = False) -> torch.Tensor:
        """Normalised latents of `shape` [B, V, T, C, h, w] under `conditions` (WorldModel.forward's), the first
        config.clean_frames copied from clean_latents, started from init noised to config.start (see
        generate.sample_latents)."""
        return sample_latents(self.model, conditions, shape, config, clean_latents=clean_latents, progress=progress,
                              init=init)


def load_tokenizer(path: str | Path) -> CausalVideoTokenizer:
    """A frozen tokenizer from a training run or checkpoint folder, or a save_pretrained folder."""
    from drivesim.tokenizer.pretrained import load_pretrained
    from drivesim.tokenizer.task import load_trained

    path = Path(path)
    if not path.exists():
        raise ConfigError(f"data.tokenizer={path}: no such folder (train one with `drivesim train tokenizer`)")
    config_file = path / "config.yaml"
    trained = (path / "checkpoints").is_dir() or (
        config_file.is_file() and "task" in (yaml.safe_load(config_file.read_text()) or {}))
    model = load_trained(path) if trained else load_pretrained(path)
    model.requires_grad_(False)
    return model.eval()


def _resolve_tokenizer(path: Path, document: dict) -> Path:
    data = document.get("data") or {}
    given = data.get("tokenizer") if isinstance(data, dict) else None
    if not given:
        raise ConfigError(f"--checkpoint {path}: its config names no data.tokenizer")
    tokenizer = Path(given)
    if not tokenizer.is_absolute() and (path / tokenizer).exists():
        return path / tokenizer  # packed weights (drivesim/weights.py) carry their tokenizer inside
    if not tokenizer.is_absolute() and not tokenizer.exists():
        # A run moved with its tokenizer beside it: try the paths relative to the run folder's parents.
        for base in (path.parent.parent.parent, path.parent.parent, path.parent):
            if (base / tokenizer).exists():
                return base / tokenizer
    if not tokenizer.exists():
        raise ConfigError(f"--checkpoint {path}: its tokenizer folder {given} (data.tokenizer) is missing")
    return tokenizer


def _non_persistent_names(model: torch.nn.Module) -> set[str]:
    return {f"{prefix}.{name}" if prefix else name for prefix, module in model.named_modules()
            for name in module._non_persistent_buffers_set}


def _trained_size(data: dict) -> tuple[int, int] | None:
    """(width, height) of the checkpoint's data section: data.size, else its store's frames, else None."""
    if data.get("size"):
        width, height = data["size"]
        return int(width), int(height)
    if data.get("store"):
        from drivesim.data.store import open_store

        try:
            settings = open_store(data["store"]).attrs.get("settings", {})
            return int(settings["width"]), int(settings["height"])
        except (DataError, KeyError):
            pass
    return None
