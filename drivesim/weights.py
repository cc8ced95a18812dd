"""Shipped weights: a trained world model and its tokenizer packed into one checkpoint folder that
`drivesim generate` loads without the training run it came from.

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


def pack(checkpoint: str | Path, out: str | Path, overwrite: bool = False) -> dict:
    """Pack a `drivesim train wfm` run or checkpoint folder (EMA weights) and its tokenizer into `out`.

    Returns {"folder", "step", "bytes", "max_difference"}: the largest change float16 storage made to any
    world-model weight. The folder is written beside `out` and swapped in only once complete.
    """
    from drivesim.folders import check_out_dir, publish_folder, staging_folder
    from drivesim.tokenizer.pretrained import save_pretrained
    from drivesim.train.checkpoint import sha256_of, resolve_checkpoint
    from drivesim.wfm.pipeline import WorldModelPipeline

    out = Path(out)
    check_out_dir(out, overwrite)  # a file, or a folder with something in it, before any loading
    path, document = resolve_checkpoint(Path(checkpoint), "wfm", report=lambda text: None)
    pipeline = WorldModelPipeline.from_pretrained(path, "cpu")
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
        config = dict(document)
        config["data"] = {**(config.get("data") or {}), "tokenizer": TOKENIZER_FOLDER}
        config["packed_from"] = {"checkpoint": str(path), "step": step}
        (staging / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {"step": step,
                    "files": {p.relative_to(staging).as_posix(): sha256_of(p) for p in files}}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"folder": out, "step": step, "bytes": size, "max_difference": difference}


def _step_of(path: Path) -> int | None:
    manifest = path / "manifest.json"
    try:
        return int(json.loads(manifest.read_text()).get("step"))
    except (OSError, ValueError, TypeError):
        return None
