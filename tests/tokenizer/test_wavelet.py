"""Tests for drivesim.tokenizer.wavelet: Haar transforms are exact inverses, causal, and keep an image one frame."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.tokenizer.wavelet import (WaveletPatch, WaveletUnpatch, haar_space, haar_time, inverse_haar_space,
                                        inverse_haar_time)

FAST = settings(max_examples=40, deadline=None)


def video(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1


@FAST
@given(n=st.integers(1, 2), c=st.integers(1, 4), t=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6),
       seed=st.integers(0, 2**16))
def test_inverse_haar_space_undoes_haar_space(n, c, t, h, w, seed):
    x = video((n, c, t, 2 * h, 2 * w), seed)
    bands = haar_space(x)
    assert bands.shape == (n, 4 * c, t, h, w)
    torch.testing.assert_close(inverse_haar_space(bands), x, rtol=0, atol=1e-12)


@FAST
@given(n=st.integers(1, 2), c=st.integers(1, 4), k=st.integers(0, 6), h=st.integers(1, 5), w=st.integers(1, 5),
       seed=st.integers(0, 2**16))
def test_inverse_haar_time_undoes_haar_time(n, c, k, h, w, seed):
    x = video((n, c, 1 + 2 * k, h, w), seed)
    bands = haar_time(x)
    assert bands.shape == (n, 2 * c, 1 + k, h, w)
    torch.testing.assert_close(inverse_haar_time(bands), x, rtol=0, atol=1e-12)


@FAST
@given(levels=st.integers(1, 2), k=st.integers(0, 3), h=st.integers(1, 3), w=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_wavelet_unpatch_undoes_wavelet_patch_in_float32(levels, k, h, w, seed):
    scale = 2 ** levels
    x = video((1, 3, 1 + scale * k, scale * h, scale * w), seed).float()
    patches = WaveletPatch(levels)(x)
    assert patches.shape == (1, 3 * 8 ** levels, 1 + k, h, w)
    torch.testing.assert_close(WaveletUnpatch(levels)(patches), x, rtol=0, atol=1e-6)


def test_image_stays_one_frame_with_no_high_band():
    image = video((1, 3, 1, 8, 8), 0)
    bands = haar_time(image)
    assert bands.shape == (1, 6, 1, 8, 8)
    torch.testing.assert_close(bands[:, :3], image)  # the first frame pairs with itself: mean = the frame
    assert torch.all(bands[:, 3:] == 0)


def test_haar_time_output_frame_reads_no_later_input_frame():
    x = video((1, 2, 9, 4, 4), 1)
    later = x.clone()
    later[:, :, 5:] += 1  # frames 5.. change: outputs 0..2 read frames up to 4
    assert torch.equal(haar_time(x)[:, :, :3], haar_time(later)[:, :, :3])
    assert not torch.equal(haar_time(x)[:, :, 3], haar_time(later)[:, :, 3])
