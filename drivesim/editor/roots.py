"""The folders the editor may read. It serves anyone who reaches its address, so a path typed into the page
or named in an uploaded scenario (a clip store, start frames, a checkpoint) is opened only when it lies under
a folder named when the editor was started: the data roots (`drivesim ui --data-root`), the workspace, the
scenario library and the checkpoint folders. Paths are compared resolved, so `..` and symlinks cannot leave.
"""

from __future__ import annotations

import os
from pathlib import Path

from drivesim.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def data_roots() -> list[Path]:
    """$DRIVESIM_UI_DATA_ROOTS (os.pathsep-separated, as `drivesim ui` sets it), else the repository's
    scenarios/ and out/."""
    named = [Path(p) for p in os.environ.get("DRIVESIM_UI_DATA_ROOTS", "").split(os.pathsep) if p]
    return named or [REPO / "scenarios", REPO / "out"]


def readable_roots(settings: dict) -> list[Path]:
    """Every folder the page may read under, resolved, without repeats, in the order they were named."""
    named = [*settings.get("data_roots", ()), settings.get("workspace"), settings.get("scenarios"),
             *settings.get("checkpoints", ())]
    roots: list[Path] = []
    for root in named:
        if root is not None and Path(root).resolve() not in roots:
            roots.append(Path(root).resolve())
    return roots


def check_readable(path: str | os.PathLike, roots: list[Path], what: str) -> Path:
    """`path` resolved, when it lies under one of `roots`; else ConfigError in one line naming the path and
    the roots."""
    resolved = Path(path).resolve()
    if any(resolved.is_relative_to(root) for root in roots):
        return resolved
    allowed = ", ".join(str(root) for root in roots) or "(none)"
    raise ConfigError(f"{what} {path}: outside the folders the editor may read ({allowed}); start it with "
                      "`drivesim ui --data-root FOLDER` to allow another")


def check_scenario(scenario, roots: list[Path]) -> None:
    """A scenario's start frames lie under `roots` (its rig is a views/ name or inline: nothing to open)."""
    store = scenario.start_store()
    if store is not None:
        check_readable(store, roots, f"{scenario.source}: start_frames.store")
