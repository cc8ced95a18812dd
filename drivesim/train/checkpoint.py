"""Checkpoints per DESIGN.md: a folder with config.yaml, model.safetensors, ema.safetensors and the
training state, written to a temporary folder and renamed, with a manifest of checksums so a
damaged checkpoint is found and the one before it is used."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from drivesim.errors import DataError

MANIFEST = "manifest.json"
PATTERN = re.compile(r"^step-(\d{8})$")


def sha256_of(path: Path) -> str:
    """The hex SHA-256 of a file, read in blocks: what checkpoint and weights manifests record."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # safetensors refuses shared or strided storage; a clone per tensor keeps the file self-contained.
    return {name: tensor.detach().cpu().contiguous().clone() for name, tensor in state.items()}


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    save_file(_contiguous(state), str(path))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; DataError naming it when it cannot be read as one. (A checksum
    manifest proves a file unchanged since it was written, not that it was whole when written.)"""
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{path}: not a readable safetensors file ({reason})") from None


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def write_checkpoint(folder: Path, step: int, config: dict, model: dict[str, torch.Tensor],
                     ema: dict[str, torch.Tensor] | None, training: dict, ranks: list[dict],
                     keep_last: int) -> Path:
    """Write checkpoint `step` under `folder` atomically and delete all but the newest `keep_last`.

    `training` holds the optimizer and scheduler state dicts and counters (saved with torch.save and
    read back with weights_only=True); `ranks` holds each process's RNG state.
    """
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    staging = folder / f".tmp-{checkpoint_name(step)}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    save_weights(model, staging / "model.safetensors")
    if ema is not None:
        save_weights(ema, staging / "ema.safetensors")
    torch.save(training, staging / "training.pt")
    for rank, state in enumerate(ranks):
        torch.save(state, staging / f"rng-rank{rank}.pt")
    files = sorted(p.name for p in staging.iterdir())
    manifest = {"step": step, "files": {name: sha256_of(staging / name) for name in files}}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=1))
    with open(staging / MANIFEST) as handle:  # the manifest last: its presence marks a whole folder
        os.fsync(handle.fileno())
    if final.exists():  # a re-save of the same step (e.g. on a signal right after a periodic save)
        shutil.rmtree(final)
    os.rename(staging, final)
    for old in complete_checkpoints(folder, verify=False)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def verify_checkpoint(path: Path) -> str | None:
    """None when every file matches its manifest checksum, else what is wrong."""
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        return "no manifest (the write did not finish)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError:
        return "manifest is not valid JSON"
    for name, digest in manifest.get("files", {}).items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        if sha256_of(file) != digest:
            return f"{name} does not match its checksum"
    return None


def complete_checkpoints(folder: Path, verify: bool = True) -> list[Path]:
    """Checkpoint folders under `folder`, oldest first; with verify, only those whose checksums hold."""
    if not folder.is_dir():
        return []
    found = sorted(p for p in folder.iterdir() if p.is_dir() and PATTERN.match(p.name))
    return [p for p in found if (verify_checkpoint(p) is None if verify else (p / MANIFEST).is_file())]


def latest_checkpoint(folder: Path, report=print) -> Path | None:
    """The newest checkpoint that verifies; damaged newer ones are reported and skipped."""
    candidates = sorted((p for p in folder.iterdir() if p.is_dir() and PATTERN.match(p.name)), reverse=True) \
        if folder.is_dir() else []
    for candidate in candidates:
        problem = verify_checkpoint(candidate)
        if problem is None:
            return candidate
        report(f"checkpoint {candidate} is damaged ({problem}); trying the one before")
    return None


def read_checkpoint(path: Path, rank: int) -> dict:
    """The pieces of a checkpoint, tensors on the CPU; the RNG state is this rank's (rank 0's if absent)."""
    problem = verify_checkpoint(path)
    if problem is not None:
        raise DataError(f"checkpoint {path}: {problem}")
    rng = path / f"rng-rank{rank}.pt"
    return {
        "config": yaml.safe_load((path / "config.yaml").read_text()),
        "model": load_weights(path / "model.safetensors"),
        "ema": load_weights(path / "ema.safetensors") if (path / "ema.safetensors").is_file() else None,
        "training": torch.load(path / "training.pt", weights_only=True),
        "rng": torch.load(rng if rng.is_file() else path / "rng-rank0.pt", weights_only=True),
    }


def resolve_checkpoint(path: Path, task: str, report=print) -> tuple[Path, dict]:
    """A run folder (its newest complete checkpoint) or a checkpoint folder of `task` -> (the checkpoint
    folder, its config), checksums verified; ConfigError naming --checkpoint otherwise."""
    from drivesim.errors import ConfigError

    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"--checkpoint {path}: " + ("not a folder" if path.exists() else "no such folder")
                          + f" (give a `drivesim train {task}` run or checkpoint folder)")
    if (path / "checkpoints").is_dir():
        found = latest_checkpoint(path / "checkpoints", report=report)
        if found is None:
            raise ConfigError(f"--checkpoint {path}: no complete checkpoint in {path / 'checkpoints'}")
        path = found
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"--checkpoint {path}: not a checkpoint folder (no config.yaml)")
    problem = verify_checkpoint(path)
    if problem is not None:
        raise ConfigError(f"--checkpoint {path}: {problem}")
    try:
        document = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"--checkpoint {path}: config.yaml is not valid YAML ({error})") from None
    if not isinstance(document, dict) or document.get("task") != task:
        found_task = document.get("task") if isinstance(document, dict) else None
        raise ConfigError(f"--checkpoint {path}: a {found_task!r} checkpoint, not a {task!r} one")
    return path, document
