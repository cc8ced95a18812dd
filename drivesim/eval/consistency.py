"""Geometric consistency of multi-camera video, with no learned weights: SIFT matches scored by
their Sampson error under a fundamental matrix.

Two metrics, after the cross-view / temporal Sampson errors Cosmos reports (there with learned
matchers; here OpenCV SIFT, so the numbers are comparable between our own runs, not with theirs):

- CSE (cross-view Sampson error): neighbouring cameras of a rig that overlap are matched frame by
  frame, and the matches are scored under F from the *calibration*. Views that do not agree with
  the rig they claim to come from (misplaced content, wrong camera, warped geometry) score high.
- TSE (temporal Sampson error): consecutive frames of one camera are matched, F is fitted with
  RANSAC, and *all* ratio-test matches are scored under it. A rigid world seen by a moving camera
  always obeys some F, so consistent video scores low; wobbling or unrelated frames score high.

Both run on plain arrays, and `consistency_report` runs them on a clip of a store, so generated
rollouts (rollout.zarr) and real or ground-truth clips (an ingested store) get the same numbers.
Units are pixels of the images given. Pairs with too few matches, or whose F OpenCV's solvers fail
on (degenerate matches: see failures.py), are skipped and counted; when nothing could be measured
the values are NaN and "note" says why, so blank, repeated or noise frames never raise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from drivesim import geometry, rigs
from drivesim.errors import ConfigError, DataError
from drivesim.eval.camera_pairs import check_pairs, overlapping_pairs, rig_pairs, view_index
from drivesim.eval.failures import describe, pair_failures

__all__ = ["MIN_MATCHES", "consistency_report", "cross_view_sampson", "match_features", "sampson_error",
           "temporal_sampson"]

MIN_MATCHES = 8  # the fewest matches that pin down F (8-point algorithm); fewer: skipped, not scored
RANSAC_THRESHOLD_PX = 1.0
RANSAC_CONFIDENCE = 0.999
# Cross-view matching looks only where the other view looks, widened by this fraction of the image width:
# near points sit off their position at infinity by parallax (f * baseline / depth; 0.1 W is depth ~4 m
# for the nuScenes rig's 0.5 m between neighbours).
OVERLAP_MARGIN = 0.1


# ---------------------------------------------------------------- features and matches


@dataclass(frozen=True)
class _Features:
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


def _check_options(ratio: float, max_features: int) -> None:
    if isinstance(ratio, bool) or not (isinstance(ratio, (int, float)) and 0 < ratio <= 1):
        raise ConfigError(f"ratio must be a number in (0, 1], got {ratio!r}")
    if isinstance(max_features, bool) or not isinstance(max_features, (int, np.integer)) or max_features < 2:
        raise ConfigError(f"max_features must be an integer >= 2, got {max_features!r}")


def _features(image, max_features: int, name: str = "image") -> _Features:
    """SIFT on the grayscale image, at most `max_features` of the strongest keypoints."""
    import cv2

    gray = _gray(image, name)
    keypoints, descriptors = cv2.SIFT_create(nfeatures=int(max_features)).detectAndCompute(gray, None)
    if descriptors is None or not keypoints:  # a featureless image: SIFT finds nothing
        return _Features(np.zeros((0, 2), np.float32), np.zeros((0, 128), np.float32))
    points = np.array([keypoint.pt for keypoint in keypoints], np.float32).reshape(-1, 2)
    return _Features(points, descriptors.astype(np.float32))


def _match(a: _Features, b: _Features, ratio: float) -> tuple[np.ndarray, np.ndarray]:
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
    _check_options(ratio, max_features)
    return _match(_features(image_a, max_features, "image_a"), _features(image_b, max_features, "image_b"), ratio)


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


# ---------------------------------------------------------------- accumulating measurements


@dataclass
class _Tally:
    """Per-(frame, pair) medians and all match errors of one view pair or camera."""

    medians: list[float] = field(default_factory=list)
    errors: list[np.ndarray] = field(default_factory=list)
    inlier_ratios: list[float] = field(default_factory=list)
    skipped: int = 0
    solver_errors: list[str] = field(default_factory=list)  # of the skipped, what the solver raised on each

    def add(self, errors: np.ndarray, inlier_ratio: float | None = None) -> None:
        self.medians.append(float(np.median(errors)))
        self.errors.append(errors)
        if inlier_ratio is not None:
            self.inlier_ratios.append(inlier_ratio)

    def summary(self, headline: str, with_inliers: bool) -> dict:
        pooled = np.concatenate(self.errors) if self.errors else np.zeros(0)
        out = {headline: float(np.mean(self.medians)) if self.medians else math.nan,
               "median": float(np.median(pooled)) if len(pooled) else math.nan,
               "mean": float(np.mean(pooled)) if len(pooled) else math.nan,
               "matches": int(len(pooled)), "measured": len(self.medians), "skipped": self.skipped}
        if with_inliers:
            out["inlier_ratio"] = float(np.mean(self.inlier_ratios)) if self.inlier_ratios else math.nan
            out["solver_errors"] = len(self.solver_errors)
            out["solver_error"] = self.solver_errors[0] if self.solver_errors else None
        return out


def _report(tallies: dict[str, _Tally], group: str, headline: str, with_inliers: bool, empty_note: str) -> dict:
    """Overall numbers (over every measured frame of every pair) plus the same per pair or camera."""
    total = _Tally()
    for tally in tallies.values():
        total.medians += tally.medians
        total.errors += tally.errors
        total.inlier_ratios += tally.inlier_ratios
        total.skipped += tally.skipped
        total.solver_errors += tally.solver_errors
    out = {**total.summary(headline, with_inliers), "unit": "px",
           group: {key: tally.summary(headline, with_inliers) for key, tally in tallies.items()}}
    if not tallies:
        out["note"] = empty_note
    elif not total.medians:
        no_fit = " or no RANSAC fit (OpenCV failed on it, or found none)" if with_inliers else ""
        out["note"] = (f"nothing measured: all {total.skipped} image pairs had fewer than {MIN_MATCHES} SIFT "
                       f"matches (blank, featureless or unrelated images){no_fit}")
    else:
        out["note"] = None
    return out


# ---------------------------------------------------------------- input checks


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 5 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise DataError(f"frames: expected uint8 [F, V, H, W, 3], none of them 0, got {frames.dtype} "
                        f"{list(frames.shape)}")
    return frames


def _check_frame_step(frame_step) -> int:
    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise ConfigError(f"frame_step must be an integer >= 1, got {frame_step!r}")
    return int(frame_step)


def _camera_names(cameras: Sequence[str] | None, views: int) -> list[str]:
    if cameras is None:
        return [str(v) for v in range(views)]
    cameras = [str(c) for c in cameras]
    if len(cameras) != views:
        raise DataError(f"cameras: {len(cameras)} names for {views} views")
    return cameras


def _check_calibration(intrinsics, ego_from_cam, views: int) -> tuple[np.ndarray, np.ndarray]:
    intrinsics = np.asarray(intrinsics, np.float64)
    ego_from_cam = np.asarray(ego_from_cam, np.float64)
    if intrinsics.shape != (views, 3, 3) or not np.all(np.isfinite(intrinsics)):
        raise DataError(f"intrinsics: expected finite [{views}, 3, 3] for {views} views, got {list(intrinsics.shape)}")
    if ego_from_cam.shape != (views, 4, 4) or not np.all(np.isfinite(ego_from_cam)):
        raise DataError(f"ego_from_cam: expected finite [{views}, 4, 4] for {views} views, "
                        f"got {list(ego_from_cam.shape)}")
    return intrinsics, ego_from_cam


# ---------------------------------------------------------------- what calibration says about a view pair


@dataclass(frozen=True)
class _CrossViews:
    """The view pairs to compare, with what calibration says about each: F [P, 3, 3] (x_b^T F x_a = 0),
    the rotation cam_b_from_cam_a [P, 3, 3], and the intrinsics, image size and margin for `overlap`."""

    pairs: list[tuple[int, int]]
    fundamentals: np.ndarray
    rotations: np.ndarray
    intrinsics: np.ndarray
    size: tuple[int, int]
    margin_px: float | None

    def _sees(self, points: np.ndarray, k_from: np.ndarray, k_to: np.ndarray, to_from: np.ndarray) -> np.ndarray:
        """Which pixels of one view the other view sees, for scene points at infinity, widened by the margin."""
        rays = np.concatenate([points, np.ones((len(points), 1))], axis=1) @ np.linalg.inv(k_from).T @ to_from.T
        pixels = rays @ k_to.T
        ahead = pixels[:, 2] > 1e-9
        depth = np.where(ahead, pixels[:, 2], 1.0)
        u, v = pixels[:, 0] / depth, pixels[:, 1] / depth
        (width, height), margin = self.size, self.margin_px
        return ahead & (u > -margin) & (u < width - 1 + margin) & (v > -margin) & (v < height - 1 + margin)

    def overlap(self, p: int, a: _Features, b: _Features) -> tuple[_Features, _Features]:
        """The features of pair p's two views that lie where the other view also looks.

        Only there can the views show the same thing; matching the whole images lets repeated
        texture (rows of windows, lane marks) match across unrelated parts and swamp the median.
        """
        if self.margin_px is None:
            return a, b
        i, j = self.pairs[p]
        rotation = self.rotations[p]
        keep_a = self._sees(a.points, self.intrinsics[i], self.intrinsics[j], rotation)
        keep_b = self._sees(b.points, self.intrinsics[j], self.intrinsics[i], rotation.T)
        return (_Features(a.points[keep_a], a.descriptors[keep_a]),
                _Features(b.points[keep_b], b.descriptors[keep_b]))


def _cross_views(frames: np.ndarray, intrinsics, ego_from_cam, pairs, cameras: list[str],
                 overlap_margin: float | None) -> _CrossViews:
    """Checked pairs (default: those whose views overlap) with their calibrated F and rotations."""
    if overlap_margin is not None and (isinstance(overlap_margin, bool) or not isinstance(overlap_margin, (int, float))
                                       or not overlap_margin >= 0):
        raise ConfigError(f"overlap_margin must be None or a fraction of the image width >= 0, got {overlap_margin!r}")
    intrinsics, ego_from_cam = _check_calibration(intrinsics, ego_from_cam, frames.shape[1])
    height, width = frames.shape[2:4]
    pairs = check_pairs(overlapping_pairs(intrinsics, ego_from_cam, width) if pairs is None else pairs, cameras)
    if pairs:
        a, b = (np.array(side) for side in zip(*pairs))
        cam_b_from_cam_a = geometry.compose(geometry.invert(ego_from_cam[b]), ego_from_cam[a])
        fundamentals = geometry.fundamental_matrix(intrinsics[a], intrinsics[b], cam_b_from_cam_a)
        rotations = cam_b_from_cam_a[:, :3, :3]
    else:
        fundamentals = rotations = np.zeros((0, 3, 3))
    margin = None if overlap_margin is None else float(overlap_margin) * width
    return _CrossViews(pairs, fundamentals, rotations, intrinsics, (int(width), int(height)), margin)


# ---------------------------------------------------------------- the measurement pass


def _frame_features(frames: np.ndarray, times: range, views: list[int],
                    max_features: int) -> Iterator[dict[int, _Features]]:
    """Features of the needed views, one frame at a time: memory stays one frame's worth, however long the clip."""
    for t in times:
        yield {v: _features(frames[t, v], max_features, f"frames[{t}, {v}]") for v in views}


def _pair_key(cameras: list[str], a: int, b: int) -> str:
    return f"{cameras[a]}-{cameras[b]}"


def _temporal_errors(previous: _Features, current: _Features, ratio: float):
    """(errors of all ratio-test matches under the RANSAC F, inlier ratio), or None when F cannot be fitted;
    may raise one of `pair_failures()` on degenerate matches."""
    import cv2

    points_a, points_b = _match(previous, current, ratio)
    if len(points_a) < MIN_MATCHES:
        return None
    F, mask = cv2.findFundamentalMat(points_a, points_b, cv2.FM_RANSAC, RANSAC_THRESHOLD_PX, RANSAC_CONFIDENCE)
    if F is None or F.shape != (3, 3) or mask is None or not np.all(np.isfinite(F)):
        return None  # degenerate matches (all on a line, say): no F to score them under
    return sampson_error(F, points_a, points_b), float(mask.ravel().astype(bool).mean())


def _measure(frames: np.ndarray, cameras: list[str], frame_step: int, ratio: float, max_features: int,
             cross: _CrossViews | None, temporal: list[int] | None) -> tuple[dict[str, _Tally], dict[str, _Tally]]:
    """One pass over the sampled frames: cross-view tallies for the pairs of `cross`, temporal tallies
    for the cameras in `temporal`, each image's SIFT computed once for both."""
    pairs = cross.pairs if cross is not None else []
    cameras_t = temporal or []
    cross_tallies = {_pair_key(cameras, a, b): _Tally() for a, b in pairs}
    temporal_tallies = {cameras[v]: _Tally() for v in cameras_t}
    views = sorted({v for pair in pairs for v in pair} | set(cameras_t))
    previous: dict[int, _Features] | None = None
    for features in _frame_features(frames, range(0, len(frames), frame_step), views, max_features):
        for p, (a, b) in enumerate(pairs):
            tally = cross_tallies[_pair_key(cameras, a, b)]
            points_a, points_b = _match(*cross.overlap(p, features[a], features[b]), ratio)
            if len(points_a) < MIN_MATCHES:
                tally.skipped += 1
            else:
                tally.add(sampson_error(cross.fundamentals[p], points_a, points_b))
        for v in cameras_t if previous is not None else []:
            tally = temporal_tallies[cameras[v]]
            try:
                measured = _temporal_errors(previous[v], features[v], ratio)
            except pair_failures() as error:  # a pair OpenCV cannot fit F to is skipped, like one without F
                tally.solver_errors.append(describe(error))
                measured = None
            if measured is None:
                tally.skipped += 1
            else:
                tally.add(*measured)
        previous = features
    return cross_tallies, temporal_tallies


# ---------------------------------------------------------------- the two metrics


def _cross_note(views: int) -> str:
    return (f"no camera pairs to compare: the {views} view(s) have no neighbours whose fields of view overlap"
            if views > 1 else "one view only: nothing to compare across views")


def cross_view_sampson(frames, intrinsics, ego_from_cam, pairs=None, frame_step: int = 1,
                       cameras: Sequence[str] | None = None, ratio: float = 0.75, max_features: int = 2000,
                       overlap_margin: float | None = OVERLAP_MARGIN) -> dict:
    """Cross-view Sampson error (CSE) of multi-camera video against its calibration.

    frames uint8 [F, V, H, W, 3]; intrinsics [V, 3, 3] at that image size; ego_from_cam [V, 4, 4].
    pairs: view pairs (a, b), by index or camera name; None: `overlapping_pairs` of the calibration
    (for a Rig, `rig_pairs(rig)` gives its neighbours). Every `frame_step`-th frame, the two views of
    each pair are SIFT-matched and the matches scored by `sampson_error` under the calibrated F
    (cam_b_from_cam_a = inv(ego_from_cam[b]) ego_from_cam[a]). Only features where the other view
    also looks take part (rays at infinity, widened by overlap_margin x image width; None: the whole
    images), so repeated texture elsewhere cannot match. Frames with fewer than MIN_MATCHES matches
    are skipped.

    Returns {"cse": mean over measured (pair, frame) of the median match error, "median"/"mean": over
    all matches pooled, "matches", "measured", "skipped", "unit": "px", "pairs": the same per pair
    keyed "CAM_A-CAM_B", "note": None, or why the values are NaN}.
    """
    _check_options(ratio, max_features)
    frames = _check_frames(frames)
    names = _camera_names(cameras, frames.shape[1])
    cross = _cross_views(frames, intrinsics, ego_from_cam, pairs, names, overlap_margin)
    tallies, _ = _measure(frames, names, _check_frame_step(frame_step), ratio, max_features, cross, None)
    return _report(tallies, "pairs", "cse", False, _cross_note(frames.shape[1]))


def _temporal_setup(frames: np.ndarray, camera_indices, cameras: list[str]) -> list[int]:
    if camera_indices is None:
        return list(range(frames.shape[1]))
    views = [view_index(v, cameras, f"camera_indices[{i}]") for i, v in enumerate(camera_indices)]
    if not views or len(set(views)) != len(views):
        raise ConfigError(f"camera_indices must name each camera to measure once, got {list(camera_indices)!r}")
    return views


def _temporal_note(frames: np.ndarray, frame_step: int) -> str:
    return f"{len(frames)} frame(s) at frame_step {frame_step}: no consecutive frames to compare"


def temporal_sampson(frames, camera_indices=None, frame_step: int = 1, cameras: Sequence[str] | None = None,
                     ratio: float = 0.75, max_features: int = 2000) -> dict:
    """Temporal Sampson error (TSE): how well consecutive frames of each camera obey one epipolar geometry.

    frames uint8 [F, V, H, W, 3] (or [F, H, W, 3] for one camera); camera_indices: views to measure
    (indices or names), all by default. Frames t and t + frame_step are SIFT-matched, F is fitted with
    RANSAC (1 px, confidence 0.999), and the median Sampson error of *all* ratio-test matches under it
    is taken, so frames no rigid motion explains score high even though RANSAC found some inliers.
    Frame pairs with fewer than MIN_MATCHES matches, or no F (none found, or OpenCV failed), are skipped.

    Returns {"tse": mean over measured (camera, frame pair) of the median error, "median"/"mean" over
    all matches pooled, "inlier_ratio": mean RANSAC inlier fraction, "matches", "measured",
    "skipped", "solver_errors" (of the skipped, pairs OpenCV failed on), "solver_error" (the first
    such error, or None), "unit": "px", "cameras": the same per camera, "note": None, or why the
    values are NaN}.
    """
    _check_options(ratio, max_features)
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[:, None]
    frames = _check_frames(frames)
    step = _check_frame_step(frame_step)
    names = _camera_names(cameras, frames.shape[1])
    _, tallies = _measure(frames, names, step, ratio, max_features, None,
                          _temporal_setup(frames, camera_indices, names))
    return _report(tallies if len(range(0, len(frames), step)) > 1 else {}, "cameras", "tse", True,
                   _temporal_note(frames, step))


# ---------------------------------------------------------------- on a stored clip


def _resolve_store(store_path) -> Path:
    """A store folder, or a rollout folder holding rollout.zarr."""
    path = Path(store_path)
    if not (path / "zarr.json").is_file() and (path / "rollout.zarr").is_dir():
        return path / "rollout.zarr"
    return path


def consistency_report(store_path: str | os.PathLike, clip_id: str | None = None, frame_step: int = 1,
                       rig: str | rigs.Rig | None = None, ratio: float = 0.75, max_features: int = 2000,
                       overlap_margin: float | None = OVERLAP_MARGIN) -> dict:
    """CSE and TSE of one clip of a clip store: a rollout's rollout.zarr (or its folder) or an ingested store.

    clip_id: None takes the store's first clip (a rollout store has exactly one). rig: a rig name or
    Rig whose `neighbours` choose the camera pairs (matched by camera name); None pairs the views whose
    fields of view overlap, from the clip's own calibration. SIFT runs once per image for both metrics.

    Returns {"store", "clip_id", "cameras", "frames", "size": [W, H], "frame_step",
    "cross_view": as cross_view_sampson, "temporal": as temporal_sampson}.
    """
    from drivesim.data.store import open_store, read_clip, stored_clip_ids

    _check_options(ratio, max_features)
    step = _check_frame_step(frame_step)
    path = _resolve_store(store_path)
    root = open_store(path)
    clips = stored_clip_ids(path)
    if clip_id is None:
        if not clips:
            raise DataError(f"store {path}: has no clips")
        clip_id = clips[0]
    elif clip_id not in clips:
        shown = ", ".join(clips[:5]) + (", ..." if len(clips) > 5 else "")
        raise DataError(f"store {path}: no clip {clip_id!r}; clips: {shown or '(none)'}")
    clip = read_clip(root, clip_id, ("frames", "intrinsics", "ego_from_cam"))
    frames = _check_frames(clip["frames"])
    cameras = list(clip["attrs"].get("cameras") or root.attrs.get("settings", {}).get("cameras")
                   or [str(v) for v in range(frames.shape[1])])
    names = _camera_names(cameras, frames.shape[1])
    if rig is not None:
        rig = rig if isinstance(rig, rigs.Rig) else rigs.load_rig(rig)
        pairs = rig_pairs(rig, names)
    else:
        pairs = None
    cross = _cross_views(frames, clip["intrinsics"], clip["ego_from_cam"], pairs, names, overlap_margin)
    temporal = list(range(frames.shape[1]))
    cross_tallies, temporal_tallies = _measure(frames, names, step, ratio, max_features, cross, temporal)
    enough_frames = len(range(0, len(frames), step)) > 1
    return {"store": str(path), "clip_id": clip_id, "cameras": names, "frames": int(len(frames)),
            "size": [int(frames.shape[3]), int(frames.shape[2])], "frame_step": step,
            "cross_view": _report(cross_tallies, "pairs", "cse", False, _cross_note(frames.shape[1])),
            "temporal": _report(temporal_tallies if enough_frames else {}, "cameras", "tse", True,
                                _temporal_note(frames, step))}
