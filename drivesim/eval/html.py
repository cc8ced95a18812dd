"""report.html of `drivesim eval`: the summary table, FID/FVD, per rollout and reference clip its facts,
plots (embedded PNGs drawn without a display) and notes, in one self-contained page. Every text that
comes from files or errors is escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

from drivesim.eval.table import COLUMNS, number, scored_frames_line, shown

__all__ = ["render"]


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
    values = [number(pairs[name].get("cse")) for name in names]
    axes.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values])
    for i, value in enumerate(values):
        if math.isnan(value):
            axes.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(names)), [n.replace("CAM_", "") for n in names], rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("CSE (px)")
    return _png(figure)


def _psnr_plot(quality: dict) -> str:
    figure, axes = _figure("PSNR per frame (vs reference)")
    values = [min(number(v), 100.0) for v in quality["psnr_per_frame"]]  # inf (identical) drawn at 100 dB
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
    if quality.get("psnr_per_frame") and any(not math.isnan(number(v)) for v in quality["psnr_per_frame"]):
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
tr.failed td { background: #fdecea; text-align: left; }
.plots img { margin: 0.3em; border: 1px solid #ddd; }
.muted { color: #666; font-size: 0.9em; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _table_row(row: dict, css: str = "") -> str:
    cells = "".join(f"<td>{_e(shown(row[key], spec))}</td>" for key, _, spec in COLUMNS)
    attribute = f' class="{css}"' if css else ""
    return f'<tr{attribute}><td>{_e(row["name"])}</td>{cells}</tr>'


def _failed_row(failed: dict) -> str:
    return (f'<tr class="failed"><td>{_e(failed["name"])}</td><td colspan="{len(COLUMNS)}">could not be scored: '
            f'{_e(failed["reason"])}</td></tr>')


def _summary_html(summary: dict) -> str:
    head = "".join(f"<th>{_e(heading)}</th>" for _, heading, _ in COLUMNS)
    span = len(COLUMNS) + 1
    parts = [f'<table id="summary"><tr><th>rollout</th>{head}</tr>',
             f'<tr class="group"><th colspan="{span}">generated</th></tr>',
             *(_table_row(row) for row in summary["rows"]), *(_failed_row(f) for f in summary.get("failed", [])),
             _table_row(summary["mean"], "mean")]
    if summary.get("reference_rows") or summary.get("reference_failed"):
        parts += [f'<tr class="group"><th colspan="{span}">reference clips (real or ground truth)</th></tr>',
                  *(_table_row(row, "reference") for row in summary["reference_rows"]),
                  *(_failed_row(f) for f in summary.get("reference_failed", [])),
                  _table_row(summary["reference_mean"], "mean reference") if summary.get("reference_mean") else ""]
    parts.append("</table>")
    return "\n".join(parts)


def _distribution_html(distribution: dict) -> str:
    lines = [f"<p>FID {_e(shown(distribution.get('fid'), '.2f'))}"
             + (f" <span class=\"muted\">({_e(distribution['fid_images']['generated'])} generated, "
                f"{_e(distribution['fid_images']['reference'])} reference images)</span>"
                if distribution.get("fid_images") else "")
             + f"; FVD {_e(shown(distribution.get('fvd'), '.2f'))}"
             + (f" <span class=\"muted\">({_e(distribution['fvd_windows']['generated'])} generated, "
                f"{_e(distribution['fvd_windows']['reference'])} reference 16-frame windows)</span>"
                if distribution.get("fvd_windows") else "") + "</p>"]
    lines += [f'<p class="muted">{_e(note)}</p>' for note in distribution.get("notes", [])]
    return "\n".join(lines)


def _entry_html(entry: dict, kind: str) -> str:
    facts = [f"clip {_e(entry['clip_id'])}", f"{_e(entry['frames'])} frames",
             f"{_e(len(entry['cameras']))} cameras ({_e(', '.join(entry['cameras']))})",
             f"{_e(entry['size'][0])}x{_e(entry['size'][1])}"]
    quality = entry.get("quality") or {}
    if quality.get("reference"):
        reference = quality["reference"]
        facts.append(f"compared with clip {_e(reference['clip'])} of {_e(reference['store'])} from frame "
                     f"{_e(reference['frame'])}")
    if quality.get("scored"):
        facts.append(f"PSNR/SSIM over {_e(quality['scored'])}")
    failed = entry.get("failed_pairs") or {}
    counts = [f"{label} {_e(failed[key])} of {_e(failed[key + '_pairs'])}"
              for key, label in (("trajectory", "trajectory"), ("tse", "TSE")) if failed.get(key) is not None]
    if counts:
        facts.append("frame pairs not recovered: " + ", ".join(counts)
                     + (f" ({_e(failed['solver_errors'])} OpenCV failures)" if failed.get("solver_errors") else ""))
    images = "".join(f'<img src="{url}" alt="{_e(alt)}" title="{_e(alt)}">' for alt, url in _plots(entry))
    notes = "".join(f"<li>{_e(note)}</li>" for note in entry.get("notes", []))
    return (f'<section class="{kind}"><h3>{_e(entry["name"])}</h3><p class="muted">{"; ".join(facts)}</p>'
            f'<div class="plots">{images}</div>' + (f"<ul>{notes}</ul>" if notes else "") + "</section>")


def render(results: dict) -> str:
    """The whole page for the results of `evaluate`."""
    settings, machine = results["settings"], results["machine"]
    reference = results.get("reference")
    all_notes = [f"{entry['name']}: {note}" for entry in results["rollouts"] for note in entry.get("notes", [])]
    all_notes += [f"{failed['name']}: could not be scored: {failed['reason']}" for failed in results.get("failed", [])]
    if reference:
        all_notes += [f"reference {entry['name']}: {note}" for entry in reference["clips"]
                      for note in entry.get("notes", [])]
        all_notes += [f"reference {failed['name']}: could not be scored: {failed['reason']}"
                      for failed in reference.get("failed", [])]
    all_notes += results["distribution"].get("notes", [])
    settings_line = "; ".join(f"{_e(key)}: {_e(value)}" for key, value in settings.items())
    body = [
        "<h1>drivesim evaluation</h1>",
        f'<p class="muted">{_e(results["created"])} · drivesim {_e(results["drivesim_version"])} · '
        f'{_e(machine["platform"])}, {_e(machine["cpu_count"])} CPUs, Python {_e(machine["python"])}</p>',
        f'<p class="muted">{settings_line}</p>',
        "<h2>Summary</h2>",
        '<p class="muted">CSE: cross-view Sampson error under the calibration; TSE: temporal Sampson error; '
        "ATE / RPE: recovered vs commanded ego path (one camera's visual odometry), n/a on a path too short or "
        "too straight to test following; pairs failed: frame pairs whose motion could not be recovered "
        "(trajectory and TSE together); PSNR / SSIM and layout PSNR inside / outside the scenario's boxes: "
        "against the ground-truth clip, without the frames the model was given. n/a: not measured (see notes)."
        "</p>",
        _summary_html(results["summary"]),
        *([f'<p class="muted">{_e(scored_frames_line(results))}</p>'] if scored_frames_line(results) else []),
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
