"""The tokenizer's fast paths (channels-last layers, 2D and matrix-product convolutions, fused attention,
Haar levels and pixel blocks as one matrix product, sub-pixel upsampling) compute what the plain code
(plain_tokenizer.py) computes, on random weights of every layout and on the shipped weights."""

from pathlib import Path

import plain_tokenizer as plain
import pytest
import torch
from tokenizer_helpers import random_video, tiny_model

from drivesim.tokenizer.pretrained import load_pretrained

SHIPPED = Path(__file__).resolve().parents[2] / "weights" / "drivesim-small" / "tokenizer"

VARIANTS = {
    "4x8x8": dict(temporal=4, spatial=8),
    "8x8x8 (time down- and upsampling)": dict(temporal=8, spatial=8),
    "8x16x16": dict(temporal=8, spatial=16),
    "no linear path (latent shortcuts)": dict(temporal=4, spatial=8, linear_path=False),
    "no shortcuts, no attention": dict(temporal=4, spatial=8, shortcuts=False, linear_path=False, attention=False),
    "one wavelet level": dict(temporal=4, spatial=8, wavelet_levels=1),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float) -> None:
    assert actual.shape == expected.shape
    difference = (actual - expected).abs().max().item()
    assert difference < atol, f"max abs difference {difference:.3g} (allowed {atol})"


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_fast_paths_equal_the_plain_code_on_random_weights(variant):
    options = dict(variant)
    model = tiny_model(options.pop("temporal"), options.pop("spatial"), seed=3, **options)
    tc, s = model.config.temporal_compression, model.config.spatial_compression
    video = random_video(1 + 2 * tc, 2 * s, 3 * s, seed=4, batch=2)
    with torch.no_grad():
        latents = model.encode(video)
        assert_close(latents, plain.encode(model, video), atol=1e-5)
        assert_close(model.decode(latents), plain.decode(model, latents), atol=1e-5)
    assert latents.is_contiguous()
    image = video[:, :, :1]
    with torch.no_grad():
        latents = model.encode(image)
        assert_close(latents, plain.encode(model, image), atol=1e-5)
        assert_close(model.decode(latents), plain.decode(model, latents), atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS.values(), ids=VARIANTS.keys())
def test_training_path_equals_the_inference_path_and_has_gradients(variant):
    options = dict(variant)
    model = tiny_model(options.pop("temporal"), options.pop("spatial"), seed=5, **options).train()
    tc, s = model.config.temporal_compression, model.config.spatial_compression
    video = random_video(1 + tc, 2 * s, 2 * s, seed=6)
    reconstruction, latents, _ = model(video)  # autograd recording: no out= writes, no cached weights
    with torch.no_grad():
        assert_close(reconstruction, model(video)[0], atol=1e-5)
    reconstruction.square().mean().backward()
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trainable)
    assert sum(bool(p.grad.any()) for p in trainable) > 0.9 * len(trainable)


def test_a_changed_weight_is_used_at_the_next_call():
    model = tiny_model(seed=7)
    video = random_video(5, 16, 16, seed=8)
    with torch.no_grad():
        model.encode(video)  # prepares (and keeps) the channels-last weights
        for parameter in model.parameters():
            parameter.mul_(0.9)
        assert_close(model.encode(video), plain.encode(model, video), atol=1e-5)
        model.load_state_dict(tiny_model(seed=9).state_dict())
        assert_close(model.encode(video), plain.encode(model, video), atol=1e-5)


@pytest.mark.skipif(not SHIPPED.is_dir(), reason="no shipped tokenizer weights")
def test_shipped_weights_load_unchanged_and_give_the_plain_code_s_outputs():
    model = load_pretrained(SHIPPED)
    video = random_video(9, 64, 96, seed=10) * 0.8
    with torch.no_grad():
        latents = model.encode(video)
        assert_close(latents, plain.encode(model, video), atol=1e-4)
        assert_close(model.decode(latents), plain.decode(model, latents), atol=1e-4)


def test_a_frozen_tokenizer_passes_gradients_to_its_input_after_an_inference_mode_call():
    """Weights kept from an inference_mode call stay usable where autograd records (a frozen decoder in a loss)."""
    model = tiny_model(seed=11).requires_grad_(False)
    video = random_video(5, 16, 16, seed=12)
    with torch.inference_mode():
        expected = model(video)[0]
    video.requires_grad_(True)
    reconstruction = model(video)[0]
    reconstruction.square().mean().backward()
    assert_close(reconstruction.detach(), expected, atol=1e-6)
    assert video.grad is not None and video.grad.abs().sum() > 0
