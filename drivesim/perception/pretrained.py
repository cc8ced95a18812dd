"""A trained detector, ready to run: the network, the image size it was trained at, and `detect`. Read from a
`drivesim train detector` run or checkpoint folder, or from a packed folder (config.yaml and
model.safetensors, as save_detector writes it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from drivesim.errors import ConfigError, DataError
from drivesim.perception.decode import MIN_SCORE, Detections, decode_batch
from drivesim.perception.frames import check_size
from drivesim.perception.model import CameraDetector, DetectorConfig
from drivesim.train.config import from_dict

DEFAULT_SIZE = (256, 128)  # the world model's size: what generated frames come at


@dataclass
class TrainedDetector:
    """A detector and the (width, height) its images must have (resize them, and their intrinsics, to it)."""

    model: CameraDetector
    size: tuple[int, int]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def detect(self, images: torch.Tensor, intrinsics: torch.Tensor, ego_from_cam: torch.Tensor,
               min_score: float = MIN_SCORE) -> list[Detections]:
        """Boxes per frame in the ego frame, from images [B, V, 3, H, W] in [-1, 1] at self.size, intrinsics
        [B, V, 3, 3] at that size and ego_from_cam [B, V, 4, 4]."""
        if tuple(images.shape[-1:-3:-1]) != self.size:
            raise ConfigError(f"the detector was trained on {self.size[0]}x{self.size[1]} images, got "
                              f"{images.shape[-1]}x{images.shape[-2]}")
        device = self.device
        maps = self.model.eval()(images.to(device), intrinsics.to(device), ego_from_cam.to(device))
        return decode_batch(maps, intrinsics, ego_from_cam, min_score)


def model_config(section: dict) -> DetectorConfig:
    """`model: {channels: [...], ...}` -> a validated DetectorConfig (ConfigError naming a bad key)."""
    return from_dict(DetectorConfig, section, "model").validate()


def _folder_weights(path: Path, ema: bool) -> tuple[Path, dict]:
    """(the safetensors file, the config document) of a run, checkpoint or packed folder."""
    from drivesim.train.checkpoint import resolve_checkpoint

    if not path.is_dir():
        raise ConfigError(f"--detector {path}: " + ("not a folder" if path.exists() else "no such folder"))
    if (path / "checkpoints").is_dir() or (path / "manifest.json").is_file():
        folder, document = resolve_checkpoint(path, "detector", report=lambda text: None)
    else:
        folder = path
        if not (path / "config.yaml").is_file():
            raise ConfigError(f"--detector {path}: not a detector folder (no config.yaml, no checkpoints/)")
        try:
            document = yaml.safe_load((path / "config.yaml").read_text()) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            raise ConfigError(f"--detector {path}: config.yaml is not valid YAML ({type(error).__name__})") from None
        if not isinstance(document, dict) or document.get("task") != "detector":
            raise ConfigError(f"--detector {path}: config.yaml is not a detector's (task: detector)")
    for name in (("ema.safetensors", "model.safetensors") if ema else ("model.safetensors", "ema.safetensors")):
        if (folder / name).is_file():
            return folder / name, document
    raise DataError(f"--detector {path}: no model.safetensors or ema.safetensors in {folder}")


def load_detector(run_or_folder: str | Path, device: str | torch.device = "cpu", ema: bool = True
                  ) -> TrainedDetector:
    """The detector of a training run (its newest complete checkpoint; EMA weights when present) or of a
    checkpoint or packed folder. Only safetensors are read: no pickles."""
    from drivesim.train.checkpoint import load_weights

    weights, document = _folder_weights(Path(run_or_folder), ema)
    data = document.get("data") or {}
    size = check_size(list(data.get("size", DEFAULT_SIZE)), f"{weights.parent}/config.yaml data.size")
    model = CameraDetector(model_config(document.get("model") or {}))
    try:
        model.load_state_dict(load_weights(weights))
    except RuntimeError as error:
        raise DataError(f"{weights}: the weights do not fit the config's model ({str(error).splitlines()[0]})") \
            from None
    return TrainedDetector(model.to(device).eval(), size)


def save_detector(detector: TrainedDetector, folder: str | Path) -> Path:
    """Write `folder` (new or empty) as config.yaml + model.safetensors, written beside it and moved in whole."""
    import dataclasses

    from drivesim.folders import check_out_dir, publish_folder, staging_folder

    folder = Path(folder)
    check_out_dir(folder, overwrite=False)
    staging = staging_folder(folder)
    model_section = {k: list(v) if isinstance(v, tuple) else v
                     for k, v in dataclasses.asdict(detector.model.config).items()}
    document = {"task": "detector", "model": model_section, "data": {"size": list(detector.size)}}
    (staging / "config.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in detector.model.state_dict().items()}
    save_file(state, str(staging / "model.safetensors"))
    publish_folder(staging, folder)
    return folder
