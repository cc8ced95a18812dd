"""A browser session's workspace: the one folder the editor writes to for that session.

Every path the editor writes is built here from a name a user may have typed or uploaded. Names are
reduced to a safe file name and the result is checked to lie inside the workspace, so nothing a user
sends (`../../etc/passwd`, an absolute path, a symlink planted in the folder) can write elsewhere.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

from drivesim.errors import ConfigError, ScenarioError
from drivesim.scenario import MAX_BYTES, Scenario, load, save

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
MAX_NAME = 64


def safe_name(name: str, default: str = "scenario") -> str:
    """A file name made only of letters, digits, '.', '_' and '-', not starting with '.', at most 64 long."""
    stem = _UNSAFE.sub("_", str(name).replace("\\", "/").split("/")[-1]).strip("._-")[:MAX_NAME]
    return stem or default


def new_session_id() -> str:
    return secrets.token_hex(8)


class Workspace:
    """root/<session>/ with uploads/, scenarios/ and renders/<time>-<name>/ inside."""

    def __init__(self, root: str | Path, session: str):
        if not re.fullmatch(r"[0-9a-f]{8,64}", session):
            raise ConfigError(f"workspace session id must be hex, got {session!r}")
        self.root = Path(root).resolve()
        self.folder = self.root / session
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        """A path inside the workspace built from safe names; refuses anything that resolves outside it."""
        path = self.folder.joinpath(*(safe_name(part, "file") for part in parts))
        resolved = path.resolve()
        if not resolved.is_relative_to(self.folder.resolve()):
            raise ConfigError(f"{'/'.join(parts)}: outside this session's workspace")
        return resolved

    def save_upload(self, name: str, data: bytes) -> Scenario:
        """Keep an uploaded scenario file in uploads/ and return it loaded and validated."""
        if len(data) > MAX_BYTES:
            raise ScenarioError(f"{safe_name(name)}: the upload is {len(data) / 2**20:.1f} MB; scenario files "
                                f"are limited to {MAX_BYTES // 2**20} MB")
        stem = safe_name(Path(str(name)).stem)
        folder = self.path("uploads")
        folder.mkdir(exist_ok=True)
        target = self.path("uploads", f"{stem}.yaml")
        for k in range(1, 1000):  # a second upload of the same name keeps the first
            if not target.exists():
                break
            target = self.path("uploads", f"{stem}-{k}.yaml")
        target.write_bytes(data)
        return load(target)

    def save_scenario(self, scenario: Scenario, name: str | None = None) -> Path:
        folder = self.path("scenarios")
        folder.mkdir(exist_ok=True)
        return save(scenario, self.path("scenarios", f"{safe_name(name or scenario.name)}.yaml"))

    def new_render_folder(self, name: str) -> Path:
        """renders/<UTC time>-<name>[-k]/, created empty: one per render, never reused."""
        folder = self.path("renders")
        folder.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        base = f"{stamp}-{safe_name(name)}"
        for k in range(1000):
            candidate = self.path("renders", base if k == 0 else f"{base}-{k}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        raise ConfigError(f"{folder}: too many renders named {base}")

    def renders(self) -> list[Path]:
        """Finished renders (those holding a grid video), newest first."""
        folder = self.folder / "renders"
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.iterdir() if (p / "grid.mp4").is_file()), key=lambda p: p.name,
                      reverse=True)
