"""`drivesim eval`: every metric of drivesim/eval on a folder of rollouts, written as report.json and a
self-contained report.html.

Per rollout (a folder from `drivesim generate`, holding rollout.zarr):

- consistency (consistency.py): CSE across cameras under the calibration, TSE over time, and TSE
  frame pair by frame pair for the plot;
- trajectory following (trajectory.py): the path one camera's video shows against the commanded one;
- quality (quality.py): PSNR, SSIM and layout agreement against the ground-truth clip the scenario
  starts from, when there is one.

With a reference store (real or ground-truth clips) the same consistency and trajectory metrics run
on its clips too, and are reported beside the generated ones: SIFT-based errors have a floor that
real footage shows, so a generated number means most next to it. FID and FVD run only with locally
stored TorchScript networks (--inception, --i3d) and a reference store.

In report.json NaN (not measured; the notes say why) is null and an infinite value (PSNR of
identical images) is the string "inf", so the file is strict JSON.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError, DrivesimError
from drivesim.eval.quality import SKIPPED_NOTE, Extractor

__all__ = ["COLUMNS", "MAX_REFERENCE_CLIPS", "check_inputs", "evaluate", "summary_table", "write_report"]

MAX_REFERENCE_CLIPS = 4  # reference clips measured when no rollout starts from one of its clips
TRAJECTORY_CAMERA = "CAM_FRONT"
# Summary columns: (key, heading, format). The keys are those of results["summary"] rows.
COLUMNS = (("cse_px", "CSE px", ".2f"), ("tse_px", "TSE px", ".2f"), ("ate_m", "ATE m", ".2f"),
           ("rpe_m", "RPE m", ".3f"), ("rpe_deg", "RPE deg", ".2f"), ("psnr", "PSNR dB", ".2f"),
           ("ssim", "SSIM", ".3f"), ("layout_psnr_in", "layout PSNR in boxes", ".2f"),
           ("layout_psnr_out", "layout PSNR outside", ".2f"))


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
    from drivesim.eval.quality import _store_folder, load_i3d, load_inception
    from drivesim.export import find_rollouts

    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise ConfigError(f"--frame-step must be an integer >= 1, got {frame_step!r}")
    folders = find_rollouts(Path(rollouts_dir))
    store = None
    if reference is not None:
        store = _store_folder(Path(reference))
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
    attrs = dict(root["clips"][clip_id].attrs)
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
    except DrivesimError as error:
        entry["notes"].append(f"trajectory not measured: {error}")
    return entry


def _evaluate_rollout(folder: Path, reference: Path | None, step: int) -> dict:
    from drivesim.data.store import stored_clip_ids
    from drivesim.eval.quality import rollout_quality
    from drivesim.simulate import ROLLOUT_STORE

    store = folder / ROLLOUT_STORE
    clips = stored_clip_ids(store)
    if not clips:
        raise DataError(f"--rollouts: {store} holds no clip")
    entry = {**_clip_metrics(store, clips[0], step), "name": folder.name, "folder": str(folder)}
    entry["quality"] = rollout_quality(folder, reference, step)
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
    from drivesim.data.store import open_store

    return open_store(store)["clips"][clip_id]["frames"][...]


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


def _number(value) -> float:
    return math.nan if value is None else float(value)


def _row(entry: dict) -> dict:
    consistency, trajectory = entry.get("consistency") or {}, entry.get("trajectory") or {}
    quality = entry.get("quality") or {}
    layout = quality.get("layout") or {}
    return {"name": entry["name"],
            "cse_px": _number((consistency.get("cross_view") or {}).get("cse")),
            "tse_px": _number((consistency.get("temporal") or {}).get("tse")),
            "ate_m": _number(trajectory.get("ate_m")), "rpe_m": _number(trajectory.get("rpe_trans_m")),
            "rpe_deg": _number(trajectory.get("rpe_rot_deg")),
            "psnr": _number(quality.get("psnr")), "ssim": _number(quality.get("ssim")),
            "layout_psnr_in": _number(layout.get("psnr_in_boxes")),
            "layout_psnr_out": _number(layout.get("psnr_outside_boxes"))}


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
            "reference_rows": reference_rows,
            "reference_mean": mean_row(reference_rows, "mean (reference)") if reference_rows else None}


def _machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}


def evaluate(rollouts_dir, reference=None, inception=None, i3d=None, frame_step: int = 1,
             progress: bool = True) -> dict:
    """Every metric on the rollouts under `rollouts_dir` (a rollout folder or a folder of them).

    reference: a clip store (or rollout folder) of real or ground-truth clips: the rollouts' start-frame
    clips are looked up in it for PSNR/SSIM, and consistency and trajectory run on its clips (those the
    rollouts start from, else its first MAX_REFERENCE_CLIPS). inception / i3d: TorchScript files (or
    loaded extractors) for FID / FVD against those clips. frame_step: every N-th frame for consistency,
    trajectory and PSNR/SSIM (FID takes every frame, FVD consecutive windows). Inputs are checked
    before any work (`check_inputs`).

    Returns a dict: created, drivesim_version, machine, settings, rollouts (per rollout: name, folder,
    store, clip_id, cameras, frames, size, consistency, tse_per_frame, trajectory with its x/y paths,
    quality, notes), reference (None, or store and clips measured like the rollouts), distribution
    (fid, fvd, counts, notes), summary (the table: rows, mean, reference_rows, reference_mean).
    """
    from tqdm import tqdm

    import drivesim

    folders, store, inception, i3d = check_inputs(rollouts_dir, reference, inception, i3d, frame_step)
    step = int(frame_step)
    results = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "drivesim_version": drivesim.__version__, "machine": _machine(),
               "settings": {"rollouts": str(rollouts_dir), "reference": None if store is None else str(store),
                            "inception": None if inception is None else inception.source,
                            "i3d": None if i3d is None else i3d.source, "frame_step": step},
               "rollouts": [], "reference": None}
    for folder in tqdm(folders, desc="eval rollouts", unit="rollout", disable=not progress):
        results["rollouts"].append(_evaluate_rollout(folder, store, step))
    clip_ids: list[str] = []
    if store is not None:
        clip_ids = _reference_clip_ids(store, results["rollouts"])
        clips = [_clip_metrics(store, clip_id, step)
                 for clip_id in tqdm(clip_ids, desc="eval reference", unit="clip", disable=not progress)]
        results["reference"] = {"store": str(store), "clips": clips}
    results["distribution"] = _distribution(results["rollouts"], store, clip_ids, inception, i3d)
    results["summary"] = _summary(results)
    return results


# ---------------------------------------------------------------- text


def _shown(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def summary_table(results: dict) -> str:
    """The summary as aligned text: one line per rollout, their mean, then the reference clips and FID/FVD."""
    summary = results["summary"]
    rows = [*summary["rows"], summary["mean"]]
    if summary.get("reference_rows"):
        rows += [{**row, "name": f"ref {row['name']}"} for row in summary["reference_rows"]]
        rows.append(summary["reference_mean"])
    headings = ["rollout", *(heading for _, heading, _ in COLUMNS)]
    cells = [[row["name"], *(_shown(row[key], spec) for key, _, spec in COLUMNS)] for row in rows]
    widths = [max(len(headings[i]), *(len(line[i]) for line in cells)) for i in range(len(headings))]
    lines = ["  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headings))]
    lines += ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(line))
              for line in cells]
    distribution = results.get("distribution") or {}
    lines.append(f"FID {_shown(distribution.get('fid'), '.2f')}  FVD {_shown(distribution.get('fvd'), '.2f')}")
    return "\n".join(lines)


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


# ---------------------------------------------------------------- plots


def _png(figure) -> str:
    """The figure as a base64 PNG data URL (drawn by the Agg canvas: no display, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(title: str):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.6, 3.4))
    axes = figure.subplots()
    axes.set_title(title, fontsize=10)
    axes.grid(True, alpha=0.3)
    return figure, axes


def _trajectory_plot(trajectory: dict) -> str:
    figure, axes = _figure(f"trajectory ({trajectory['camera']})")
    commanded = np.asarray(trajectory["path"]["commanded_xy"], np.float64).reshape(-1, 2)
    recovered = np.asarray(trajectory["path"]["recovered_xy"], np.float64).reshape(-1, 2)
    axes.plot(commanded[:, 0], commanded[:, 1], "-o", markersize=3, label="commanded")
    axes.plot(recovered[:, 0], recovered[:, 1], "-x", markersize=4, label="recovered")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(fontsize=8)
    return _png(figure)


def _tse_plot(series: dict) -> str:
    figure, axes = _figure("TSE per frame pair")
    for camera, values in series["cameras"].items():
        axes.plot(series["frames"], [math.nan if v is None else v for v in values], "-o", markersize=3, label=camera)
    axes.set_xlabel("frame")
    axes.set_ylabel("TSE (px)")
    axes.legend(fontsize=7)
    return _png(figure)


def _cse_plot(pairs: dict) -> str:
    figure, axes = _figure("CSE per camera pair")
    names = list(pairs)
    values = [_number(pairs[name].get("cse")) for name in names]
    axes.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values])
    for i, value in enumerate(values):
        if math.isnan(value):
            axes.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(names)), [n.replace("CAM_", "") for n in names], rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("CSE (px)")
    return _png(figure)


def _psnr_plot(quality: dict) -> str:
    figure, axes = _figure("PSNR per frame (vs reference)")
    values = [min(_number(v), 100.0) for v in quality["psnr_per_frame"]]  # inf (identical) drawn at 100 dB
    axes.plot(quality.get("frame_indices") or range(len(values)), values, "-o", markersize=3)
    axes.set_xlabel("frame")
    axes.set_ylabel("PSNR (dB, inf shown as 100)")
    return _png(figure)


def _plots(entry: dict) -> list[tuple[str, str]]:
    """(alt text, data URL) of every plot the entry has data for."""
    plots = []
    trajectory = entry.get("trajectory")
    if trajectory and trajectory.get("path"):
        plots.append(("trajectory: commanded vs recovered x/y", _trajectory_plot(trajectory)))
    if entry.get("tse_per_frame") and entry["tse_per_frame"]["frames"]:
        plots.append(("TSE per frame pair", _tse_plot(entry["tse_per_frame"])))
    pairs = ((entry.get("consistency") or {}).get("cross_view") or {}).get("pairs")
    if pairs:
        plots.append(("CSE per camera pair", _cse_plot(pairs)))
    quality = entry.get("quality") or {}
    if quality.get("psnr_per_frame") and any(not math.isnan(_number(v)) for v in quality["psnr_per_frame"]):
        plots.append(("PSNR per frame", _psnr_plot(quality)))
    return plots


# ---------------------------------------------------------------- HTML

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.mean td { font-weight: bold; background: #f2f2f2; }
tr.reference td { background: #eef5ff; }
tr.group th { background: #ddd; text-align: left; }
.plots img { margin: 0.3em; border: 1px solid #ddd; }
.muted { color: #666; font-size: 0.9em; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _table_row(row: dict, css: str = "") -> str:
    cells = "".join(f"<td>{_e(_shown(row[key], spec))}</td>" for key, _, spec in COLUMNS)
    attribute = f' class="{css}"' if css else ""
    return f'<tr{attribute}><td>{_e(row["name"])}</td>{cells}</tr>'


def _summary_html(summary: dict) -> str:
    head = "".join(f"<th>{_e(heading)}</th>" for _, heading, _ in COLUMNS)
    span = len(COLUMNS) + 1
    parts = [f'<table id="summary"><tr><th>rollout</th>{head}</tr>',
             f'<tr class="group"><th colspan="{span}">generated</th></tr>',
             *(_table_row(row) for row in summary["rows"]), _table_row(summary["mean"], "mean")]
    if summary.get("reference_rows"):
        parts += [f'<tr class="group"><th colspan="{span}">reference clips (real or ground truth)</th></tr>',
                  *(_table_row(row, "reference") for row in summary["reference_rows"]),
                  _table_row(summary["reference_mean"], "mean reference")]
    parts.append("</table>")
    return "\n".join(parts)


def _distribution_html(distribution: dict) -> str:
    lines = [f"<p>FID {_e(_shown(distribution.get('fid'), '.2f'))}"
             + (f" <span class=\"muted\">({_e(distribution['fid_images']['generated'])} generated, "
                f"{_e(distribution['fid_images']['reference'])} reference images)</span>"
                if distribution.get("fid_images") else "")
             + f"; FVD {_e(_shown(distribution.get('fvd'), '.2f'))}"
             + (f" <span class=\"muted\">({_e(distribution['fvd_windows']['generated'])} generated, "
                f"{_e(distribution['fvd_windows']['reference'])} reference 16-frame windows)</span>"
                if distribution.get("fvd_windows") else "") + "</p>"]
    lines += [f'<p class="muted">{_e(note)}</p>' for note in distribution.get("notes", [])]
    return "\n".join(lines)


def _entry_html(entry: dict, kind: str) -> str:
    facts = [f"clip {_e(entry['clip_id'])}", f"{_e(entry['frames'])} frames",
             f"{_e(len(entry['cameras']))} cameras ({_e(', '.join(entry['cameras']))})",
             f"{_e(entry['size'][0])}x{_e(entry['size'][1])}"]
    reference = (entry.get("quality") or {}).get("reference")
    if reference:
        facts.append(f"compared with clip {_e(reference['clip'])} of {_e(reference['store'])} from frame "
                     f"{_e(reference['frame'])}")
    images = "".join(f'<img src="{url}" alt="{_e(alt)}" title="{_e(alt)}">' for alt, url in _plots(entry))
    notes = "".join(f"<li>{_e(note)}</li>" for note in entry.get("notes", []))
    return (f'<section class="{kind}"><h3>{_e(entry["name"])}</h3><p class="muted">{"; ".join(facts)}</p>'
            f'<div class="plots">{images}</div>' + (f"<ul>{notes}</ul>" if notes else "") + "</section>")


def _html(results: dict) -> str:
    settings, machine = results["settings"], results["machine"]
    reference = results.get("reference")
    all_notes = [f"{entry['name']}: {note}" for entry in results["rollouts"] for note in entry.get("notes", [])]
    if reference:
        all_notes += [f"reference {entry['name']}: {note}" for entry in reference["clips"]
                      for note in entry.get("notes", [])]
    all_notes += results["distribution"].get("notes", [])
    settings_line = "; ".join(f"{_e(key)}: {_e(value)}" for key, value in settings.items())
    body = [
        "<h1>drivesim evaluation</h1>",
        f'<p class="muted">{_e(results["created"])} · drivesim {_e(results["drivesim_version"])} · '
        f'{_e(machine["platform"])}, {_e(machine["cpu_count"])} CPUs, Python {_e(machine["python"])}</p>',
        f'<p class="muted">{settings_line}</p>',
        "<h2>Summary</h2>",
        '<p class="muted">CSE: cross-view Sampson error under the calibration; TSE: temporal Sampson error; '
        "ATE / RPE: recovered vs commanded ego path (one camera's visual odometry); PSNR / SSIM and layout PSNR "
        "inside / outside the scenario's boxes: against the ground-truth clip. n/a: not measured (see notes).</p>",
        _summary_html(results["summary"]),
        "<h2>FID and FVD</h2>", _distribution_html(results["distribution"]),
        "<h2>Rollouts</h2>", *(_entry_html(entry, "rollout") for entry in results["rollouts"]),
    ]
    if reference:
        body += [f"<h2>Reference clips ({_e(reference['store'])})</h2>",
                 *(_entry_html(entry, "reference") for entry in reference["clips"])]
    body += ["<h2>Notes</h2>",
             "<ul>" + "".join(f"<li>{_e(note)}</li>" for note in all_notes) + "</ul>" if all_notes
             else "<p>None: every metric was measured.</p>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drivesim evaluation</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(results: dict, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write report.json (every number; NaN as null, inf as "inf") and report.html (self-contained: the
    summary table with the reference clips beside the rollouts, FID/FVD, per rollout and reference clip
    its trajectory, TSE, CSE and PSNR plots as embedded PNGs, and the notes) into out_dir."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / "report.json", out / "report.html"
    json_path.write_text(json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
    html_path.write_text(_html(results), encoding="utf-8")
    return json_path, html_path
