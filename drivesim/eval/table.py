"""The summary table of `drivesim eval`: its columns, how a value is shown, and the text table; report.py
fills the rows and html.py draws the same columns."""

from __future__ import annotations

import math

__all__ = ["COLUMNS", "number", "scored_frames_line", "shown", "summary_table"]

# Summary columns: (key, heading, format). The keys are those of results["summary"] rows.
COLUMNS = (("cse_px", "CSE px", ".2f"), ("tse_px", "TSE px", ".2f"), ("ate_m", "ATE m", ".2f"),
           ("rpe_m", "RPE m", ".3f"), ("rpe_deg", "RPE deg", ".2f"), ("failed_pairs", "pairs failed", ".1f"),
           ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f"), ("layout_psnr_in", "layout PSNR in boxes", ".2f"),
           ("layout_psnr_out", "layout PSNR outside", ".2f"))


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


def summary_table(results: dict) -> str:
    """The summary as aligned text: one line per rollout, their mean, then the reference clips and FID/FVD."""
    summary = results["summary"]
    rows = [*summary["rows"], summary["mean"]]
    if summary.get("reference_rows"):
        rows += [{**row, "name": f"ref {row['name']}"} for row in summary["reference_rows"]]
        rows.append(summary["reference_mean"])
    headings = ["rollout", *(heading for _, heading, _ in COLUMNS)]
    cells = [[row["name"], *(shown(row[key], spec) for key, _, spec in COLUMNS)] for row in rows]
    widths = [max(len(headings[i]), *(len(line[i]) for line in cells)) for i in range(len(headings))]
    lines = ["  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(headings))]
    lines += ["  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(line))
              for line in cells]
    lines += [f"{prefix}{failed['name']}: could not be scored: {failed['reason']}"
              for prefix, key in (("", "failed"), ("ref ", "reference_failed")) for failed in summary.get(key, [])]
    scored = scored_frames_line(results)
    if scored:
        lines.append(scored)
    distribution = results.get("distribution") or {}
    lines.append(f"FID {shown(distribution.get('fid'), '.2f')}  FVD {shown(distribution.get('fvd'), '.2f')}")
    return "\n".join(lines)


def scored_frames_line(results: dict) -> str | None:
    """Which frames PSNR/SSIM scored, in one line for the whole run (None when no rollout was scored)."""
    said = list(dict.fromkeys((entry.get("quality") or {}).get("scored") for entry in results["rollouts"]))
    said = [text for text in said if text]
    if not said:
        return None
    if len(said) == 1:
        return f"PSNR/SSIM over {said[0]}"
    given = "given frames scored too" if results["settings"].get("include_given") else "given frames left out"
    return f"PSNR/SSIM: the scored frames differ per rollout ({given}); see each rollout"
