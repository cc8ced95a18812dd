"""Batches indexed by training step: which samples a step sees, and the seed of every sample's
augmentation, are functions of (seed, step) alone. A resumed run therefore sees what an
uninterrupted one would, and N processes see the same samples as one with N times the batch."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch


def item_seed(seed: int, position: int) -> int:
    """A seed per position in the global sample stream, independent of world size and workers."""
    digest = hashlib.blake2b(f"{seed}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % 2**63


class StepBatches(torch.utils.data.Sampler):
    """Yields, from `start_step` on, each micro-batch of this rank as [(index, item seed), ...].

    The global stream is a fresh permutation of the dataset per epoch; step s, micro-step m takes
    the next batch_size * world_size positions of it, and rank r the r-th block of those.
    """

    def __init__(self, size: int, batch_size: int, grad_accum: int, world_size: int, rank: int, seed: int,
                 start_step: int, steps: int):
        self.size, self.batch_size, self.grad_accum = size, batch_size, grad_accum
        self.world_size, self.rank, self.seed = world_size, rank, seed
        self.start_step, self.steps = start_step, steps
        self._permutations: dict[int, np.ndarray] = {}

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return int(self._permutations[epoch][offset])

    def __len__(self) -> int:
        return (self.steps - self.start_step) * self.grad_accum

    def __iter__(self):
        per_micro = self.batch_size * self.world_size
        for step in range(self.start_step, self.steps):
            for micro in range(self.grad_accum):
                first = (step * self.grad_accum + micro) * per_micro + self.rank * self.batch_size
                yield [(self._index(p), item_seed(self.seed, p)) for p in range(first, first + self.batch_size)]


class SeededItems(torch.utils.data.Dataset):
    """Wraps a dataset so item (index, seed) is drawn with every global RNG seeded by `seed` first:
    augmentations that use torch, numpy or random repeat exactly, in any worker."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        return self.dataset[index]
