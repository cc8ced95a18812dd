"""WorldModelPipeline: what a run folder says the model was trained at, pixels to latents and back through the
tokenizer and the model's statistics, and guidance only where the model has the condition (sampling
itself: test_generate.py)."""

from __future__ import annotations

import pytest
import torch
from wfm_helpers import video

from drivesim.errors import ConfigError
from drivesim.tokenizer.model import flatten_views, unflatten_views
from drivesim.wfm.pipeline import WorldModelPipeline


@pytest.fixture(scope="module")
def pipeline(tiny_wfm_run) -> WorldModelPipeline:
    return WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")


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
