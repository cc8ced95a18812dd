"""Tests for drivesim.tokenizer.metrics.blockiness: about 1 without a grid, far above 1 for a block code,
blind to brightness and contrast, per video, and clear about the shapes it takes."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizer_helpers import random_video, smooth_video

from drivesim.tokenizer.metrics import BLOCKINESS_MARGIN, blockiness
from drivesim.tokenizer.model import ShapeError

FAST = settings(max_examples=30, deadline=None)


def block_video(blocks_high: int, blocks_wide: int, seed: int, grid: int = 8, noise: float = 0.0) -> torch.Tensor:
    """[1, 3, 2, grid*blocks_high, grid*blocks_wide]: constant grid x grid blocks of random values (+ noise)."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(1, 3, 2, blocks_high, blocks_wide, generator=generator) * 2 - 1
    video = values.repeat_interleave(grid, dim=-2).repeat_interleave(grid, dim=-1)
    return video + noise * torch.randn(video.shape, generator=generator)


def test_a_smooth_video_scores_about_one():
    assert abs(float(blockiness(smooth_video(3, 64, 96))) - 1) < 0.05


@FAST
@given(seed=st.integers(0, 2**16), height=st.integers(48, 80), width=st.integers(48, 80))
def test_independent_noise_scores_about_one(seed, height, width):
    assert 0.8 < float(blockiness(random_video(2, height, width, seed=seed))) < 1.25


@FAST
@given(seed=st.integers(0, 2**16), blocks_high=st.integers(2, 6), blocks_wide=st.integers(2, 6),
       noise=st.floats(0, 0.01))
def test_constant_8x8_blocks_score_far_above_one(seed, blocks_high, blocks_wide, noise):
    assert float(blockiness(block_video(blocks_high, blocks_wide, seed, noise=noise))) > 50


@FAST
@given(seed=st.integers(0, 2**16), grid=st.sampled_from([4, 8, 16]))
def test_blocks_score_high_only_on_their_own_grid(seed, grid):
    video = block_video(3, 4, seed, grid=grid, noise=0.001)
    assert float(blockiness(video, grid=grid)) > 50
    shifted = video[..., grid // 2:-(grid // 2), grid // 2:-(grid // 2)]  # block edges now mid-cell
    assert float(blockiness(shifted, grid=grid)) < 0.5


@FAST
@given(seed=st.integers(0, 2**16), offset=st.floats(-1, 1), scale=st.floats(0.1, 10), blocky=st.booleans())
def test_brightness_offset_and_contrast_leave_it_unchanged(seed, offset, scale, blocky):
    video = block_video(4, 5, seed, noise=0.05) if blocky else random_video(3, 40, 48, seed=seed)
    expected = float(blockiness(video))
    assert float(blockiness(video + offset)) == pytest.approx(expected, rel=1e-5)
    assert float(blockiness(video * scale)) == pytest.approx(expected, rel=1e-5)


@FAST
@given(seed=st.integers(0, 2**16))
def test_swapping_height_and_width_leaves_it_unchanged(seed):
    video = block_video(3, 5, seed, noise=0.1)
    assert float(blockiness(video.transpose(-1, -2))) == pytest.approx(float(blockiness(video)), rel=1e-6)


def test_each_video_of_a_batch_is_scored_alone():
    smooth, blocky = smooth_video(2, 32, 40), block_video(4, 5, 0)
    scores = blockiness(torch.cat([smooth, blocky]))
    assert scores.shape == (2,)
    torch.testing.assert_close(scores, torch.cat([blockiness(smooth), blockiness(blocky)]))


def test_a_flat_video_scores_one():
    assert float(blockiness(torch.full((1, 3, 2, 16, 16), 0.25))) == pytest.approx(1.0)


def test_a_block_mean_code_breaks_the_rule():
    """The crudest block code, each 8x8 block replaced by its mean, is far blockier than what it coded."""
    video = smooth_video(3, 32, 48)
    frames = video.transpose(1, 2).flatten(0, 1)  # (T, 3, H, W)
    coded = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(frames, 8), scale_factor=8)
    coded = coded.unflatten(0, (1, -1)).transpose(1, 2)
    assert float(blockiness(coded)) > 10 * BLOCKINESS_MARGIN * float(blockiness(video))


@pytest.mark.parametrize("shape,words", [
    ((3, 2, 16, 16), "[N, C, T, H, W]"),
    ((1, 3, 2, 8, 8), "more than 8 pixels"),
    ((1, 3, 2, 1, 32), "at least 2"),
])
def test_shapes_it_cannot_take_are_named(shape, words):
    with pytest.raises(ShapeError, match="blockiness") as error:
        blockiness(torch.zeros(shape))
    assert words in str(error.value) and str(tuple(shape)[-2]) in str(error.value)


@pytest.mark.parametrize("grid", [1, 0, 8.0, True])
def test_a_grid_that_is_not_an_integer_of_at_least_two_is_refused(grid):
    with pytest.raises(ShapeError, match="grid"):
        blockiness(torch.zeros(1, 3, 1, 16, 16), grid=grid)
