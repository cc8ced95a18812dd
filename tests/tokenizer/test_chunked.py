"""Tests for drivesim.tokenizer.chunked: the receptive field is what the layers say, chunks are exact, memory
depends on the chunk, and tiles stay within their stated tolerance."""

import pytest
import torch
from tokenizer_helpers import COMPRESSIONS, psnr, random_video, smooth_video, tiny_model

from drivesim.errors import ConfigError
from drivesim.tokenizer.chunked import decode_chunked, decode_tiled, encode_chunked, encode_tiled, receptive_field


@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_encoder_lookback_is_the_measured_influence_of_past_frames(temporal, spatial):
    # float64: the farthest frame's influence is small (~1e-8) and would drown in float32 rounding.
    model = tiny_model(temporal, spatial).double()
    field = receptive_field(model)
    latent = field.encoder_context_latents  # far enough from frame 0 to read no padding
    first_read = temporal * latent - field.encoder_lookback_frames
    video = random_video(1 + temporal * latent, spatial, spatial).double()
    with torch.no_grad():
        before = model.encode(video)[:, :, latent]
        for frame, reads in [(first_read, True), (first_read - 1, False)]:
            changed = video.clone()
            changed[:, :, frame] += 10
            difference = (model.encode(changed)[:, :, latent] - before).abs().max().item()
            assert difference > 1e-13 if reads else difference == 0, (frame, difference)


@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_decoder_lookback_is_the_measured_influence_of_past_latents(temporal, spatial):
    model = tiny_model(temporal, spatial).double()
    field = receptive_field(model)
    latent = field.decoder_lookback_latents + 1
    frames_of_latent = slice(temporal * (latent - 1) + 1, temporal * latent + 1)
    latents = torch.randn(1, 16, latent + 1, 1, 1, generator=torch.Generator().manual_seed(0)).double()
    with torch.no_grad():
        before = model.decode(latents)[:, :, frames_of_latent]
        for earlier, reads in [(latent - field.decoder_lookback_latents, True),
                               (latent - field.decoder_lookback_latents - 1, False)]:
            changed = latents.clone()
            changed[:, :, earlier] += 10
            difference = (model.decode(changed)[:, :, frames_of_latent] - before).abs().max().item()
            assert difference > 1e-13 if reads else difference == 0, (earlier, difference)


def test_receptive_field_of_the_default_tiny_model():
    # Ten causal kernel-3 convolutions at the latent rate in each of encoder and decoder: 2 latents each.
    field = receptive_field(tiny_model())
    assert (field.encoder_context_latents, field.encoder_lookback_frames) == (21, 83)
    assert (field.decoder_context_frames, field.decoder_lookback_latents) == (77, 20)


# In float64 rounding vanishes, so any difference would be the algorithm's; float32 shows the stated tolerance.
EXACT, FLOAT32 = (torch.float64, 1e-10), (torch.float32, 1e-5)


@pytest.mark.parametrize("dtype,tolerance", [EXACT, FLOAT32], ids=["float64", "float32"])
@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_chunked_encode_equals_the_whole_video_encode(temporal, spatial, dtype, tolerance):
    model = tiny_model(temporal, spatial).to(dtype)
    # Long enough that later chunks start past frame 0 and rely on their context.
    latent_frames = receptive_field(model).encoder_context_latents + 10
    video = random_video(1 + temporal * (latent_frames - 1), spatial, spatial).to(dtype)
    with torch.no_grad():
        whole = model.encode(video)
        torch.testing.assert_close(encode_chunked(model, video, chunk_frames=4 * temporal), whole,
                                   rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype,tolerance", [EXACT, FLOAT32], ids=["float64", "float32"])
@pytest.mark.parametrize("temporal,spatial", COMPRESSIONS)
def test_chunked_decode_equals_the_whole_latent_decode(temporal, spatial, dtype, tolerance):
    model = tiny_model(temporal, spatial).to(dtype)
    latent_frames = receptive_field(model).decoder_lookback_latents + 12
    latents = torch.randn(1, 16, latent_frames, 1, 1, generator=torch.Generator().manual_seed(0), dtype=dtype)
    with torch.no_grad():
        whole = model.decode(latents)
        torch.testing.assert_close(decode_chunked(model, latents, chunk_latent_frames=4), whole,
                                   rtol=0, atol=tolerance)


def _longest_pass(model, part: str, run) -> int:
    """The most frames (or latent frames) one pass of the encoder (or decoder) received while run() ran."""
    lengths = []
    hook = getattr(model, part).register_forward_pre_hook(lambda module, args: lengths.append(args[0].shape[2]))
    try:
        run()
    finally:
        hook.remove()
    return max(lengths)


def test_chunk_size_not_video_length_bounds_each_pass():
    model = tiny_model()
    field = receptive_field(model)
    longest = {}
    for latent_frames in (field.encoder_context_latents + 8, field.encoder_context_latents + 16):
        video = random_video(1 + 4 * (latent_frames - 1), 8, 8)
        latents = torch.zeros(1, 16, latent_frames, 1, 1)
        longest[latent_frames] = (_longest_pass(model, "encoder", lambda: encode_chunked(model, video, 8)),
                                  _longest_pass(model, "decoder", lambda: decode_chunked(model, latents, 2)))
    assert len(set(longest.values())) == 1  # the same longest pass for both lengths
    frames, latent_frames = next(iter(longest.values()))
    assert frames == 1 + 4 * (field.encoder_context_latents + 2 - 1)  # context latents + a 2-latent chunk
    assert latent_frames <= field.decoder_lookback_latents + 1 + 2


def test_encode_tiled_is_within_five_percent_of_the_latent_spread():
    model = tiny_model()
    video = smooth_video(5, 128, 256)
    with torch.no_grad():
        whole = model.encode(video)
        tiled = encode_tiled(model, video, tile=128, overlap=64)
    assert (tiled - whole).abs().max() < 0.05 * whole.std()


def test_decode_tiled_is_within_38_db_of_the_whole_decode():
    model = tiny_model()
    with torch.no_grad():
        latents = model.encode(smooth_video(5, 128, 256))
        whole = model.decode(latents)
        tiled = decode_tiled(model, latents, tile=16, overlap=8)
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) > 38


def test_tiles_and_chunks_combine_to_the_tiles_alone():
    model = tiny_model()
    video = smooth_video(9, 32, 64)
    with torch.no_grad():
        latents = encode_tiled(model, video, tile=32, overlap=16)
        torch.testing.assert_close(encode_tiled(model, video, tile=32, overlap=16, chunk_frames=4), latents,
                                   rtol=0, atol=1e-5)
        frames = decode_tiled(model, latents, tile=4, overlap=2)
        torch.testing.assert_close(decode_tiled(model, latents, tile=4, overlap=2, chunk_latent_frames=1), frames,
                                   rtol=0, atol=1e-5)


def test_a_video_smaller_than_a_tile_is_one_tile():
    model = tiny_model()
    video = smooth_video(5, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(encode_tiled(model, video), model.encode(video), rtol=0, atol=0)


@pytest.mark.parametrize("call,message", [
    (lambda m, v: encode_chunked(m, v, 6), "chunk_frames=6: must be a multiple of the temporal compression 4"),
    (lambda m, v: encode_chunked(m, v, 0), "chunk_frames=0: must be a positive integer"),
    (lambda m, v: decode_chunked(m, m.encode(v), -1), "chunk_latent_frames=-1"),
    (lambda m, v: encode_tiled(m, v, tile=20), "tile=20: .*multiples of 8"),
    (lambda m, v: encode_tiled(m, v, tile=16, overlap=16), r"overlap=\(16, 16\): must be smaller than tile"),
    (lambda m, v: decode_tiled(m, m.encode(v), tile=(2, 0)), r"tile=\(2, 0\)"),
])
def test_bad_chunk_or_tile_sizes_raise_a_clear_error(call, message):
    with pytest.raises(ConfigError, match=message):
        call(tiny_model(), random_video(5, 16, 16))
