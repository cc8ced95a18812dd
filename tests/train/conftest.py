"""The toy run several test files compare against, trained once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from toy_runs import toy_config
from toy_task import ToyTask

from drivesim.train.trainer import train


@pytest.fixture(scope="session")
def single_run(tmp_path_factory) -> Path:
    """One process, global batch 4, 30 steps: the reference for the multi-process runs."""
    out = tmp_path_factory.mktemp("single") / "run"
    train(toy_config(out, "steps=30", "batch_size=4", "checkpoint_every=10"), ToyTask(), progress=False)
    return out
