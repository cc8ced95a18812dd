"""Checkpoint folders: only the newest keep_last stay; a damaged newest one is reported and the one before
used; a weights file that cannot be read is a DataError naming it, even when the manifest's checksum
matches (it proves the file unchanged since written, not whole)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from toy_runs import toy_config
from toy_task import ToyTask

from drivesim.cli import main
from drivesim.errors import DataError
from drivesim.train import checkpoint as ckpt
from drivesim.train.checkpoint import MANIFEST, sha256_of, load_weights, read_checkpoint, write_checkpoint
from drivesim.train.trainer import Trainer, train


def corrupt_header(path) -> None:
    """The header length (the first 8 bytes) points far past the end of the file."""
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 1000)
    path.write_bytes(bytes(data))


def refresh_manifest(folder) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_of(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_keep_last_keeps_the_newest_checkpoints(single_run):
    names = [p.name for p in ckpt.complete_checkpoints(single_run / "checkpoints")]
    assert names == [ckpt.checkpoint_name(s) for s in (10, 20, 30)]  # keep_last=3 of 10, 20, 30


def test_a_damaged_latest_checkpoint_is_reported_and_the_one_before_is_used(tmp_path, capsys):
    out = tmp_path / "run"
    train(toy_config(out, "steps=20", "checkpoint_every=10"), ToyTask(), progress=False)
    weights = out / "checkpoints" / ckpt.checkpoint_name(20) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    trainer = Trainer(toy_config(out, "steps=20"), ToyTask(), resume=True, progress=True)
    trainer.close()
    assert trainer.step == 10
    assert "model.safetensors does not match its checksum" in capsys.readouterr().out


@pytest.mark.parametrize("content", [None, b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{not json"])
def test_a_broken_weights_file_is_a_data_error_naming_it(tmp_path, content):
    folder = write_checkpoint(tmp_path / "checkpoints", 1, {"task": "toy"}, {"w": torch.ones(3)}, None,
                              {"step": 1}, [{}], keep_last=1)
    weights = folder / "model.safetensors"
    corrupt_header(weights) if content is None else weights.write_bytes(content)
    refresh_manifest(folder)
    with pytest.raises(DataError, match="model.safetensors: not a readable safetensors file") as caught:
        read_checkpoint(folder, 0)
    assert "\n" not in str(caught.value)
    with pytest.raises(DataError, match="not a readable safetensors file"):
        load_weights(tmp_path / "missing.safetensors")


def test_generate_with_a_broken_weights_file_prints_one_line(tiny_wfm_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_wfm_run, run)
    (checkpoint,) = (run / "checkpoints").iterdir()
    corrupt_header(checkpoint / "ema.safetensors")
    refresh_manifest(checkpoint)
    scenario = tmp_path / "s.yaml"
    scenario.write_text(_SCENARIO)
    code = main(["generate", "--scenario", str(scenario), "--checkpoint", str(run), "--out", str(tmp_path / "out"),
                 "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "ema.safetensors: not a readable safetensors file" in err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "out").exists()


_SCENARIO = """
prompt: a road
rig: front3
fps: 12
duration: 0.25
ego: {waypoints: [{t: 0, x: 0, y: 0}, {t: 0.25, x: 3, y: 0}]}
"""
