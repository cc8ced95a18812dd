"""Packed weights (drivesim pack-weights), what `drivesim generate` does without --checkpoint, the
layout ablation and the hold-start-frame baseline of the held-out evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_simulate import CAMERAS, make_scenario, scenario_document

from drivesim import weights
from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.scenario import from_dict, save
from drivesim.rollout import ROLLOUT_STORE
from drivesim.simulate import RolloutConfig, hold_start_frame, rollout
from drivesim.wfm.pipeline import WorldModelPipeline


@pytest.fixture(scope="module")
def packed(tiny_wfm_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights") / "drivesim-small"
    assert main(["pack-weights", "--checkpoint", str(tiny_wfm_run), "--out", str(out)]) == 0
    return out


def test_packed_weights_load_alone_and_render_like_the_run(packed, tiny_wfm_run, tmp_path):
    # the tokenizer travels inside the folder, and the folder moves as a whole
    moved = tmp_path / "elsewhere" / "weights"
    import shutil

    shutil.copytree(packed, moved)
    assert (moved / "tokenizer" / "model.safetensors").is_file()
    config = yaml.safe_load((moved / "config.yaml").read_text())
    assert config["data"]["tokenizer"] == "tokenizer" and config["task"] == "wfm"
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(str(moved / "ema.safetensors")).values()
            if t.is_floating_point()} == {torch.float16}
    run_pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run)
    packed_pipeline = WorldModelPipeline.from_pretrained(moved)
    for name, tensor in run_pipeline.model.state_dict().items():  # float16 storage, float32 in memory
        assert packed_pipeline.model.state_dict()[name].dtype == tensor.dtype
        assert torch.allclose(packed_pipeline.model.state_dict()[name], tensor, atol=1e-3, rtol=1e-3), name
    scenario = make_scenario()
    a = rollout(scenario, run_pipeline, RolloutConfig(steps=2), progress=False).video.astype(int)
    b = rollout(scenario, packed_pipeline, RolloutConfig(steps=2), progress=False).video.astype(int)
    assert np.abs(a - b).mean() < 2


def test_a_damaged_packed_file_is_refused_by_name(packed, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert "tokenizer/model.safetensors" in manifest["files"]
    (copy / "tokenizer" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ConfigError, match="tokenizer/model.safetensors does not match its checksum"):
        WorldModelPipeline.from_pretrained(copy)


def test_pack_refuses_a_full_folder_and_keeps_it(tiny_wfm_run, tmp_path, capsys):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert main(["pack-weights", "--checkpoint", str(tiny_wfm_run), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "mine.txt").read_text() == "keep me"
    assert main(["pack-weights", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "w")]) == 2
    assert "nope" in capsys.readouterr().err and not (tmp_path / "w").exists()


def test_generate_without_checkpoint_uses_the_shipped_weights(packed, tmp_path, monkeypatch, capsys):
    scenario_file = save(make_scenario(), tmp_path / "s.yaml")
    monkeypatch.setattr(weights, "SHIPPED", tmp_path / "absent")
    code = main(["generate", "--scenario", str(scenario_file), "--out", str(tmp_path / "a"), "--quiet"])
    assert code == 2 and "shipped weights" in capsys.readouterr().err
    monkeypatch.setattr(weights, "SHIPPED", packed)
    code = main(["generate", "--scenario", str(scenario_file), "--out", str(tmp_path / "b"), "--steps", "1",
                 "--device", "cpu", "--quiet"])
    assert code == 0 and (tmp_path / "b" / "contact_sheet.png").is_file()


def test_no_layout_withholds_the_maps_and_changes_the_video(tiny_wfm_run, monkeypatch):
    import drivesim.simulate as simulate

    pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run)
    seen = []
    original = simulate._chunk_conditions

    def spy(scenario, rig, times, layout, device):
        seen.append(layout)
        return original(scenario, rig, times, layout, device)

    monkeypatch.setattr(simulate, "_chunk_conditions", spy)
    scenario = make_scenario()
    with_maps = rollout(scenario, pipeline, RolloutConfig(steps=2), progress=False)
    without = rollout(scenario, pipeline, RolloutConfig(steps=2, use_layout=False), progress=False)
    assert seen[0] is not None and seen[-1] is None  # the scenario's layout frames, then none
    assert not np.array_equal(with_maps.video, without.video)


def test_hold_start_frame_repeats_the_stored_frame_with_the_labels(tiny_wfm_run, tmp_path):
    pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run)
    source = rollout(make_scenario(), pipeline, RolloutConfig(steps=1), progress=False)
    source.save(tmp_path / "source")
    document = scenario_document()
    document["start_frames"] = {"store": str(tmp_path / "source" / ROLLOUT_STORE), "clip": "tiny_cruise", "frame": 1}
    scenario = from_dict(document, source="held")
    held = hold_start_frame(scenario, (64, 32))
    assert held.video.shape == (scenario.num_frames, len(CAMERAS), 32, 64, 3)
    assert (held.video == held.video[:1]).all()
    assert np.abs(held.video[0].astype(int) - source.video[1].astype(int)).max() <= 1
    assert len(held.labels.offsets) == scenario.num_frames + 1 and held.cameras == CAMERAS
    with pytest.raises(ConfigError, match="no start_frames"):
        hold_start_frame(make_scenario(), (64, 32))


def test_the_editor_lists_packed_weights_first(packed, tiny_wfm_run, monkeypatch):
    from drivesim.editor import page
    from drivesim.editor.jobs import find_checkpoints

    assert find_checkpoints(packed.parent, tiny_wfm_run) == sorted([packed, tiny_wfm_run])
    monkeypatch.delenv("DRIVESIM_UI_CHECKPOINTS", raising=False)
    monkeypatch.setattr(weights, "SHIPPED", packed)
    assert page.settings()["checkpoints"] == [packed, Path("runs")]


def test_pack_refuses_an_out_that_is_a_file_before_loading(tmp_path, capsys, monkeypatch):
    from drivesim.wfm.pipeline import WorldModelPipeline

    target = tmp_path / "weights.bin"
    target.write_text("mine")
    monkeypatch.setattr(WorldModelPipeline, "from_pretrained", lambda *a: pytest.fail("loaded before checking"))
    assert main(["pack-weights", "--checkpoint", str(tmp_path), "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"--out {target} is a file" in err and err.count("\n") == 1 and "Traceback" not in err
    assert target.read_text() == "mine"


def test_a_retrained_decoder_replaces_the_packed_tokenizer_only_with_the_same_encoder(packed, tmp_path, capsys):
    from drivesim.tokenizer.pretrained import load_pretrained, save_pretrained

    tokenizer = load_pretrained(packed / weights.TOKENIZER_FOLDER)
    with torch.no_grad():  # a decoder trained on: the encoder untouched
        for parameter in tokenizer.decoder.parameters():
            parameter.add_(0.01)
    decoder_run = save_pretrained(tokenizer, tmp_path / "decoder")
    out = tmp_path / "repacked"
    assert main(["pack-weights", "--checkpoint", str(packed), "--tokenizer", str(decoder_run), "--out", str(out)]) == 0
    repacked = WorldModelPipeline.from_pretrained(out, "cpu")
    torch.testing.assert_close(repacked.tokenizer.decoder.state_dict(), tokenizer.decoder.state_dict())
    original = WorldModelPipeline.from_pretrained(packed, "cpu")
    torch.testing.assert_close(repacked.model.state_dict(), original.model.state_dict())
    document = yaml.safe_load((out / "config.yaml").read_text())
    assert document["tokenizer_from"] == str(decoder_run)
    assert document["packed_from"] == yaml.safe_load((packed / "config.yaml").read_text())["packed_from"]

    with torch.no_grad():
        next(tokenizer.encoder.parameters()).add_(0.01)
    other = save_pretrained(tokenizer, tmp_path / "other-encoder")
    refused = tmp_path / "refused"
    assert main(["pack-weights", "--checkpoint", str(packed), "--tokenizer", str(other), "--out", str(refused)]) == 2
    assert "encoder differs" in capsys.readouterr().err and not refused.exists()
