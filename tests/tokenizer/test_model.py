"""Tests for drivesim.tokenizer.model: shapes at every compression, causality, clear errors, presets."""

import dataclasses

import pytest
import torch
from tokenizer_helpers import COMPRESSIONS, random_video, tiny_model

from drivesim.errors import ConfigError
from drivesim.tokenizer.model import (PRESETS, CausalVideoTokenizer, ShapeError, TokenizerConfig, flatten_views,
                                      unflatten_views)

# Parameters per preset and compression, continuous (discrete adds the projections: (16*6 + 6) + (6*16 + 16) = 214).
PARAMETERS = {
    ("tiny", 4, 8): 104_432, ("tiny", 8, 8): 131_544, ("tiny", 8, 16): 301_248,
    ("small", 4, 8): 3_129_216, ("small", 8, 8): 3_265_472, ("small", 8, 16): 4_537_088,
    ("base", 4, 8): 15_843_584, ("base", 8, 8): 16_311_936, ("base", 8, 16): 65_526_528,
}


def video_size(temporal, spatial):
    """The smallest test clip with two latents per side and three latent frames."""
    return 1 + 2 * temporal, 2 * spatial, 2 * spatial


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_encode_and_decode_shapes_follow_the_compression(temporal, spatial, discrete):
    model = tiny_model(temporal, spatial, discrete=discrete)
    frames, height, width = video_size(temporal, spatial)
    with torch.no_grad():
        reconstruction, latents, extras = model(random_video(frames, height, width, batch=2))
    assert latents.shape == (2, 16, 3, 2, 2) == (2, *model.latent_shape(frames, height, width))
    assert reconstruction.shape == (2, 3, frames, height, width)
    if discrete:
        assert extras["indices"].shape == (2, 3, 2, 2) and extras["codes"].shape == (2, 3, 2, 2, 6)
    else:
        assert extras == {}


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_an_image_is_one_latent_frame_and_decodes_to_one_frame(discrete):
    model = tiny_model(discrete=discrete)
    image = random_video(1, 16, 24)
    with torch.no_grad():
        latents = model.encode(image)
        assert latents.shape == (1, 16, 1, 2, 3)
        assert model.decode(latents).shape == (1, 3, 1, 16, 24)
        # The first frame is encoded alone: the image's latent is the first latent of any video starting with it.
        video = torch.cat([image, random_video(8, 16, 24, seed=1)], dim=2)
        torch.testing.assert_close(model.encode(video)[:, :, :1], latents, rtol=0, atol=1e-6)


@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_latents_of_frames_up_to_t_ignore_later_frames(temporal, spatial):
    model = tiny_model(temporal, spatial)
    video = random_video(1 + 3 * temporal, spatial, spatial)
    with torch.no_grad():
        latents = model.encode(video)
        for latent in range(3):
            changed = video.clone()
            changed[:, :, temporal * latent + 1:] = random_video(temporal * (3 - latent), spatial, spatial, seed=9)
            new = model.encode(changed)
            # Latent j covers frames up to tc*j; the frames after it are all different.
            torch.testing.assert_close(new[:, :, :latent + 1], latents[:, :, :latent + 1], rtol=0, atol=1e-6)
            assert (new[:, :, latent + 1] - latents[:, :, latent + 1]).abs().max() > 1e-3


@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_decoded_frames_up_to_t_ignore_later_latents(temporal, spatial):
    model = tiny_model(temporal, spatial)
    latents = torch.randn(1, 16, 4, 1, 1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = model.decode(latents)
        for latent in range(3):
            changed = latents.clone()
            changed[:, :, latent + 1:] += 1
            new = model.decode(changed)
            last = temporal * latent  # the last frame of latent j
            torch.testing.assert_close(new[:, :, :last + 1], frames[:, :, :last + 1], rtol=0, atol=1e-6)
            assert (new[:, :, last + 1] - frames[:, :, last + 1]).abs().max() > 1e-3


def test_discrete_indices_decode_like_the_quantized_latents():
    model = tiny_model(discrete=True)
    video = random_video(5, 16, 16)
    with torch.no_grad():
        indices = model.encode_indices(video)
        assert indices.shape == (1, 2, 2, 2) and indices.dtype == torch.int64
        torch.testing.assert_close(model.decode_indices(indices), model.decode(model.encode(video)))


def test_continuous_model_refuses_indices():
    with pytest.raises(ConfigError, match="discrete"):
        tiny_model().encode_indices(random_video(5, 16, 16))


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_reconstruction_loss_reaches_the_first_encoder_layer(discrete):
    model = tiny_model(discrete=discrete).train()
    reconstruction, _, _ = model(random_video(5, 16, 16))
    reconstruction.square().mean().backward()
    gradient = model.encoder.conv_in[0].conv.weight.grad
    assert gradient is not None and gradient.abs().sum() > 0  # through FSQ's straight-through rounding too


@pytest.mark.parametrize("frames,height,width,message", [
    (10, 16, 16, r"10 frames.*1 \+ 4k frames.*e\.g\. 9 or 13"),
    (9, 20, 16, r"20x16.*multiples of the spatial compression 8"),
    (9, 16, 12, r"16x12.*multiples of the spatial compression 8"),
])
def test_video_of_the_wrong_length_or_size_raises_a_clear_error(frames, height, width, message):
    with pytest.raises(ShapeError, match=message):
        tiny_model().encode(random_video(frames, height, width))


def test_shape_errors_are_value_errors_and_name_the_layout():
    with pytest.raises(ValueError, match=r"\[N, 3, T, H, W\].*flatten_views"):
        tiny_model().encode(torch.zeros(1, 5, 3, 16, 16))  # [B, V, T, C, H, W]-like, not flattened
    with pytest.raises(ShapeError, match=r"\[N, 16, T', h, w\]"):
        tiny_model().decode(torch.zeros(1, 8, 2, 2, 2))


@pytest.mark.parametrize("field,value", [
    ("temporal_compression", 2), ("spatial_compression", 32), ("latent_channels", 0), ("channels", -8),
    ("blocks_per_stage", 0), ("wavelet_levels", 3), ("channel_multipliers", (1,)), ("attention", "yes"),
    ("discrete", 1), ("fsq_levels", (8, 1)), ("fsq_levels", ()),
])
def test_config_validation_names_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"TokenizerConfig\.{field}="):
        CausalVideoTokenizer(dataclasses.replace(TokenizerConfig(), **{field: value}))


def test_config_from_dict_rejects_unknown_fields_and_reads_lists():
    with pytest.raises(ConfigError, match="unknown field.*temporal_compresion"):
        TokenizerConfig.from_dict({"temporal_compresion": 8})
    config = TokenizerConfig.from_dict({"fsq_levels": [8, 5, 5, 5], "channel_multipliers": [1, 2, 4]})
    assert config.fsq_levels == (8, 5, 5, 5) and config.channel_multipliers == (1, 2, 4)
    assert TokenizerConfig.from_dict(config.to_dict()) == config


def test_batch_contract_layout_round_trips_through_the_tokenizer_layout():
    video = torch.randn(2, 3, 5, 3, 8, 8)  # [B, V, T, C, H, W]
    clips = flatten_views(video)
    assert clips.shape == (6, 3, 5, 8, 8)
    torch.testing.assert_close(clips[4], video[1, 1].transpose(0, 1))  # clip b*V + v
    assert torch.equal(unflatten_views(clips, num_views=3), video)


def test_preset_parameter_counts(capsys):
    rows = []
    for (preset, temporal, spatial), expected in PARAMETERS.items():
        with torch.device("meta"):  # counts without allocating base's weights
            model = CausalVideoTokenizer(PRESETS[preset](temporal_compression=temporal, spatial_compression=spatial))
        count = sum(p.numel() for p in model.parameters())
        rows.append(f"{preset:>5} {temporal}x{spatial}x{spatial}: {count:>11,}")
        assert count == expected, rows[-1]
    with capsys.disabled():
        print("\ntokenizer parameters (continuous):\n" + "\n".join(rows))
    assert 1_000_000 <= PARAMETERS["small", 4, 8] <= 5_000_000 and 10_000_000 <= PARAMETERS["base", 4, 8] <= 99_000_000


def block_pca_reconstruction(videos: torch.Tensor, temporal: int, spatial: int, k: int) -> torch.Tensor:
    """The best rank-k linear code of the tc x s x s blocks, computed apart from the model (SVD), blocks as
    the tokenizer groups them: frame 0 alone (repeated to fill its block), then tc frames at a time."""
    from einops import rearrange

    padded = torch.cat([videos[:, :, :1].expand(-1, -1, temporal - 1, -1, -1), videos], dim=2).double()
    pattern = "n c (t a) (h i) (w j) -> (n t h w) (c a i j)"
    blocks = rearrange(padded, pattern, a=temporal, i=spatial, j=spatial)
    mean = blocks.mean(0)
    basis = torch.linalg.svd(blocks - mean, full_matrices=False).Vh[:k]
    coded = (blocks - mean) @ basis.T @ basis + mean
    n, _, t, h, w = padded.shape
    back = rearrange(coded, "(n t h w) (c a i j) -> n c (t a) (h i) (w j)", n=n, t=t // temporal, h=h // spatial,
                     w=w // spatial, a=temporal, i=spatial, j=spatial)
    return torch.cat([back[:, :, :temporal].mean(2, keepdim=True), back[:, :, temporal:]], dim=2).float()


@pytest.mark.parametrize("temporal,spatial", [(4, 8), (8, 8)])
def test_a_fresh_model_with_a_fitted_linear_path_is_the_best_linear_block_code(temporal, spatial):
    from tokenizer_helpers import smooth_video

    from drivesim.tokenizer.model import fit_linear_path, tiny

    torch.manual_seed(0)
    model = CausalVideoTokenizer(tiny(temporal_compression=temporal, spatial_compression=spatial)).eval()
    frames = 1 + 2 * temporal
    videos = torch.cat([smooth_video(frames, 2 * spatial, 2 * spatial, seed=s) for s in range(12)])
    videos = videos + 0.05 * random_video(frames, 2 * spatial, 2 * spatial, batch=12)  # full-rank blocks
    kept = fit_linear_path(model, videos)
    assert 0.5 < kept < 1
    with torch.no_grad():
        reconstruction, latents, _ = model(videos)  # the deep path starts at zero: the linear path alone
    expected = block_pca_reconstruction(videos, temporal, spatial, k=16)
    torch.testing.assert_close(reconstruction, expected, atol=2e-4, rtol=0)
    # Whitened: every latent channel has zero mean and unit variance over the data it was fitted to.
    per_channel = latents.transpose(0, 1).flatten(1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(per_channel.var(1), torch.ones(16), atol=1e-3, rtol=0)
    assert ((reconstruction - videos) ** 2).mean() < ((videos - videos.mean()) ** 2).mean()


def test_the_linear_path_is_frozen_and_the_deep_path_trains():
    model = CausalVideoTokenizer(PRESETS["tiny"]())
    linear = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert linear == {"encoder.linear.proj.weight", "encoder.linear.proj.bias",
                      "decoder.linear.proj.weight", "decoder.linear.proj.bias"}
    without = CausalVideoTokenizer(PRESETS["tiny"](linear_path=False))
    assert all(p.requires_grad for p in without.parameters())
    assert without.encoder.linear is None


def test_fit_linear_path_without_one_is_a_config_error():
    from drivesim.tokenizer.model import fit_linear_path

    with pytest.raises(ConfigError, match="linear_path"):
        fit_linear_path(CausalVideoTokenizer(PRESETS["tiny"](linear_path=False)), torch.zeros(1, 3, 5, 8, 8))
