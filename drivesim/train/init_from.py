"""Starting a fresh run from trained weights (`init_from`), keeping some of them fixed (`freeze`), and
compiling the task's blocks (`compile`): the three ways a run departs from a random start on the plain
eager path. Weights are matched by name and shape; what does not match is listed, never silently kept."""

from __future__ import annotations

from pathlib import Path

import torch

from drivesim.errors import ConfigError
from drivesim.train.checkpoint import load_weights, resolve_checkpoint

__all__ = ["load_init_state", "apply_init", "freeze", "compile_blocks"]


def load_init_state(path: str | Path, task: str) -> dict[str, torch.Tensor]:
    """The weights to start from: a run folder (its newest checkpoint), a checkpoint folder or a packed
    weights folder of the same task (EMA weights where it has them), or, for the tokenizer task, a
    tokenizer folder (config.yaml + model.safetensors). ConfigError naming init_from otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"init_from={path}: " + ("not a folder" if path.exists() else "no such folder"))
    if task == "tokenizer" and (path / "model.safetensors").is_file() and not (path / "manifest.json").exists():
        return load_weights(path / "model.safetensors")
    try:
        folder, _ = resolve_checkpoint(path, task, report=lambda _: None)
    except ConfigError as error:
        raise ConfigError(f"init_from={path}: {str(error).split(': ', 1)[-1]}") from None
    for name in ("ema.safetensors", "model.safetensors"):
        if (folder / name).is_file():
            state = load_weights(folder / name)
            # A world model packed with a trained discriminator or wrapper keeps its own prefix: none here.
            return {key: value.float() if value.is_floating_point() else value for key, value in state.items()}
    raise ConfigError(f"init_from={path}: {folder} holds neither ema.safetensors nor model.safetensors")


def apply_init(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    """Copy every tensor of `state` whose name and shape match one of the model's (parameters and
    persistent buffers); the rest keep their fresh values. Returns one line saying what happened."""
    own = model.state_dict()
    loaded, reshaped = [], []
    with torch.no_grad():
        for name, tensor in own.items():
            if name not in state:
                continue
            if tuple(state[name].shape) != tuple(tensor.shape):
                reshaped.append(name)
                continue
            tensor.copy_(state[name].to(tensor.dtype))
            loaded.append(name)
    if not loaded:
        raise ConfigError("init_from: none of its tensors matches this model by name and shape (another task "
                          "or model preset?)")
    fresh = sorted(set(own) - set(loaded) - set(reshaped))
    unused = sorted(set(state) - set(own))
    parts = [f"{len(loaded)} of {len(own)} tensors loaded"]
    for label, names in (("new", fresh), ("other shape", reshaped), ("not in this model", unused)):
        if names:
            parts.append(f"{len(names)} {label} ({_prefixes(names)})")
    return "init_from: " + ", ".join(parts)


def _prefixes(names: list[str], limit: int = 4) -> str:
    """The distinct module prefixes of some tensor names, for a short report."""
    prefixes = sorted({name.rsplit(".", 1)[0].rsplit(".", 1)[0] if "." in name else name for name in names})
    shown = ", ".join(prefixes[:limit])
    return shown + (f", +{len(prefixes) - limit} more" if len(prefixes) > limit else "")


def freeze(model: torch.nn.Module, prefixes: list[str]) -> str:
    """Stop gradients to every parameter whose name starts with one of `prefixes` (e.g. `encoder.`)."""
    if not prefixes:
        return ""
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not isinstance(prefix, str) or not prefix or not any(name.startswith(prefix) for name in names):
            roots = sorted({name.split(".")[0] for name in names})
            raise ConfigError(f"freeze: {prefix!r} names no parameter of this model (its modules: {', '.join(roots)})")
    frozen = 0
    for name, parameter in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            parameter.requires_grad_(False)
            frozen += parameter.numel()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"freeze: {frozen:,} parameters fixed ({', '.join(prefixes)}), {trainable:,} trained"


def compile_blocks(model: torch.nn.Module, block_types: tuple[type, ...]) -> int:
    """torch.compile each block of the task (in place, so names and state dicts stay as they are); the
    number of blocks compiled. Compilation happens on the first step: a minute or two on a CPU."""
    blocks = [module for module in model.modules() if isinstance(module, block_types)]
    for block in blocks:
        block.compile()
    return len(blocks)
