"""Tokenizer checkpoints: a folder with config.yaml (the TokenizerConfig) and model.safetensors (the weights)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import yaml

from drivesim.errors import ConfigError
from drivesim.tokenizer.model import CausalVideoTokenizer, TokenizerConfig

__all__ = ["save_pretrained", "load_pretrained"]

CONFIG_FILE, WEIGHTS_FILE = "config.yaml", "model.safetensors"


def _write_atomically(path: Path, write) -> None:
    """write(tmp_path), then move it over path: an interrupted save leaves the old file whole."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def save_pretrained(model: CausalVideoTokenizer, folder: str | os.PathLike) -> Path:
    """Write config.yaml and model.safetensors into folder (created if missing); returns the folder."""
    from drivesim.train.checkpoint import save_weights

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config_text = yaml.safe_dump(model.config.to_dict(), sort_keys=False)
    _write_atomically(folder / CONFIG_FILE, lambda path: path.write_text(config_text))
    _write_atomically(folder / WEIGHTS_FILE, lambda path: save_weights(model.state_dict(), path))
    return folder


def load_pretrained(folder: str | os.PathLike, device: str | torch.device = "cpu") -> CausalVideoTokenizer:
    """The tokenizer saved in folder by save_pretrained, in eval mode on `device`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ConfigError(f"tokenizer checkpoint {folder}: {name} is missing "
                              f"(a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = TokenizerConfig.from_dict(yaml.safe_load((folder / CONFIG_FILE).read_text()))
    except yaml.YAMLError as error:
        raise ConfigError(f"tokenizer checkpoint {folder / CONFIG_FILE}: not valid YAML ({error})") from None
    except ConfigError as error:
        raise ConfigError(f"tokenizer checkpoint {folder / CONFIG_FILE}: {error}") from None
    model = CausalVideoTokenizer(config)
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device=str(device))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as error:
        raise ConfigError(f"tokenizer checkpoint {folder / WEIGHTS_FILE} does not fit its {CONFIG_FILE}: "
                          f"{str(error).splitlines()[0]}") from None
    return model.to(device).eval()
