"""Shared by the benchmarks: the machine line and appending a dated entry to RESULTS.md."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine(packages: tuple[str, ...]) -> str:
    """'<CPU model>, <n> cores; torch 2.13.0, ...': what a reader needs to compare two entries."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
               "unknown CPU")
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} not installed")
    return f"{cpu}, {os.cpu_count()} cores; {', '.join(versions)}"


def record(heading: str, preamble: str, entry: str, path: Path = RESULTS) -> Path:
    """Append `entry` at the end of the section `heading` of `path`, creating it with `preamble` if missing."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if heading not in text:
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{preamble}"
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    end = len(text) if end < 0 else end + 1
    text = text[:end].rstrip("\n") + "\n\n" + entry.rstrip("\n") + "\n" + ("\n" + text[end:] if end < len(text) else "")
    path.write_text(text, encoding="utf-8")
    return path


def heading(started: str, packages: tuple[str, ...], load_at_start: float, command: str) -> str:
    """The first lines of an entry: when, on what, how busy the machine was, and the command."""
    return (f"### {started}\n\n{machine(packages)}; load average {load_at_start:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end.\n\n`{command}`")


def table(rows: list[tuple]) -> tuple[str, str]:
    """A header row and data rows as plain text (first column left-aligned, the rest right-aligned) and as
    markdown."""
    widths = [max(len(str(row[c])) for row in rows) for c in range(len(rows[0]))]
    plain = "\n".join(str(row[0]).ljust(widths[0]) + "".join(f"  {str(cell):>{w}}" for cell, w in
                                                             zip(row[1:], widths[1:])) for row in rows)
    markdown = "\n".join(["| " + " | ".join(map(str, rows[0])) + " |", "|" + "---|" * len(rows[0])]
                         + ["| " + " | ".join(map(str, row)) + " |" for row in rows[1:]])
    return plain, markdown
