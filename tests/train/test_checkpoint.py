"""Checkpoint folders: a weights file that cannot be read is a DataError naming it, even when the manifest's
checksum matches (it proves the file unchanged since written, not whole)."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch

from drivesim.cli import main
from drivesim.errors import DataError
from drivesim.train.checkpoint import MANIFEST, sha256_of, load_weights, read_checkpoint, write_checkpoint


def corrupt_header(path) -> None:
    """The header length (the first 8 bytes) points far past the end of the file."""
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", len(data) * 1000)
    path.write_bytes(bytes(data))


def refresh_manifest(folder) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_of(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


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
