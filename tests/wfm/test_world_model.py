"""The world model around the DiT (drivesim/wfm/model.py): conditions embedded and dropped, the clean-frame
mask, the text encoder's weights, data prediction and its anchor, and the errors a user can cause."""

from __future__ import annotations

import pytest
import torch
from wfm_helpers import B, H, T, V, W, latents, rig_conditions, run, tiny_world_model

from drivesim.errors import ConfigError
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.model import WorldModel, model_config


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


@pytest.mark.parametrize("layout_encoder", ["conv", "patch"])
def test_a_prepared_call_equals_an_unprepared_one_with_a_condition_dropped_per_call(layout_encoder):
    """The ray and layout features a sampler prepares once serve every step and every guidance pass: the
    drop flags of each call still apply to them."""
    model = tiny_world_model(layout_channels=3, layout_encoder=layout_encoder)
    x = latents()
    conditions = Conditions(**rig_conditions(B, V), captions=["a", "b"], layout=torch.rand(B, V, 9, 3, 64, 128))
    prepared = model.prepare(conditions, x.shape)
    t = torch.tensor([0.3, 0.8])
    with torch.no_grad():
        for keep in (None, {"layout": torch.tensor([False, True]), "rays": torch.tensor([True, False])}):
            called = conditions.replace(keep=keep)
            torch.testing.assert_close(model(x, t, called, prepared), model(x, t, called), atol=1e-6, rtol=0)


def test_layout_encoder_kind_is_checked_by_name():
    with pytest.raises(ConfigError, match="model.layout_encoder must be one of conv, patch"):
        model_config({"preset": "tiny", "layout_encoder": "dense"})
