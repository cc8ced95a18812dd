"""Renders that run beside the page: a thread per render, so a long rollout never freezes the editor.

The page starts a RenderJob and polls it (state, progress, message); the job loads the checkpoint
(cached per process, so the second render of a session starts at once), runs drivesim.simulate.rollout
with a progress callback and writes the result into a folder of the session's workspace. Renders take
turns on one lock: on a CPU two at once would each run at half speed and both finish late.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from drivesim.errors import DrivesimError
from drivesim.scenario import Scenario
from drivesim.simulate import RolloutConfig

_MODELS: dict[tuple[str, str], object] = {}
_MODELS_LOCK = threading.Lock()
_RENDER_LOCK = threading.Lock()


class Cancelled(Exception):
    """Raised inside the rollout's callback when the user stops a render."""


def cached_pipeline(checkpoint: str | Path, device: str):
    """The WorldModelPipeline of a checkpoint, loaded once per process and device."""
    from drivesim.wfm.pipeline import WorldModelPipeline

    key = (str(Path(checkpoint).resolve()), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            _MODELS[key] = WorldModelPipeline.from_pretrained(checkpoint, device)
        return _MODELS[key]


def find_checkpoints(*roots: str | Path) -> list[Path]:
    """World-model runs under `roots` (folders with a checkpoints/ subfolder whose config says task: wfm),
    and packed weights (a config.yaml saying task: wfm beside a manifest.json, drivesim/weights.py), in the
    order of the roots and by name within a root; a root may itself be one."""
    import yaml

    found = []
    for root in map(Path, roots):
        candidates = [root, *sorted(root.glob("*"))] if root.is_dir() else []
        for folder in candidates:
            config = folder / "config.yaml"
            if ((folder / "checkpoints").is_dir() or (folder / "manifest.json").is_file()) and config.is_file():
                try:
                    task = (yaml.safe_load(config.read_text()) or {}).get("task")
                except (OSError, yaml.YAMLError, AttributeError):
                    continue
                if task == "wfm" and folder not in found:
                    found.append(folder)
    return found


@dataclass
class RenderJob:
    """One render of a scenario into `out`; read state, progress and message while it runs."""

    scenario: Scenario
    checkpoint: Path
    out: Path
    steps: int = RolloutConfig.steps        # the rollout's defaults, the best measured (MODEL_CARD.md)
    guidance: float = RolloutConfig.guidance
    seed: int | None = None
    device: str = "cpu"
    state: str = "waiting"        # waiting, loading, rendering, writing, done, failed, cancelled
    progress: float = 0.0         # 0..1
    message: str = "waiting for another render to finish"
    error: str | None = None
    outputs: dict = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> RenderJob:
        self._thread = threading.Thread(target=self._run, name=f"render {self.out.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self.state in ("waiting", "loading", "rendering", "writing")

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> RenderJob:
        if self._thread is not None:
            self._thread.join(timeout)
        return self

    def _chunk_done(self, done: int, total: int) -> None:
        self.progress = 0.05 + 0.9 * done / total
        self.message = f"rendered chunk {done} of {total}"
        if self._cancel.is_set():
            raise Cancelled

    def _run(self) -> None:
        from drivesim.simulate import rollout

        try:
            with _RENDER_LOCK:
                if self._cancel.is_set():
                    raise Cancelled
                self.state, self.message = "loading", f"loading {self.checkpoint.name}"
                pipeline = cached_pipeline(self.checkpoint, self.device)
                self.state, self.progress, self.message = "rendering", 0.05, "rendering the first chunk"
                # temperature, init and strength: RolloutConfig's defaults
                config = RolloutConfig(steps=self.steps, guidance=self.guidance, seed=self.seed)
                result = rollout(self.scenario, pipeline, config, device=self.device, progress=False,
                                 on_chunk=self._chunk_done)
                self.state, self.message = "writing", "writing the videos and the labelled rollout"
                self.outputs = result.save(self.out, overwrite=True)
            self.state, self.progress = "done", 1.0
            self.message = f"{result.num_frames} frames x {len(result.cameras)} cameras in " \
                           f"{time.monotonic() - self.started:.0f} s"
        except Cancelled:
            self.state, self.message = "cancelled", "stopped"
        except DrivesimError as error:
            self.state, self.error, self.message = "failed", str(error), str(error)
        except Exception as error:  # a bug, not a user error: keep the trace for the page's details box
            self.state, self.message = "failed", f"{type(error).__name__}: {error}"
            self.error = traceback.format_exc()
        finally:
            self.finished = time.monotonic()
