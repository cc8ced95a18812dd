"""Many scenarios rolled out at once (`drivesim generate --scenarios DIR_OR_GLOB`): one rollout folder per scenario
under one output folder, on local processes or Ray, resumable, with a summary (summary.json).

A folder holding rollout.zarr is a finished rollout (Rollout.save publishes it whole), so a rerun skips it and a
killed batch resumes where it stopped. A scenario that fails (a bad file, an exception in its rollout) is recorded
with its one-line reason and the others go on; only what stops every scenario (the checkpoint cannot be loaded)
stops the batch."""

from __future__ import annotations

import glob
import hashlib
import json
import multiprocessing
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

from drivesim.errors import ConfigError, DrivesimError, describe
from drivesim.rollout import ROLLOUT_STORE
from drivesim.simulate import RolloutConfig

__all__ = ["BatchConfig", "ScenarioTask", "SUMMARY", "find_scenarios", "folder_names", "generate_many",
           "render_scenario", "summary_table"]

SUMMARY = "summary.json"
SUMMARY_EVERY = 10.0  # seconds between writes of summary.json while a batch runs
STATUSES = ("done", "skipped", "failed", "pending")
ENGINES = ("local", "ray")
RAY_MISSING = "--engine ray needs Ray: pip install 'drivesim[ray]' (or use --engine local)"
WORKER_DIED = "its worker process died while it ran (killed, or out of memory); run the batch again to retry it"


@dataclass
class BatchConfig:
    """A batch of rollouts: which scenarios, where, with what, on how many workers."""

    scenarios: str                       # a folder (its *.yaml) or a glob
    out: Path
    checkpoint: Path                     # a `drivesim train wfm` run, checkpoint or weights folder
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rig: str | None = None               # replaces every scenario's rig (--rig)
    device: str = "auto"
    workers: int = 1                     # local processes (1: this process), or Ray tasks at once
    engine: str = "local"

    def validate(self) -> BatchConfig:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"--workers must be an integer >= 1, got {self.workers!r}")
        if self.engine not in ENGINES:
            raise ConfigError(f"--engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.engine == "ray":
            _import_ray()  # refused now, not after the scenarios are read
        return self


@dataclass(frozen=True)
class ScenarioTask:
    """One scenario's rollout, as plain data: it pickles to worker processes and Ray tasks."""

    scenario: str                        # the scenario file
    out: str                             # its rollout folder
    checkpoint: str
    device: str
    rollout: RolloutConfig
    rig: str | None = None


# ---------------------------------------------------------------- which scenarios, which folders


def find_scenarios(given: str | os.PathLike) -> list[Path]:
    """The scenario files `given` names: a folder's *.yaml and *.yml, or the files a glob matches, sorted.
    ConfigError naming `given` when there are none."""
    text = os.fspath(given)
    path = Path(text)
    if path.is_dir():
        files = [p for p in path.iterdir() if p.suffix.lower() in (".yaml", ".yml") and p.is_file()]
        if not files:
            raise ConfigError(f"--scenarios {text}: no scenario files (*.yaml) in that folder")
    elif path.is_file():
        files = [path]
    elif glob.has_magic(text):
        files = [Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file()]
        if not files:
            raise ConfigError(f"--scenarios {text}: the pattern matches no scenario file")
    else:
        raise ConfigError(f"--scenarios {text}: no such folder or file (give a folder or a glob such as "
                          "'scenarios/*.yaml', quoted)")
    return sorted(files)


def folder_names(files: list[Path]) -> list[str]:
    """One output folder name per scenario file: its stem, reduced to letters, digits, '-', '_' and '.', never
    hidden. Stems that collide each get a suffix from their path's hash, so a name never depends on the order
    of the files or on which other files are in the batch (except for whether its own stem collides)."""
    stems = [re.sub(r"[^\w.-]", "_", path.stem).lstrip(".") or "scenario" for path in files]
    taken: dict[str, int] = {}
    for stem in stems:
        taken[stem] = taken.get(stem, 0) + 1
    names = []
    for path, stem in zip(files, stems):
        if taken[stem] > 1:
            stem = f"{stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
        names.append(stem)
    return names


def is_finished(folder: Path) -> bool:
    """Whether `folder` is a finished rollout: Rollout.save publishes a folder whole, rollout.zarr included."""
    return (folder / ROLLOUT_STORE).exists()


# ---------------------------------------------------------------- one scenario, in a worker

_LOADED: dict[tuple[str, str], object] = {}  # this process's pipeline: loaded once, not per scenario


def _pipeline(checkpoint: str, device: str):
    """The world model, loaded once per process. Its errors stop the batch: every scenario needs it. They are
    raised as ConfigError (one line, naming the checkpoint), which pickles back from any worker."""
    from drivesim.wfm.pipeline import WorldModelPipeline

    key = (checkpoint, device)
    if key not in _LOADED:
        try:
            pipeline = WorldModelPipeline.from_pretrained(checkpoint, device)
        except DrivesimError as error:
            raise ConfigError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - any failure to load is the checkpoint's, for the whole batch
            raise ConfigError(f"--checkpoint {checkpoint}: cannot be loaded: {describe(error)}") from None
        _LOADED.clear()
        _LOADED[key] = pipeline
    return _LOADED[key]


def render_scenario(task: ScenarioTask) -> dict:
    """Roll one scenario out into its folder. Returns its record: status done, or failed with a one-line
    reason (any exception of this scenario's own). Raises only when the pipeline cannot be loaded."""
    from drivesim.scenario import load
    from drivesim.simulate import rollout

    pipeline = _pipeline(task.checkpoint, task.device)
    started = time.monotonic()
    try:
        folder = Path(task.out)
        if folder.is_dir() and any(folder.iterdir()):
            raise ConfigError(f"{folder} holds files and no finished rollout; move them away to render it here")
        scenario = load(task.scenario, rig=task.rig)
        task.rollout.starting_from(scenario, pipeline.palette is not None)
        result = rollout(scenario, pipeline, task.rollout, progress=False)
        result.save(task.out)
    except Exception as error:  # noqa: BLE001 - one scenario's failure, whatever it is, is recorded; the rest go on
        return _record(task, "failed", time.monotonic() - started, _reason(error))
    return _record(task, "done", time.monotonic() - started)


def _reason(error: BaseException) -> str:
    text = str(error) if isinstance(error, DrivesimError) else describe(error)
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _record(task: ScenarioTask, status: str, seconds: float | None, reason: str | None = None) -> dict:
    record = {"scenario": task.scenario, "folder": Path(task.out).name, "status": status,
              "seconds": None if seconds is None else round(seconds, 3)}
    if reason is not None:
        record["reason"] = reason
    return record


def _worker_start(parent_pid: int, threads: int) -> None:
    """A local worker: dies with the batch (kill -9 included), and shares the cores with the other workers."""
    import torch

    from drivesim.data.ingest import die_with_parent

    die_with_parent(parent_pid)
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- engines


def _run_here(tasks: list[ScenarioTask], report: Callable[[dict], None]) -> None:
    for task in tasks:
        report(render_scenario(task))


def _run_processes(tasks: list[ScenarioTask], workers: int, report: Callable[[dict], None]) -> None:
    """At most `workers` scenarios in flight, so a worker that dies (the OOM killer) costs only those: they are
    recorded as failed and a fresh pool takes the rest."""
    context = multiprocessing.get_context("spawn")  # the parent holds threads (zarr, torch): no fork
    threads = max(1, (os.cpu_count() or 1) // workers)
    queue = list(tasks)
    while queue:
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                                 initargs=(os.getpid(), threads)) as pool:
            running: dict = {}
            broken = False
            while (queue or running) and not broken:
                while queue and len(running) < workers:
                    task = queue.pop(0)
                    running[pool.submit(render_scenario, task)] = task
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    task = running.pop(future)
                    try:
                        report(future.result())
                    except BrokenProcessPool:
                        report(_record(task, "failed", None, WORKER_DIED))
                        broken = True
                    except BaseException:
                        pool.shutdown(wait=False, cancel_futures=True)
                        raise
            for task in running.values():  # in flight when the pool broke
                report(_record(task, "failed", None, WORKER_DIED))


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_MISSING) from None
    return ray


def _run_ray(tasks: list[ScenarioTask], workers: int, report: Callable[[dict], None]) -> None:
    """One Ray task per scenario, a GPU each where there are GPUs; a task that crashes fails its scenario alone."""
    import torch

    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        # A local cluster; with RAY_ADDRESS set, ray.init joins that cluster instead.
        ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else workers, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
    try:
        gpus = 1 if torch.cuda.is_available() else 0
        remote = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(render_scenario)
        # Absolute paths: a Ray worker need not share this process's working directory.
        pending = {remote.remote(replace(task, scenario=os.path.abspath(task.scenario), out=os.path.abspath(task.out))):
                   task for task in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                report({**ray.get(done[0]), "scenario": task.scenario})
            except ray.exceptions.RayTaskError as error:
                cause = getattr(error, "cause", None)
                if isinstance(cause, DrivesimError):  # the pipeline: every scenario would fail the same way
                    for other in pending:
                        ray.cancel(other)
                    raise cause from None
                report(_record(task, "failed", None, _reason(cause or error)))
            except ray.exceptions.RayError as error:  # the task's worker died
                report(_record(task, "failed", None, _reason(error)))
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------- the batch


def generate_many(config: BatchConfig, progress: bool = True) -> dict:
    """Roll out every scenario `config.scenarios` names into its own folder under `config.out`, skipping those
    finished before; write and return the summary ({"done", "skipped", "failed", "pending", "scenarios": [records]}).
    summary.json is also written every SUMMARY_EVERY seconds and when the batch is stopped, with the scenarios not
    yet rendered as pending. Hold the writer lock of `config.out` around it (the CLI does)."""
    from tqdm import tqdm

    config.validate()
    files = find_scenarios(config.scenarios)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tasks = [ScenarioTask(str(path), str(out / name), str(config.checkpoint), config.device, config.rollout,
                          config.rig) for path, name in zip(files, folder_names(files))]
    earlier = _earlier_seconds(out)
    records = {task.scenario: _record(task, "skipped", earlier.get(Path(task.out).name))
               for task in tasks if is_finished(Path(task.out))}
    pending = [task for task in tasks if task.scenario not in records]
    bar = tqdm(total=len(tasks), initial=len(records), desc="generate", unit="scenario", disable=not progress)
    written = [time.monotonic()]

    def report(record: dict) -> None:
        records[record["scenario"]] = record
        bar.update(1)
        bar.set_postfix(failed=sum(r["status"] == "failed" for r in records.values()), refresh=False)
        if time.monotonic() - written[0] > SUMMARY_EVERY:
            _write_json(out / SUMMARY, _summary(tasks, records))
            written[0] = time.monotonic()

    try:
        if config.engine == "ray":
            _run_ray(pending, config.workers, report)
        elif config.workers == 1 or len(pending) <= 1:
            _run_here(pending, report)
        else:
            _run_processes(pending, config.workers, report)
    except BaseException:
        if created and not any(out.iterdir()):  # stopped before any rollout: leave no empty folder behind
            out.rmdir()
        else:
            _write_json(out / SUMMARY, _summary(tasks, records))
        raise
    finally:
        bar.close()
    summary = _summary(tasks, records)
    _write_json(out / SUMMARY, summary)
    return summary


def _earlier_seconds(out: Path) -> dict[str, float]:
    """Folder -> seconds its rollout took, from the summary of an earlier run (a skipped one keeps its time)."""
    try:
        rows = json.loads((out / SUMMARY).read_text())["scenarios"]
        return {row["folder"]: row["seconds"] for row in rows
                if row.get("status") in ("done", "skipped") and row.get("seconds") is not None}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _summary(tasks: list[ScenarioTask], records: dict[str, dict]) -> dict:
    rows = [records.get(task.scenario) or _record(task, "pending", None) for task in tasks]
    counts = {status: sum(row["status"] == status for row in rows) for status in STATUSES}
    return {**counts, "scenarios": rows}


def _write_json(path: Path, document: dict) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(partial, path)


def summary_table(summary: dict) -> str:
    """The summary as text: a row per status (count, seconds), then each failed scenario with its reason."""
    rows = summary["scenarios"]
    lines = [f"{'status':<8} {'count':>6} {'seconds':>9}"]
    for status in ("done", "skipped", "failed"):
        seconds = sum(row["seconds"] or 0.0 for row in rows if row["status"] == status)
        lines.append(f"{status:<8} {summary[status]:>6} {seconds:>9.1f}")
    failed = [row for row in rows if row["status"] == "failed"]
    if failed:
        lines.append("failed:")
        lines += [f"  {row['folder']}: {row['reason']}" for row in failed]  # the reason names the file
    return "\n".join(lines)
