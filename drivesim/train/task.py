"""What a training task gives the trainer: a model, datasets, a loss, validation and samples.
The trainer knows nothing else about the model; tasks know nothing about processes or devices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch


class Task(Protocol):
    name: str
    block_types: tuple[type, ...]  # sharded one by one under FSDP, checkpointed when asked

    def configure_loss(self, loss_config: dict) -> None:
        """Take the config's `loss` section (weights); called before build_model."""

    def build_model(self, model_config: dict) -> torch.nn.Module:
        """The model from the config's `model` section (raise ConfigError naming a bad key)."""

    def datasets(self, data_config: dict) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset | None]:
        """(train, val) from the config's `data` section; val may be None."""

    def initialize(self, model: torch.nn.Module, train_set, seed: int) -> Iterable[str]:
        """Optional: set weights from the training data before the first step of a fresh run (not on
        --resume); deterministic in `seed`, so every rank does the same. Yields lines to print."""

    def loss(self, model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss to minimise and named values to log."""

    def validate(self, model: torch.nn.Module, batches: Iterable[dict]) -> dict[str, float]:
        """Metrics over some validation batches (means, so ranks can be averaged)."""

    def samples(self, model: torch.nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Pictures for TensorBoard: name -> image [3, H, W] in [0, 1]."""


def task_by_name(name: str) -> Task:
    """The built-in tasks, imported only when asked for."""
    if name == "tokenizer":
        from drivesim.tokenizer.task import TokenizerTask

        return TokenizerTask()
    if name == "wfm":
        from drivesim.wfm.task import WfmTask

        return WfmTask()
    if name == "detector":
        from drivesim.perception.task import DetectorTask

        return DetectorTask()
    from drivesim.errors import ConfigError

    raise ConfigError(f"unknown task {name!r} (tasks: tokenizer, wfm, detector)")
