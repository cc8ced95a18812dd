"""Reconstruction metrics and losses that need no pretrained network: PSNR, SSIM, image gradients.
Videos are [N, C, T, H, W] in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per video, on the [0, 1] scale images are usually scored on."""
    mse = ((reconstruction.float() - target.float()) / 2).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def _gaussian(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    kernel = torch.exp(-coords.square() / (2 * sigma**2))
    return kernel / kernel.sum()


def ssim(reconstruction: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per video (Wang et al. 2004, Gaussian window, on [0, 1]), averaged over frames."""
    x = rearrange((reconstruction.float() + 1) / 2, "n c t h w -> (n t) c h w")
    y = rearrange((target.float() + 1) / 2, "n c t h w -> (n t) c h w")
    channels = x.shape[1]
    g = _gaussian(min(window, x.shape[-1], x.shape[-2]), sigma, x.device, x.dtype)
    def blur(z):  # separable Gaussian, per channel
        z = F.conv2d(z, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        return F.conv2d(z, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x.square(), blur(y * y) - mu_y.square()
    cov = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2))
    per_frame = index.flatten(1).mean(1)
    return rearrange(per_frame, "(n t) -> n t", n=reconstruction.shape[0]).mean(1)


def gradient_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between the images' horizontal and vertical finite differences: keeps edges sharp where L1 blurs."""
    def grads(z):
        return z[..., :, 1:] - z[..., :, :-1], z[..., 1:, :] - z[..., :-1, :]
    (rx, ry), (tx, ty) = grads(reconstruction.float()), grads(target.float())
    return (rx - tx).abs().mean() + (ry - ty).abs().mean()
