"""Running the toy task, in this process or others, and comparing the weights runs end with."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from drivesim.train import checkpoint as ckpt
from drivesim.train.config import TrainConfig, apply_overrides, from_dict

RUNNER = Path(__file__).parent / "run_toy.py"
COMMON = ["val_every=10", "log_every=5", "sample_every=20", "optim.warmup_steps=5", "optim.lr=0.01"]


def toy_config(out: Path, *overrides: str) -> TrainConfig:
    return from_dict(TrainConfig, apply_overrides({"task": "toy", "out": str(out)}, [*COMMON, *overrides]))


def weights(run: Path, step: int, name: str = "model") -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / ckpt.checkpoint_name(step) / f"{name}.safetensors"))


def assert_same(a: dict, b: dict, atol: float) -> None:
    assert sorted(a) == sorted(b)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=0, msg=name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, *overrides: str) -> None:
    """Two processes on the toy task, through torchrun (gloo on the CPU)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(_free_port()), str(RUNNER), f"out={out}", *COMMON, *overrides]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
