"""Image and video quality of generated drives: PSNR, SSIM and masked PSNR of frames, and FID / FVD from
locally stored TorchScript feature networks. reference.py scores a rollout against its ground-truth clip
with the per-frame metrics.

FID and FVD compare feature statistics of generated and reference sets through networks the user
stores locally; drivesim never downloads weights. Their contracts are in `load_inception` and
`load_i3d`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError

__all__ = ["FVD_FRAMES", "SKIPPED_NOTE", "Extractor", "features", "fid", "frechet_distance",
           "frechet_distance_of_features", "fvd", "load_i3d", "load_inception", "masked_psnr", "psnr", "ssim",
           "video_windows"]

PEAK = 255.0                 # uint8 images
SSIM_WINDOW = 11             # Gaussian window of Wang et al. 2004: 11 x 11, sigma 1.5
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * PEAK) ** 2
SSIM_C2 = (0.03 * PEAK) ** 2
INCEPTION_DIM = 2048         # InceptionV3 pool features
FVD_FRAMES = 16              # I3D windows: 16 consecutive frames, as FVD is usually reported
FRECHET_EPS = 1e-6
SKIPPED_NOTE = ("FID/FVD skipped: pass --inception FILE / --i3d FILE (locally stored TorchScript weights); "
                "drivesim never downloads weights")


# ---------------------------------------------------------------- per-frame metrics


def _check_pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Two uint8 [..., H, W, 3] arrays of one shape; DataError naming the bad one otherwise."""
    a, b = np.asarray(a), np.asarray(b)
    for name, frames in (("a", a), ("b", b)):
        if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3 or 0 in frames.shape:
            raise DataError(f"{name}: expected uint8 frames [..., H, W, 3], got {frames.dtype} {list(frames.shape)}")
    if a.shape != b.shape:
        raise DataError(f"a {list(a.shape)} and b {list(b.shape)} must have the same shape")
    return a, b


def _psnr_of_mse(mse) -> np.ndarray:
    """10 log10(255^2 / MSE); inf where MSE is 0 (identical images)."""
    mse = np.asarray(mse, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mse > 0, 10.0 * np.log10(PEAK**2 / np.maximum(mse, 1e-300)), np.inf)


def psnr(a, b) -> np.ndarray:
    """PSNR in dB of uint8 frames [..., H, W, 3] per frame (shape [...]; a float for one frame), on the
    0..255 scale: 10 log10(255^2 / MSE) with MSE over the frame's pixels and channels; inf when equal."""
    a, b = _check_pair(a, b)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(-3, -2, -1))
    return _psnr_of_mse(mse)


def masked_psnr(a, b, mask) -> float:
    """PSNR in dB of a against b over the pixels where `mask` (bool, [..., H, W], broadcast to the frames'
    [..., H, W]) is true, all three channels, pooled over every frame: NaN when the mask is empty."""
    a, b = _check_pair(a, b)
    mask = np.asarray(mask, bool)
    try:
        mask = np.broadcast_to(mask, a.shape[:-1])
    except ValueError:
        raise DataError(f"mask {list(mask.shape)} does not fit frames {list(a.shape[:-1])}") from None
    count = int(np.count_nonzero(mask))
    if count == 0:
        return math.nan
    difference = a[mask].astype(np.float64) - b[mask].astype(np.float64)  # [count, 3]
    return float(_psnr_of_mse(np.mean(difference**2)))


def _ssim_image(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM of two float64 [H, W, 3] images: the mean over channels and pixels of the SSIM map."""
    from scipy.ndimage import gaussian_filter

    height, width = x.shape[:2]
    # The 11 x 11 window, shrunk for images smaller than it; the map is kept only where the window
    # lies inside the image (Wang et al.'s 'valid' filtering), so the border mode never matters.
    radius = min(SSIM_WINDOW // 2, (min(height, width) - 1) // 2)

    def blur(z: np.ndarray) -> np.ndarray:
        return gaussian_filter(z, sigma=(SSIM_SIGMA, SSIM_SIGMA, 0), radius=(radius, radius, 0), mode="reflect")

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2
    covariance = blur(x * y) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + SSIM_C1) * (2 * covariance + SSIM_C2)
             / ((mu_x**2 + mu_y**2 + SSIM_C1) * (var_x + var_y + SSIM_C2)))
    return float(index[radius:height - radius, radius:width - radius].mean())


def ssim(a, b) -> np.ndarray:
    """Structural similarity (Wang et al. 2004) of uint8 frames [..., H, W, 3] per frame (shape [...]).

    The standard Gaussian-window SSIM: window 11 x 11, sigma 1.5, C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2,
    on each RGB channel at 0..255, the map averaged over the pixels whose window fits in the image and
    over the three channels. 1 for identical frames; symmetric in a and b. Images under 11 pixels on a
    side use the largest odd window that fits.
    """
    a, b = _check_pair(a, b)
    leading = a.shape[:-3]
    flat_a = a.reshape(-1, *a.shape[-3:])
    flat_b = b.reshape(-1, *b.shape[-3:])
    # One image at a time: a rollout's frames as float64 maps would be several times its size at once.
    values = [_ssim_image(x.astype(np.float64), y.astype(np.float64)) for x, y in zip(flat_a, flat_b)]
    return np.asarray(values, np.float64).reshape(leading)


def finite_mean(values) -> float:
    """Mean of the values that are not NaN (inf stays inf); NaN when none is."""
    values = np.asarray(values, np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else math.nan


# ---------------------------------------------------------------- feature networks


@dataclass
class Extractor:
    """A TorchScript feature network and how to call it (found on its first batch, then kept).

    kind "inception": images [N, 3, H, W] -> [N, 2048]; kind "i3d": videos [N, 3, T, H, W] -> [N, D].
    """

    module: object
    kind: str
    source: str = "extractor"      # names it in errors: the option and file
    _call: tuple | None = None     # (dtype name, keyword arguments) that worked

    def _attempts(self) -> list[tuple[str, dict]]:
        # The common exports take keyword switches: StyleGAN2-ADA's inception-2015-12-05.pt returns its
        # 2048 pool features with return_features=True (logits otherwise); StyleGAN-V's i3d_torchscript.pt
        # rescales 0..255 to [-1, 1] and resizes to 224 itself with rescale/resize=True. Plain
        # forward(x) modules are tried after them, float first, then uint8.
        switches = ({"return_features": True} if self.kind == "inception"
                    else {"rescale": True, "resize": True, "return_features": True})
        return [("float32", switches), ("float32", {}), ("uint8", switches), ("uint8", {})]

    def _accept(self, output, count: int) -> np.ndarray | None:
        import torch

        if isinstance(output, (tuple, list)) and output:
            output = output[0]
        if not isinstance(output, torch.Tensor) or output.ndim < 2 or output.shape[0] != count:
            return None
        output = output.reshape(count, -1) if all(s == 1 for s in output.shape[2:]) else None
        if output is None or (self.kind == "inception" and output.shape[1] != INCEPTION_DIM):
            return None
        return output.detach().to(torch.float64).cpu().numpy()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """uint8 images [N, H, W, 3] (inception) or videos [N, T, H, W, 3] (i3d) -> float64 features [N, D]."""
        import torch

        batch = np.asarray(batch)
        channels_first = (0, 3, 1, 2) if self.kind == "inception" else (0, 4, 1, 2, 3)
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).permute(*channels_first).contiguous()
        attempts = [self._call] if self._call is not None else self._attempts()
        with torch.no_grad():
            for dtype, keywords in attempts:
                try:
                    output = self.module(tensor.to(getattr(torch, dtype)), **keywords)
                except (RuntimeError, TypeError, ValueError):  # TorchScript: unknown keyword, wrong dtype
                    continue
                accepted = self._accept(output, len(batch))
                if accepted is not None:
                    self._call = (dtype, keywords)
                    return accepted
        shape = "[N, 3, H, W] -> [N, 2048]" if self.kind == "inception" else "[N, 3, T, H, W] -> [N, D]"
        raise ConfigError(f"{self.source}: the network does not map {shape} for a batch of "
                          f"{list(tensor.shape)} images (see drivesim/eval/quality.py load_{self.kind})")


def _load_torchscript(path: str | os.PathLike, option: str, kind: str) -> Extractor:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{option} {path}: no such file (a locally stored TorchScript network)")
    try:
        with warnings.catch_warnings():  # torch 2.13 marks TorchScript deprecated; these exports are TorchScript
            warnings.filterwarnings("ignore", message=".*torch.jit.load.* is deprecated", category=DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError, ValueError or pickle errors for non-TorchScript files
        raise ConfigError(f"{option} {path}: not a TorchScript file ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''})") from None
    module.eval()
    return Extractor(module, kind, f"{option} {path}")


def load_inception(path: str | os.PathLike, option: str = "--inception") -> Extractor:
    """A TorchScript InceptionV3 feature network for FID from a local file (torch.jit.load, CPU).

    Contract: module(x) with x [N, 3, H, W] holding 0..255 values, as float32 (tried first) or uint8,
    at any size (the network resizes and normalises itself), returns pool features [N, 2048]; a module
    whose forward takes return_features=True (StyleGAN2-ADA's inception-2015-12-05.pt, which otherwise
    returns logits) is called with it. The output shape decides which call is used. ConfigError naming
    `option` when the file is missing or not TorchScript.
    """
    return _load_torchscript(path, option, "inception")


def load_i3d(path: str | os.PathLike, option: str = "--i3d") -> Extractor:
    """A TorchScript I3D video network for FVD from a local file (torch.jit.load, CPU).

    Contract: module(x, rescale=True, resize=True, return_features=True) (StyleGAN-V's i3d_torchscript.pt:
    it maps 0..255 to [-1, 1] and resizes to 224 itself), or else module(x), with x [N, 3, T, H, W] of
    0..255 values (float32 first, then uint8), T = 16, returns features [N, D] (D = 400 for that export).
    ConfigError naming `option` when the file is missing or not TorchScript.
    """
    return _load_torchscript(path, option, "i3d")


def features(extractor: Extractor, items: Iterable[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """Features [N, D] of uint8 images [H, W, 3] (or videos [T, H, W, 3]), batched by size."""
    batches: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending:
            batches.append(extractor(np.stack(pending)))
            pending.clear()

    for item in items:
        if pending and (item.shape != pending[0].shape or len(pending) == batch_size):
            flush()
        pending.append(np.asarray(item, np.uint8))
    flush()
    if not batches:
        return np.zeros((0, 0))
    return np.concatenate(batches)


# ---------------------------------------------------------------- Fréchet distances


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = FRECHET_EPS) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):
    |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr(sqrtm(sigma1 sigma2)).

    scipy.linalg.sqrtm; when the product is singular enough that the root is not finite, eps is added
    to both diagonals (the fix of the reference FID code), and a complex root whose imaginary part is
    only rounding (diagonal below 1e-3) is taken as real.
    """
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (len(mu1), len(mu1)):
        raise DataError(f"frechet_distance: means {list(mu1.shape)}, {list(mu2.shape)} and covariances "
                        f"{list(sigma1.shape)}, {list(sigma2.shape)} do not fit one dimension")
    difference = mu1 - mu2
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(root)):
        offset = np.eye(len(mu1)) * eps
        root = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise DataError(f"frechet_distance: the matrix square root has imaginary part "
                            f"{np.max(np.abs(root.imag)):.3g}")
        root = root.real
    return float(difference @ difference + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def frechet_distance_of_features(features_a, features_b) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N_a, D], [N_b, D] (mean and sample
    covariance, as FID and FVD fit them); NaN when a set has fewer than 2 rows.

    With fewer samples than dimensions (a few hundred frames against Inception's 2048) the covariances
    have rank below D and the 2048 x 2048 matrix root is both slow and ill-conditioned; then the same
    value is computed exactly in sample space: with centred features A, B, sigma_a = A^T A / (N_a - 1)
    and sigma_b = B^T B / (N_b - 1), the nonzero eigenvalues of sigma_a sigma_b are the squared singular
    values of A B^T / sqrt((N_a - 1)(N_b - 1)), so tr(sqrtm(sigma_a sigma_b)) is their sum.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return math.nan
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise DataError(f"feature sets {list(a.shape)} and {list(b.shape)} must both be [N, D] with one D")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance(mu_a, np.cov(a, rowvar=False), mu_b, np.cov(b, rowvar=False))
    centred_a, centred_b = a - mu_a, b - mu_b
    scale_a, scale_b = len(a) - 1, len(b) - 1
    trace_a = float(np.sum(centred_a**2)) / scale_a
    trace_b = float(np.sum(centred_b**2)) / scale_b
    cross = np.linalg.svd(centred_a @ centred_b.T, compute_uv=False).sum() / math.sqrt(scale_a * scale_b)
    difference = mu_a - mu_b
    return float(difference @ difference + trace_a + trace_b - 2 * cross)


def _as_images(frames) -> Iterable[np.ndarray]:
    """uint8 images [H, W, 3] from an array [..., H, W, 3] or a sequence of such arrays (sizes may differ)."""
    groups = [frames] if isinstance(frames, np.ndarray) else list(frames)
    for group in groups:
        group = np.asarray(group)
        if group.dtype != np.uint8 or group.ndim < 3 or group.shape[-1] != 3:
            raise DataError(f"frames: expected uint8 [..., H, W, 3], got {group.dtype} {list(group.shape)}")
        yield from group.reshape(-1, *group.shape[-3:])


def fid(generated_frames, reference_frames, extractor: Extractor | object) -> float:
    """Fréchet Inception Distance between two sets of uint8 images: each an array [..., H, W, 3] or a sequence
    of them (sizes may differ). `extractor`: from `load_inception` (or a TorchScript module, taken as one).
    NaN when a set has fewer than two images. Few images give a biased, noisy value: compare like with like."""
    if not isinstance(extractor, Extractor):
        extractor = Extractor(extractor, "inception")
    return frechet_distance_of_features(features(extractor, _as_images(generated_frames)),
                                        features(extractor, _as_images(reference_frames)))


def video_windows(video, length: int = FVD_FRAMES) -> list[np.ndarray]:
    """Non-overlapping windows [length, H, W, 3] of a uint8 video [T, H, W, 3] or [T, V, H, W, 3] (per camera)."""
    video = np.asarray(video)
    if video.dtype != np.uint8 or video.ndim not in (4, 5) or video.shape[-1] != 3:
        raise DataError(f"video: expected uint8 [T, H, W, 3] or [T, V, H, W, 3], got {video.dtype} "
                        f"{list(video.shape)}")
    streams = [video] if video.ndim == 4 else [video[:, v] for v in range(video.shape[1])]
    return [stream[start:start + length] for stream in streams
            for start in range(0, len(stream) - length + 1, length)]


def fvd(generated_videos, reference_videos, extractor: Extractor | object, length: int = FVD_FRAMES) -> float:
    """Fréchet Video Distance between two sets of uint8 videos ([T, H, W, 3] or [T, V, H, W, 3] each, in a
    sequence), cut into non-overlapping `length`-frame windows per camera. `extractor`: from `load_i3d`.
    NaN when a set has fewer than two windows (videos shorter than `length` give none)."""
    if not isinstance(extractor, Extractor):
        extractor = Extractor(extractor, "i3d")
    generated = [w for video in generated_videos for w in video_windows(video, length)]
    reference = [w for video in reference_videos for w in video_windows(video, length)]
    if len(generated) < 2 or len(reference) < 2:
        return math.nan
    return frechet_distance_of_features(features(extractor, generated, batch_size=4),
                                        features(extractor, reference, batch_size=4))
