"""Conditions and Prepared: a batch's conditions travel as one value, repeat and select rows as guidance and
sampling need, and preparing them once gives the model exactly what it computes for itself."""

from __future__ import annotations

import torch
from wfm_helpers import rig_conditions, tiny_world_model

from drivesim.wfm.conditions import CONDITIONS, Conditions

B, V, T, H, W = 2, 3, 3, 8, 16


def conditions(**changes) -> Conditions:
    return Conditions(**rig_conditions(B, V), captions=["night", "rain"], **changes)


def test_from_batch_reads_the_batch_contract():
    batch = {**rig_conditions(B, V), "caption": ["a", "b"], "video": torch.zeros(1)}
    found = Conditions.from_batch(batch)
    assert found.captions == ["a", "b"] and found.layout is None and found.batch == B
    assert Conditions.from_batch({**batch, "caption": "one"}).captions == ["one"]


def test_repeat_and_rows_keep_every_field_in_step():
    keep = {name: torch.tensor([True, False]) for name in CONDITIONS}
    clean = torch.tensor([[True, False, False], [False, False, False]])
    base = conditions(clean=clean, keep=keep)
    twice = base.repeat(2)
    assert twice.batch == 2 * B and twice.captions == ["night", "rain", "night", "rain"]
    assert torch.equal(twice.intrinsics[B:], base.intrinsics) and torch.equal(twice.clean[B:], clean)
    assert twice.keep["text"].tolist() == [True, False, True, False]
    second = base.rows(slice(1, 2))
    assert second.batch == 1 and second.captions == ["rain"] and second.keep["layout"].tolist() == [False]
    assert torch.equal(second.ego0_from_ego, base.ego0_from_ego[1:])


def test_preparing_once_gives_the_same_velocity_as_preparing_per_call():
    model = tiny_world_model(views="neighbours").eval()
    x = torch.randn(B, V, T, 16, H, W, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([0.3, 0.8])
    given = conditions()
    with torch.no_grad():
        prepared = model.prepare(given, tuple(x.shape))
        assert prepared.rays.shape[:2] == (B, V) and prepared.neighbours.shape == (B, V, 2)
        assert torch.equal(model(x, t, given, prepared), model(x, t, given))
        # guidance's batch: the conditions and what was prepared, repeated alike
        doubled = model(x.repeat(2, 1, 1, 1, 1, 1), t.repeat(2), given.repeat(2), prepared.repeat(2))
        torch.testing.assert_close(doubled[:B], model(x, t, given), rtol=1e-5, atol=1e-6)


def test_a_dropped_condition_changes_only_its_row():
    model = tiny_world_model().eval()
    x = torch.randn(B, V, T, 16, H, W, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.5, 0.5])
    keep = {name: torch.ones(B, dtype=torch.bool) for name in CONDITIONS}
    keep["text"] = torch.tensor([True, False])
    with torch.no_grad():
        full, dropped = model(x, t, conditions()), model(x, t, conditions(keep=keep))
    torch.testing.assert_close(dropped[0], full[0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(dropped[1], full[1], atol=1e-4)
