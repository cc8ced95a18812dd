"""report.html of `drivesim eval`: the summary table, FID/FVD, per rollout and reference clip its facts,
plots (embedded PNGs drawn without a display) and notes, in one self-contained page, drawn from the
report.Report as measured (nothing is computed here). Every text that comes from files or errors is
escaped.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math

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


def _trajectory_plot(trajectory) -> str:
    figure, axes = _figure(f"trajectory ({trajectory.camera})")
    commanded = trajectory.path.commanded_world_from_ego[:, :2, 3]
    recovered = trajectory.path.estimated_world_from_ego[:, :2, 3]
    axes.plot(commanded[:, 0], commanded[:, 1], "-o", markersize=3, label="commanded")
    axes.plot(recovered[:, 0], recovered[:, 1], "-x", markersize=4, label="recovered")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_aspect("equal", adjustable="datalim")
    axes.legend(fontsize=8)
    return _png(figure)


def _tse_plot(temporal) -> str:
    figure, axes = _figure("TSE per frame pair")
    for camera, measured in temporal.cameras.items():
        axes.plot(temporal.series_frames, measured.series, "-o", markersize=3, label=camera)
    axes.set_xlabel("frame")
    axes.set_ylabel("TSE (px)")
    axes.legend(fontsize=7)
    return _png(figure)


def _cse_plot(pairs: dict) -> str:
    figure, axes = _figure("CSE per camera pair")
    names = list(pairs)
    values = [pairs[name].cse for name in names]
    axes.bar(range(len(names)), [0.0 if math.isnan(v) else v for v in values])
    for i, value in enumerate(values):
        if math.isnan(value):
            axes.text(i, 0, "n/a", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(range(len(names)), [n.replace("CAM_", "") for n in names], rotation=45, ha="right", fontsize=7)
    axes.set_ylabel("CSE (px)")
    return _png(figure)


def _psnr_plot(quality) -> str:
    figure, axes = _figure("PSNR per frame (vs reference)")
    values = [min(number(v), 100.0) for v in quality.psnr_per_frame]  # inf (identical) drawn at 100 dB
    axes.plot(quality.frame_indices or range(len(values)), values, "-o", markersize=3)
    axes.set_xlabel("frame")
    axes.set_ylabel("PSNR (dB, inf shown as 100)")
    return _png(figure)


def _plots(entry) -> list[tuple[str, str]]:
    """(alt text, data URL) of every plot the entry (a report.ClipEntry) has data for."""
    plots = []
    if entry.trajectory is not None:
        plots.append(("trajectory: commanded vs recovered x/y", _trajectory_plot(entry.trajectory)))
    consistency = entry.consistency
    if consistency is not None and consistency.temporal.cameras:
        plots.append(("TSE per frame pair", _tse_plot(consistency.temporal)))
    if consistency is not None and consistency.cross_view.pairs:
        plots.append(("CSE per camera pair", _cse_plot(consistency.cross_view.pairs)))
    quality = entry.quality
    if quality is not None and any(not math.isnan(number(v)) for v in quality.psnr_per_frame):
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


def _table_row(row, css: str = "") -> str:
    cells = "".join(f"<td>{_e(shown(getattr(row, key), spec))}</td>" for key, _, spec in COLUMNS)
    attribute = f' class="{css}"' if css else ""
    return f'<tr{attribute}><td>{_e(row.name)}</td>{cells}</tr>'


def _failed_row(failed) -> str:
    return (f'<tr class="failed"><td>{_e(failed.name)}</td><td colspan="{len(COLUMNS)}">could not be scored: '
            f'{_e(failed.reason)}</td></tr>')


def _summary_html(summary) -> str:
    head = "".join(f"<th>{_e(heading)}</th>" for _, heading, _ in COLUMNS)
    span = len(COLUMNS) + 1
    parts = [f'<table id="summary"><tr><th>rollout</th>{head}</tr>',
             f'<tr class="group"><th colspan="{span}">generated</th></tr>',
             *(_table_row(row) for row in summary.rows), *(_failed_row(f) for f in summary.failed),
             _table_row(summary.mean, "mean")]
    if summary.reference_rows or summary.reference_failed:
        parts += [f'<tr class="group"><th colspan="{span}">reference clips (real or ground truth)</th></tr>',
                  *(_table_row(row, "reference") for row in summary.reference_rows),
                  *(_failed_row(f) for f in summary.reference_failed),
                  _table_row(summary.reference_mean, "mean reference") if summary.reference_mean else ""]
    parts.append("</table>")
    return "\n".join(parts)


def _distribution_html(distribution) -> str:
    images, windows = distribution.fid_images, distribution.fvd_windows
    lines = [f"<p>FID {_e(shown(distribution.fid, '.2f'))}"
             + (f" <span class=\"muted\">({_e(images.generated)} generated, "
                f"{_e(images.reference)} reference images)</span>" if images else "")
             + f"; FVD {_e(shown(distribution.fvd, '.2f'))}"
             + (f" <span class=\"muted\">({_e(windows.generated)} generated, "
                f"{_e(windows.reference)} reference 16-frame windows)</span>" if windows else "") + "</p>"]
    lines += [f'<p class="muted">{_e(note)}</p>' for note in distribution.notes]
    return "\n".join(lines)


def _controllability_html(control) -> str:
    """The detector's result lines, and per class its AP on generated frames beside real ones."""
    if control is None:
        return '<p class="muted">not measured</p>'
    lines = [f"<p>{_e(line)}</p>" for line in control.lines()]
    sides = [(name, score) for name, score in (("generated", control.paired or control.generated),
                                               ("real", control.real)) if score is not None]
    classes = list(dict.fromkeys(name for _, score in sides for name in score.ap))
    if classes:
        head = "".join(f"<th>AP {_e(name)}</th>" for name, _ in sides)
        rows = "".join(f"<tr><td>{_e(cls)}</td>"
                       + "".join(f"<td>{_e(shown(score.ap.get(cls, math.nan), '.3f'))}</td>" for _, score in sides)
                       + "</tr>" for cls in classes)
        lines.append(f"<table><tr><th>class</th>{head}</tr>{rows}</table>")
    return "\n".join(lines)


def _entry_html(entry, kind: str) -> str:
    facts = [f"clip {_e(entry.clip_id)}", f"{_e(entry.frames)} frames",
             f"{_e(len(entry.cameras))} cameras ({_e(', '.join(entry.cameras))})",
             f"{_e(entry.size[0])}x{_e(entry.size[1])}"]
    quality = entry.quality
    if quality is not None and quality.reference is not None:
        reference = quality.reference
        facts.append(f"compared with clip {_e(reference.clip)} of {_e(reference.store)} from frame "
                     f"{_e(reference.frame)}")
    if quality is not None and quality.scored:
        facts.append(f"PSNR/SSIM over {_e(quality.scored)}")
    failed = entry.failed_pairs
    counts = [f"{label} {_e(count)} of {_e(pairs)}" for label, count, pairs in
              (("trajectory", failed.trajectory, failed.trajectory_pairs), ("TSE", failed.tse, failed.tse_pairs))
              if count is not None]
    if counts:
        facts.append("frame pairs not recovered: " + ", ".join(counts)
                     + (f" ({_e(failed.solver_errors)} OpenCV failures)" if failed.solver_errors else ""))
    images = "".join(f'<img src="{url}" alt="{_e(alt)}" title="{_e(alt)}">' for alt, url in _plots(entry))
    notes = "".join(f"<li>{_e(note)}</li>" for note in entry.notes)
    return (f'<section class="{kind}"><h3>{_e(entry.name)}</h3><p class="muted">{"; ".join(facts)}</p>'
            f'<div class="plots">{images}</div>' + (f"<ul>{notes}</ul>" if notes else "") + "</section>")


def render(report) -> str:
    """The whole page for a report.Report (what `evaluate` returns)."""
    settings, machine, reference = report.settings, report.machine, report.reference
    all_notes = [f"{entry.name}: {note}" for entry in report.rollouts for note in entry.notes]
    all_notes += [f"{failed.name}: could not be scored: {failed.reason}" for failed in report.failed]
    if reference:
        all_notes += [f"reference {entry.name}: {note}" for entry in reference.clips for note in entry.notes]
        all_notes += [f"reference {failed.name}: could not be scored: {failed.reason}" for failed in reference.failed]
    all_notes += report.distribution.notes
    settings_line = "; ".join(f"{_e(key)}: {_e(value)}" for key, value in dataclasses.asdict(settings).items())
    body = [
        "<h1>drivesim evaluation</h1>",
        f'<p class="muted">{_e(report.created)} · drivesim {_e(report.drivesim_version)} · '
        f'{_e(machine.platform)}, {_e(machine.cpu_count)} CPUs, Python {_e(machine.python)}</p>',
        f'<p class="muted">{settings_line}</p>',
        "<h2>Summary</h2>",
        '<p class="muted">CSE: cross-view Sampson error under the calibration; TSE: temporal Sampson error; '
        "ATE / RPE: recovered vs commanded ego path (one camera's visual odometry), n/a on a path too short or "
        "too straight to test following; pairs failed: frame pairs whose motion could not be recovered "
        "(trajectory and TSE together); PSNR / SSIM and layout PSNR inside / outside the scenario's boxes: "
        "against the ground-truth clip, without the frames the model was given. n/a: not measured (see notes)."
        "</p>",
        _summary_html(report.summary),
        *([f'<p class="muted">{_e(scored_frames_line(report))}</p>'] if scored_frames_line(report) else []),
        "<h2>FID and FVD</h2>", _distribution_html(report.distribution),
        "<h2>Controllability: a 3D detector on generated and real frames</h2>",
        '<p class="muted">nuscenes-devkit\'s detection algorithm (centre-distance mAP, NDS without AAE: '
        "docs/perception.md) against the scenario's boxes; the ratio generated / real is the figure the field "
        "reports (Panacea: NDS 68% of real).</p>",
        _controllability_html(report.controllability),
        "<h2>Rollouts</h2>", *(_entry_html(entry, "rollout") for entry in report.rollouts),
    ]
    if reference:
        body += [f"<h2>Reference clips ({_e(reference.store)})</h2>",
                 *(_entry_html(entry, "reference") for entry in reference.clips)]
    body += ["<h2>Notes</h2>",
             "<ul>" + "".join(f"<li>{_e(note)}</li>" for note in all_notes) + "</ul>" if all_notes
             else "<p>None: every metric was measured.</p>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>drivesim evaluation</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
