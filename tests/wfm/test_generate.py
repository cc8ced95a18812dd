"""sample_latents and SamplingConfig (drivesim/wfm/generate.py): seeded sampling, clean frames kept bit for bit,
a start from init latents below t = 1, and every sampling limit refused by the name the user knows."""

from __future__ import annotations

import pytest
import torch
from wfm_helpers import rig_conditions, video

from drivesim.errors import ConfigError
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.generate import SamplingConfig, sample_latents
from drivesim.wfm.pipeline import WorldModelPipeline


@pytest.fixture(scope="module")
def pipeline(tiny_wfm_run) -> WorldModelPipeline:
    return WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")


def test_sampling_is_seeded_and_keeps_the_clean_frame(pipeline):
    cameras = rig_conditions(1, 3, frames=5, height=32, width=64)
    conditions = Conditions(**cameras, captions=["a quiet road"])
    clean = pipeline.encode_views(video(seed=1))
    shape = tuple(clean.shape)

    def sample(seed: int) -> torch.Tensor:
        return sample_latents(pipeline.model, conditions, shape, SamplingConfig(steps=2, clean_frames=1, seed=seed),
                              clean)

    first, again, other = sample(0), sample(0), sample(1)
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(first[:, :, 0], clean[:, :, 0])


def test_sampling_limits_are_refused_before_any_model_call(pipeline):
    conditions = Conditions(**rig_conditions(1, 3, frames=5, height=32, width=64))
    shape = (1, 3, 2, pipeline.config.latent_channels, 4, 8)
    for config, message in ((SamplingConfig(steps=0), "steps must be an integer >= 1"),
                            (SamplingConfig(temperature=3.0), "temperature must be from 0 to 2"),
                            (SamplingConfig(start=0.0), "start must be a flow time"),
                            (SamplingConfig(method="ddim"), "method must be one of")):
        with pytest.raises(ConfigError, match=message):
            sample_latents(pipeline.model, conditions, shape, config)


def three_latent_frames(pipeline) -> tuple[Conditions, tuple[int, ...]]:
    """Conditions and a latent shape of 9 frames on three cameras at the tiny run's 64x32."""
    conditions = Conditions(**rig_conditions(1, 3, frames=9, height=32, width=64), captions=["a quiet road"])
    return conditions, (1, 3, 3, pipeline.config.latent_channels, 4, 8)


def test_every_clean_frame_is_kept_bit_for_bit_under_guidance_and_heun(pipeline):
    conditions, shape = three_latent_frames(pipeline)
    clean = torch.randn(shape, generator=torch.Generator().manual_seed(6))
    config = SamplingConfig(steps=2, method="heun", clean_frames=2, text_scale=3.0)
    sampled = sample_latents(pipeline.model, conditions, shape, config, clean)
    assert torch.equal(sampled[:, :, :2], clean[:, :, :2])
    assert not torch.allclose(sampled[:, :, 2], clean[:, :, 2], atol=0.5)


def test_a_start_near_zero_returns_nearly_the_init_and_a_start_of_one_does_not(pipeline):
    conditions, shape = three_latent_frames(pipeline)
    init = torch.randn(shape, generator=torch.Generator().manual_seed(5))

    def sample(start: float) -> torch.Tensor:
        return sample_latents(pipeline.model, conditions, shape, SamplingConfig(steps=2, clean_frames=0, start=start),
                              init=init)

    torch.testing.assert_close(sample(0.01), init, atol=0.1, rtol=0)
    assert (sample(1.0) - init).abs().max() > 1


def test_a_start_below_one_needs_init_latents_of_the_shape(pipeline):
    conditions, shape = three_latent_frames(pipeline)
    config = SamplingConfig(steps=1, clean_frames=0, start=0.5)
    for init in (None, torch.zeros(1, 3, 2, *shape[3:])):
        with pytest.raises(ConfigError, match=r"start=0.5 needs init latents of shape \(1, 3, 3, "):
            sample_latents(pipeline.model, conditions, shape, config, init=init)


def test_clean_frames_must_leave_a_frame_to_sample_and_come_with_their_latents(pipeline):
    conditions, shape = three_latent_frames(pipeline)
    with pytest.raises(ConfigError, match="clean_frames=3 must be from 0 to 2"):
        sample_latents(pipeline.model, conditions, shape, SamplingConfig(clean_frames=3), torch.zeros(shape))
    with pytest.raises(ConfigError, match="clean_frames=1 needs the clean latents"):
        sample_latents(pipeline.model, conditions, shape, SamplingConfig(clean_frames=1))


@pytest.mark.parametrize("field, value", [
    ("steps", 0), ("steps", 2.0), ("method", "ddim"), ("shift", 0.0), ("shift", float("inf")),
    ("clean_frames", -1), ("clean_frames", True), ("text_scale", float("nan")), ("layout_scale", "3"),
    ("seed", -1), ("seed", 2**63), ("temperature", 2.5), ("temperature", -0.1), ("start", 0.0), ("start", 1.5),
])
def test_each_sampling_limit_names_its_field_or_the_name_given_for_it(field, value):
    config = SamplingConfig(**{field: value})
    with pytest.raises(ConfigError, match=f"^{field} must be"):
        config.validate()
    with pytest.raises(ConfigError, match=f"^--{field.replace('_', '-')} must be"):
        config.validate(names={field: f"--{field.replace('_', '-')}"})
