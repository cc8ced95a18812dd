"""Shipped weights: a trained world model and its tokenizer packed into one checkpoint folder that
`drivesim generate` loads without the training run it came from; and the detector `drivesim eval` measures
controllability with (weights/detector-small: config.yaml, ema.safetensors in float32, manifest.json).

The folder is a checkpoint folder as training writes it (config.yaml, ema.safetensors, manifest.json
with checksums) plus the tokenizer inside it (tokenizer/config.yaml, tokenizer/model.safetensors), its
config's data.tokenizer pointing there. The world model's weights are stored in float16 to halve the
repository's size; they are read back into float32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file

from drivesim.errors import ConfigError

# The weights the repository ships (MODEL_CARD.md says how they were trained).
SHIPPED = Path(__file__).resolve().parent.parent / "weights" / "drivesim-small"
TOKENIZER_FOLDER = "tokenizer"


def shipped_checkpoint() -> Path:
    """The shipped weights folder; ConfigError saying how to get weights when it is absent."""
    if not (SHIPPED / "config.yaml").is_file():
        raise ConfigError(f"no --checkpoint given and the shipped weights ({SHIPPED}) are missing: pass a "
                          "`drivesim train wfm` run folder (see MODEL_CARD.md for the training commands)")
    return SHIPPED


def _task_of(checkpoint: Path) -> str:
    """The task a run or checkpoint folder trained (its config.yaml's `task`), "wfm" when it cannot tell:
    resolve_checkpoint then names what is wrong."""
    config = checkpoint / "config.yaml"
    try:
        document = yaml.safe_load(config.read_text()) if config.is_file() else None
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        document = None
    return document.get("task", "wfm") if isinstance(document, dict) else "wfm"


def pack(checkpoint: str | Path, out: str | Path, overwrite: bool = False, tokenizer: str | Path | None = None,
         palette: str | Path | None = None) -> dict:
    """Pack a `drivesim train wfm` run or checkpoint folder (EMA weights) and its tokenizer into `out`, or a
    `drivesim train detector` one (EMA weights, float32: small enough as they are).

    Returns {"folder", "step", "bytes", "max_difference"}: the largest change float16 storage made to any
    world-model weight (None for a detector: its weights are stored as they are). The folder is written
    beside `out` and swapped in only once complete. `tokenizer` (world models only) packs that tokenizer
    instead of the checkpoint's own, if its encoder is the same: a decoder trained on leaves the latents,
    and so the world model, as they were. `palette` (world models only): a paint_baseline palette (JSON) for
    Text2World's painted starts, kept beside the weights (a packed folder's own palette is kept otherwise).
    """
    from drivesim.folders import check_out_dir
    from drivesim.train.checkpoint import resolve_checkpoint

    out = Path(out)
    check_out_dir(out, overwrite)  # a file, or a folder with something in it, before any loading
    task = "detector" if _task_of(Path(checkpoint)) == "detector" else "wfm"
    path, document = resolve_checkpoint(Path(checkpoint), task, report=lambda text: None)
    if task == "detector":
        if tokenizer is not None or palette is not None:
            raise ConfigError("--tokenizer / --palette: a detector has neither")
        return _pack_detector(path, document, out)
    return _pack_world_model(path, document, out, tokenizer, palette)


def _write_packed(staging: Path, out: Path, document: dict, path: Path, step: int | None) -> int:
    """config.yaml (with where it was packed from) and manifest.json into `staging`, then publish it as `out`."""
    from drivesim.folders import publish_folder
    from drivesim.train.checkpoint import sha256_of

    config = dict(document)
    # Repacking a packed folder (a new tokenizer) keeps where its world model was first packed from.
    config["packed_from"] = config.get("packed_from") or {"checkpoint": str(path), "step": step}
    (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    manifest = {"step": step, "files": {p.relative_to(staging).as_posix(): sha256_of(p) for p in files}}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    publish_folder(staging, out)
    return sum(p.stat().st_size for p in out.rglob("*") if p.is_file())


def _pack_detector(path: Path, document: dict, out: Path) -> dict:
    from drivesim.folders import staging_folder
    from drivesim.perception.pretrained import load_detector

    detector = load_detector(path, "cpu", ema=True)
    step = _step_of(path)
    staging = staging_folder(out)
    try:
        state = {name: tensor.contiguous() for name, tensor in detector.model.state_dict().items()}
        save_file(state, str(staging / "ema.safetensors"))
        size = _write_packed(staging, out, document, path, step)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"folder": out, "step": step, "bytes": size, "max_difference": None}


def same_encoder_tokenizer(source: str | Path, current):
    """The tokenizer at `source` (run, checkpoint or tokenizer folder), refused with a ConfigError naming
    --tokenizer unless its encoder's weights equal `current`'s (a CausalVideoTokenizer)."""
    from drivesim.wfm.pipeline import load_tokenizer

    replacement = load_tokenizer(source)
    mine, theirs = current.encoder.state_dict(), replacement.encoder.state_dict()
    if mine.keys() != theirs.keys() or any(not torch.equal(mine[k].float(), theirs[k].float()) for k in mine):
        raise ConfigError(f"--tokenizer {source}: its encoder differs from the one the world model was trained on, "
                          "so its latents would not be the model's (only a tokenizer trained with freeze: "
                          "[encoder.] from this one can replace it)")
    return replacement


def _pack_world_model(path: Path, document: dict, out: Path, tokenizer: str | Path | None = None,
                      palette: str | Path | None = None) -> dict:
    from drivesim.folders import staging_folder
    from drivesim.paint_baseline import Palette
    from drivesim.tokenizer.pretrained import save_pretrained
    from drivesim.wfm.pipeline import PALETTE_FILE, WorldModelPipeline

    pipeline = WorldModelPipeline.from_pretrained(path, "cpu")
    if palette is not None:
        pipeline.palette = Palette.load(Path(palette))  # DataError naming the file when it is not one
    if tokenizer is not None:
        pipeline.tokenizer = same_encoder_tokenizer(tokenizer, pipeline.tokenizer)
        document = {**document, "tokenizer_from": str(tokenizer)}
    step = _step_of(path)
    staging = staging_folder(out)
    try:
        save_pretrained(pipeline.tokenizer, staging / TOKENIZER_FOLDER)
        persistent = pipeline.model.state_dict()
        state = {name: (tensor.to(torch.float16) if tensor.is_floating_point() else tensor).contiguous()
                 for name, tensor in persistent.items()}
        difference = max((float((state[name].float() - tensor.float()).abs().max())
                          for name, tensor in persistent.items() if tensor.is_floating_point() and tensor.numel()),
                         default=0.0)
        save_file(state, str(staging / "ema.safetensors"))
        if pipeline.palette is not None:
            pipeline.palette.save(staging / PALETTE_FILE)
        document = {**document, "data": {**(document.get("data") or {}), "tokenizer": TOKENIZER_FOLDER}}
        size = _write_packed(staging, out, document, path, step)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"folder": out, "step": step, "bytes": size, "max_difference": difference}


def _step_of(path: Path) -> int | None:
    manifest = path / "manifest.json"
    try:
        return int(json.loads(manifest.read_text()).get("step"))
    except (OSError, ValueError, TypeError):
        return None
