"""The lapped linear path and the block-edge loss: a tokenizer given the path is unchanged until trained,
the path is causal and paints across block edges, and the loss sees seams on the grid only."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.tokenizer.lapped import LappedLinear
from drivesim.tokenizer.model import CausalVideoTokenizer, tiny
from drivesim.tokenizer.task import grid_loss


def test_a_tokenizer_with_the_lapped_path_is_unchanged_until_trained():
    torch.manual_seed(0)
    plain = CausalVideoTokenizer(tiny())
    lapped = CausalVideoTokenizer(tiny(lapped=True))
    missing = lapped.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["decoder.lapped.paint.bias", "decoder.lapped.paint.weight"]
    video = torch.rand(1, 3, 9, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(lapped(video)[0], plain(video)[0], atol=0, rtol=0)


@given(frames=st.integers(1, 3), seed=st.integers(0, 50))
@settings(max_examples=15, deadline=None)
def test_the_lapped_path_is_causal_and_reaches_past_its_block(frames, seed):
    torch.manual_seed(seed)
    path = LappedLinear(latent_channels=4, temporal_compression=4, spatial_compression=8)
    torch.nn.init.normal_(path.paint.weight)
    latents = torch.randn(1, 4, frames, 3, 3)
    video = path(latents)
    assert video.shape == (1, 3, 1 + 4 * (frames - 1), 24, 24)
    changed = latents.clone()
    changed[:, :, -1, 1, 1] += 1  # the centre block of the last latent frame
    moved = (path(changed) - video).abs().amax(dim=(0, 1))  # (T, H, W)
    first_frame = 0 if frames == 1 else 1 + 4 * (frames - 2)
    assert not moved[:first_frame].any()  # earlier frames untouched
    assert moved[first_frame:, 4:20, 4:20].max() > 0 and moved[first_frame:, 4:8, 4:8].max() > 0  # past its block
    assert moved[:, :4].max() == 0 and moved[:, 20:].max() == 0  # no further than half a block


def test_the_grid_loss_sees_seams_on_the_block_edges_only():
    target = torch.zeros(1, 3, 1, 32, 32)
    seam, edge = target.clone(), target.clone()
    seam[..., 16:, :] = 1  # a step across a block edge
    edge[..., 13:, :] = 1  # the same step inside a block
    assert grid_loss(seam, target, 8) > 0
    assert grid_loss(edge, target, 8) == 0
    assert grid_loss(target, target, 8) == 0


def test_fitting_the_lapped_path_lowers_the_error_and_leaves_the_rest():
    from drivesim.tokenizer.lapped import fit_lapped_path
    from drivesim.tokenizer.model import fit_linear_path

    torch.manual_seed(0)
    tokenizer = CausalVideoTokenizer(tiny(lapped=True))
    # smooth videos: a block code leaves seams on them that a lapped code can blend away
    coarse = torch.rand(6, 3 * 5, 6, 6) * 2 - 1
    videos = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bicubic", align_corners=True)
    videos = videos.clamp(-1, 1).view(6, 3, 5, 32, 32)
    fit_linear_path(tokenizer, videos)
    others = {name: value.clone() for name, value in tokenizer.state_dict().items() if "lapped" not in name}
    before, after = fit_lapped_path(tokenizer, videos, steps=100)
    assert after < 0.8 * before
    assert all(torch.equal(value, tokenizer.state_dict()[name]) for name, value in others.items())
    with pytest.raises(ConfigError, match="lapped=True"):
        fit_lapped_path(CausalVideoTokenizer(tiny()), videos, steps=1)
