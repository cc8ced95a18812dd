"""The summary table of `drivesim eval`: its columns and rows, how a value is shown, and the text table;
report.py fills the rows and html.py draws the same columns."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

__all__ = ["COLUMNS", "SummaryRow", "number", "scored_frames_line", "shown", "summary_table"]

# Summary columns: (key, heading, format). The keys are SummaryRow's fields.
COLUMNS = (("cse_px", "CSE px", ".2f"), ("tse_px", "TSE px", ".2f"), ("ate_m", "ATE m", ".2f"),
           ("rpe_m", "RPE m", ".3f"), ("rpe_deg", "RPE deg", ".2f"), ("failed_pairs", "pairs failed", ".1f"),
           ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f"), ("layout_psnr_in", "layout PSNR in boxes", ".2f"),
           ("layout_psnr_out", "layout PSNR outside", ".2f"))


@dataclass
class SummaryRow:
    """One line of the table: NaN where the metric was not measured."""

    name: str
    cse_px: float
    tse_px: float
    ate_m: float
    rpe_m: float
    rpe_deg: float
    failed_pairs: float
    psnr: float
    ssim: float
    layout_psnr_in: float
    layout_psnr_out: float


def number(value) -> float:
    """A row value: NaN for a metric that was not measured (None)."""
    return math.nan if value is None else float(value)


def shown(value, spec: str) -> str:
    """A value as the table shows it: n/a for NaN or None, inf as inf, else formatted by `spec`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return format(value, spec)


def summary_table(report) -> str:
    """The summary of a report.Report as aligned text: one line per rollout, their mean, then the
    reference clips and FID/FVD."""
    summary = report.summary
    rows = [*summary.rows, summary.mean]
    if summary.reference_rows:
        rows += [dataclasses.replace(row, name=f"ref {row.name}") for row in summary.reference_rows]
        rows.append(summary.reference_mean)
    headings = ["rollout", *(heading for _, heading, _ in COLUMNS)]
    cells = [[row.name, *(shown(getattr(row, key), spec) for key, _, spec in COLUMNS)] for row in rows]
    widths = [max(len(headings[i]), *(len(line[i]) for line in cells)) for i in range(len(headings))]
    lines = ["  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headings))]
    lines += ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(line))
              for line in cells]
    lines += [f"{prefix}{failed.name}: could not be scored: {failed.reason}"
              for prefix, failures in (("", summary.failed), ("ref ", summary.reference_failed)) for failed in failures]
    scored = scored_frames_line(report)
    if scored:
        lines.append(scored)
    lines.append(f"FID {shown(report.distribution.fid, '.2f')}  FVD {shown(report.distribution.fvd, '.2f')}")
    if report.controllability is not None:
        lines += report.controllability.lines()
    return "\n".join(lines)


def scored_frames_line(report) -> str | None:
    """Which frames PSNR/SSIM scored, in one line for the whole run (None when no rollout was scored)."""
    said = list(dict.fromkeys(entry.quality.scored for entry in report.rollouts if entry.quality))
    said = [text for text in said if text]
    if not said:
        return None
    if len(said) == 1:
        return f"PSNR/SSIM over {said[0]}"
    given = "given frames scored too" if report.settings.include_given else "given frames left out"
    return f"PSNR/SSIM: the scored frames differ per rollout ({given}); see each rollout"
