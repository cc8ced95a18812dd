"""Tests for drivesim.tokenizer.fsq: codes sit on the levels, indices round-trip, gradients pass the rounding."""

import torch

from drivesim.tokenizer.fsq import FSQ

LEVELS = (8, 8, 8, 5, 5, 5)


def test_codebook_has_prod_levels_entries():
    assert FSQ(LEVELS).codebook_size == 64000


def test_every_index_round_trips_through_its_code():
    fsq = FSQ(LEVELS)
    indices = torch.arange(fsq.codebook_size)
    codes = fsq.indices_to_codes(indices)
    assert codes.shape == (64000, 6)
    assert torch.equal(fsq.codes_to_indices(codes), indices)
    assert len(torch.unique(codes, dim=0)) == 64000  # distinct indices are distinct codes


def test_quantized_values_are_exactly_the_levels():
    fsq = FSQ(LEVELS)
    z = torch.linspace(-6, 6, 2001)[:, None].expand(-1, 6)  # sweeps every dimension through its whole range
    codes = fsq(z)
    for dim, level in enumerate(LEVELS):
        half = level // 2
        expected = (torch.arange(level) - half) / half  # even: -1 .. 1 - 1/half; odd: -1 .. 1
        assert torch.equal(torch.unique(codes[:, dim]), expected), f"dimension {dim} with {level} levels"


def test_indices_of_quantized_latents_are_in_range_and_decode_to_the_same_codes():
    fsq = FSQ(LEVELS)
    z = torch.randn(4, 7, 6, generator=torch.Generator().manual_seed(0)) * 3
    codes = fsq(z)
    indices = fsq.codes_to_indices(codes)
    assert indices.shape == (4, 7) and indices.dtype == torch.int64
    assert 0 <= indices.min() and indices.max() < 64000
    assert torch.equal(fsq.indices_to_codes(indices), codes)


def test_gradient_passes_the_rounding_straight_through():
    fsq = FSQ(LEVELS)
    z = (torch.randn(16, 6, generator=torch.Generator().manual_seed(1))).requires_grad_()
    fsq(z).sum().backward()
    # Straight-through: the gradient is that of the bound (tanh), not the zero gradient of round().
    bound_grad, = torch.autograd.grad((fsq.bound(z) / fsq.half_width).sum(), z)
    torch.testing.assert_close(z.grad, bound_grad)
    assert torch.all(z.grad > 0)
