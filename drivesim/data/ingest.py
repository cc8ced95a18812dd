"""`drivesim ingest`: driving logs -> curated clips in the zarr store, one task per scene on local
processes or Ray, resumable: a finished scene leaves a record, a killed run picks up where it stopped."""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from drivesim.data import curate
from drivesim.data import nuscenes as logs
from drivesim.data import store
from drivesim.errors import ConfigError, DataError
from drivesim.folders import writer_lock

SCENES = ".scenes"     # per-scene records of finished scenes: what makes a run resumable
SUMMARY = "curation.json"
CAPTION_RANGE_M = 50.0  # agents farther than this from the ego are not counted in the caption
# A clip rate this close (relative) to a camera's rate, or to a whole fraction of it, resamples that camera;
# farther off, a clip's frames would not be 1/fps apart and everything made from it would run too fast or slow.
FPS_TOLERANCE = 0.05
PR_SET_PDEATHSIG = 1  # linux/prctl.h: the signal a process gets when its parent dies


@dataclass
class IngestConfig:
    dataroot: Path
    out: Path
    version: str = "v1.0-mini"
    width: int = 448
    height: int = 256
    frames: int = 17
    fps: float | None = None  # None: the rate the log's cameras run at (measured per scene; they must agree)
    stride: int | None = None  # None: clips do not overlap (stride = frames)
    cameras: list[str] | None = None  # None: every camera of the log
    workers: int = 1
    engine: str = "local"
    on_error: str = "skip"
    curation: curate.CurationConfig = field(default_factory=curate.CurationConfig)

    def validate(self) -> None:
        positive = {"--frames": self.frames, "--workers": self.workers, "--size width": self.width,
                    "--size height": self.height}
        for option, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{option} must be an integer >= 1, got {value!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride < 1):
            raise ConfigError(f"--stride must be an integer >= 1, got {self.stride!r}")
        if self.fps is not None and not (isinstance(self.fps, (int, float)) and 0 < self.fps <= 1000):
            raise ConfigError(f"--fps must be a number in (0, 1000], got {self.fps!r}")
        if self.engine not in ("local", "ray"):
            raise ConfigError(f"--engine must be local or ray, got {self.engine!r}")
        if self.on_error not in ("skip", "fail"):
            raise ConfigError(f"--on-error must be skip or fail, got {self.on_error!r}")
        self.curation.validate()

    @property
    def clip_stride(self) -> int:
        return self.stride or self.frames


@dataclass(frozen=True)
class SceneTask:
    """Everything a worker needs for one scene: plain data, so it pickles to processes and Ray."""

    dataroot: str
    version: str
    out: str
    scene: str
    split: str
    settings: dict
    curation: curate.CurationConfig
    on_error: str


def _scene_record_path(out: Path, scene: str) -> Path:
    return Path(out) / SCENES / (scene.replace(os.sep, "_") + ".json")


def _write_json(path: Path, payload) -> None:
    """Write JSON via a temporary file and a rename: a reader sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
    os.replace(temporary, path)


class _Images:
    """Decoded frames of one scene, kept only while later clip windows still need them."""

    def __init__(self, nusc, size: tuple[int, int]):
        self.nusc, self.size, self.cache = nusc, size, {}

    def window(self, tokens: list[list[str]], first: int) -> np.ndarray:
        for index in [i for i in self.cache if i < first]:
            del self.cache[index]
        rows = []
        for offset, row in enumerate(tokens):
            if first + offset not in self.cache:
                self.cache[first + offset] = np.stack(
                    [logs.load_image(logs.image_path(self.nusc, token), self.size) for token in row])
            rows.append(self.cache[first + offset])
        return np.stack(rows)  # [T, V, H, W, 3]


def _boxes(track: logs.BoxTrack, timestamps: np.ndarray):
    """(boxes, rotations, categories, tracks, offsets) of frames whose boxes are taken at `timestamps`."""
    boxes, rotations, categories, tracks, offsets = [], [], [], [], [0]
    for when in timestamps:
        b, r, c, t = track.oriented_at(int(when))
        boxes.append(b), rotations.append(r), categories.append(c), tracks.append(t)
        offsets.append(offsets[-1] + len(b))
    return (np.concatenate(boxes), np.concatenate(rotations), np.concatenate(categories), np.concatenate(tracks),
            np.asarray(offsets, np.int32))


def _nearby_tracks(boxes, categories, tracks, offsets, world_from_ego) -> dict[int, str]:
    """Track id -> category name for agents within CAPTION_RANGE_M of the ego in some frame."""
    nearby = {}
    for t in range(len(world_from_ego)):
        rows = slice(offsets[t], offsets[t + 1])
        near = np.linalg.norm(boxes[rows, :2] - world_from_ego[t, :2, 3], axis=1) <= CAPTION_RANGE_M
        for track, category in zip(tracks[rows][near], categories[rows][near]):
            nearby[int(track)] = logs.CATEGORIES[int(category)]
    return nearby


def ingest_scene(task: SceneTask) -> dict:
    """Split one scene into clips, filter, caption and write them; record the scene as done."""
    nusc = logs.cached_log(task.dataroot, task.version)
    settings, config = task.settings, task.curation
    size, frames = (settings["width"], settings["height"]), settings["frames"]
    timeline = logs.scene_timeline(nusc, task.scene, settings["cameras"], settings["fps"])
    report = curate.CurationReport(scenes=1)
    starts = curate.clip_starts(len(timeline.timestamps), frames, settings["stride"])
    report.windows = len(starts)
    track = logs.BoxTrack(nusc, task.scene) if starts else None
    images, clips = _Images(nusc, size), {}
    for start in starts:
        clip_id = f"{task.scene}-{start:04d}"
        tokens = timeline.tokens[start:start + frames]
        if any(token is None for row in tokens for token in row):
            report.drop("missing camera")
            continue
        # Each camera's own ego pose: a frame's cameras fire tens of milliseconds apart.
        world_from_ego_cam = np.stack([logs.world_from_ego(nusc, row) for row in tokens])  # [T, V, 4, 4]
        world_from_ego = world_from_ego_cam[:, timeline.reference]
        if reason := curate.static_ego(world_from_ego, config):
            report.drop(reason)
            continue
        try:
            video = images.window(tokens, start)
        except FileNotFoundError as error:
            if task.on_error == "fail":
                raise DataError(f"{error} (clip {clip_id}; --on-error skip drops such clips)") from None
            report.drop("missing image")
            continue
        except DataError as error:
            if task.on_error == "fail":
                raise DataError(f"{error} (clip {clip_id}; --on-error skip drops such clips)") from None
            report.drop("corrupt image")
            continue
        if reason := curate.exposure(video, config) or curate.blur(video, config):
            report.drop(reason)
            continue
        timestamps = timeline.timestamps[start:start + frames]
        box_times = logs.annotation_times(nusc, [row[timeline.reference] for row in tokens], timestamps)
        boxes, rotations, categories, tracks, offsets = _boxes(track, box_times)
        caption = curate.caption(timeline.description, world_from_ego, timestamps,
                                 _nearby_tracks(boxes, categories, tracks, offsets, world_from_ego))
        polylines, poly_offsets, poly_type = logs.polylines_near(task.dataroot, timeline.location, world_from_ego)
        intrinsics, ego_from_cam = logs.calibration(nusc, tokens[0], size)
        attrs = {"source": settings["source"], "scene": task.scene, "split": task.split, "caption": caption,
                 "description": timeline.description, "location": timeline.location,
                 "cameras": settings["cameras"], "fps": settings["fps"], "start": start}
        store.write_clip(Path(task.out), store.Clip(
            clip_id, video, intrinsics, ego_from_cam, world_from_ego, timestamps, boxes, offsets, categories,
            tracks, polylines, poly_offsets, poly_type, attrs, world_from_ego_cam, rotations))
        clips[clip_id] = {"hashes": [str(h) for h in curate.clip_hashes(video)], "caption": caption}
        report.kept += 1
    record = {"scene": task.scene, "split": task.split, "report": report.to_dict(), "clips": clips}
    _write_json(_scene_record_path(Path(task.out), task.scene), record)
    return record


def die_with_parent(parent_pid: int) -> None:
    """Make this (worker) process receive SIGKILL when its parent dies, kill -9 included (Linux prctl);
    exit at once if the parent is already gone. Elsewhere a no-op: the pool's own shutdown still applies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl in this libc: nothing more to do
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _run_local(tasks: list[SceneTask], workers: int, bar) -> None:
    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            ingest_scene(task)
            bar.update(1)
        return
    context = multiprocessing.get_context("spawn")  # the parent holds threads (zarr, open3d): no fork
    # Workers die with this process, kill -9 included: none goes on writing into a store nobody holds.
    with ProcessPoolExecutor(workers, mp_context=context, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        pending = {pool.submit(ingest_scene, task) for task in tasks}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                bar.update(1)


def _run_ray(tasks: list[SceneTask], workers: int, bar) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'drivesim[ray]' (or use --engine local)") from None
    started = not ray.is_initialized()
    if started:
        # A local cluster; with RAY_ADDRESS set, ray.init joins that cluster instead.
        ray.init(num_cpus=None if os.environ.get("RAY_ADDRESS") else workers, include_dashboard=False,
                 logging_level="WARNING", log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(ingest_scene)
        pending = [remote.remote(task) for task in tasks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            try:
                ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                for other in pending:
                    ray.cancel(other)
                cause = getattr(error, "cause", None)
                raise cause if isinstance(cause, Exception) else error from None
            bar.update(1)
    finally:
        if started:
            ray.shutdown()


def _finish(out: Path, root, scenes: list[str], config: IngestConfig) -> curate.CurationReport:
    """Whole-store stages, recomputed from the scene records on every run: deduplicate, index, summarise."""
    records = [json.loads(_scene_record_path(out, scene).read_text()) for scene in scenes]
    report = curate.CurationReport()
    for record in records:
        report.merge(curate.CurationReport.from_dict(record["report"]))
    kept = {clip: (record, entry) for record in records for clip, entry in record["clips"].items()}
    duplicates = curate.near_duplicates({clip: [int(h) for h in entry["hashes"]] for clip, (_, entry) in kept.items()},
                                        config.curation.max_hash_distance)
    for clip in sorted(duplicates):
        store.remove_clip(out, clip)
        report.drop("near duplicate")
        report.kept -= 1
    index = {clip: {"scene": record["scene"], "split": record["split"], "caption": entry["caption"]}
             for clip, (record, entry) in sorted(kept.items()) if clip not in duplicates}
    report.by_split = {split: sum(1 for e in index.values() if e["split"] == split) for split in store.SPLITS}
    root.attrs.update({"clips": index, "curation": report.to_dict()})
    _write_json(out / SUMMARY, {"settings": dict(root.attrs["settings"]), "curation": report.to_dict(),
                                "duplicates": dict(sorted(duplicates.items())),
                                "scenes": {r["scene"]: {"split": r["split"], **r["report"]} for r in records}})
    return report


def _fits(rate: float, fps: float) -> bool:
    """Whether frames of a `rate` Hz camera, every round(rate / fps)-th, are 1/fps apart within FPS_TOLERANCE."""
    step = max(round(rate / fps), 1)
    return abs(rate / step - fps) <= FPS_TOLERANCE * fps


def clip_fps(nusc, scenes: list[str], cameras: list[str], asked: float | None) -> float:
    """The store's frame rate: --fps where it fits every scene's reference camera, else the rate those
    cameras run at. One rate per store: the models and everything downstream take a store's clips as one
    frame rate. Raises ConfigError naming --fps, the scene and its measured rate."""
    camera = cameras[logs.reference_camera(cameras)]
    rates = {scene: logs.scene_rate(nusc, scene, cameras) for scene in scenes}
    rates = {scene: rate for scene, rate in rates.items() if rate}
    if asked is not None:
        for scene, rate in rates.items():
            if not _fits(rate, asked):
                raise ConfigError(f"--fps {asked:g}: {camera} of {scene} runs at {rate:g} Hz; --fps must be within "
                                  f"{FPS_TOLERANCE:.0%} of that or of a whole fraction of it ({rate:g}, {rate / 2:g}, "
                                  f"{rate / 3:.3g}, ...), or leave --fps out to use the camera's rate")
        return float(asked)
    if not rates:
        raise ConfigError(f"no scene has two {camera} frames to measure the camera rate from: pass --fps")
    chosen = sorted(rates.values())[len(rates) // 2]
    odd = {scene: rate for scene, rate in rates.items() if abs(rate - chosen) > FPS_TOLERANCE * chosen}
    if odd:
        scene, rate = next(iter(odd.items()))
        raise ConfigError(f"{camera} runs at {chosen:g} Hz in most scenes but at {rate:g} Hz in {scene} "
                          f"({len(odd)} scene(s) differ) and a store holds one frame rate: pass --fps")
    return chosen


def ingest(config: IngestConfig, progress: bool = True) -> curate.CurationReport:
    """Ingest every scene of the log into the store at config.out; returns the curation report. One ingest
    writes a store at a time: another one running into config.out is a DataError (writer_lock)."""
    config.validate()
    nusc = logs.open_log(config.dataroot, config.version)
    available = logs.camera_channels(nusc)
    cameras = list(config.cameras or available)
    unknown = [c for c in cameras if c not in available]
    if unknown:
        raise ConfigError(f"--cameras {','.join(unknown)}: not in the log (cameras: {', '.join(available)})")
    scenes = [scene["name"] for scene in nusc.scene]
    fps = clip_fps(nusc, scenes, cameras, config.fps)  # before the store exists: a refused rate writes nothing
    source = "drivesim-synth" if logs.is_synthetic(config.dataroot) else "nuscenes"
    settings = {"source": source, "dataroot": str(Path(config.dataroot).resolve()), "version": config.version,
                "width": config.width, "height": config.height, "frames": config.frames, "fps": fps,
                "stride": config.clip_stride, "cameras": cameras, "curation": asdict(config.curation)}
    out = Path(config.out)
    with writer_lock(out, "--out"):  # a second ingest into the same store is refused, not interleaved
        return _ingest_into(out, config, scenes, settings, source, progress)


def _ingest_into(out: Path, config: IngestConfig, scenes: list[str], settings: dict, source: str,
                 progress: bool) -> curate.CurationReport:
    from tqdm import tqdm

    root = store.create_store(out, settings, list(logs.CATEGORIES), list(logs.POLY_TYPES))
    cleared = store.clear_partial(out)
    if cleared and progress:
        print(f"resuming: removed {cleared} unfinished write(s) of an interrupted run")
    official = None if source == "drivesim-synth" else curate.official_splits(config.version)
    splits = curate.assign_splits(scenes, config.curation.val_fraction, official)
    pending = [SceneTask(str(config.dataroot), config.version, str(out), scene, splits[scene], settings,
                         config.curation, config.on_error)
               for scene in scenes if not _scene_record_path(out, scene).is_file()]
    if progress and len(pending) < len(scenes):
        print(f"resuming: {len(scenes) - len(pending)} of {len(scenes)} scenes already done")
    with tqdm(total=len(pending), desc="ingest", unit="scene", disable=not progress) as bar:
        if config.engine == "ray":
            _run_ray(pending, config.workers, bar)
        else:
            _run_local(pending, config.workers, bar)
    return _finish(out, root, scenes, config)
