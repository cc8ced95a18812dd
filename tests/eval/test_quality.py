"""Quality metrics (drivesim/eval/quality.py): PSNR, SSIM and masked PSNR on known images, Fréchet
distances of known Gaussians, and FID / FVD through tiny TorchScript networks scripted here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import TinyInception
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from drivesim.errors import ConfigError, DataError
from drivesim.eval.quality import (Extractor, fid, frechet_distance, frechet_distance_of_features, fvd, load_i3d,
                                   load_inception, masked_psnr, psnr, ssim, video_windows)

# The feature-network exports FID and FVD use are TorchScript, which torch 2.13 marks deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


def textured(seed: int, shape=(2, 48, 64, 3)) -> np.ndarray:
    """Smooth gradients with blobs: structure for SSIM to see, deterministic."""
    rng = np.random.default_rng(seed)
    *leading, height, width, _ = shape
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 180
    noise = rng.normal(size=(*leading, height // 4 + 1, width // 4 + 1, 3)) * 30
    blobs = noise.repeat(4, axis=-3).repeat(4, axis=-2)[..., :height, :width, :]
    return np.clip(base + blobs + 20, 0, 255).astype(np.uint8)


def noisy(frames: np.ndarray, sigma: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(scale=sigma, size=frames.shape), 0, 255).round().astype(np.uint8)


# ---------------------------------------------------------------- PSNR and SSIM


def test_identical_frames_score_inf_and_one():
    frames = textured(0)
    assert np.all(np.isinf(psnr(frames, frames))) and psnr(frames, frames).shape == (2,)
    np.testing.assert_array_equal(ssim(frames, frames), [1.0, 1.0])


def test_psnr_is_ten_log_peak_over_mse():
    frames = textured(1)
    other = noisy(frames, 10)
    mse = np.mean((frames.astype(float) - other.astype(float)) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(psnr(frames, other), 10 * np.log10(255**2 / mse), rtol=1e-12)
    assert 25 < psnr(frames, other).mean() < 30  # sigma 10: about 20 log10(255 / 10) = 28 dB


def test_ssim_falls_as_noise_grows():
    frames = textured(2)
    scores = [float(ssim(frames, noisy(frames, sigma)).mean()) for sigma in (2, 8, 25, 60)]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9 and scores[-1] < 0.6


def test_ssim_matches_the_tokenizers_torch_ssim():
    # Two implementations of the same definition: valid Gaussian filtering, per channel, mean.
    from drivesim.tokenizer.metrics import ssim as torch_ssim

    a, b = textured(3, (3, 40, 56, 3)), noisy(textured(3, (3, 40, 56, 3)), 15)
    expected = torch_ssim(torch.from_numpy(b).permute(3, 0, 1, 2)[None].double() / 127.5 - 1,
                          torch.from_numpy(a).permute(3, 0, 1, 2)[None].double() / 127.5 - 1)
    assert float(ssim(a, b).mean()) == pytest.approx(float(expected), abs=1e-6)


shapes = st.tuples(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 24), st.integers(1, 24)).map(
    lambda s: (*s[0], s[1], s[2], 3))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shape=shapes)
def test_psnr_and_ssim_are_symmetric_and_bounded_for_any_shape(data, shape):
    a = data.draw(arrays(np.uint8, shape))
    b = data.draw(arrays(np.uint8, shape))
    p_ab, s_ab = psnr(a, b), ssim(a, b)
    assert p_ab.shape == s_ab.shape == shape[:-3]
    np.testing.assert_allclose(psnr(b, a), p_ab)
    np.testing.assert_allclose(ssim(b, a), s_ab, rtol=1e-9, atol=1e-12)
    assert np.all(s_ab <= 1 + 1e-9) and np.all(s_ab >= -1 - 1e-9)
    assert np.all(p_ab >= 0)
    assert np.all(np.isinf(psnr(a, a))) and np.allclose(ssim(a, a), 1.0)


def test_bad_frames_raise_data_error_naming_them():
    frames = textured(0)
    with pytest.raises(DataError, match="b: expected uint8"):
        psnr(frames, frames.astype(np.float32))
    with pytest.raises(DataError, match="same shape"):
        ssim(frames, frames[:1])


def test_masked_psnr_scores_only_inside_the_mask():
    frames = textured(4, (1, 32, 32, 3))
    other = frames.copy()
    other[:, :, 16:] = noisy(frames[:, :, 16:], 20)  # the right half differs
    left = np.zeros((1, 32, 32), bool)
    left[:, :, :16] = True
    assert math.isinf(masked_psnr(frames, other, left))
    right_mse = np.mean((frames[:, :, 16:].astype(float) - other[:, :, 16:]) ** 2)
    assert masked_psnr(frames, other, ~left) == pytest.approx(10 * math.log10(255**2 / right_mse))
    assert math.isnan(masked_psnr(frames, other, np.zeros((1, 32, 32), bool)))
    assert masked_psnr(frames, other, np.ones((32, 32), bool)) == pytest.approx(float(psnr(frames, other)[0]))
    with pytest.raises(DataError, match="mask"):
        masked_psnr(frames, other, np.ones((5, 5), bool))


# ---------------------------------------------------------------- Fréchet distances


def test_frechet_distance_of_identical_gaussians_is_zero():
    rng = np.random.default_rng(0)
    root = rng.normal(size=(6, 6))
    sigma = root @ root.T + np.eye(6)
    mu = rng.normal(size=6)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(dim=st.integers(1, 8), seed=st.integers(0, 2**31))
def test_frechet_distance_of_unit_gaussians_is_the_squared_mean_gap(dim, seed):
    rng = np.random.default_rng(seed)
    mu1, mu2 = rng.normal(size=dim) * 5, rng.normal(size=dim) * 5
    expected = float(np.sum((mu1 - mu2) ** 2))
    assert frechet_distance(mu1, np.eye(dim), mu2, np.eye(dim)) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_frechet_distance_of_scaled_covariances():
    # N(0, a I) vs N(0, b I): d (sqrt(a) - sqrt(b))^2
    assert frechet_distance(np.zeros(3), 4 * np.eye(3), np.zeros(3), np.eye(3)) == pytest.approx(3.0)


@pytest.mark.parametrize("count_a, count_b", [(12, 9), (40, 50)])
def test_the_sample_space_route_equals_the_covariance_route(count_a, count_b):
    # 30 dimensions: 12 / 9 samples take the low-rank route, 40 / 50 the sqrtm one; both must be the formula.
    rng = np.random.default_rng(5)
    a = rng.normal(size=(count_a, 30)) @ rng.normal(size=(30, 30))
    b = rng.normal(size=(count_b, 30)) + 0.5
    expected = frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
    assert frechet_distance_of_features(a, b) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance_of_features(a, a) == pytest.approx(0, abs=1e-6 * np.trace(np.cov(a, rowvar=False)))
    assert math.isnan(frechet_distance_of_features(a[:1], b))


# ---------------------------------------------------------------- FID and FVD through TorchScript


class TinyI3D(torch.nn.Module):
    """[N, 3, T, H, W] -> [N, 400] with StyleGAN-V's keyword switches, which must be passed."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.project = torch.nn.Linear(3 * 4 * 4 * 4, 400)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x.float() / 127.5 - 1
        pooled = torch.nn.functional.adaptive_avg_pool3d(x.float(), (4, 4, 4))
        features = self.project(pooled.flatten(1))
        return features if return_features else features[:, :10]


def scripted(module: torch.nn.Module, path: Path) -> Path:
    torch.jit.script(module).save(str(path))
    return path


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    return scripted(TinyInception(), tmp_path_factory.mktemp("weights") / "inception.pt")


def test_fid_through_a_torchscript_file_is_finite_and_zero_for_a_set_with_itself(inception_file):
    extractor = load_inception(inception_file)
    real = textured(6, (20, 32, 48, 3))
    fake = noisy(textured(7, (12, 24, 40, 3)), 30)  # another size: the network pools
    value = fid(fake, real, extractor)
    assert math.isfinite(value) and value > 0
    assert fid(real, real, extractor) == pytest.approx(0, abs=1e-6)
    assert fid([real[:10], real[10:]], real, extractor) == pytest.approx(0, abs=1e-6)  # a sequence of arrays
    assert fid(real[:1], real, extractor) != fid(real[:1], real, extractor)  # one image: NaN


def test_fvd_cuts_sixteen_frame_windows_and_passes_the_i3d_switches(tmp_path):
    extractor = load_i3d(scripted(TinyI3D(), tmp_path / "i3d.pt"))
    real = [textured(8, (40, 16, 24, 3)), textured(9, (32, 2, 16, 24, 3))]      # 2 + 2 x 2 windows
    fake = [noisy(textured(10, (33, 16, 24, 3)), 40)]                          # 2 windows, 1 frame left over
    assert [w.shape for w in video_windows(fake[0])] == [(16, 16, 24, 3)] * 2
    assert len(video_windows(real[1])) == 4
    value = fvd(fake, real, extractor)
    assert math.isfinite(value) and value > 0
    assert extractor._call[1] == {"rescale": True, "resize": True, "return_features": True}
    assert fvd(real, real, extractor) == pytest.approx(0, abs=1e-6)
    assert math.isnan(fvd([real[0][:15]], real, extractor))  # shorter than a window


def test_an_extractor_with_the_wrong_output_is_a_config_error(tmp_path):
    class Logits(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.float().mean(dim=(2, 3)).repeat(1, 336)  # [N, 1008]: logits, not pool features

    extractor = load_inception(scripted(Logits(), tmp_path / "logits.pt"))
    with pytest.raises(ConfigError, match=r"--inception .*logits.pt.*\[N, 2048\]"):
        fid(textured(0), textured(1), extractor)
    assert isinstance(extractor, Extractor)


def test_missing_or_non_torchscript_weights_name_the_option(tmp_path):
    with pytest.raises(ConfigError, match="--inception .*no such file"):
        load_inception(tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a network")
    with pytest.raises(ConfigError, match="--i3d .*not a TorchScript file"):
        load_i3d(junk)
    plain = tmp_path / "state.pt"
    torch.save({"weight": torch.zeros(2)}, plain)  # a state dict is not TorchScript either
    with pytest.raises(ConfigError, match="--inception .*not a TorchScript file"):
        load_inception(plain)
