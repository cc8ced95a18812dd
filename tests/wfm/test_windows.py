"""The training-window cache (data.cache_gb): the same windows as without it, the same latents as encoding
them, layout maps the layout encoder cannot tell apart, and a memory budget that holds."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data.dataset import ClipDataset
from drivesim.wfm.conditioning import pool_time
from drivesim.wfm.windows import LatentClips, unpool_time


def fake_encode(video: torch.Tensor) -> torch.Tensor:
    """[V, F, 3, H, W] -> [V, T, 3, H/8, W/8]: pooled over 4x8x8 blocks, frame 0 alone (as the tokenizer)."""
    frames = pool_time(video, 4, dim=1)
    return torch.nn.functional.avg_pool3d(frames.transpose(1, 2), (1, 8, 8)).transpose(1, 2)


@given(latent_frames=st.integers(1, 4), tc=st.sampled_from([2, 4, 8]), seed=st.integers(0, 100))
@settings(max_examples=30, deadline=None)
def test_unpooled_frames_pool_back_exactly(latent_frames, tc, seed):
    pooled = torch.randn(2, latent_frames, 3, 4, generator=torch.Generator().manual_seed(seed))
    video = unpool_time(pooled, tc, dim=1)
    assert video.shape[1] == 1 + tc * (latent_frames - 1)
    assert torch.equal(pool_time(video, tc, dim=1), pooled)


def test_cached_windows_are_the_windows_a_plain_dataset_draws(synthetic_store):
    options = dict(split=None, frames=5, random_crop=True)
    plain = ClipDataset(synthetic_store, **options)
    cached = LatentClips(synthetic_store, fake_encode, 4, cache_bytes=10**9, **options)
    for seed in range(3):
        torch.manual_seed(seed)
        expected = plain[0]
        torch.manual_seed(seed)
        found = cached[0]
        assert "video" not in found and found["clip_id"] == expected["clip_id"]
        torch.testing.assert_close(found["latents"], fake_encode(expected["video"]))
        torch.testing.assert_close(found["ego0_from_ego"], expected["ego0_from_ego"])
    torch.manual_seed(0)
    again = cached[0]  # the first window, met again: from the cache
    assert cached.hits >= 1
    torch.manual_seed(0)
    torch.testing.assert_close(again["latents"], fake_encode(plain[0]["video"]))


def test_cached_layout_maps_pool_to_what_the_encoder_sees(synthetic_store):
    options = dict(split=None, frames=5, random_crop=False, layout=True)
    expected = ClipDataset(synthetic_store, **options)[0]["layout"]
    found = LatentClips(synthetic_store, fake_encode, 4, cache_bytes=10**9, **options)[0]["layout"]
    assert found.shape == expected.shape
    # kept as bytes: within half a step of 1/255
    torch.testing.assert_close(pool_time(found, 4, dim=1), pool_time(expected, 4, dim=1), atol=0.5 / 255 + 1e-6, rtol=0)


def test_the_cache_stays_within_its_budget(synthetic_store):
    options = dict(split=None, frames=5, random_crop=False)
    nothing = LatentClips(synthetic_store, fake_encode, 4, cache_bytes=0, **options)
    nothing[0], nothing[0]
    assert nothing.hits == 0 and nothing.misses == 2 and nothing.cached_bytes == 0
    one = LatentClips(synthetic_store, fake_encode, 4, cache_bytes=10**9, **options)
    one[0]
    budget = one.cached_bytes
    assert budget > 0
    tight = LatentClips(synthetic_store, fake_encode, 4, cache_bytes=budget, **options)
    for i in range(len(tight)):
        tight[i]
    assert tight.cached_bytes == budget and len(tight._cache) == 1
