"""Tests for drivesim.wfm.rope: RoPE is a rotation, q·k depends only on the coordinate difference, each axis
turns its own channels, and bad sizes are clear errors."""

import math

import pytest
import torch
from einops import rearrange
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.wfm.rope import Rope3D

FAST = settings(max_examples=30, deadline=None)

head_dims = st.integers(3, 40).map(lambda half: 2 * half)
grids = st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))


def tokens(grid, head_dim, seed, batch=1, heads=2, dtype=torch.float64):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, heads, math.prod(grid), head_dim, generator=generator, dtype=dtype)


def coordinates(grid) -> torch.Tensor:
    """(L, 3) integer (t, h, w) coordinates of the tokens, in row-major order."""
    axes = torch.meshgrid(*(torch.arange(size) for size in grid), indexing="ij")
    return rearrange(torch.stack(axes), "coordinate t h w -> (t h w) coordinate")


@FAST
@given(head_dim=head_dims, grid=grids, seed=st.integers(0, 2**16))
def test_rotation_preserves_every_token_norm(head_dim, grid, seed):
    x = tokens(grid, head_dim, seed, batch=2)
    rotated = Rope3D(head_dim)(x, grid)
    assert rotated.shape == x.shape
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), rtol=1e-12, atol=0)


@FAST
@given(head_dim=head_dims, grid=grids, seed=st.integers(0, 2**16))
def test_token_at_the_origin_is_unchanged(head_dim, grid, seed):
    x = tokens(grid, head_dim, seed)
    rotated = Rope3D(head_dim)(x, grid)
    torch.testing.assert_close(rotated[:, :, 0], x[:, :, 0], rtol=0, atol=0)
    if math.prod(grid) > 1:
        assert not torch.allclose(rotated[:, :, 1:], x[:, :, 1:])


@FAST
@given(head_dim=head_dims, grid=grids, theta=st.floats(10, 1e5), seed=st.integers(0, 2**16))
def test_query_key_product_depends_only_on_the_coordinate_difference(head_dim, grid, theta, seed):
    # One query vector and one key vector placed at every token: after RoPE, pairs of tokens that are
    # the same offset apart (anywhere in the grid: all positions shifted alike) give the same q·k.
    query, key = tokens((1, 1, 2), head_dim, seed)[0, 0]
    length = math.prod(grid)
    rope = Rope3D(head_dim, theta=theta)
    queries = rope(query.expand(1, 1, length, head_dim), grid)[0, 0]
    keys = rope(key.expand(1, 1, length, head_dim), grid)[0, 0]
    products = (queries @ keys.T).flatten()  # (L * L,): query token i, key token j
    where = coordinates(grid)
    offsets = rearrange(where[:, None] - where[None, :], "i j coordinate -> (i j) coordinate")
    _, group = torch.unique(offsets, dim=0, return_inverse=True)
    first = torch.full((int(group.max()) + 1,), len(group)).scatter_reduce(0, group, torch.arange(len(group)),
                                                                          reduce="amin")
    torch.testing.assert_close(products, products[first[group]], rtol=0, atol=1e-9 * head_dim)
    # and the product does change with the offset (RoPE is not the identity)
    if length > 1:
        assert not torch.allclose(products, products[0].expand_as(products))


@pytest.mark.parametrize("head_dim,parts", [(6, (2, 2, 2)), (10, (6, 2, 2)), (12, (4, 4, 4)), (64, (24, 20, 20))])
def test_each_axis_turns_only_its_own_channels(head_dim, parts):
    grid = (2, 2, 2)
    x = tokens(grid, head_dim, seed=0)
    rotated = Rope3D(head_dim)(x, grid)
    bounds = [0, parts[0], parts[0] + parts[1], head_dim]
    # tokens one step along t, h and w from the origin, in (t, h, w) row-major order
    for axis, token in enumerate((4, 2, 1)):
        moved = (rotated[:, :, token] != x[:, :, token]).any(dim=(0, 1))  # (D,)
        own = torch.zeros(head_dim, dtype=torch.bool)
        own[bounds[axis]:bounds[axis + 1]] = True
        assert moved[own].all() and not moved[~own].any(), f"axis {axis}"


@pytest.mark.parametrize("theta", [100.0, 10000.0])
def test_channel_pairs_turn_by_position_times_frequency(theta):
    head_dim, grid = 12, (3, 2, 4)
    x = torch.zeros(1, 1, math.prod(grid), head_dim, dtype=torch.float64)
    x[..., 0::2] = 1  # every pair starts at angle 0
    rotated = Rope3D(head_dim, theta=theta)(x, grid)
    angles = torch.atan2(rotated[0, 0, :, 1::2], rotated[0, 0, :, 0::2])  # (L, 6)
    frequencies = torch.tensor([1.0, theta ** -0.5], dtype=torch.float64)  # two pairs per axis of 4 channels
    where = coordinates(grid).double()
    expected = torch.cat([where[:, axis, None] * frequencies for axis in range(3)], dim=-1)
    wrapped = torch.remainder(expected + math.pi, 2 * math.pi) - math.pi
    torch.testing.assert_close(angles, wrapped, rtol=0, atol=1e-12)


def test_cached_rotations_follow_the_grid():
    rope = Rope3D(16)
    x = tokens((2, 3, 4), 16, seed=1)
    first = rope(x, (2, 3, 4))
    other = rope(x, (4, 3, 2))  # same token count, other grid: must not reuse the first one's rotation
    torch.testing.assert_close(other, Rope3D(16)(x, (4, 3, 2)), rtol=0, atol=0)
    assert not torch.allclose(first, other)
    torch.testing.assert_close(rope(x, (2, 3, 4)), first, rtol=0, atol=0)


def test_half_precision_keeps_its_dtype_and_matches_float32():
    x = tokens((3, 4, 4), 32, seed=2, dtype=torch.float32)
    rope = Rope3D(32)
    rotated = rope(x.bfloat16(), (3, 4, 4))
    assert rotated.dtype == torch.bfloat16
    torch.testing.assert_close(rotated.float(), rope(x.bfloat16().float(), (3, 4, 4)), rtol=1e-2, atol=1e-2)


def test_gradients_flow_through_the_rotation():
    x = tokens((2, 2, 2), 8, seed=3).requires_grad_()
    Rope3D(8)(x, (2, 2, 2)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, 2 * x.detach())  # a rotation: |Rx|^2 = |x|^2


def test_rope_has_no_weights_to_save():
    rope = Rope3D(64)
    rope(tokens((1, 2, 2), 64, seed=4), (1, 2, 2))
    assert rope.state_dict() == {}


@pytest.mark.parametrize("head_dim", [0, 4, 7, 13, -6, 8.0, True])
def test_bad_head_dim_is_a_config_error(head_dim):
    with pytest.raises(ConfigError, match="head_dim"):
        Rope3D(head_dim)


@pytest.mark.parametrize("theta", [1.0, 0.5, -10.0, float("inf"), float("nan")])
def test_bad_theta_is_a_config_error(theta):
    with pytest.raises(ConfigError, match="theta"):
        Rope3D(8, theta=theta)


def test_tokens_that_do_not_fill_the_grid_are_a_config_error():
    rope = Rope3D(8)
    with pytest.raises(ConfigError, match=r"T\*h\*w = 12"):
        rope(torch.zeros(1, 1, 11, 8), (2, 2, 3))
    with pytest.raises(ConfigError, match="head_dim|\\[B, H, L, 8\\]"):
        rope(torch.zeros(1, 1, 12, 10), (2, 2, 3))
    with pytest.raises(ConfigError, match="grid"):
        rope(torch.zeros(1, 1, 12, 8), (2, 6))
    with pytest.raises(ConfigError, match="grid"):
        rope(torch.zeros(1, 1, 0, 8), (0, 2, 3))
