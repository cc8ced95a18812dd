"""Runs the toy task through the trainer, as `drivesim train` would: for subprocess and torchrun tests.

    python tests/train/run_toy.py [--resume] key=value ..."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toy_task import ToyTask  # noqa: E402

from drivesim.train.config import TrainConfig, apply_overrides, from_dict  # noqa: E402
from drivesim.train.trainer import train  # noqa: E402

if __name__ == "__main__":
    arguments = sys.argv[1:]
    resume = "--resume" in arguments
    overrides = [a for a in arguments if a != "--resume"]
    config = from_dict(TrainConfig, apply_overrides({"task": "toy"}, overrides))
    train(config, ToyTask(), resume=resume, progress=False)
