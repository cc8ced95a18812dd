"""`drivesim eval`: every metric of drivesim/eval on a folder of rollouts, written as report.json and a
self-contained report.html (html.py).

Per rollout (a folder from `drivesim generate`, holding rollout.zarr):

- consistency (consistency.py): CSE across cameras under the calibration and TSE over time, with
  their series frame (pair) by frame (pair) for the plots, from one pass;
- trajectory following (trajectory.py): the path one camera's video shows against the commanded one;
  ATE and RPE are n/a, with the reason, on a path too short or too straight to test following;
- quality (reference.py): PSNR, SSIM and layout agreement against the ground-truth clip the scenario
  starts from, when there is one, over the frames the model was not given.

Evaluation never aborts on one rollout: a frame pair whose motion OpenCV cannot recover counts as not
recovered (the "pairs failed" column), and a rollout that cannot be scored at all is listed as failed,
with its reason, while the others are scored.

With a reference store (real or ground-truth clips) the same consistency and trajectory metrics run
on its clips too, and are reported beside the generated ones: SIFT-based errors have a floor that
real footage shows, so a generated number means most next to it. FID and FVD run only with locally
stored TorchScript networks (--inception, --i3d) and a reference store.

`evaluate` returns a Report (dataclasses down to each metric's own result; nothing is measured
twice), html.py draws it, and report.json is its `dataclasses.asdict`, in which NaN (not measured;
the notes say why) is null and an infinite value (PSNR of identical images) is the string "inf", so
the file is strict JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError, DrivesimError
from drivesim.eval.consistency import ClipConsistency
from drivesim.eval.detection import Controllability, controllability, resolve_detector
from drivesim.eval.failures import describe
from drivesim.eval.quality import SKIPPED_NOTE, Extractor
from drivesim.eval.reference import ReferenceQuality
from drivesim.eval.table import COLUMNS, SummaryRow, number, scored_frames_line, summary_table
from drivesim.eval.trajectory import TrajectoryReport

__all__ = ["COLUMNS", "MAX_REFERENCE_CLIPS", "ClipEntry", "Counts", "Distribution", "FailedPairs", "Failure",
           "Machine", "ReferenceClips", "Report", "Settings", "Summary", "SummaryRow", "check_inputs", "evaluate",
           "mean_row", "scored_frames_line", "summary_table", "write_report"]

MAX_REFERENCE_CLIPS = 4  # reference clips measured when no rollout starts from one of its clips


# ---------------------------------------------------------------- inputs


def _weights(value, option: str, load) -> Extractor | None:
    if value is None or isinstance(value, Extractor):
        return value
    if isinstance(value, (str, os.PathLike)):
        return load(value, option)
    return Extractor(value, "inception" if option == "--inception" else "i3d", option)  # a loaded module


def check_inputs(rollouts_dir, reference=None, inception=None, i3d=None, frame_step: int = 1):
    """Check every input before any work: (rollout folders, reference store or None, inception, i3d).

    ConfigError / DataError naming the option: no rollouts under --rollouts, a --reference that is not a
    clip store (a rollout folder counts as its rollout.zarr), --frame-step below 1, a missing or
    non-TorchScript --inception / --i3d file, or FID/FVD weights without a --reference to compare with.
    """
    from drivesim.data.store import open_store
    from drivesim.eval.quality import load_i3d, load_inception
    from drivesim.rollout import find_rollouts, store_folder

    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise ConfigError(f"--frame-step must be an integer >= 1, got {frame_step!r}")
    folders = find_rollouts(Path(rollouts_dir))
    store = None
    if reference is not None:
        store = store_folder(Path(reference))
        try:
            open_store(store)
        except DataError as error:
            raise ConfigError(f"--reference {reference}: {error}") from None
    inception = _weights(inception, "--inception", load_inception)
    i3d = _weights(i3d, "--i3d", load_i3d)
    for option, given in (("--inception", inception), ("--i3d", i3d)):
        if given is not None and store is None:
            raise ConfigError(f"{option} needs --reference STORE: FID and FVD compare with real or ground-truth frames")
    return folders, store, inception, i3d


# ---------------------------------------------------------------- what a report holds


@dataclass
class Failure:
    """A rollout (with its folder) or reference clip that could not be scored, and why."""

    name: str
    reason: str
    folder: str | None = None


@dataclass
class FailedPairs:
    """Frame pairs whose motion could not be recovered (too few matches, or OpenCV's solvers failed on
    them): the trajectory's (one camera, each frame against the last keyframe) and TSE's (every camera,
    each frame against the one before), out of how many. None where that metric did not run."""

    trajectory: int | None
    trajectory_pairs: int | None
    tse: int | None
    tse_pairs: int | None
    total: int | None
    solver_errors: int
    solver_error: str | None


@dataclass
class ClipEntry:
    """Everything measured on one rollout or reference clip, each metric once; None where it could not
    run (`notes` say why). quality and folder are a rollout's only."""

    name: str
    store: str
    clip_id: str
    cameras: list[str]
    frames: int
    size: list[int]  # [W, H]
    consistency: ClipConsistency | None
    trajectory: TrajectoryReport | None
    failed_pairs: FailedPairs
    notes: list[str]
    quality: ReferenceQuality | None = None
    folder: str | None = None


@dataclass
class ReferenceClips:
    """The reference store's clips, measured like the rollouts."""

    store: str
    clips: list[ClipEntry]
    failed: list[Failure]


# ---------------------------------------------------------------- metrics of one clip


def _failed_pairs(consistency: ClipConsistency | None, trajectory: TrajectoryReport | None) -> FailedPairs:
    """What the two metrics counted as not recovered, read from their results."""
    temporal = consistency.temporal if consistency is not None else None
    ran = [metric for metric in (trajectory, temporal) if metric is not None]
    failed = ([trajectory.failed_frames] if trajectory else []) + ([temporal.skipped] if temporal else [])
    errors = [metric.solver_error for metric in ran if metric.solver_error]
    return FailedPairs(trajectory=trajectory.failed_frames if trajectory else None,
                       trajectory_pairs=len(trajectory.path.indices) - 1 if trajectory else None,
                       tse=temporal.skipped if temporal else None,
                       tse_pairs=temporal.measured + temporal.skipped if temporal else None,
                       total=sum(failed) if failed else None,
                       solver_errors=sum(metric.solver_errors for metric in ran),
                       solver_error=errors[0] if errors else None)


def _clip_metrics(store: Path, clip_id: str, step: int) -> ClipEntry:
    """Consistency (means and per-pair series, one pass) and trajectory of one stored clip, with notes."""
    from drivesim.data.store import open_store, read_clip
    from drivesim.eval.consistency import consistency_report
    from drivesim.eval.trajectory import trajectory_report

    root = open_store(store)
    # Read whole, as the metrics will: a damaged store fails the clip here, whatever the metrics catch.
    frames = read_clip(root, clip_id, ("frames", "intrinsics", "ego_from_cam", "world_from_ego",
                                       "timestamps"))["frames"]
    consistency = trajectory = None
    notes = []
    try:
        consistency = consistency_report(store, clip_id, frame_step=step)
        notes += [f"{label}: {result.note}" for label, result in
                  (("CSE", consistency.cross_view), ("TSE", consistency.temporal)) if result.note]
    except DrivesimError as error:
        notes.append(f"consistency not measured: {error}")
    try:
        trajectory = trajectory_report(store, clip_id, step=step)
        if trajectory.note:
            notes.append(f"ATE/RPE n/a: {trajectory.note}")
    except DrivesimError as error:
        notes.append(f"trajectory not measured: {error}")
    failed = _failed_pairs(consistency, trajectory)
    if failed.solver_errors:
        notes.append(f"{failed.solver_errors} frame pair(s) not recovered because OpenCV failed on them "
                     f"(counted in 'pairs failed'): {failed.solver_error}")
    return ClipEntry(clip_id, str(store), clip_id, _clip_cameras(root, clip_id, frames.shape[1]), int(len(frames)),
                     [int(frames.shape[3]), int(frames.shape[2])], consistency, trajectory, failed, notes)


def _clip_cameras(root, clip_id: str, views: int) -> list[str]:
    from drivesim.data.store import open_clip

    attrs = dict(open_clip(root, clip_id).attrs)
    return list(attrs.get("cameras") or root.attrs.get("settings", {}).get("cameras")
                or [str(v) for v in range(views)])


def _evaluate_rollout(folder: Path, reference: Path | None, step: int, include_given: bool) -> ClipEntry:
    from drivesim.data.store import stored_clip_ids
    from drivesim.eval.reference import rollout_quality
    from drivesim.rollout import ROLLOUT_STORE

    store = folder / ROLLOUT_STORE
    clips = stored_clip_ids(store)
    if not clips:
        raise DataError(f"--rollouts: {store} holds no clip")
    entry = _clip_metrics(store, clips[0], step)
    quality = rollout_quality(folder, reference, step, include_given)
    notes = entry.notes + ([f"PSNR/SSIM: {quality.note}"] if quality.note else [])
    return dataclasses.replace(entry, name=folder.name, folder=str(folder), quality=quality, notes=notes)


def _reference_clip_ids(store: Path, rollouts: list[ClipEntry]) -> list[str]:
    """The reference store's clips the rollouts start from, else its first MAX_REFERENCE_CLIPS."""
    from drivesim.data.store import stored_clip_ids

    starts = [r.quality.reference.clip for r in rollouts
              if r.quality and r.quality.reference and Path(r.quality.reference.store) == store]
    chosen = list(dict.fromkeys(starts))
    return chosen or stored_clip_ids(store)[:MAX_REFERENCE_CLIPS]


# ---------------------------------------------------------------- FID and FVD


@dataclass
class Counts:
    """How many images (FID) or windows (FVD) each side had."""

    generated: int
    reference: int


@dataclass
class Distribution:
    """FID and FVD of the rollouts against the reference clips: NaN, with notes, when not measured."""

    fid: float = math.nan
    fvd: float = math.nan
    notes: list[str] = field(default_factory=list)
    reference_clips: list[str] | None = None
    fid_images: Counts | None = None
    fvd_windows: Counts | None = None


def _clip_frames(store: Path, clip_id: str) -> np.ndarray:
    from drivesim.data.store import open_clip, open_store

    return open_clip(open_store(store), clip_id)["frames"][...]


def _distribution(rollouts: list[ClipEntry], store: Path | None, clip_ids: list[str], inception: Extractor | None,
                  i3d: Extractor | None) -> Distribution:
    """FID over all frames of every camera, FVD over 16-frame windows per camera, rollouts against the
    reference clips; NaN and a note for what was not given or could not be measured."""
    from drivesim.eval.quality import FVD_FRAMES, fid, fvd

    out = Distribution()
    if inception is None and i3d is None:
        out.notes.append(SKIPPED_NOTE)
        return out
    generated = [_clip_frames(Path(r.store), r.clip_id) for r in rollouts]
    reference = [_clip_frames(store, clip_id) for clip_id in clip_ids]
    out.reference_clips = clip_ids
    if inception is None:
        out.notes.append("FID skipped: pass --inception FILE (locally stored TorchScript weights)")
    else:
        out.fid_images = Counts(*(sum(v.shape[0] * v.shape[1] for v in videos) for videos in (generated, reference)))
        out.fid = fid(generated, reference, inception)
        images = out.fid_images
        if math.isnan(out.fid):
            out.notes.append("FID: needs at least two generated and two reference images")
        elif min(images.generated, images.reference) < 2048:
            out.notes.append(f"FID from {images.generated} generated and {images.reference} reference images: "
                             "fewer samples than features give a biased value; compare runs with equal counts only")
    if i3d is None:
        out.notes.append("FVD skipped: pass --i3d FILE (locally stored TorchScript weights)")
    else:
        out.fvd_windows = Counts(*(sum(v.shape[1] * (v.shape[0] // FVD_FRAMES) for v in videos)
                                   for videos in (generated, reference)))
        out.fvd = fvd(generated, reference, i3d)
        if math.isnan(out.fvd):
            out.notes.append(f"FVD: needs at least two {FVD_FRAMES}-frame windows on each side; got "
                             f"{out.fvd_windows.generated} generated and {out.fvd_windows.reference} reference")
    return out


# ---------------------------------------------------------------- the summary


@dataclass
class Summary:
    """The table: a row per rollout and reference clip, the means, and what could not be scored."""

    columns: list[str]
    rows: list[SummaryRow]
    mean: SummaryRow
    failed: list[Failure]
    reference_rows: list[SummaryRow]
    reference_mean: SummaryRow | None
    reference_failed: list[Failure]


def _row(entry: ClipEntry) -> SummaryRow:
    consistency, trajectory, quality = entry.consistency, entry.trajectory, entry.quality
    return SummaryRow(name=entry.name,
                      cse_px=number(consistency.cross_view.cse if consistency else None),
                      tse_px=number(consistency.temporal.tse if consistency else None),
                      ate_m=number(trajectory.ate_m if trajectory else None),
                      rpe_m=number(trajectory.rpe_trans_m if trajectory else None),
                      rpe_deg=number(trajectory.rpe_rot_deg if trajectory else None),
                      failed_pairs=number(entry.failed_pairs.total),
                      psnr=number(quality.psnr if quality else None), ssim=number(quality.ssim if quality else None),
                      layout_psnr_in=number(quality.layout.psnr_in_boxes if quality else None),
                      layout_psnr_out=number(quality.layout.psnr_outside_boxes if quality else None))


def mean_row(rows: list[SummaryRow], name: str) -> SummaryRow:
    """Per column, the mean of the rows that measured it (NaN when none did; inf stays inf)."""
    mean = {}
    for key, _, _ in COLUMNS:
        values = [getattr(row, key) for row in rows if not math.isnan(getattr(row, key))]
        mean[key] = float(np.mean(values)) if values else math.nan
    return SummaryRow(name=name, **mean)


def _summary(rollouts: list[ClipEntry], failed: list[Failure], reference: ReferenceClips | None) -> Summary:
    rows = [_row(entry) for entry in rollouts]
    reference_rows = [_row(entry) for entry in reference.clips] if reference else []
    return Summary([key for key, _, _ in COLUMNS], rows, mean_row(rows, "mean (generated)"), failed, reference_rows,
                   mean_row(reference_rows, "mean (reference)") if reference_rows else None,
                   reference.failed if reference else [])


# ---------------------------------------------------------------- the whole run


@dataclass
class Settings:
    """What `evaluate` was asked to do."""

    rollouts: str
    reference: str | None
    inception: str | None
    i3d: str | None
    frame_step: int
    include_given: bool


@dataclass
class Machine:
    """The machine it ran on."""

    platform: str
    python: str
    cpu_count: int | None


@dataclass
class Report:
    """What `evaluate` measured, as write_report writes it (report.json has these keys)."""

    created: str
    drivesim_version: str
    machine: Machine
    settings: Settings
    rollouts: list[ClipEntry]
    failed: list[Failure]          # rollouts that could not be scored
    reference: ReferenceClips | None
    distribution: Distribution
    summary: Summary
    controllability: Controllability | None = None  # a detector on generated and real frames (detection.py)


def _each(items, score, label, failed: list[Failure]) -> list:
    """score(item) for every item; one that raises anything is added to `failed` as label(item) with
    the reason instead, so one broken rollout (a damaged store, an error no metric foresaw) never
    costs the report on the others."""
    scored = []
    for item in items:
        try:
            scored.append(score(item))
        except Exception as error:  # noqa: BLE001 - whatever it is, the report names it
            failed.append(Failure(**label(item), reason=str(error) if isinstance(error, DrivesimError)
                                  else describe(error)))
    return scored


def evaluate(rollouts_dir, reference=None, inception=None, i3d=None, frame_step: int = 1,
             progress: bool = True, include_given: bool = False, detector=None) -> Report:
    """Every metric on the rollouts under `rollouts_dir` (a rollout folder or a folder of them).

    reference: a clip store (or rollout folder) of real or ground-truth clips: the rollouts' start-frame
    clips are looked up in it for PSNR/SSIM, and consistency and trajectory run on its clips (those the
    rollouts start from, else its first MAX_REFERENCE_CLIPS). inception / i3d: TorchScript files (or
    loaded extractors) for FID / FVD against those clips. frame_step: every N-th frame for consistency,
    trajectory and PSNR/SSIM (FID takes every frame, FVD consecutive windows). include_given: score
    PSNR/SSIM on the frames the model was given too (left out by default). Inputs are checked before
    any work (`check_inputs`); after that nothing aborts the run (see `_each`). detector: a detector run or
    packed folder, "auto" (the shipped one) or a TrainedDetector: detection mAP/NDS on the generated frames
    beside the real ones (detection.py); None: not measured. Each metric runs once per
    clip; the Report holds its results as measured (the series the plots draw with the means).
    """
    from tqdm import tqdm

    import drivesim

    folders, store, inception, i3d = check_inputs(rollouts_dir, reference, inception, i3d, frame_step)
    detector, detector_source = resolve_detector(detector)  # a bad --detector is refused before any work
    step = int(frame_step)
    settings = Settings(str(rollouts_dir), None if store is None else str(store),
                        None if inception is None else inception.source, None if i3d is None else i3d.source,
                        step, bool(include_given))
    failed: list[Failure] = []
    rollouts = _each(tqdm(folders, desc="eval rollouts", unit="rollout", disable=not progress),
                     lambda folder: _evaluate_rollout(folder, store, step, include_given),
                     lambda folder: {"name": folder.name, "folder": str(folder)}, failed)
    clip_ids: list[str] = []
    clips = None
    if store is not None:
        reference_failed: list[Failure] = []
        measured = _each(tqdm(_reference_clip_ids(store, rollouts), desc="eval reference", unit="clip",
                              disable=not progress),
                         lambda clip_id: _clip_metrics(store, clip_id, step), lambda clip_id: {"name": clip_id},
                         reference_failed)
        clips = ReferenceClips(str(store), measured, reference_failed)
        clip_ids = [clip.clip_id for clip in measured]
    control = (Controllability(detector_source, None, None, None, notes=[detector_source]) if detector is None
               else controllability(rollouts, detector, detector_source, step, include_given, progress))
    return Report(datetime.now(timezone.utc).isoformat(timespec="seconds"), drivesim.__version__,
                  Machine(platform.platform(), platform.python_version(), os.cpu_count()), settings, rollouts, failed,
                  clips, _distribution(rollouts, store, clip_ids, inception, i3d), _summary(rollouts, failed, clips),
                  control)


# ---------------------------------------------------------------- JSON


def _json_safe(value):
    """Plain JSON values: numpy scalars and arrays as numbers and lists, NaN as None, inf as "inf"."""
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, str):
        return value
    return str(value)


def write_report(report: Report, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write report.json (every number; NaN as null, inf as "inf") and report.html (self-contained: the
    summary table with the reference clips beside the rollouts, FID/FVD, per rollout and reference clip
    its trajectory, TSE, CSE and PSNR plots as embedded PNGs, and the notes) into out_dir."""
    from drivesim.eval.html import render

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_json_safe(dataclasses.asdict(report)), indent=1, allow_nan=False) + "\n")
    html_path.write_text(render(report), encoding="utf-8")
    return json_path, html_path
