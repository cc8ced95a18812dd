"""Reconstruction metrics and losses that need no pretrained network: PSNR, SSIM, blockiness, image
gradients. Videos are [N, C, T, H, W] in [-1, 1]."""

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


# Issue 22's rule: a reconstruction's blockiness may exceed its ground truth's by at most 10%.
BLOCKINESS_MARGIN = 1.10


def _gradient_energy(video: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per video: (sum, count) of squared neighbour differences across grid lines, and the same elsewhere."""
    dx = (video[..., :, 1:] - video[..., :, :-1]).square()  # boundary w|w+1 at index w
    dy = (video[..., 1:, :] - video[..., :-1, :]).square()
    on_x = (torch.arange(dx.shape[-1], device=video.device) + 1) % grid == 0  # between 8k-1 and 8k
    on_y = (torch.arange(dy.shape[-2], device=video.device) + 1) % grid == 0
    sums = torch.stack([dx[..., on_x].flatten(1).sum(1) + dy[..., on_y, :].flatten(1).sum(1),
                        dx[..., ~on_x].flatten(1).sum(1) + dy[..., ~on_y, :].flatten(1).sum(1)])
    per_frame = video.shape[1] * video.shape[2]  # channels x frames
    height, width = video.shape[-2:]
    counts = [per_frame * (height * int(on_x.sum()) + width * int(on_y.sum())),
              per_frame * (height * int((~on_x).sum()) + width * int((~on_y).sum()))]
    return sums, torch.tensor(counts, dtype=sums.dtype, device=sums.device)


def blockiness(video: torch.Tensor, grid: int = 8) -> torch.Tensor:
    """Per video [N, C, T, H, W]: the mean gradient energy (squared horizontal and vertical neighbour
    differences) across the grid lines (between pixel rows and columns grid*k - 1 and grid*k) over the mean
    across all other pixel boundaries. About 1 without a grid; a code of independent grid x grid blocks
    gives more. Brightness offsets and contrast scaling leave it unchanged; a flat video scores 1."""
    from drivesim.tokenizer.model import ShapeError

    if not isinstance(grid, int) or isinstance(grid, bool) or grid < 2:
        raise ShapeError(f"blockiness: grid={grid!r} must be an integer >= 2 (pixels per block side)")
    if video.dim() != 5:
        raise ShapeError(f"blockiness: video has shape {tuple(video.shape)}; it takes [N, C, T, H, W]")
    height, width = video.shape[-2:]
    if max(height, width) <= grid or min(height, width) < 2:
        raise ShapeError(f"blockiness: video is {height}x{width} (HxW); it needs more than {grid} pixels along "
                         f"height or width (a grid line) and at least 2 along each")
    sums, counts = _gradient_energy(video.double(), grid)
    means = sums / counts[:, None]  # (2, N): across grid lines, elsewhere
    tiny = 1e-12  # flat video: 0/0 read as no grid
    return ((means[0] + tiny) / (means[1] + tiny)).to(torch.float32)
