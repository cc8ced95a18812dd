"""The EMA of a model's weights: what it saves loads back into the model it came from."""

from __future__ import annotations

import torch

from drivesim.train.ema import EMA


def test_ema_weights_hold_what_the_model_state_holds():
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    model[0].register_buffer("cache", torch.ones(2), persistent=False)  # rebuilt at construction, never saved
    state = EMA(model, 0.9).full_state(model, lambda name: name)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state)  # strict: an EMA file loads into the model it came from
