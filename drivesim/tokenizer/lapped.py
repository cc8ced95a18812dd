"""The lapped linear path of the decoder: latents painted back through overlapping windows.

The fitted linear path (model.BlockLinear) codes every tc x s x s block of the video on its own, so its
picture has a seam on every block edge: on held-out clips at 256x128 the shipped tokenizer's gradient
energy across the 8-pixel grid lines was 5.9x that elsewhere (1.0 for the real frames). Here each latent
pixel also paints a 2s x 2s window centred on its block, one linear map per latent channel, as a lapped
transform does: a block's picture can then fade into its neighbours'. It starts at exactly zero, so a
trained tokenizer given one is unchanged until the decoder is trained on (configs/tokenizer-decoder.yaml).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LappedLinear"]

VIDEO_CHANNELS = 3


class LappedLinear(nn.Module):
    """Latents [N, L, 1 + k, h, w] -> video [N, 3, 1 + tc*k, s*h, s*w]; latent frame 0 paints frame 0 (the
    mean of its tc outputs, as BlockLinear), each later one its own tc frames: causal, like the rest."""

    def __init__(self, latent_channels: int, temporal_compression: int, spatial_compression: int):
        super().__init__()
        self.tc, self.s = temporal_compression, spatial_compression
        self.paint = nn.ConvTranspose2d(latent_channels, VIDEO_CHANNELS * self.tc, kernel_size=2 * self.s,
                                        stride=self.s, padding=self.s // 2)
        nn.init.zeros_(self.paint.weight)
        nn.init.zeros_(self.paint.bias)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        n, channels, frames, h, w = latents.shape
        images = latents.transpose(1, 2).reshape(n * frames, channels, h, w)
        out = self.paint(images).view(n, frames, VIDEO_CHANNELS, self.tc, h * self.s, w * self.s)
        first = out[:, 0].mean(dim=2, keepdim=True)  # (N, 3, 1, H, W)
        later = out[:, 1:].permute(0, 2, 1, 3, 4, 5).reshape(n, VIDEO_CHANNELS, (frames - 1) * self.tc,
                                                             h * self.s, w * self.s)
        return torch.cat([first, later], dim=2)

    def time_steps(self) -> list[tuple[str, int]]:
        return []  # each latent frame paints only its own video frames


def fit_lapped_path(tokenizer, videos: torch.Tensor, steps: int = 400, lr: float = 0.01) -> tuple[float, float]:
    """Fit the decoder's lapped path alone to what the rest of the decoder leaves of `videos` [N, 3, T, H, W]
    (their reconstruction without the path), by `steps` of Adam on the mean squared error: the path is linear
    in the latents, so this converges in seconds, where training the whole decoder moved it slowly. Returns
    the mean squared error (before, after). The rest of the tokenizer is unchanged."""
    path = tokenizer.decoder.lapped
    if path is None:
        from drivesim.errors import ConfigError

        raise ConfigError("fit_lapped_path needs TokenizerConfig.lapped=True")
    with torch.no_grad():
        latents = tokenizer.encode(videos)
        saved = tokenizer.decoder.lapped
        tokenizer.decoder.lapped = None
        try:
            residual = videos - tokenizer.decode(latents)
        finally:
            tokenizer.decoder.lapped = saved
        before = float((residual - path(latents)).square().mean())
    optimizer = torch.optim.Adam(path.parameters(), lr=lr)
    for step in range(steps):
        for group in optimizer.param_groups:  # cosine to zero: the last steps settle
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        optimizer.zero_grad(set_to_none=True)
        loss = (residual - path(latents)).square().mean()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float((residual - path(latents)).square().mean())
    return before, after
