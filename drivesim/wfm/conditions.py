"""What the world model is conditioned on, as one typed value (`Conditions`), and what a forward pass
derives from it once (`Prepared`: camera rays, neighbouring views, text tokens) so that samplers, which
call the model many times with the same cameras and prompt, compute them once per chunk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CONDITIONS", "Conditions", "Prepared"]

CONDITIONS = ("text", "layout", "trajectory", "rays")  # what training drops and guidance compares


def _rows(value, index):
    """Rows `index` (a slice or index tensor) of a tensor, or of a list of captions."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value[index]
    return [value[i] for i in range(len(value))[index]] if isinstance(index, slice) else [value[int(i)] for i in index]


def _repeat(value, times: int):
    """A tensor or caption list repeated `times` along the batch: [a, b] -> [a, b, a, b]."""
    if value is None or times == 1:
        return value
    if isinstance(value, Tensor):
        return value.repeat(times, *[1] * (value.dim() - 1))
    return list(value) * times


@dataclass
class Conditions:
    """One batch of conditions, per the batch contract (../shared/DESIGN.md)."""

    intrinsics: Tensor                  # [B, V, 3, 3] at the video's size
    ego_from_cam: Tensor                # [B, V, 4, 4]
    ego0_from_ego: Tensor               # [B, F, 4, 4] every video frame's ego pose in the first frame's
    captions: list[str] | None = None   # B prompts
    layout: Tensor | None = None        # [B, V, F, C, H, W] layout maps
    clean: Tensor | None = None         # [B, T] bool: latent frames given clean
    keep: dict[str, Tensor] | None = None  # per condition of CONDITIONS, [B] bool: False drops it for that row

    @classmethod
    def from_batch(cls, batch: dict) -> Conditions:
        """The conditions of a batch per the batch contract (layout when it has one)."""
        captions = batch.get("caption")
        if captions is not None:
            captions = [captions] if isinstance(captions, str) else list(captions)
        return cls(batch["intrinsics"], batch["ego_from_cam"], batch["ego0_from_ego"], captions, batch.get("layout"))

    @property
    def batch(self) -> int:
        return int(self.intrinsics.shape[0])

    def replace(self, **changes) -> Conditions:
        return dataclasses.replace(self, **changes)

    def to(self, device) -> Conditions:
        moved = {name: getattr(self, name).to(device) for name in ("intrinsics", "ego_from_cam", "ego0_from_ego",
                                                                  "layout", "clean") if getattr(self, name) is not None}
        if self.keep is not None:
            moved["keep"] = {name: flags.to(device) for name, flags in self.keep.items()}
        return self.replace(**moved)

    def rows(self, index) -> Conditions:
        """The conditions of batch rows `index` (a slice or an index tensor)."""
        keep = None if self.keep is None else {name: flags[index] for name, flags in self.keep.items()}
        return Conditions(self.intrinsics[index], self.ego_from_cam[index], self.ego0_from_ego[index],
                          _rows(self.captions, index), _rows(self.layout, index), _rows(self.clean, index), keep)

    def repeat(self, times: int) -> Conditions:
        """The batch repeated `times` along B (guidance runs its predictions as one batch)."""
        keep = None if self.keep is None else {name: _repeat(flags, times) for name, flags in self.keep.items()}
        return Conditions(*(_repeat(value, times) for value in (self.intrinsics, self.ego_from_cam,
                                                                 self.ego0_from_ego, self.captions, self.layout,
                                                                 self.clean)), keep)

    def kept(self, device) -> dict[str, Tensor]:
        """Every condition's per-row keep flags [B] (all kept where keep does not say)."""
        flags = {name: torch.ones(self.batch, dtype=torch.bool, device=device) for name in CONDITIONS}
        flags.update(self.keep or {})
        return flags


@dataclass
class Prepared:
    """What WorldModel.prepare derives from Conditions for latents of one shape: the cameras' Plücker rays
    pooled to the patch grid, the views each view attends to, the captions' tokens, and the ray and layout
    encoders' patch features (they depend on neither the noisy latents nor the flow time, so a sampler's
    steps and guidance passes share them; drop flags are applied per call)."""

    rays: Tensor                        # [B, V, T', 6, h', w']
    neighbours: Tensor | None           # [B, V, K] view indices, None: no cross-view attention
    text: tuple[Tensor, Tensor] | None  # (tokens [B, N, D_text], mask [B, N]), None: no text encoder
    ray_tokens: Tensor | None = None    # [B, V, T', h', w', D] the ray encoder's output
    layout_tokens: Tensor | None = None  # [B, V, T', h', w', D] the layout encoder's, None: no layout

    def repeat(self, times: int) -> Prepared:
        text = None if self.text is None else tuple(_repeat(part, times) for part in self.text)
        return Prepared(_repeat(self.rays, times), _repeat(self.neighbours, times), text,
                        _repeat(self.ray_tokens, times), _repeat(self.layout_tokens, times))
