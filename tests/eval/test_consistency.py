"""Tests for drivesim.eval.consistency: cross-view and temporal Sampson error on a small synthetic drive,
their per-frame (pair) series measured in the same pass as their means, and the clip-store report."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from drivesim.errors import ConfigError, DataError
from drivesim.eval.consistency import consistency_report, cross_view_sampson, temporal_sampson
from drivesim.eval.matching import match_features

# ---------------------------------------------------------------- a small synthetic drive at SIFT-friendly size


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """`drivesim synth` (front3 rig, 0.5 s, 448x256) ingested as one 7-frame clip: a clip store."""
    from drivesim.data.ingest import IngestConfig, ingest
    from drivesim.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("consistency")
    generate(SynthConfig(out=root / "logs", scenes=1, seconds=0.5, width=448, height=256, fps=12, seed=0,
                         rig="front3"), progress=False)
    ingest(IngestConfig(dataroot=root / "logs", out=root / "store", width=448, height=256, frames=7),
           progress=False)
    return root / "store"


@pytest.fixture(scope="module")
def clip(drive) -> dict:
    from drivesim.data.store import open_store, read_clip, stored_clip_ids

    (clip_id,) = stored_clip_ids(drive)
    return read_clip(open_store(drive), clip_id, ("frames", "intrinsics", "ego_from_cam"))


@pytest.fixture(scope="module")
def report(drive) -> dict:
    return consistency_report(drive)


def test_report_of_a_real_clip_is_small(report):
    assert report.cameras == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    assert report.frames == 7 and report.size == [448, 256]
    cross, temporal = report.cross_view, report.temporal
    assert list(cross.pairs) == ["CAM_FRONT_LEFT-CAM_FRONT", "CAM_FRONT-CAM_FRONT_RIGHT"]
    assert cross.note is None and cross.measured >= 10 and cross.matches >= 100
    assert cross.cse < 0.5, cross
    assert all(pair.cse < 0.75 for pair in cross.pairs.values()), cross
    assert temporal.note is None and temporal.measured == 18 and temporal.skipped == 0
    assert temporal.tse < 0.5 and temporal.inlier_ratio > 0.5, temporal
    json.dumps(dataclasses.asdict(report))  # plain types: the report goes into JSON files as it is


def test_each_series_holds_the_values_its_mean_is_taken_over(clip, report):
    temporal, cross = report.temporal, report.cross_view
    assert temporal.series_frames == [0, 1, 2, 3, 4, 5] and cross.series_frames == list(range(7))
    everything = []
    for camera, measured in temporal.cameras.items():
        assert len(measured.series) == 6 and not any(math.isnan(v) for v in measured.series), camera
        assert measured.tse == np.mean(measured.series), camera  # the same values, in the same order
        everything += measured.series
    assert temporal.tse == pytest.approx(np.mean(everything), rel=1e-12)
    for key, pair in cross.pairs.items():
        assert len(pair.series) == 7 and pair.cse == pytest.approx(np.nanmean(pair.series), rel=1e-12), key
    # A series value is that frame pair's TSE, as measuring the pair alone gives it.
    alone = temporal_sampson(clip["frames"][[2, 3], 1:2], cameras=["CAM_FRONT"])
    assert alone.tse == temporal.cameras["CAM_FRONT"].series[2]


def test_cross_view_error_is_large_when_views_are_swapped(clip, report):
    frames, names = clip["frames"], ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    swapped = frames[:, [2, 1, 0]]  # left and right corner cameras trade images
    result = cross_view_sampson(swapped, clip["intrinsics"], clip["ego_from_cam"], cameras=names)
    assert result.note is None and result.measured >= 1
    assert result.cse > 10 * report.cross_view.cse and result.cse > 3.0, result
    # The middle view 4 rows low, as if its camera were tilted: the same content still matches, now off
    # the nearly horizontal epipolar lines by about 4 px, which reads as about 4 / sqrt(2).
    shifted = frames[:3].copy()
    shifted[:, 1] = np.roll(frames[:3, 1], 4, axis=1)
    result = cross_view_sampson(shifted, clip["intrinsics"], clip["ego_from_cam"])
    assert result.skipped == 0 and 0.5 * 4 / math.sqrt(2) < result.cse < 4.0, result
    # Named pairs and index pairs are the same pairs.
    by_name = cross_view_sampson(frames[:2], clip["intrinsics"], clip["ego_from_cam"], cameras=names,
                                 pairs=[("CAM_FRONT_LEFT", "CAM_FRONT")])
    by_index = cross_view_sampson(frames[:2], clip["intrinsics"], clip["ego_from_cam"], cameras=names,
                                  pairs=[(0, 1)])
    assert by_name == by_index and list(by_name.pairs) == ["CAM_FRONT_LEFT-CAM_FRONT"]


def test_temporal_error_is_large_for_unrelated_or_wobbling_frames(clip, report):
    import cv2

    frames = clip["frames"][:4, 1:]  # 4 frames of two cameras keep it quick
    unrelated = frames.copy()
    unrelated[1::2] = frames[1::2, ::-1]  # every other frame from the other camera
    result = temporal_sampson(unrelated)
    real = report.temporal.tse
    assert result.note is None and result.tse > 5 * real, (result, real)
    # A non-rigid wobble, different every frame: no single epipolar geometry explains it.
    height, width = frames.shape[2:4]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)

    def wobble(image, phase):
        return cv2.remap(image, cols + 3 * np.sin(rows / 10 + phase), rows + 3 * np.sin(cols / 15 + phase),
                         cv2.INTER_LINEAR)

    wobbling = np.stack([[wobble(frames[t, v], 1.7 * t) for v in range(2)] for t in range(len(frames))])
    result = temporal_sampson(wobbling, cameras=["CAM_FRONT", "CAM_FRONT_RIGHT"])
    assert result.note is None and result.tse > 5 * real, (result, real)
    assert result.inlier_ratio < report.temporal.inlier_ratio
    assert set(result.cameras) == {"CAM_FRONT", "CAM_FRONT_RIGHT"}


def test_noise_frames_have_no_matches_and_say_so():
    noise = np.random.default_rng(0).integers(0, 256, (3, 1, 128, 160, 3), dtype=np.uint8)
    result = temporal_sampson(noise)
    assert math.isnan(result.tse) and result.skipped == 2 and "fewer than 8" in result.note


def test_a_repeated_frame_or_repeated_noise_is_measured_without_raising(clip):
    # Every point matches itself: degenerate for F, and which OpenCV versions raise on it changes.
    for frame in (clip["frames"][0, 1], np.random.default_rng(0).integers(0, 256, (128, 160, 3), dtype=np.uint8)):
        result = temporal_sampson(np.repeat(frame[None, None], 3, axis=0))
        assert result.measured + result.skipped == 2


def test_an_opencv_error_skips_the_pair_and_is_counted(clip, monkeypatch):
    import cv2

    def fail(*args, **kwargs):
        raise cv2.error("OpenCV(test) findFundamentalMat: (-215:Assertion failed) in function 'solvePoly'")

    monkeypatch.setattr(cv2, "findFundamentalMat", fail)
    result = temporal_sampson(clip["frames"][:3, 1:], cameras=["CAM_FRONT", "CAM_FRONT_RIGHT"])
    assert math.isnan(result.tse) and result.skipped == 4 and result.solver_errors == 4
    assert result.solver_error.startswith("cv2.error: OpenCV(test) findFundamentalMat")
    assert "OpenCV failed on it" in result.note
    assert result.cameras["CAM_FRONT"].solver_errors == 2
    series = result.cameras["CAM_FRONT"].series
    assert len(series) == 2 and all(math.isnan(v) for v in series)  # each skipped pair is NaN in the series
    # Cross-view scores under the calibration's F, no fit: it still measures.
    cross = cross_view_sampson(clip["frames"][:1], clip["intrinsics"], clip["ego_from_cam"])
    assert cross.note is None and math.isfinite(cross.cse)


def test_blank_frames_give_nan_and_a_note(clip):
    blank = np.zeros((2, 3, 64, 96, 3), np.uint8)
    points_a, points_b = match_features(blank[0, 0], blank[0, 1])
    assert points_a.shape == points_b.shape == (0, 2)
    cross = cross_view_sampson(blank, clip["intrinsics"], clip["ego_from_cam"])
    temporal = temporal_sampson(np.full((3, 2, 64, 96, 3), 128, np.uint8))
    for result, key in ((cross, "cse"), (temporal, "tse")):
        assert math.isnan(getattr(result, key)) and math.isnan(result.median) and result.matches == 0
        assert result.measured == 0 and result.skipped > 0 and "featureless" in result.note
    assert math.isnan(temporal.inlier_ratio)
    one_frame = temporal_sampson(blank[:1])
    assert math.isnan(one_frame.tse) and "no consecutive frames" in one_frame.note
    assert one_frame.cameras == {} and one_frame.series_frames == []
    one_view = cross_view_sampson(blank[:, :1], clip["intrinsics"][:1], clip["ego_from_cam"][:1])
    assert math.isnan(one_view.cse) and "one view" in one_view.note


def test_report_reads_a_rollout_folder_and_checks_its_inputs(drive, clip, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "rollout.zarr").symlink_to(drive, target_is_directory=True)
    result = consistency_report(run, frame_step=6, rig="front3")  # frames 0 and 6 only
    assert result.frame_step == 6 and result.temporal.measured == 3
    assert result.temporal.series_frames == [0] and result.cross_view.series_frames == [0, 6]
    assert list(result.cross_view.pairs) == ["CAM_FRONT_LEFT-CAM_FRONT", "CAM_FRONT-CAM_FRONT_RIGHT"]
    with pytest.raises(DataError, match="no clip 'nope'"):
        consistency_report(drive, clip_id="nope")
    with pytest.raises(DataError, match="not a clip store"):
        consistency_report(tmp_path)
    with pytest.raises(ConfigError, match="frame_step"):
        consistency_report(drive, frame_step=0)
    frames, k, pose = clip["frames"][:1], clip["intrinsics"], clip["ego_from_cam"]
    with pytest.raises(ConfigError, match=r"pairs\[0\]"):
        cross_view_sampson(frames, k, pose, pairs=[(0, 0)])
    with pytest.raises(ConfigError, match="CAM_BACK"):
        cross_view_sampson(frames, k, pose, pairs=[("CAM_BACK", "CAM_FRONT")],
                           cameras=["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"])
    with pytest.raises(DataError, match="intrinsics"):
        cross_view_sampson(frames, k[:2], pose)
    with pytest.raises(DataError, match="frames"):
        temporal_sampson(frames.astype(np.float32))
    with pytest.raises(ConfigError, match="camera_indices"):
        temporal_sampson(frames, camera_indices=[3])
