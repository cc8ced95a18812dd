"""Training windows with their tokenizer latents, kept in memory.

A world-model step on the CPU spent about a quarter of its time before the model ran: reading a window's
frames, resizing them, rendering its layout maps and encoding the frames with the frozen tokenizer. All of
that is a function of (clip, first frame, cameras) alone, and a clip of 17 frames has only 9 windows of 9
frames, so a run of a few thousand steps meets each window several times. LatentClips computes a window
once and keeps its latents and its layout maps (averaged over each latent frame's video frames, as the
layout encoder does first anyway) until a memory budget is spent; later windows are computed every time.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from drivesim.data.dataset import ClipDataset
from drivesim.errors import ConfigError
from drivesim.wfm.conditioning import pool_time

__all__ = ["LatentClips", "unpool_time"]


def unpool_time(pooled: torch.Tensor, temporal_compression: int, dim: int = 1) -> torch.Tensor:
    """Per-latent-frame values -> per-video-frame values that pool_time maps back to exactly `pooled`:
    latent frame 0 is video frame 0, each later one is repeated over its `temporal_compression` frames."""
    frames = pooled.shape[dim]
    index = torch.tensor([0] + [t for t in range(1, frames) for _ in range(temporal_compression)],
                         device=pooled.device)
    return pooled.index_select(dim, index)


class LatentClips(ClipDataset):
    """A ClipDataset whose items carry `latents` [V, T, C, h, w] (the tokenizer's, not normalised) in place of
    `video`, and `layout` maps constant over each latent frame's video frames (identical after pool_time).

    `encode` maps video [V, F, 3, H, W] to latents; it runs without gradients. Windows are drawn exactly as
    ClipDataset draws them (same RNG calls), so a seeded run sees the same windows with or without the cache.
    """

    def __init__(self, store, encode: Callable[[torch.Tensor], torch.Tensor], temporal_compression: int,
                 cache_bytes: int, **options):
        super().__init__(store, **options)
        if isinstance(cache_bytes, bool) or not isinstance(cache_bytes, int) or cache_bytes < 0:
            raise ConfigError(f"cache_bytes={cache_bytes!r} must be an integer >= 0")
        self.encode = encode
        self.temporal_compression = temporal_compression
        self.cache_bytes = cache_bytes
        self.cached_bytes = 0
        self._cache: dict[tuple, dict] = {}
        self.hits = self.misses = 0

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_cache"], state["cached_bytes"] = {}, 0  # each worker process fills its own
        return state

    def _item(self, clip_id: str) -> dict:
        start, views = self._choose_start(), self._choose_views()
        key = (clip_id, start, tuple(views))
        found = self._cache.get(key)
        if found is None:
            self.misses += 1
            found = self._compute(clip_id, start, views)
            size = sum(v.numel() * v.element_size() for v in found.values() if torch.is_tensor(v))
            if self.cached_bytes + size <= self.cache_bytes:
                self._cache[key] = found
                self.cached_bytes += size
        else:
            self.hits += 1
        item = dict(found)
        if "layout" in item:
            layout = item["layout"].float().div_(255)
            item["layout"] = unpool_time(layout, self.temporal_compression, dim=1)
        return item

    @torch.no_grad()
    def _compute(self, clip_id: str, start: int, views: list[int]) -> dict:
        item = self.read_window(clip_id, start, views)
        item["latents"] = self.encode(item.pop("video")).float()
        if "layout" in item:
            # Kept as bytes (maps are in [0, 1], off by 1/510 at most): a dense window's maps are 27 channels
            # of every pixel, 64 MB in float32 at 256x128 x 6 cameras, and the cache holds 4x as many.
            pooled = pool_time(item["layout"], self.temporal_compression, dim=1)
            item["layout"] = pooled.clamp(0, 1).mul(255).round().to(torch.uint8)
        return item
