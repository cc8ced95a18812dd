"""A small real task for the training-stack tests: fit y = W x + b with a two-layer MLP.

Items carry seeded noise drawn from torch's global RNG, so the tests see whether the stack's
per-item seeding makes runs repeat; `poison_steps` makes chosen steps' losses NaN."""

from __future__ import annotations

import torch

from drivesim.train.config import from_dict
from dataclasses import dataclass, field


@dataclass
class ToyModel:
    width: int = 32


@dataclass
class ToyData:
    size: int = 64
    noise: float = 0.05
    poison: list[int] = field(default_factory=list)  # dataset indices whose target is NaN


class Points(torch.utils.data.Dataset):
    def __init__(self, config: ToyData, offset: int):
        generator = torch.Generator().manual_seed(1234 + offset)
        self.x = torch.randn(config.size, 4, generator=generator)
        weight = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.5, 0.5, -1.0, 2.0]])
        self.y = self.x @ weight.T + torch.tensor([0.3, -0.7])
        self.noise, self.poison = config.noise, set(config.poison)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        target = self.y[index] + self.noise * torch.randn(2)  # augmentation from the global RNG
        if index in self.poison:
            target = torch.full_like(target, float("nan"))
        return {"x": self.x[index], "y": target}


class Block(torch.nn.Module):
    def __init__(self, width):
        super().__init__()
        self.linear = torch.nn.Linear(width, width)

    def forward(self, x):
        return x + torch.tanh(self.linear(x))


class MLP(torch.nn.Module):
    def __init__(self, config: ToyModel):
        super().__init__()
        self.inp = torch.nn.Linear(4, config.width)
        self.blocks = torch.nn.ModuleList([Block(config.width), Block(config.width)])
        self.out = torch.nn.Linear(config.width, 2)
        self.register_buffer("calls", torch.zeros(()))

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = block(h)
        return self.out(h)


class ToyTask:
    name = "toy"
    block_types = (Block,)

    def build_model(self, model_config):
        return MLP(from_dict(ToyModel, model_config, "model"))

    def datasets(self, data_config):
        config = from_dict(ToyData, data_config, "data")
        return Points(config, 0), Points(ToyData(size=16, noise=0.0), 1)

    def loss(self, model, batch):
        error = torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])
        return error, {"mse": float(error.detach())}

    def validate(self, model, batches):
        errors = [float(torch.nn.functional.mse_loss(model(b["x"]), b["y"])) for b in batches]
        return {"mse": sum(errors) / len(errors)}

    def samples(self, model, batch):
        prediction = model(batch["x"])[:1]
        return {"prediction": prediction.detach().sigmoid().reshape(1, 1, 2).expand(3, 2, 2)}
