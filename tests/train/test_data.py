"""Step-indexed batches: what a step sees, and every item's augmentation seed, depend on (seed, step)
alone, not on the number of processes, on accumulation, or on where a run was resumed."""

from __future__ import annotations

import random

import numpy as np
import torch

from drivesim.train.data import SeededItems, StepBatches


def batches(batch_size: int = 4, grad_accum: int = 1, world_size: int = 1, rank: int = 0, start_step: int = 0):
    return list(StepBatches(size=10, batch_size=batch_size, grad_accum=grad_accum, world_size=world_size,
                            rank=rank, seed=7, start_step=start_step, steps=6))


def test_ranks_and_micro_steps_together_see_the_batches_of_one_process():
    whole = batches()
    rank0, rank1 = batches(batch_size=2, world_size=2, rank=0), batches(batch_size=2, world_size=2, rank=1)
    assert [a + b for a, b in zip(rank0, rank1)] == whole
    accumulated = batches(batch_size=2, grad_accum=2)
    assert [a + b for a, b in zip(accumulated[::2], accumulated[1::2])] == whole
    stream = [item for batch in whole for item in batch]
    assert sorted(index for index, _ in stream[:10]) == list(range(10))  # each epoch visits every item once
    assert sorted(index for index, _ in stream[10:20]) == list(range(10))
    assert len({seed for _, seed in stream}) == len(stream)  # every position its own augmentation seed


def test_a_resumed_sampler_yields_what_the_uninterrupted_one_did_from_that_step():
    resumed = StepBatches(size=10, batch_size=4, grad_accum=1, world_size=1, rank=0, seed=7, start_step=3, steps=6)
    assert len(resumed) == 3 and list(resumed) == batches()[3:]


class Draws(torch.utils.data.Dataset):
    """Each item is one draw from each global RNG an augmentation might use."""

    def __len__(self):
        return 1

    def __getitem__(self, index):
        return torch.rand(1).item(), float(np.random.rand()), random.random()


def test_an_item_repeats_its_draws_for_the_same_seed_whatever_came_before():
    items = SeededItems(Draws())
    first = items[(0, 5)]
    torch.rand(3), np.random.rand(3), random.random()  # disturb every global RNG
    assert items[(0, 5)] == first
    assert all(a != b for a, b in zip(items[(0, 6)], first))
