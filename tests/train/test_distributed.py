"""Processes and float modes: two DDP or FSDP2 processes end where one process does, and set-up on the
CPU flushes subnormal floats only until teardown."""

from __future__ import annotations

import torch
from toy_runs import assert_same, toy_config, torchrun, weights
from toy_task import ToyTask

from drivesim.train.distributed import denormals_flushed, setup, teardown
from drivesim.train.trainer import train


def test_two_ddp_processes_end_with_the_weights_of_one_with_the_same_global_batch(single_run, tmp_path):
    torchrun(tmp_path / "ddp", "steps=30", "batch_size=2", "checkpoint_every=30")
    assert_same(weights(tmp_path / "ddp", 30), weights(single_run, 30), atol=1e-5)
    assert_same(weights(tmp_path / "ddp", 30, "ema"), weights(single_run, 30, "ema"), atol=1e-5)


def test_two_fsdp2_processes_end_with_the_weights_of_one(single_run, tmp_path):
    torchrun(tmp_path / "fsdp", "steps=30", "batch_size=2", "checkpoint_every=30", "parallel=fsdp")
    assert_same(weights(tmp_path / "fsdp", 30), weights(single_run, 30), atol=1e-5)


def test_setup_on_the_cpu_flushes_subnormal_floats_to_zero_and_teardown_restores_them():
    assert not denormals_flushed()
    world = setup("cpu")
    assert torch.tensor([1e-39]).mul(1.0).item() == 0.0  # 1e-39 is subnormal in float32
    teardown(world)
    assert not denormals_flushed()  # hypothesis, and any code after training, needs them back


def test_a_finished_run_leaves_subnormal_floats_as_it_found_them(tmp_path):
    train(toy_config(tmp_path / "run", "steps=2"), ToyTask(), progress=False)
    assert not denormals_flushed()
