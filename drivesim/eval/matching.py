"""SIFT features, Lowe-ratio matches between two images, and the Sampson error of matches under a
fundamental matrix: what the consistency metrics (consistency.py) measure with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.errors import ConfigError, DataError

__all__ = ["Features", "check_options", "match_features", "ratio_matches", "sampson_error", "sift_features"]


# ---------------------------------------------------------------- features and matches


@dataclass(frozen=True)
class Features:
    """SIFT keypoint positions [N, 2] (pixels, OpenCV convention) and descriptors [N, 128] float32."""

    points: np.ndarray
    descriptors: np.ndarray


def _gray(image, name: str) -> np.ndarray:
    """An RGB [H, W, 3] or grayscale [H, W] uint8 image as grayscale; DataError naming `name` otherwise."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3))):
        raise DataError(f"{name}: expected a uint8 image [H, W, 3] or [H, W], got {image.dtype} {list(image.shape)}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if image.shape[2] == 1:
        return np.ascontiguousarray(image[..., 0])
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def check_options(ratio: float, max_features: int) -> None:
    """ConfigError unless ratio is in (0, 1] and max_features an integer >= 2."""
    if isinstance(ratio, bool) or not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise ConfigError(f"ratio must be a number in (0, 1], got {ratio!r}")
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 2:
        raise ConfigError(f"max_features must be an integer >= 2, got {max_features!r}")


def sift_features(image, max_features: int, name: str = "image") -> Features:
    """SIFT on the grayscale image, at most `max_features` of the strongest keypoints."""
    import cv2

    gray = _gray(image, name)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=int(max_features)).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:  # a featureless image: SIFT finds nothing
        return Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    points = np.array([keypoint.pt for keypoint in keypoints], np.float32).reshape(-1, 2)
    return Features(points, descriptors.astype(np.float32))


def ratio_matches(a: Features, b: Features, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force L2 2-nearest-neighbour matches from a to b kept by Lowe's ratio test."""
    import cv2

    empty = np.zeros((0, 2), np.float64)
    if len(a.descriptors) == 0 or len(b.descriptors) < 2:  # the ratio test needs two candidates in b
        return empty, empty.copy()
    candidates = cv2.BFMatcher(cv2.NORM_L2).knnMatch(a.descriptors, b.descriptors, k=2)
    kept = [pair[0] for pair in candidates if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance]
    if not kept:
        return empty, empty.copy()
    index_a = np.array([m.queryIdx for m in kept])
    index_b = np.array([m.trainIdx for m in kept])
    return a.points[index_a].astype(np.float64), b.points[index_b].astype(np.float64)


def match_features(image_a, image_b, ratio: float = 0.75, max_features: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches between two uint8 images (RGB [H, W, 3] or grayscale [H, W]).

    Returns (points_a [M, 2], points_b [M, 2]) float64 pixels (OpenCV: the top-left pixel centre is
    (0, 0)); row i of each is one match. Matching is brute-force L2 with k = 2 and Lowe's ratio test
    (the best match must be closer than `ratio` times the second best), so it is deterministic.
    Featureless images give M = 0.
    """
    check_options(ratio, max_features)
    return ratio_matches(sift_features(image_a, max_features, "image_a"),
                         sift_features(image_b, max_features, "image_b"), ratio)


# ---------------------------------------------------------------- Sampson error


def sampson_error(F, points_a, points_b) -> np.ndarray:
    """First-order geometric error [M] of matches under F (x_b^T F x_a = 0), in pixels.

    This is the square root of the Sampson distance (x_b^T F x_a)^2 / (|(F x_a)_12|^2 + |(F^T x_b)_12|^2):
    to first order, the smallest total movement sqrt(|da|^2 + |db|^2) of the two points that puts them
    on each other's epipolar lines. So a match whose point b lies d pixels off its epipolar line scores
    d |(F x_a)_12| / sqrt(|(F x_a)_12|^2 + |(F^T x_b)_12|^2): d / sqrt(2) when both views see the
    lines at the same scale (moving both points d / 2 is cheaper than moving one by d), at most d.
    """
    F = np.asarray(F, np.float64)
    if F.shape != (3, 3) or not np.all(np.isfinite(F)):
        raise DataError(f"F: expected a finite 3x3 matrix, got shape {list(F.shape)}")
    points_a, points_b = (np.asarray(p, np.float64) for p in (points_a, points_b))
    for name, points in (("points_a", points_a), ("points_b", points_b)):
        if points.ndim != 2 or points.shape[1] != 2:
            raise DataError(f"{name}: expected pixels [M, 2], got shape {list(points.shape)}")
    if len(points_a) != len(points_b):
        raise DataError(f"points_a has {len(points_a)} points, points_b {len(points_b)}: they must pair up")
    F = F / max(np.linalg.norm(F), np.finfo(np.float64).tiny)  # scale-free, and no overflow for huge F
    xa = np.concatenate([points_a, np.ones((len(points_a), 1))], axis=1)
    xb = np.concatenate([points_b, np.ones((len(points_b), 1))], axis=1)
    line_b = xa @ F.T  # epipolar line of x_a in image b
    line_a = xb @ F    # epipolar line of x_b in image a
    residual = np.sum(xb * line_b, axis=1)
    gradient = line_b[:, 0] ** 2 + line_b[:, 1] ** 2 + line_a[:, 0] ** 2 + line_a[:, 1] ** 2
    # Both lines vanish only when both points sit at their epipoles, where any match is consistent.
    return np.abs(residual) / np.sqrt(np.maximum(gradient, np.finfo(np.float64).tiny))
