"""Image and video quality of generated drives: PSNR, SSIM and layout agreement against a ground-truth
clip, and FID / FVD from locally stored TorchScript feature networks.

Reference-based metrics need a clip the rollout should reproduce. A scenario made from a stored clip
(`drivesim scenario from-clip`) names it in `start_frames`: generated frame i is compared with frame
start_frames.frame + i of that clip, camera by camera (the cameras both have), the reference resized
to the generated size with PIL bilinear when the sizes differ. Layout agreement splits the error by
the scenario's boxes as the layout renderer draws them: PSNR inside the boxes (are the cars where the
scenario put them?) against PSNR outside (the rest of the scene). Without a reference clip the values
are NaN and "note" says why; these metrics never raise for a missing reference.

FID and FVD compare feature statistics of generated and reference sets through networks the user
stores locally; drivesim never downloads weights. Their contracts are in `load_inception` and
`load_i3d`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError, DrivesimError

__all__ = ["FVD_FRAMES", "SKIPPED_NOTE", "Extractor", "features", "fid", "frechet_distance",
           "frechet_distance_of_features", "fvd", "load_i3d", "load_inception", "masked_psnr", "psnr",
           "reference_clip", "rollout_quality", "ssim", "video_windows"]

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


def _finite_mean(values) -> float:
    """Mean of the values that are not NaN (inf stays inf); NaN when none is."""
    values = np.asarray(values, np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(np.mean(values)) if len(values) else math.nan


# ---------------------------------------------------------------- the reference clip of a rollout


@dataclass(frozen=True)
class _Reference:
    store: Path
    clip: str
    frame: int


def _store_folder(path: Path) -> Path:
    """A store, or a rollout folder holding rollout.zarr."""
    from drivesim.simulate import ROLLOUT_STORE

    if not (path / "zarr.json").is_file() and (path / ROLLOUT_STORE).is_dir():
        return path / ROLLOUT_STORE
    return path


def reference_clip(scenario, rollout_folder: Path,
                   reference: str | os.PathLike | None) -> tuple[_Reference | None, str | None]:
    """(the clip the rollout should reproduce, None) or (None, why there is none).

    The clip is the scenario's start_frames.clip: in `reference` when given, else in the store that
    start_frames names (as written, or relative to the rollout folder).
    """
    from drivesim.data.store import stored_clip_ids

    start = getattr(scenario, "start_frames", None)
    if start is None:
        return None, "the scenario has no start_frames: no ground-truth clip to compare with"
    if reference is not None:
        store = _store_folder(Path(reference))
    else:
        candidates = [Path(start.store), Path(rollout_folder) / start.store]
        found = [c for c in candidates if (_store_folder(c) / "zarr.json").is_file()]
        if not found:
            return None, (f"the scenario's start_frames store {start.store} is not there and no --reference "
                          "STORE was given")
        store = _store_folder(found[0])
    if start.clip not in stored_clip_ids(store):
        return None, f"reference store {store} has no clip {start.clip!r} (the scenario's start_frames.clip)"
    return _Reference(store, start.clip, int(start.frame)), None


def _resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [N, h, w, 3] -> [N, height, width, 3] with PIL bilinear (unchanged when the size matches)."""
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def _box_masks(scenario, intrinsics: np.ndarray, ego_from_cam: np.ndarray, names: Sequence[str],
               times: np.ndarray, width: int, height: int) -> np.ndarray:
    """bool [F, V, H, W]: where the scenario's boxes are drawn at `times` (layout box colour > 0),
    for a rig with the rollout's own calibration at the generated size."""
    from drivesim.geometry import Camera, Rig
    from drivesim.render import render_layout

    rig = Rig("rollout", int(width), int(height),
              tuple(Camera(name, intrinsics[v], ego_from_cam[v]) for v, name in enumerate(names)))
    maps = render_layout(rig, scenario.layout_frames(times))  # [V, F, C, H, W]
    return np.transpose(maps[:, :, 0:3].max(axis=2) > 0, (1, 0, 2, 3))


def _nan_quality(note: str, **extra) -> dict:
    return {"reference": None, "cameras": [], "frames": 0, "psnr": math.nan, "ssim": math.nan,
            "psnr_per_frame": [], "ssim_per_frame": [], "psnr_per_camera": {}, "ssim_per_camera": {},
            "layout": {"psnr_in_boxes": math.nan, "psnr_outside_boxes": math.nan, "box_fraction": math.nan},
            "note": note, **extra}


def rollout_quality(rollout_folder: str | os.PathLike, reference: str | os.PathLike | None = None,
                    frame_step: int = 1) -> dict:
    """PSNR, SSIM and layout agreement of a rollout folder against its ground-truth clip (see `reference_clip`).

    Every `frame_step`-th generated frame i is compared with reference frame start_frames.frame + i, over
    the frames both have and the cameras both have. Returns {"reference": {store, clip, frame} or None,
    "cameras", "frames" (compared), "size": [W, H], "reference_size", "frame_indices", "psnr"/"ssim": means
    over frames and cameras, "psnr_per_frame"/"ssim_per_frame": [compared frames] (mean over cameras),
    "psnr_per_camera"/"ssim_per_camera", "layout": {"psnr_in_boxes", "psnr_outside_boxes", "box_fraction"},
    "note": None or why values are NaN}. A missing or unusable reference gives NaN and a note, never an error.
    """
    from drivesim.data.store import open_store, read_clip, stored_clip_ids
    from drivesim.scenario import load

    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise ConfigError(f"frame_step must be an integer >= 1, got {frame_step!r}")
    folder = Path(rollout_folder)
    try:
        scenario = load(folder / "scenario.yaml")
        found, why = reference_clip(scenario, folder, reference)
    except DrivesimError as error:
        return _nan_quality(f"no reference: {error}")
    if found is None:
        return _nan_quality(f"no reference: {why}")
    store = _store_folder(folder)
    root = open_store(store)
    clip = read_clip(root, stored_clip_ids(store)[0], ("frames", "intrinsics", "ego_from_cam", "timestamps"))
    generated_cameras = list(clip["attrs"].get("cameras") or root.attrs["settings"]["cameras"])
    reference_root = open_store(found.store)
    group = reference_root["clips"][found.clip]
    reference_cameras = list(dict(group.attrs).get("cameras") or reference_root.attrs["settings"]["cameras"])
    where = {"store": str(found.store), "clip": found.clip, "frame": found.frame}
    cameras = [c for c in generated_cameras if c in reference_cameras]
    if not cameras:
        return _nan_quality(f"no reference: clip {found.clip!r} of {found.store} has none of the rollout's cameras "
                            f"({', '.join(generated_cameras)})", reference=where)
    count = min(len(clip["frames"]), group["frames"].shape[0] - found.frame)
    indices = np.arange(0, max(count, 0), frame_step)
    if len(indices) == 0:
        return _nan_quality(f"no reference: clip {found.clip!r} has no frames from frame {found.frame} on",
                            reference=where)
    views = [generated_cameras.index(c) for c in cameras]
    generated = clip["frames"][indices][:, views]                            # [F, V, H, W, 3]
    height, width = generated.shape[2:4]
    stored = group["frames"][found.frame:found.frame + count][indices]         # [F, V', h, w, 3]
    reference_size = [int(stored.shape[3]), int(stored.shape[2])]
    truth = np.stack([_resize(stored[:, reference_cameras.index(c)], width, height) for c in cameras], axis=1)
    psnr_values, ssim_values = psnr(generated, truth), ssim(generated, truth)   # [F, V]
    times = clip["timestamps"][indices].astype(np.float64) / 1e6
    masks = _box_masks(scenario, clip["intrinsics"][views].astype(np.float64),
                       clip["ego_from_cam"][views].astype(np.float64), cameras, times, width, height)
    notes = [] if masks.any() else ["no box of the scenario is in view: layout PSNR in boxes is NaN"]
    rates = float(clip["attrs"].get("fps") or 0), float(dict(group.attrs).get("fps") or 0)
    if all(rates) and abs(rates[0] - rates[1]) > 1e-6:
        notes.append(f"the rollout runs at {rates[0]:g} fps, the reference clip at {rates[1]:g} fps: "
                     "frames are still compared one to one")
    return {"reference": where, "cameras": cameras, "frames": int(len(indices)), "size": [int(width), int(height)],
            "reference_size": reference_size, "frame_indices": indices.tolist(),
            "psnr": _finite_mean(psnr_values), "ssim": _finite_mean(ssim_values),
            "psnr_per_frame": [_finite_mean(row) for row in psnr_values],
            "ssim_per_frame": [_finite_mean(row) for row in ssim_values],
            "psnr_per_camera": {c: _finite_mean(psnr_values[:, v]) for v, c in enumerate(cameras)},
            "ssim_per_camera": {c: _finite_mean(ssim_values[:, v]) for v, c in enumerate(cameras)},
            "layout": {"psnr_in_boxes": masked_psnr(generated, truth, masks),
                       "psnr_outside_boxes": masked_psnr(generated, truth, ~masks),
                       "box_fraction": float(masks.mean())},
            "note": "; ".join(notes) or None}


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
