"""The multi-view DiT (drivesim/wfm/dit.py): view order, cross-view wiring in each mode, the zero-initialised
cross-view projection, flow-time modulation per sample, activation checkpointing of its blocks, and its presets."""

from __future__ import annotations

import copy

import pytest
import torch
from wfm_helpers import B, H, T, V, W, latents, randomize_zero_layers, rig_conditions, run, tiny_world_model

from drivesim.rigs import load_rig
from drivesim.train.trainer import checkpoint_blocks
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.dit import PRESETS, DiTBlock, azimuth_neighbours
from drivesim.wfm.model import WorldModel, model_config


def test_nuscenes_neighbours_by_azimuth_are_the_rigs():
    rig = load_rig("nuscenes")
    found = azimuth_neighbours(torch.tensor(rig.ego_from_cam)[None], 2)[0]
    for view, name in enumerate(rig.names):
        assert {rig.names[i] for i in found[view].tolist()} == set(rig.neighbours[name]), name


@pytest.mark.parametrize("views", ["neighbours", "all", "joint"])
def test_permuting_views_with_their_cameras_permutes_the_output(views):
    model = tiny_world_model(views=views).eval()
    x = latents()
    conditions = rig_conditions(B, V)
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    out = run(model, x, **conditions)
    permuted = run(model, x[:, order], intrinsics=conditions["intrinsics"][:, order],
                   ego_from_cam=conditions["ego_from_cam"][:, order], ego0_from_ego=conditions["ego0_from_ego"])
    assert torch.allclose(permuted, out[:, order], atol=1e-5)


def test_a_fresh_model_keeps_views_apart_until_its_cross_view_projection_learns():
    fresh = tiny_world_model(randomize=False)
    for block in fresh.dit.blocks:
        assert not block.view_attention.out.weight.any()
    randomize_zero_layers(fresh.dit.final)  # open the output, keep the cross-view projections closed
    x, changed = latents(), latents()
    changed[:, 1:] = latents(seed=1)[:, 1:]
    assert torch.equal(run(fresh, x)[:, 0], run(fresh, changed)[:, 0])
    trained = tiny_world_model()
    assert not torch.allclose(run(trained, x)[:, 0], run(trained, changed)[:, 0])


def test_neighbours_mode_sees_only_the_neighbours():
    model = tiny_world_model(views="neighbours", neighbours=2)
    x, changed = latents(), latents()
    rig = load_rig("nuscenes")
    front, back = rig.names.index("CAM_FRONT"), rig.names.index("CAM_BACK")
    changed[:, back] = latents(seed=2)[:, back]  # not a neighbour of the front camera
    assert torch.allclose(run(model, x)[:, front], run(model, changed)[:, front], atol=1e-6)
    left = rig.names.index("CAM_FRONT_LEFT")
    changed[:, left] = latents(seed=3)[:, left]
    assert not torch.allclose(run(model, x)[:, front], run(model, changed)[:, front], atol=1e-4)


def test_none_mode_treats_views_independently():
    model = tiny_world_model(views="none")
    x, changed = latents(), latents()
    changed[:, 1:] = latents(seed=1)[:, 1:]
    assert torch.allclose(run(model, x)[:, 0], run(model, changed)[:, 0], atol=1e-6)


def test_flow_time_modulates_every_sample_separately():
    model = tiny_world_model()
    x = latents()
    out = run(model, x, t=torch.tensor([0.3, 0.8]))
    swapped = run(model, x, t=torch.tensor([0.3, 0.1]))
    assert torch.equal(out[0], swapped[0])
    assert not torch.allclose(out[1], swapped[1], atol=1e-4)


def test_activation_checkpointing_gives_the_same_gradients():
    model = tiny_world_model(views="neighbours")
    checkpointed = copy.deepcopy(model)
    assert checkpoint_blocks(checkpointed, (DiTBlock,)) == len(model.dit.blocks)
    x = latents(views=3)
    conditions = {**rig_conditions(B, 3), "captions": ["night", "rain"]}
    grads = []
    for candidate in (model, checkpointed):
        candidate.zero_grad()
        candidate(x, torch.tensor([0.2, 0.7]), Conditions(**conditions)).square().mean().backward()
        grads.append({n: p.grad.clone() for n, p in candidate.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-5, atol=1e-7, msg=name)


def test_any_number_of_views_and_a_single_view():
    model = tiny_world_model()
    for views in (1, 2, 5):
        assert run(model, latents(views=views)).shape == (B, views, T, 16, H, W)


def test_presets_grow():
    counts = [sum(p.numel() for p in WorldModel(model_config({"preset": name, "text": "none"})).parameters())
              for name in ("tiny", "small")]
    assert counts[0] < counts[1]
    sizes = [PRESETS[name]() for name in PRESETS]
    assert [s.dim * s.depth for s in sizes] == sorted(s.dim * s.depth for s in sizes)
