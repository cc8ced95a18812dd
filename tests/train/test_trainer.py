"""The trainer on the toy task: it lowers the loss, accumulates like a whole batch, resumes after kill -9,
refuses to resume from nothing or to overwrite a run, skips and counts bad losses, stops cleanly on a
signal; and its parts: activation checkpointing, the learning-rate schedule, data-dependent init."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from toy_runs import COMMON, RUNNER, assert_same, toy_config, weights
from toy_task import ToyTask

from drivesim.errors import ConfigError
from drivesim.train import checkpoint as ckpt
from drivesim.train.trainer import Trainer, TrainingStopped, checkpoint_blocks, train, warmup_cosine


def test_training_lowers_the_loss_and_writes_a_whole_checkpoint(single_run):
    final = single_run / "checkpoints" / ckpt.checkpoint_name(30)
    assert {p.name for p in final.iterdir()} == {"config.yaml", "model.safetensors", "ema.safetensors",
                                                 "training.pt", "rng-rank0.pt", "manifest.json"}
    state = torch.load(final / "training.pt", weights_only=True)
    assert state["step"] == 30 and state["skipped"] == 0
    torch.manual_seed(0)
    first = ToyTask().build_model({})  # the run's initial weights (seeded like the trainer)
    points = ToyTask().datasets({})[1]
    batch = {"x": points.x, "y": points.y}
    trained = ToyTask().build_model({})
    trained.load_state_dict(weights(single_run, 30))
    assert ToyTask().loss(trained, batch)[0] < 0.5 * ToyTask().loss(first, batch)[0]
    assert (single_run / "tensorboard").is_dir() and any((single_run / "tensorboard").iterdir())


def test_gradient_accumulation_equals_the_whole_batch(single_run, tmp_path):
    train(toy_config(tmp_path / "accum", "steps=30", "batch_size=2", "grad_accum=2", "checkpoint_every=30"),
          ToyTask(), progress=False)
    assert_same(weights(tmp_path / "accum", 30), weights(single_run, 30), atol=1e-5)


def test_kill_9_at_a_random_step_then_resume_reaches_the_same_weights(single_run, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, str(RUNNER), f"out={out}", *COMMON, "steps=30", "batch_size=4", "checkpoint_every=3"]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = random.Random(os.getpid()).randint(1, 8)  # kill once this many checkpoints exist
    deadline = time.monotonic() + 120
    while child.poll() is None and time.monotonic() < deadline:
        if len(ckpt.complete_checkpoints(out / "checkpoints", verify=False)) >= min(target, 3):
            if target <= 3 or (out / "checkpoints" / ckpt.checkpoint_name(3 * target)).exists():
                break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    subprocess.run([*command, "--resume"], check=True, timeout=120, capture_output=True)
    assert_same(weights(out, 30), weights(single_run, 30), atol=1e-6)


def test_resume_without_a_checkpoint_and_a_new_run_over_an_old_one_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        Trainer(toy_config(tmp_path / "empty"), ToyTask(), resume=True)
    train(toy_config(tmp_path / "run", "steps=2", "checkpoint_every=1"), ToyTask(), progress=False)
    with pytest.raises(ConfigError, match="already has checkpoints: pass --resume"):
        Trainer(toy_config(tmp_path / "run", "steps=4"), ToyTask())


def test_a_non_finite_loss_skips_the_step_and_is_counted(tmp_path):
    # Sample 0 carries a NaN target; with batch 64 every step sees it, with batch 1 only some do.
    result = train(toy_config(tmp_path / "some", "steps=12", "batch_size=1", "checkpoint_every=12",
                              "data.poison=[0]", "data.size=8"), ToyTask(), progress=False)
    assert 0 < result["skipped_steps"] < 12
    final = weights(tmp_path / "some", 12)
    assert all(torch.isfinite(w).all() for w in final.values())


def test_too_many_bad_steps_in_a_row_stop_the_run_and_keep_the_last_checkpoint(tmp_path):
    out = tmp_path / "bad"
    train(toy_config(out, "steps=4", "checkpoint_every=2", "data.size=8"), ToyTask(), progress=False)
    before = weights(out, 4)
    config = toy_config(out, "steps=20", "checkpoint_every=2", "data.size=8", "batch_size=8",
                        "data.poison=[0]", "max_bad_steps=3")
    with pytest.raises(TrainingStopped, match="3 non-finite losses in a row at step 7"):
        train(config, ToyTask(), resume=True, progress=False)
    assert ckpt.latest_checkpoint(out / "checkpoints").name == ckpt.checkpoint_name(4)
    assert_same(weights(out, 4), before, atol=0)


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "term"
    command = [sys.executable, str(RUNNER), f"out={out}", *COMMON, "steps=100000", "checkpoint_every=100000"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "tensorboard").is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr[-2000:]
    saved = ckpt.latest_checkpoint(out / "checkpoints")
    assert saved is not None and 0 < int(saved.name.split("-")[1]) < 100000


def test_activation_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain, checkpointed = ToyTask().build_model({}), ToyTask().build_model({})
    checkpointed.load_state_dict(plain.state_dict())
    assert checkpoint_blocks(checkpointed, ToyTask.block_types) == 2
    x = torch.randn(5, 4)
    plain(x).square().sum().backward()
    checkpointed(x).square().sum().backward()
    for a, b in zip(plain.parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    factors = [warmup_cosine(s, warmup=10, total=100, min_ratio=0.1) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] == pytest.approx(0.1, abs=1e-3)


class InitializingTask(ToyTask):
    """The toy task with a data-dependent initialisation: the output bias set to the mean target."""

    def __init__(self):
        super().__init__()
        self.initialized = 0

    def initialize(self, model, train_set, seed):
        self.initialized += 1
        targets = torch.stack([train_set[i]["y"] for i in range(len(train_set))])
        with torch.no_grad():
            model.out.bias.copy_(targets.mean(0))
        yield f"bias set from {len(train_set)} items"


def test_a_task_initializes_from_the_data_on_a_fresh_run_only(tmp_path, capsys):
    out = tmp_path / "run"
    task = InitializingTask()
    trainer = Trainer(toy_config(out, "steps=4", "batch_size=4", "checkpoint_every=2"), task)
    assert task.initialized == 1 and "bias set from 64 items" in capsys.readouterr().out
    expected = torch.stack([trainer.train_set[i]["y"] for i in range(64)]).mean(0)
    torch.testing.assert_close(trainer.model.out.bias.detach(), expected, atol=0.05, rtol=0)  # noise differs
    trainer.run()
    trainer.close()
    resumed = InitializingTask()
    Trainer(toy_config(out, "steps=6", "batch_size=4", "checkpoint_every=2"), resumed, resume=True)
    assert resumed.initialized == 0  # the weights come from the checkpoint
