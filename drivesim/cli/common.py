"""What several `drivesim` commands share: one-line errors and output-file checks."""

from __future__ import annotations

from pathlib import Path

from drivesim.errors import ConfigError


def one_line(error: Exception) -> str:
    """The message on one line: a path or value the user typed may hold a line break, shown escaped."""
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


def check_png_target(path: Path, option: str) -> None:
    from drivesim.folders import check_writable

    if path.suffix.lower() != ".png":
        raise ConfigError(f"{option} must name a .png file, got {path}")
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder")
    check_writable(path, option)

