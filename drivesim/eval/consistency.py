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
Each returns a dataclass with the means and, per camera pair or camera, the series they are the mean
of (one value per frame, or frame pair), all from one pass. Units are pixels of the images given.
Pairs with too few matches, or whose F OpenCV's solvers fail on (degenerate matches: see
failures.py), are skipped and counted (NaN in the series); when nothing could be measured the values
are NaN and `note` says why, so blank, repeated or noise frames never raise. SIFT and the Sampson
error are matching.py's.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from drivesim import rigs
from drivesim.errors import ConfigError, DataError
from drivesim.eval.camera_pairs import CalibratedPairs, calibrated_pairs, rig_pairs, view_index
from drivesim.eval.failures import describe, pair_failures
from drivesim.eval.matching import Features, check_options, ratio_matches, sampson_error, sift_features

__all__ = ["MIN_MATCHES", "CameraTSE", "ClipConsistency", "CrossViewConsistency", "CrossViewErrors", "PairCSE",
           "SampsonErrors", "TemporalConsistency", "TemporalErrors", "consistency_report", "cross_view_sampson",
           "temporal_sampson"]

MIN_MATCHES = 8  # the fewest matches that pin down F (8-point algorithm); fewer: skipped, not scored
RANSAC_THRESHOLD_PX = 1.0
RANSAC_CONFIDENCE = 0.999
# Cross-view matching looks only where the other view looks, widened by this fraction of the image width:
# near points sit off their position at infinity by parallax (f * baseline / depth; 0.1 W is depth ~4 m
# for the nuScenes rig's 0.5 m between neighbours).
OVERLAP_MARGIN = 0.1


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class SampsonErrors:
    """Match errors (px) pooled over every scored frame (or frame pair), and how many were scored."""

    median: float   # of all matches pooled
    mean: float
    matches: int
    measured: int   # frames (frame pairs) scored
    skipped: int    # frames (frame pairs) with fewer than MIN_MATCHES matches, or no F


@dataclass(frozen=True)
class CrossViewErrors(SampsonErrors):
    cse: float  # the mean over measured frames of their median match error


@dataclass(frozen=True)
class PairCSE(CrossViewErrors):
    """One camera pair's CSE and its series: per sampled frame the median match error, NaN where skipped."""

    series: list[float]


@dataclass(frozen=True)
class CrossViewConsistency(CrossViewErrors):
    """CSE over every camera pair and sampled frame, and per pair keyed "CAM_A-CAM_B"; `series_frames` is
    the frame of each value of a pair's series; `note`: None, or why the values are NaN."""

    pairs: dict[str, PairCSE]
    series_frames: list[int]
    note: str | None
    unit: str = "px"


@dataclass(frozen=True)
class TemporalErrors(SampsonErrors):
    tse: float                # the mean over measured frame pairs of their median match error
    inlier_ratio: float       # the mean RANSAC inlier fraction
    solver_errors: int        # of the skipped, the pairs OpenCV's solvers failed on
    solver_error: str | None  # the first such failure


@dataclass(frozen=True)
class CameraTSE(TemporalErrors):
    """One camera's TSE and its series: per frame pair (t, t + frame_step) the median match error, NaN
    where skipped."""

    series: list[float]


@dataclass(frozen=True)
class TemporalConsistency(TemporalErrors):
    """TSE over every camera and frame pair, and per camera; `series_frames` is the first frame of each
    pair of a camera's series; `note`: None, or why the values are NaN."""

    cameras: dict[str, CameraTSE]
    series_frames: list[int]
    note: str | None
    unit: str = "px"


@dataclass(frozen=True)
class ClipConsistency:
    """CSE and TSE of one stored clip, measured in one pass (`consistency_report`)."""

    store: str
    clip_id: str
    cameras: list[str]
    frames: int
    size: list[int]  # [W, H]
    frame_step: int
    cross_view: CrossViewConsistency
    temporal: TemporalConsistency


# ---------------------------------------------------------------- accumulating measurements


@dataclass
class _Tally:
    """What one camera pair (CSE) or camera (TSE) measured, frame (pair) by frame (pair)."""

    medians: list[float] = field(default_factory=list)
    series: list[float] = field(default_factory=list)  # the medians in order, NaN for each skipped one
    errors: list[np.ndarray] = field(default_factory=list)
    inlier_ratios: list[float] = field(default_factory=list)
    skipped: int = 0
    solver_errors: list[str] = field(default_factory=list)  # of the skipped, what the solver raised on each

    def add(self, errors: np.ndarray, inlier_ratio: float | None = None) -> None:
        self.medians.append(float(np.median(errors)))
        self.series.append(self.medians[-1])
        self.errors.append(errors)
        if inlier_ratio is not None:
            self.inlier_ratios.append(inlier_ratio)

    def skip(self, solver_error: str | None = None) -> None:
        self.series.append(math.nan)
        self.skipped += 1
        if solver_error is not None:
            self.solver_errors.append(solver_error)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _pooled(tally: _Tally) -> dict:
    pooled = np.concatenate(tally.errors) if tally.errors else np.zeros(0)
    return {"median": float(np.median(pooled)) if len(pooled) else math.nan,
            "mean": float(np.mean(pooled)) if len(pooled) else math.nan,
            "matches": int(len(pooled)), "measured": len(tally.medians), "skipped": tally.skipped}


def _tse_fields(tally: _Tally) -> dict:
    return {**_pooled(tally), "tse": _mean(tally.medians), "inlier_ratio": _mean(tally.inlier_ratios),
            "solver_errors": len(tally.solver_errors),
            "solver_error": tally.solver_errors[0] if tally.solver_errors else None}


def _total(tallies: dict[str, _Tally]) -> _Tally:
    """Every frame of every pair or camera together (no series: they do not line up)."""
    total = _Tally()
    for tally in tallies.values():
        total.medians += tally.medians
        total.errors += tally.errors
        total.inlier_ratios += tally.inlier_ratios
        total.skipped += tally.skipped
        total.solver_errors += tally.solver_errors
    return total


def _note(tallies: dict[str, _Tally], total: _Tally, fitted: bool, empty_note: str) -> str | None:
    """None, or why nothing was measured: `empty_note` when there was nothing to compare."""
    if not tallies:
        return empty_note
    if total.medians:
        return None
    no_fit = " or no RANSAC fit (OpenCV failed on it, or found none)" if fitted else ""
    return (f"nothing measured: all {total.skipped} image pairs had fewer than {MIN_MATCHES} SIFT "
            f"matches (blank, featureless or unrelated images){no_fit}")


def _cross_view_result(tallies: dict[str, _Tally], sampled: list[int], views: int) -> CrossViewConsistency:
    total = _total(tallies)
    pairs = {key: PairCSE(**_pooled(tally), cse=_mean(tally.medians), series=tally.series)
             for key, tally in tallies.items()}
    return CrossViewConsistency(**_pooled(total), cse=_mean(total.medians), pairs=pairs, series_frames=sampled,
                                note=_note(tallies, total, False, _cross_note(views)))


def _temporal_result(tallies: dict[str, _Tally], sampled: list[int], empty_note: str) -> TemporalConsistency:
    """The TSE result; `tallies` is empty when fewer than two frames were sampled."""
    total = _total(tallies)
    cameras = {key: CameraTSE(**_tse_fields(tally), series=tally.series) for key, tally in tallies.items()}
    return TemporalConsistency(**_tse_fields(total), cameras=cameras,
                               series_frames=sampled[:-1] if tallies else [],
                               note=_note(tallies, total, True, empty_note))


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


# ---------------------------------------------------------------- the measurement pass


def _frame_features(frames: np.ndarray, times: list[int], views: list[int],
                    max_features: int) -> Iterator[dict[int, Features]]:
    """Features of the needed views, one frame at a time: memory stays one frame's worth, however long the clip."""
    for t in times:
        yield {v: sift_features(frames[t, v], max_features, f"frames[{t}, {v}]") for v in views}


def _pair_key(cameras: list[str], a: int, b: int) -> str:
    return f"{cameras[a]}-{cameras[b]}"


def _overlapping(cross: CalibratedPairs, p: int, a: Features, b: Features) -> tuple[Features, Features]:
    """The features of pair p's two views that lie where the other view also looks."""
    keep_a, keep_b = cross.overlap(p, a.points, b.points)
    if keep_a is None:
        return a, b
    return Features(a.points[keep_a], a.descriptors[keep_a]), Features(b.points[keep_b], b.descriptors[keep_b])


def _temporal_errors(previous: Features, current: Features, ratio: float):
    """(errors of all ratio-test matches under the RANSAC F, inlier ratio), or None when F cannot be fitted;
    may raise one of `pair_failures()` on degenerate matches."""
    import cv2

    points_a, points_b = ratio_matches(previous, current, ratio)
    if len(points_a) < MIN_MATCHES:
        return None
    F, mask = cv2.findFundamentalMat(points_a, points_b, cv2.FM_RANSAC, RANSAC_THRESHOLD_PX, RANSAC_CONFIDENCE)
    if F is None or F.shape != (3, 3) or mask is None or not np.all(np.isfinite(F)):
        return None  # degenerate matches (all on a line, say): no F to score them under
    return sampson_error(F, points_a, points_b), float(mask.ravel().astype(bool).mean())


def _sampled(frames: np.ndarray, frame_step: int) -> list[int]:
    return list(range(0, len(frames), frame_step))


def _measure(frames: np.ndarray, cameras: list[str], frame_step: int, ratio: float, max_features: int,
             cross: CalibratedPairs | None, temporal: list[int] | None) -> tuple[dict[str, _Tally], dict[str, _Tally]]:
    """One pass over the sampled frames: cross-view tallies for the pairs of `cross`, temporal tallies
    for the cameras in `temporal`, each image's SIFT computed once for both."""
    pairs = cross.pairs if cross is not None else []
    cameras_t = temporal or []
    cross_tallies = {_pair_key(cameras, a, b): _Tally() for a, b in pairs}
    temporal_tallies = {cameras[v]: _Tally() for v in cameras_t}
    views = sorted({v for pair in pairs for v in pair} | set(cameras_t))
    previous: dict[int, Features] | None = None
    for features in _frame_features(frames, _sampled(frames, frame_step), views, max_features):
        for p, (a, b) in enumerate(pairs):
            tally = cross_tallies[_pair_key(cameras, a, b)]
            points_a, points_b = ratio_matches(*_overlapping(cross, p, features[a], features[b]), ratio)
            if len(points_a) < MIN_MATCHES:
                tally.skip()
            else:
                tally.add(sampson_error(cross.fundamentals[p], points_a, points_b))
        for v in cameras_t if previous is not None else []:
            tally = temporal_tallies[cameras[v]]
            try:
                measured = _temporal_errors(previous[v], features[v], ratio)
            except pair_failures() as error:  # a pair OpenCV cannot fit F to is skipped, like one without F
                tally.skip(describe(error))
                continue
            if measured is None:
                tally.skip()
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
                       overlap_margin: float | None = OVERLAP_MARGIN) -> CrossViewConsistency:
    """Cross-view Sampson error (CSE) of multi-camera video against its calibration.

    frames uint8 [F, V, H, W, 3]; intrinsics [V, 3, 3] at that image size; ego_from_cam [V, 4, 4].
    pairs: view pairs (a, b), by index or camera name; None: `overlapping_pairs` of the calibration
    (for a Rig, `rig_pairs(rig)` gives its neighbours). Every `frame_step`-th frame, the two views of
    each pair are SIFT-matched and the matches scored by `sampson_error` under the calibrated F
    (cam_b_from_cam_a = inv(ego_from_cam[b]) ego_from_cam[a]). Only features where the other view
    also looks take part (rays at infinity, widened by overlap_margin x image width; None: the whole
    images), so repeated texture elsewhere cannot match. Frames with fewer than MIN_MATCHES matches
    are skipped.

    Returns cse (the mean over measured (pair, frame) of the median match error), median / mean over
    all matches pooled, matches, measured, skipped, unit "px", pairs (the same per pair keyed
    "CAM_A-CAM_B", with each sampled frame's median in its series), series_frames, and note (None, or
    why the values are NaN).
    """
    check_options(ratio, max_features)
    frames = _check_frames(frames)
    names = _camera_names(cameras, frames.shape[1])
    cross = calibrated_pairs(intrinsics, ego_from_cam, pairs, names, (frames.shape[3], frames.shape[2]),
                             overlap_margin)
    step = _check_frame_step(frame_step)
    tallies, _ = _measure(frames, names, step, ratio, max_features, cross, None)
    return _cross_view_result(tallies, _sampled(frames, step), frames.shape[1])


def _temporal_setup(frames: np.ndarray, camera_indices, cameras: list[str]) -> list[int]:
    if camera_indices is None:
        return list(range(frames.shape[1]))
    views = [view_index(v, cameras, f"camera_indices[{i}]") for i, v in enumerate(camera_indices)]
    if not views or len(set(views)) != len(views):
        raise ConfigError(f"camera_indices must name each camera to measure once, got {list(camera_indices)!r}")
    return views


def _temporal_note(frames: np.ndarray, frame_step: int) -> str:
    return f"{len(frames)} frame(s) at frame_step {frame_step}: no consecutive frames to compare"


def _enough_frames(frames: np.ndarray, frame_step: int) -> bool:
    return len(_sampled(frames, frame_step)) > 1


def temporal_sampson(frames, camera_indices=None, frame_step: int = 1, cameras: Sequence[str] | None = None,
                     ratio: float = 0.75, max_features: int = 2000) -> TemporalConsistency:
    """Temporal Sampson error (TSE): how well consecutive frames of each camera obey one epipolar geometry.

    frames uint8 [F, V, H, W, 3] (or [F, H, W, 3] for one camera); camera_indices: views to measure
    (indices or names), all by default. Frames t and t + frame_step are SIFT-matched, F is fitted with
    RANSAC (1 px, confidence 0.999), and the median Sampson error of *all* ratio-test matches under it
    is taken, so frames no rigid motion explains score high even though RANSAC found some inliers.
    Frame pairs with fewer than MIN_MATCHES matches, or no F (none found, or OpenCV failed), are skipped.

    Returns tse (the mean over measured (camera, frame pair) of the median error), median / mean over
    all matches pooled, inlier_ratio (mean RANSAC inlier fraction), matches, measured, skipped,
    solver_errors (of the skipped, pairs OpenCV failed on), solver_error (the first such error, or
    None), unit "px", cameras (the same per camera, with each frame pair's median in its series),
    series_frames (each pair's first frame), and note (None, or why the values are NaN).
    """
    check_options(ratio, max_features)
    frames = np.asarray(frames)
    if frames.ndim == 4:
        frames = frames[:, None]
    frames = _check_frames(frames)
    step = _check_frame_step(frame_step)
    names = _camera_names(cameras, frames.shape[1])
    _, tallies = _measure(frames, names, step, ratio, max_features, None,
                          _temporal_setup(frames, camera_indices, names))
    return _temporal_result(tallies if _enough_frames(frames, step) else {}, _sampled(frames, step),
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
                       overlap_margin: float | None = OVERLAP_MARGIN) -> ClipConsistency:
    """CSE and TSE of one clip of a clip store: a rollout's rollout.zarr (or its folder) or an ingested store.

    clip_id: None takes the store's first clip (a rollout store has exactly one). rig: a rig name or
    Rig whose `neighbours` choose the camera pairs (matched by camera name); None pairs the views whose
    fields of view overlap, from the clip's own calibration. One pass: SIFT runs once per image for
    both metrics, and each frame pair is fitted once for TSE, its per-pair series and its means alike.
    """
    from drivesim.data.store import open_store, read_clip, stored_clip_ids

    check_options(ratio, max_features)
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
    size = [int(frames.shape[3]), int(frames.shape[2])]
    cross = calibrated_pairs(clip["intrinsics"], clip["ego_from_cam"], pairs, names, tuple(size), overlap_margin)
    cross_tallies, temporal_tallies = _measure(frames, names, step, ratio, max_features, cross,
                                               list(range(frames.shape[1])))
    sampled = _sampled(frames, step)
    return ClipConsistency(str(path), clip_id, names, int(len(frames)), size, step,
                           _cross_view_result(cross_tallies, sampled, frames.shape[1]),
                           _temporal_result(temporal_tallies if _enough_frames(frames, step) else {}, sampled,
                                            _temporal_note(frames, step)))
