"""The multi-view DiT and the world model around it: view order, cross-view wiring, conditions,
clean frames, activation checkpointing, and the errors a user can cause."""

from __future__ import annotations

import copy

import pytest
import torch
from wfm_helpers import randomize_zero_layers, rig_conditions, tiny_world_model

from drivesim.errors import ConfigError
from drivesim.rigs import load_rig
from drivesim.train.trainer import checkpoint_blocks
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.dit import PRESETS, DiTBlock, azimuth_neighbours
from drivesim.wfm.model import WorldModel, model_config

B, V, T, H, W = 2, 6, 3, 8, 16  # latents of 9 frames at 64x128 on the six nuScenes cameras


def latents(seed: int = 0, views: int = V) -> torch.Tensor:
    return torch.randn(B, views, T, 16, H, W, generator=torch.Generator().manual_seed(seed))


def run(model, x, t=None, **overrides):
    conditions = {**rig_conditions(B, x.shape[1]), "captions": ["a wet road at night", "sunny suburb"], **overrides}
    t = torch.tensor([0.3, 0.8]) if t is None else t
    with torch.no_grad():
        return model(x, t, Conditions(**conditions))


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


@pytest.mark.parametrize("condition", ["text", "layout", "trajectory", "rays"])
def test_a_dropped_condition_has_no_effect_and_a_kept_one_does(condition):
    model = tiny_world_model(layout_channels=3)
    x = latents()
    base = {"layout": torch.rand(B, V, 9, 3, 64, 128)}
    changed = dict(base)
    if condition == "text":
        changed["captions"] = ["a truck", "snow"]
    elif condition == "layout":
        changed["layout"] = torch.rand(B, V, 9, 3, 64, 128)
    elif condition == "trajectory":
        changed["ego0_from_ego"] = rig_conditions(B, V, speed=2.0)["ego0_from_ego"]
    else:
        other = rig_conditions(B, V)
        other["intrinsics"][..., 0, 0] *= 1.5  # a wider focal length: other rays, same poses
        changed["intrinsics"] = other["intrinsics"]
    keep = {condition: torch.tensor([False, True])}
    if condition == "trajectory":  # the ego's motion moves the cameras too: it also reaches the rays
        keep["rays"] = keep["trajectory"]
    first, second = run(model, x, keep=keep, **base), run(model, x, keep=keep, **changed)
    assert torch.allclose(first[0], second[0], atol=1e-6), "dropped, yet it changed the output"
    assert not torch.allclose(first[1], second[1], atol=1e-4), "kept, yet it did not change the output"


def test_the_clean_frame_mask_reaches_the_model():
    model = tiny_world_model()
    x = latents()
    clean = torch.zeros(B, T, dtype=torch.bool)
    clean[:, 0] = True
    assert not torch.allclose(run(model, x), run(model, x, clean=clean), atol=1e-4)


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


def test_frozen_text_encoder_stays_out_of_the_weights():
    model = WorldModel(model_config({"preset": "tiny", "text": "wordllama"}))
    assert not any(name.startswith("text.") for name in model.state_dict())
    trained = WorldModel(model_config({"preset": "tiny", "text": "trained"}))
    assert any(name.startswith("text.") for name in trained.state_dict())


@pytest.mark.parametrize("section, message", [
    ({"preset": "huge"}, "model.preset"),
    ({"preset": "tiny", "depht": 3}, "unknown key 'depht'"),
    ({"preset": "tiny", "views": "ring"}, "model.views"),
    ({"preset": "tiny", "heads": 5}, "heads"),
    ({"preset": "tiny", "text": "bert"}, "model.text"),
    ({"preset": "tiny", "layout_channels": -1}, "layout_channels"),
    ({"preset": "tiny", "patch": [1, 2]}, "model.patch"),
    ({"preset": "tiny", "prediction": "noise"}, "model.prediction"),
])
def test_bad_model_configs_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        WorldModel(model_config(section))


def test_mismatched_inputs_name_what_is_wrong():
    model = tiny_world_model()
    with pytest.raises(ConfigError, match="ego0_from_ego"):
        run(model, latents(), ego0_from_ego=torch.eye(4).repeat(B, 5, 1, 1))
    with pytest.raises(ConfigError, match="latents"):
        run(model, torch.randn(B, V, T, 8, H, W))
    with pytest.raises(ConfigError, match="patches"):
        run(model, torch.randn(B, V, T, 16, 7, W))


def test_presets_grow():
    counts = [sum(p.numel() for p in WorldModel(model_config({"preset": name, "text": "none"})).parameters())
              for name in ("tiny", "small")]
    assert counts[0] < counts[1]
    sizes = [PRESETS[name]() for name in PRESETS]
    assert [s.dim * s.depth for s in sizes] == sorted(s.dim * s.depth for s in sizes)


def test_a_fresh_data_prediction_model_denoises_to_the_mean_latent():
    """EDM's preconditioning: before any training, one Euler step from pure noise lands on the mean
    (zero) latent, where a fresh velocity model would leave the noise in place."""
    x = latents()
    one = torch.ones(B)
    fresh = tiny_world_model(randomize=False, prediction="data")
    assert torch.allclose(x - run(fresh, x, one), torch.zeros_like(x), atol=1e-5)
    plain = tiny_world_model(randomize=False)
    assert torch.allclose(x - run(plain, x, one), x)


@pytest.mark.parametrize("time", [0.0, 0.2, 0.5, 0.9, 1.0])
def test_data_prediction_velocity_is_the_one_of_its_clean_estimate(time):
    """velocity = (x_t - x0_hat) / t with x0_hat = c_skip x_t + c_out output (c_skip = (1-t)/n2,
    c_out = t/sqrt(n2)): the network's output enters scaled, and nothing divides by zero at t = 0."""
    from drivesim.wfm.model import velocity_from_data

    generator = torch.Generator().manual_seed(1)
    x_t, output = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    t = torch.full((2,), time)
    velocity = velocity_from_data(x_t, t, output)
    assert torch.isfinite(velocity).all()
    n2 = (1 - time) ** 2 + time ** 2
    if time > 0:
        x0_hat = (1 - time) / n2 * x_t + time / n2 ** 0.5 * output
        assert torch.allclose(velocity, (x_t - x0_hat) / time, atol=1e-5)
    # the target noise - x0 of a clean x0 and noise reached exactly when the output is its own target
    x0, noise = torch.randn(2, 3, 4, generator=generator), torch.randn(2, 3, 4, generator=generator)
    noisy = (1 - time) * x0 + time * noise
    target = ((2 * time - 1) * noisy - n2 * (noise - x0)) / n2 ** 0.5
    assert torch.allclose(velocity_from_data(noisy, t, target), noise - x0, atol=1e-5)


def test_an_anchored_fresh_model_continues_a_given_frame_by_holding_it():
    """anchor: last_clean: the skip path starts from the last clean latent frame, so one Euler step from
    pure noise gives that frame for every noisy frame; a sample with no clean frame gets the mean."""
    x = latents()
    clean = torch.tensor([[True, False, False], [False, False, False]])
    model = tiny_world_model(randomize=False, prediction="data", anchor="last_clean")
    estimate = x - run(model, x, torch.ones(B), clean=clean)
    torch.testing.assert_close(estimate[0, :, 1:], x[0, :, :1].expand(-1, 2, -1, -1, -1), atol=1e-5, rtol=0)
    torch.testing.assert_close(estimate[1], torch.zeros_like(x[1]), atol=1e-5, rtol=0)
    with pytest.raises(ConfigError, match="needs model.prediction=data"):
        model_config({"preset": "tiny", "anchor": "last_clean"})
    with pytest.raises(ConfigError, match="model.anchor"):
        model_config({"preset": "tiny", "prediction": "data", "anchor": "first"})
