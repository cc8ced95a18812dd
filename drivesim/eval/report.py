"""`drivesim eval`: every metric of drivesim/eval on a folder of rollouts, written as report.json and a
self-contained report.html (html.py).

Per rollout (a folder from `drivesim generate`, holding rollout.zarr):

- consistency (consistency.py): CSE across cameras under the calibration, TSE over time, and TSE
  frame pair by frame pair for the plot;
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

In report.json NaN (not measured; the notes say why) is null and an infinite value (PSNR of
identical images) is the string "inf", so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError, DrivesimError
from drivesim.eval.failures import describe
from drivesim.eval.quality import SKIPPED_NOTE, Extractor
from drivesim.eval.table import COLUMNS, number, scored_frames_line, summary_table

__all__ = ["COLUMNS", "MAX_REFERENCE_CLIPS", "check_inputs", "evaluate", "mean_row", "scored_frames_line",
           "summary_table", "write_report"]

MAX_REFERENCE_CLIPS = 4  # reference clips measured when no rollout starts from one of its clips
TRAJECTORY_CAMERA = "CAM_FRONT"


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


# ---------------------------------------------------------------- metrics of one clip


def _clip_cameras(root, clip_id: str, views: int) -> list[str]:
    from drivesim.data.store import open_clip

    attrs = dict(open_clip(root, clip_id).attrs)
    return list(attrs.get("cameras") or root.attrs.get("settings", {}).get("cameras")
                or [str(v) for v in range(views)])


def _trajectory_camera(cameras: Sequence[str]) -> str:
    """CAM_FRONT, else a front camera that is neither left nor right, else the first."""
    if TRAJECTORY_CAMERA in cameras:
        return TRAJECTORY_CAMERA
    fronts = [c for c in cameras if "FRONT" in c.upper() and not {"LEFT", "RIGHT"} & set(c.upper().split("_"))]
    return (fronts or list(cameras))[0]


def _trajectory(clip: dict, store: Path, clip_id: str, cameras: list[str], step: int) -> dict:
    """trajectory_report's numbers for one clip, plus the commanded and recovered x, y paths to plot.

    It calls recover_ego_trajectory as trajectory_report does (same camera pose, intrinsics, fps and
    step), because trajectory_report keeps only the scalars and the report draws the paths too.
    """
    from drivesim.eval.trajectory import recover_ego_trajectory

    camera = _trajectory_camera(cameras)
    view = cameras.index(camera)
    steps_us = np.diff(clip["timestamps"])
    fps = 1e6 / float(np.median(steps_us)) if len(steps_us) and np.median(steps_us) > 0 else None
    result = recover_ego_trajectory(clip["frames"][:, view], clip["intrinsics"][view], clip["ego_from_cam"][view],
                                    clip["world_from_ego"], step=step, fps=fps)
    scalars = {key: value for key, value in result.items() if not isinstance(value, np.ndarray)}
    return {"store": str(store), "clip_id": clip_id, "camera": camera, "frames": int(len(clip["frames"])),
            "step": int(step), "fps": fps, **scalars,
            "path": {"indices": result["indices"].tolist(),
                     "commanded_xy": result["commanded_world_from_ego"][:, :2, 3].tolist(),
                     "recovered_xy": result["estimated_world_from_ego"][:, :2, 3].tolist(),
                     "recovered": result["recovered"].tolist()}}


def _tse_per_frame(frames: np.ndarray, cameras: list[str], step: int) -> dict:
    """TSE of each frame pair (t, t + step) per camera (NaN where it could not be measured): the series
    whose mean consistency_report reports as TSE."""
    from drivesim.eval.consistency import temporal_sampson

    starts = list(range(0, len(frames) - step, step))
    series: dict[str, list[float]] = {camera: [] for camera in cameras}
    for t in starts:
        measured = temporal_sampson(frames[[t, t + step]], cameras=cameras)["cameras"]
        for camera in cameras:
            series[camera].append(measured[camera]["tse"])
    return {"frames": starts, "cameras": series}


def _clip_metrics(store: Path, clip_id: str, step: int) -> dict:
    """Consistency (whole clip and per frame pair) and trajectory of one stored clip, with notes."""
    from drivesim.data.store import open_store, read_clip
    from drivesim.eval.consistency import consistency_report

    root = open_store(store)
    clip = read_clip(root, clip_id, ("frames", "intrinsics", "ego_from_cam", "world_from_ego", "timestamps"))
    cameras = _clip_cameras(root, clip_id, clip["frames"].shape[1])
    frames = clip["frames"]
    entry = {"name": clip_id, "store": str(store), "clip_id": clip_id, "cameras": cameras,
             "frames": int(len(frames)), "size": [int(frames.shape[3]), int(frames.shape[2])],
             "consistency": None, "tse_per_frame": None, "trajectory": None, "notes": []}
    try:
        entry["consistency"] = consistency_report(store, clip_id, frame_step=step)
        entry["tse_per_frame"] = _tse_per_frame(frames, cameras, step)
        for key, label in (("cross_view", "CSE"), ("temporal", "TSE")):
            if entry["consistency"][key].get("note"):
                entry["notes"].append(f"{label}: {entry['consistency'][key]['note']}")
    except DrivesimError as error:
        entry["notes"].append(f"consistency not measured: {error}")
    try:
        entry["trajectory"] = _trajectory(clip, store, clip_id, cameras, step)
        if entry["trajectory"]["note"]:
            entry["notes"].append(f"ATE/RPE n/a: {entry['trajectory']['note']}")
    except DrivesimError as error:
        entry["notes"].append(f"trajectory not measured: {error}")
    failed = entry["failed_pairs"] = _failed_pairs(entry)
    if failed["solver_errors"]:
        entry["notes"].append(f"{failed['solver_errors']} frame pair(s) not recovered because OpenCV failed on "
                              f"them (counted in 'pairs failed'): {failed['solver_error']}")
    return entry


def _failed_pairs(entry: dict) -> dict:
    """Frame pairs whose motion could not be recovered (too few matches, or OpenCV's solvers failed on
    them): the trajectory's (one camera, each frame against the last keyframe) and TSE's (every camera,
    each frame against the one before). None where that metric did not run."""
    trajectory = entry.get("trajectory") or {}
    temporal = (entry.get("consistency") or {}).get("temporal") or {}
    out = {"trajectory": trajectory.get("failed_frames"),
           "trajectory_pairs": len(trajectory["path"]["indices"]) - 1 if trajectory else None,
           "tse": temporal.get("skipped"),
           "tse_pairs": temporal["measured"] + temporal["skipped"] if temporal else None}
    counted = [out[key] for key in ("trajectory", "tse") if out[key] is not None]
    errors = [e for e in (trajectory.get("solver_error"), temporal.get("solver_error")) if e]
    return {**out, "total": sum(counted) if counted else None,
            "solver_errors": trajectory.get("solver_errors", 0) + temporal.get("solver_errors", 0),
            "solver_error": errors[0] if errors else None}


def _evaluate_rollout(folder: Path, reference: Path | None, step: int, include_given: bool) -> dict:
    from drivesim.data.store import stored_clip_ids
    from drivesim.eval.reference import rollout_quality
    from drivesim.rollout import ROLLOUT_STORE

    store = folder / ROLLOUT_STORE
    clips = stored_clip_ids(store)
    if not clips:
        raise DataError(f"--rollouts: {store} holds no clip")
    entry = {**_clip_metrics(store, clips[0], step), "name": folder.name, "folder": str(folder)}
    entry["quality"] = rollout_quality(folder, reference, step, include_given)
    if entry["quality"].get("note"):
        entry["notes"].append(f"PSNR/SSIM: {entry['quality']['note']}")
    return entry


def _reference_clip_ids(store: Path, rollouts: list[dict]) -> list[str]:
    """The reference store's clips the rollouts start from, else its first MAX_REFERENCE_CLIPS."""
    from drivesim.data.store import stored_clip_ids

    starts = [r["quality"]["reference"]["clip"] for r in rollouts
              if r["quality"].get("reference") and Path(r["quality"]["reference"]["store"]) == store]
    chosen = list(dict.fromkeys(starts))
    return chosen or stored_clip_ids(store)[:MAX_REFERENCE_CLIPS]


# ---------------------------------------------------------------- FID and FVD


def _clip_frames(store: Path, clip_id: str) -> np.ndarray:
    from drivesim.data.store import open_clip, open_store

    return open_clip(open_store(store), clip_id)["frames"][...]


def _distribution(rollouts: list[dict], store: Path | None, clip_ids: list[str], inception: Extractor | None,
                  i3d: Extractor | None) -> dict:
    """FID over all frames of every camera, FVD over 16-frame windows per camera, rollouts against the
    reference clips; NaN and a note for what was not given or could not be measured."""
    from drivesim.eval.quality import FVD_FRAMES, fid, fvd

    out = {"fid": math.nan, "fvd": math.nan, "notes": []}
    if inception is None and i3d is None:
        out["notes"].append(SKIPPED_NOTE)
        return out
    generated = [_clip_frames(Path(r["store"]), r["clip_id"]) for r in rollouts]
    reference = [_clip_frames(store, clip_id) for clip_id in clip_ids]
    out["reference_clips"] = clip_ids
    if inception is None:
        out["notes"].append("FID skipped: pass --inception FILE (locally stored TorchScript weights)")
    else:
        counts = [sum(v.shape[0] * v.shape[1] for v in videos) for videos in (generated, reference)]
        out["fid"] = fid(generated, reference, inception)
        out["fid_images"] = {"generated": counts[0], "reference": counts[1]}
        if math.isnan(out["fid"]):
            out["notes"].append("FID: needs at least two generated and two reference images")
        elif min(counts) < 2048:
            out["notes"].append(f"FID from {counts[0]} generated and {counts[1]} reference images: fewer samples "
                                "than features give a biased value; compare runs with equal counts only")
    if i3d is None:
        out["notes"].append("FVD skipped: pass --i3d FILE (locally stored TorchScript weights)")
    else:
        counts = [sum(v.shape[1] * (v.shape[0] // FVD_FRAMES) for v in videos) for videos in (generated, reference)]
        out["fvd"] = fvd(generated, reference, i3d)
        out["fvd_windows"] = {"generated": counts[0], "reference": counts[1]}
        if math.isnan(out["fvd"]):
            out["notes"].append(f"FVD: needs at least two {FVD_FRAMES}-frame windows on each side; got "
                                f"{counts[0]} generated and {counts[1]} reference")
    return out


# ---------------------------------------------------------------- the summary


def _row(entry: dict) -> dict:
    consistency, trajectory = entry.get("consistency") or {}, entry.get("trajectory") or {}
    quality = entry.get("quality") or {}
    layout = quality.get("layout") or {}
    return {"name": entry["name"],
            "cse_px": number((consistency.get("cross_view") or {}).get("cse")),
            "tse_px": number((consistency.get("temporal") or {}).get("tse")),
            "ate_m": number(trajectory.get("ate_m")), "rpe_m": number(trajectory.get("rpe_trans_m")),
            "rpe_deg": number(trajectory.get("rpe_rot_deg")),
            "failed_pairs": number((entry.get("failed_pairs") or {}).get("total")),
            "psnr": number(quality.get("psnr")), "ssim": number(quality.get("ssim")),
            "layout_psnr_in": number(layout.get("psnr_in_boxes")),
            "layout_psnr_out": number(layout.get("psnr_outside_boxes"))}


def mean_row(rows: list[dict], name: str) -> dict:
    """Per column, the mean of the rows that measured it (NaN when none did; inf stays inf)."""
    mean = {"name": name}
    for key, _, _ in COLUMNS:
        values = [row[key] for row in rows if not math.isnan(row[key])]
        mean[key] = float(np.mean(values)) if values else math.nan
    return mean


def _summary(results: dict) -> dict:
    rows = [_row(entry) for entry in results["rollouts"]]
    reference = results.get("reference") or {}
    reference_rows = [_row(entry) for entry in reference.get("clips", [])]
    return {"columns": [key for key, _, _ in COLUMNS], "rows": rows, "mean": mean_row(rows, "mean (generated)"),
            "failed": [{"name": f["name"], "reason": f["reason"]} for f in results.get("failed", [])],
            "reference_rows": reference_rows,
            "reference_mean": mean_row(reference_rows, "mean (reference)") if reference_rows else None,
            "reference_failed": [{"name": f["name"], "reason": f["reason"]} for f in reference.get("failed", [])]}


def _machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}


def _each(items, score, label, failed: list[dict]) -> list[dict]:
    """score(item) for every item; one that raises anything is added to `failed` as label(item) with
    the reason instead, so one broken rollout (a damaged store, an error no metric foresaw) never
    costs the report on the others."""
    scored = []
    for item in items:
        try:
            scored.append(score(item))
        except Exception as error:  # noqa: BLE001 - whatever it is, the report names it
            failed.append({**label(item), "reason": str(error) if isinstance(error, DrivesimError)
                           else describe(error)})
    return scored


def evaluate(rollouts_dir, reference=None, inception=None, i3d=None, frame_step: int = 1,
             progress: bool = True, include_given: bool = False) -> dict:
    """Every metric on the rollouts under `rollouts_dir` (a rollout folder or a folder of them).

    reference: a clip store (or rollout folder) of real or ground-truth clips: the rollouts' start-frame
    clips are looked up in it for PSNR/SSIM, and consistency and trajectory run on its clips (those the
    rollouts start from, else its first MAX_REFERENCE_CLIPS). inception / i3d: TorchScript files (or
    loaded extractors) for FID / FVD against those clips. frame_step: every N-th frame for consistency,
    trajectory and PSNR/SSIM (FID takes every frame, FVD consecutive windows). include_given: score
    PSNR/SSIM on the frames the model was given too (left out by default). Inputs are checked before
    any work (`check_inputs`); after that nothing aborts the run (see `_each`).

    Returns a dict: created, drivesim_version, machine, settings, rollouts (per rollout: name, folder,
    store, clip_id, cameras, frames, size, consistency, tse_per_frame, trajectory with its x/y paths,
    failed_pairs, quality, notes), failed (rollouts that could not be scored: name, folder, reason),
    reference (None, or store, clips measured like the rollouts, and failed), distribution (fid, fvd,
    counts, notes), summary (the table: rows, mean, failed, reference_rows, reference_mean,
    reference_failed).
    """
    from tqdm import tqdm

    import drivesim

    folders, store, inception, i3d = check_inputs(rollouts_dir, reference, inception, i3d, frame_step)
    step = int(frame_step)
    results = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "drivesim_version": drivesim.__version__, "machine": _machine(),
               "settings": {"rollouts": str(rollouts_dir), "reference": None if store is None else str(store),
                            "inception": None if inception is None else inception.source,
                            "i3d": None if i3d is None else i3d.source, "frame_step": step,
                            "include_given": bool(include_given)},
               "failed": [], "reference": None}
    results["rollouts"] = _each(tqdm(folders, desc="eval rollouts", unit="rollout", disable=not progress),
                                lambda folder: _evaluate_rollout(folder, store, step, include_given),
                                lambda folder: {"name": folder.name, "folder": str(folder)}, results["failed"])
    clip_ids: list[str] = []
    if store is not None:
        clip_ids = _reference_clip_ids(store, results["rollouts"])
        failed: list[dict] = []
        clips = _each(tqdm(clip_ids, desc="eval reference", unit="clip", disable=not progress),
                      lambda clip_id: _clip_metrics(store, clip_id, step), lambda clip_id: {"name": clip_id}, failed)
        results["reference"] = {"store": str(store), "clips": clips, "failed": failed}
        clip_ids = [clip["clip_id"] for clip in clips]
    results["distribution"] = _distribution(results["rollouts"], store, clip_ids, inception, i3d)
    results["summary"] = _summary(results)
    return results


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


def write_report(results: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write report.json (every number; NaN as null, inf as "inf") and report.html (self-contained: the
    summary table with the reference clips beside the rollouts, FID/FVD, per rollout and reference clip
    its trajectory, TSE, CSE and PSNR plots as embedded PNGs, and the notes) into out_dir."""
    from drivesim.eval.html import render

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    html_path.write_text(render(results), encoding="utf-8")
    return json_path, html_path
