"""init_from, freeze and compile: a fresh run starts from another run's weights where names and shapes
match (and says what it did not load), frozen weights do not move, compiled blocks keep their names."""

from __future__ import annotations

import pytest
import torch
from toy_runs import toy_config, weights
from toy_task import ToyTask

from drivesim.errors import ConfigError
from drivesim.train import checkpoint as ckpt
from drivesim.train.init_from import apply_init, compile_blocks, freeze, load_init_state
from drivesim.train.trainer import train


def test_a_run_started_from_another_begins_at_its_weights(single_run, tmp_path, capsys):
    out = tmp_path / "from"
    train(toy_config(out, "steps=1", "checkpoint_every=1", f"init_from={single_run}", "optim.lr=0.000000001",
                     "optim.warmup_steps=0"), ToyTask())
    assert "init_from: " in capsys.readouterr().out
    started, source = weights(out, 1), weights(single_run, 30, "ema")
    for name in source:  # one step at a vanishing learning rate: still the source's EMA weights
        torch.testing.assert_close(started[name], source[name], atol=1e-6, rtol=0)


def test_frozen_parameters_do_not_move(single_run, tmp_path):
    out = tmp_path / "frozen"
    train(toy_config(out, "steps=5", "checkpoint_every=5", f"init_from={single_run}", "freeze=[blocks.0.]"),
          ToyTask(), progress=False)
    after, before = weights(out, 5), weights(single_run, 30, "ema")
    moved = {name for name in after if not torch.equal(after[name], before[name])}
    assert moved and not any(name.startswith("blocks.0.") for name in moved)


def test_apply_init_loads_what_matches_and_names_the_rest():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    source = {"0.weight": torch.ones(4, 3), "0.bias": torch.ones(4), "1.weight": torch.ones(5, 4),
              "extra.weight": torch.ones(1)}
    line = apply_init(model, source)
    assert torch.equal(model[0].weight, torch.ones(4, 3)) and not torch.equal(model[1].weight[:1], torch.ones(1, 4))
    assert "2 of 4 tensors loaded" in line and "1 new" in line and "1 other shape" in line
    assert "1 not in this model" in line
    with pytest.raises(ConfigError, match="none of its tensors"):
        apply_init(model, {"other": torch.ones(2)})


def test_init_from_errors_name_the_setting(tmp_path, single_run):
    with pytest.raises(ConfigError, match=r"init_from=.*no such folder"):
        load_init_state(tmp_path / "missing", "toy")
    with pytest.raises(ConfigError, match=r"init_from=.*not a 'wfm'"):
        load_init_state(single_run, "wfm")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="init_from="):
        load_init_state(empty, "toy")


def test_init_from_reads_a_checkpoint_folder_too(single_run):
    checkpoint = single_run / "checkpoints" / ckpt.checkpoint_name(30)
    state = load_init_state(checkpoint, "toy")
    torch.testing.assert_close(state, weights(single_run, 30, "ema"))


def test_freeze_refuses_a_prefix_that_names_nothing():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4))
    with pytest.raises(ConfigError, match=r"freeze: 'encoder\.' names no parameter"):
        freeze(model, ["encoder."])
    assert "16 parameters fixed" in freeze(model, ["0."])
    assert not any(p.requires_grad for p in model.parameters())


def test_compiled_blocks_keep_their_state_dict_names():
    model = ToyTask().build_model({})
    names = list(model.state_dict())
    assert compile_blocks(model, ToyTask.block_types) == len(model.blocks)
    assert list(model.state_dict()) == names
