"""What the quality and report tests share: a tiny TorchScript-able stand-in for InceptionV3."""

from __future__ import annotations

import torch


class TinyInception(torch.nn.Module):
    """[N, 3, H, W] of 0..255 at any size -> [N, 2048]: pooled colours through a fixed random projection."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Linear(3 * 16, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(x.float() / 255.0, (4, 4))
        return torch.tanh(self.project(pooled.flatten(1)))
