"""WorldModelPipeline: what a run folder says the model was trained at, pixels to latents and back through the
tokenizer and the model's statistics, guidance only where the model has the condition, and seeded sampling."""

from __future__ import annotations

import pytest
import torch
from wfm_helpers import rig_conditions

from drivesim.errors import ConfigError
from drivesim.tokenizer.model import flatten_views, unflatten_views
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.generate import SamplingConfig
from drivesim.wfm.pipeline import WorldModelPipeline


@pytest.fixture(scope="module")
def pipeline(tiny_wfm_run) -> WorldModelPipeline:
    return WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")


def video(views: int = 3, frames: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, views, frames, 3, 32, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_a_run_folder_gives_the_chunk_length_and_size_it_was_trained_at(pipeline):
    assert (pipeline.frames, pipeline.size, pipeline.trained_size()) == (5, (64, 32), (64, 32))
    assert not pipeline.model.training and not pipeline.tokenizer.training
    assert pipeline.device == torch.device("cpu")


def test_a_pipeline_without_a_recorded_size_says_to_pass_one(pipeline):
    unsized = WorldModelPipeline(pipeline.model, pipeline.tokenizer)
    with pytest.raises(ConfigError, match="no data.size"):
        unsized.trained_size()


def test_encode_views_is_the_tokenizer_under_the_models_statistics(pipeline):
    clip = video()
    with torch.no_grad():
        latents = pipeline.encode_views(clip)
        raw = unflatten_views(pipeline.tokenizer.encode(flatten_views(clip)), 3)
        decoded = pipeline.decode_views(latents)
        through = unflatten_views(pipeline.tokenizer.decode(flatten_views(raw)), 3)
    assert latents.shape == (1, 3, 2, pipeline.config.latent_channels, 4, 8)
    torch.testing.assert_close(latents, pipeline.model.normalize(raw), rtol=0, atol=0)
    assert decoded.shape == clip.shape
    torch.testing.assert_close(decoded, through, rtol=1e-5, atol=1e-5)


def test_guidance_is_spent_only_on_conditions_the_model_has(pipeline):
    assert pipeline.model.layout is not None and pipeline.model.text is not None
    assert pipeline.guidance_scales(3.0, use_layout=True) == {"text_scale": 3.0, "layout_scale": 3.0}
    assert pipeline.guidance_scales(3.0, use_layout=False) == {"text_scale": 3.0, "layout_scale": 1.0}


def test_sampling_is_seeded_and_keeps_the_clean_frame(pipeline):
    cameras = rig_conditions(1, 3, frames=5, height=32, width=64)
    conditions = Conditions(**cameras, captions=["a quiet road"])
    clean = pipeline.encode_views(video(seed=1))
    shape = tuple(clean.shape)

    def sample(seed: int) -> torch.Tensor:
        return pipeline.sample(conditions, shape, SamplingConfig(steps=2, clean_frames=1, seed=seed), clean)

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
            pipeline.sample(conditions, shape, config)
