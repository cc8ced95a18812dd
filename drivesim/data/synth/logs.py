"""`drivesim synth`: procedural driving logs written as a nuScenes v1.0 data set.

Each scene is a town (one of up to four locations), a look (time of day and weather), an ego
manoeuvre and the traffic around it, rendered by the rig's cameras at `fps` (key frames at
2 Hz, sweeps between) plus a lidar at key frames. Everything derives from `seed`, so the same
options give the same files. See docs/synthetic_logs.md for the layout of the output.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from drivesim import geometry, rigs
from drivesim.data.synth import side_files
from drivesim.data.synth.meshes import agents_mesh, lamp_positions, town_mesh
from drivesim.data.nuscenes_tables import START_US, NuScenesWriter, attribute_for, check_version
from drivesim.data.synth.raycast import Look, Renderer
from drivesim.data.synth.town import Town, generate_town
from drivesim.data.synth.traffic import Traffic, simulate
from drivesim.errors import ConfigError
from drivesim.folders import check_out_dir, publish_folder, staging_folder

KEY_FRAME_HZ = 2
LOCATIONS = 4
ANNOTATION_RANGE = 60.0  # metres from the ego, as far as nuScenes annotates
EGO_FROM_LIDAR = geometry.transform_from(np.array([0.943713, 0.0, 1.84023]), np.array([1.0, 0.0, 0.0, 0.0]))
MANOEUVRES = ("straight", "left", "right", "lane_change")


@dataclass(frozen=True)
class SynthConfig:
    """Options of `drivesim synth`; `validate` names the option that is wrong."""

    out: Path
    scenes: int = 4
    seconds: float = 20.0
    width: int = 448
    height: int = 256
    fps: int = 12
    seed: int = 0
    rig: str = "nuscenes"
    version: str = "v1.0-mini"
    overwrite: bool = False
    workers: int = 1  # scenes rendered side by side in processes; 0: one per core

    def validate(self) -> None:
        if self.scenes < 1:
            raise ConfigError(f"--scenes must be at least 1, got {self.scenes}")
        if not self.seconds > 0:
            raise ConfigError(f"--seconds must be positive, got {self.seconds}")
        if self.seconds > 600:
            raise ConfigError(f"--seconds must be at most 600 per scene, got {self.seconds}")
        if self.width < 16 or self.height < 16 or self.width > 4096 or self.height > 4096:
            raise ConfigError(f"--size must be between 16x16 and 4096x4096 pixels, got {self.width}x{self.height}")
        if self.fps < KEY_FRAME_HZ or self.fps % KEY_FRAME_HZ:
            raise ConfigError(f"--fps must be a positive multiple of {KEY_FRAME_HZ} (key frames are at "
                              f"{KEY_FRAME_HZ} Hz), got {self.fps}")
        if self.fps > 60:
            raise ConfigError(f"--fps must be at most 60, got {self.fps}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be 0 (automatic) or more, got {self.workers}")
        if self.seed < 0:  # numpy's seed sequences take no negative entropy
            raise ConfigError(f"--seed must be >= 0, got {self.seed}")
        check_version(self.version)
        check_out_dir(self.out, self.overwrite)

    @property
    def key_frames(self) -> int:
        """Key frames per scene: one every 0.5 s, the scene length rounded down to that."""
        return int(self.seconds * KEY_FRAME_HZ + 1e-9) + 1

    @property
    def frames_per_key(self) -> int:
        return self.fps // KEY_FRAME_HZ

    @property
    def frames(self) -> int:
        return (self.key_frames - 1) * self.frames_per_key + 1


@dataclass
class ScenePlan:
    index: int
    name: str
    location: int
    look: Look
    manoeuvre: str
    seed: int

    @property
    def logfile(self) -> str:
        return f"drivesim-{self.seed:08x}-{self.index:04d}"


def plan_scene(config: SynthConfig, index: int) -> ScenePlan:
    rng = np.random.default_rng([config.seed, index, 1])
    return ScenePlan(index, f"scene-{index + 1:04d}", index % LOCATIONS, Look.sample(rng),
                     str(rng.choice(MANOEUVRES)), int(rng.integers(0, 2**31)))


def location_town(config: SynthConfig, location: int) -> Town:
    return generate_town(int(np.random.default_rng([config.seed, location, 2]).integers(0, 2**31)),
                         name=f"drivesim-town-{location}")


@dataclass
class SceneResult:
    """What a rendered scene hands to the table writer (files are already on disk)."""

    plan: ScenePlan
    description: str
    timestamps: list[int]
    world_from_ego: np.ndarray  # (T, 4, 4)
    images: list[list[str]]  # [frame][camera] relative paths
    lidar: list[str]  # per key frame
    annotations: list[list[dict]] = field(default_factory=list)  # per key frame


def _visibility_level(visible: int, total: int) -> int:
    fraction = visible / total if total else 0.0
    return 1 if fraction <= 0.4 else 2 if fraction <= 0.6 else 3 if fraction <= 0.8 else 4


class SceneWorld:
    """One scene's town, traffic and renderer; renders any frame on its own (deterministically)."""

    def __init__(self, config: SynthConfig, plan: ScenePlan):
        self.config, self.plan = config, plan
        self.rig = rigs.load_rig(config.rig, (config.width, config.height))
        self.town = location_town(config, plan.location)
        self.traffic = simulate(self.town, np.random.default_rng(plan.seed), (config.frames - 1) / config.fps,
                                config.fps, plan.manoeuvre)
        self.renderer = Renderer(town_mesh(self.town), plan.look, lamp_positions(self.town), seed=plan.seed)
        self._meshes: dict = {}

    def timestamp(self, frame: int) -> int:
        return START_US + self.plan.index * 3_600_000_000 + round(frame * 1e6 / self.config.fps)

    def world_from_ego(self, frame: int) -> np.ndarray:
        x, y, yaw = self.traffic.ego_poses[frame]
        matrix = np.eye(4)
        matrix[:3, :3] = geometry.matrix_from_yaw(np.float64(yaw))
        matrix[:3, 3] = (x, y, 0.0)
        return matrix

    def frame_at(self, timestamp: int) -> int:
        """The frame index of a timestamp written by this scene."""
        frame = round((timestamp - self.timestamp(0)) * self.config.fps / 1e6)
        if not 0 <= frame < self.config.frames or self.timestamp(frame) != timestamp:
            raise ValueError(f"{self.plan.name} has no frame at {timestamp}")
        return frame

    def render(self, frame: int):
        """(rendered cameras, the posed agent mesh) at `frame`."""
        world_from_ego = self.world_from_ego(frame)
        forward, left = world_from_ego[:3, 0], world_from_ego[:3, 1]
        front = world_from_ego[:3, 3] + forward * 3.6 + np.array([0, 0, 0.7])
        self.renderer.set_headlights((np.stack([front + left * 0.7, front - left * 0.7]), forward))
        dynamic = agents_mesh(self.traffic.agents, frame, self._meshes)
        world_from_cams = world_from_ego @ self.rig.ego_from_cam
        return self.renderer.render(dynamic, world_from_cams, self.rig.intrinsics, self.config.width,
                                    self.config.height, frame), dynamic


def render_scene(config: SynthConfig, plan: ScenePlan, staging: Path, ticks=None) -> SceneResult:
    """Simulate and render one scene into `staging`; `ticks` (a queue) gets one item a frame."""
    world = SceneWorld(config, plan)
    rig = world.rig
    result = SceneResult(plan, "", [], np.zeros((config.frames, 4, 4)), [], [])
    stride = max(1, round(config.width / 160))  # visibility is a fraction, not a mask: a coarse grid will do
    for frame in range(config.frames):
        timestamp = world.timestamp(frame)
        world_from_ego = world.world_from_ego(frame)
        rendered, dynamic = world.render(frame)
        key = frame % config.frames_per_key == 0
        folder = "samples" if key else "sweeps"
        paths = []
        for v, camera in enumerate(rig.names):
            path = f"{folder}/{camera}/{plan.logfile}__{camera}__{timestamp}.jpg"
            Image.fromarray(rendered.images[v]).save(staging / path, quality=92)
            paths.append(path)
        result.timestamps.append(timestamp)
        result.world_from_ego[frame] = world_from_ego
        result.images.append(paths)
        if key:
            points, lidar_ids = world.renderer.lidar(dynamic, world_from_ego @ EGO_FROM_LIDAR)
            result.annotations.append(_annotate(world, dynamic, frame, lidar_ids, stride))
            lidar_path = f"samples/LIDAR_TOP/{plan.logfile}__LIDAR_TOP__{timestamp}.pcd.bin"
            points.tofile(staging / lidar_path)
            result.lidar.append(lidar_path)
        if ticks is not None:
            ticks.put(1)
    result.description = describe(plan, world.traffic, result.annotations)
    return result


def _annotate(world: SceneWorld, dynamic, frame: int, lidar_ids: np.ndarray, stride: int) -> list[dict]:
    """Boxes of every agent within range at a key frame, with visibility and lidar point counts."""
    config, traffic = world.config, world.traffic
    world_from_ego = world.world_from_ego(frame)
    world_from_cams = world_from_ego @ world.rig.ego_from_cam
    visibility: dict[int, tuple[int, int]] = {}  # nuScenes visibility: over all six images together
    for camera in world.renderer.visibility(dynamic, world_from_cams, world.rig.intrinsics, config.width,
                                            config.height, stride):
        for agent, (seen, whole) in camera.items():
            before = visibility.get(agent, (0, 0))
            visibility[agent] = (before[0] + seen, before[1] + whole)
    lidar_counts = dict(zip(*np.unique(lidar_ids, return_counts=True)))
    ego_xy = world_from_ego[:2, 3]
    boxes = []
    for agent in traffic.agents:
        if not agent.present[frame]:
            continue
        x, y, z, yaw = agent.poses[frame]
        if np.hypot(x - ego_xy[0], y - ego_xy[1]) > ANNOTATION_RANGE:
            continue
        w, l, h = agent.size
        visible, total = visibility.get(agent.id, (0, 0))
        boxes.append(dict(agent=agent.id, category=agent.category, translation=[x, y, z + h / 2],
                          size=[w, l, h], rotation=geometry.quaternion_from_matrix(
                              geometry.matrix_from_yaw(np.float64(yaw))).tolist(),
                          visibility=_visibility_level(visible, total),
                          visible_fraction=visible / total if total else 0.0,
                          attributes=attribute_for(agent.category, float(agent.speeds[frame]), agent.parked),
                          num_lidar_pts=int(lidar_counts.get(agent.id, 0))))
    return boxes


def describe(plan: ScenePlan, traffic: Traffic, annotations: list[list[dict]]) -> str:
    """A nuScenes-style description from what happened: 'night, rain, left turn at intersection, ...'."""
    yaw = np.unwrap(traffic.ego_poses[:, 2])
    turn = yaw[-1] - yaw[0]
    start, end = traffic.ego_poses[0, :2], traffic.ego_poses[-1, :2]
    heading = np.array([np.cos(yaw[0]), np.sin(yaw[0])])
    offset = end - start
    lateral = float(heading[0] * offset[1] - heading[1] * offset[0])  # left of the start heading
    if turn > 1.0:
        motion = "left turn at intersection"
    elif turn < -1.0:
        motion = "right turn at intersection"
    elif abs(turn) < 0.3 and abs(lateral) > 2.5:
        motion = "lane change left" if lateral > 0 else "lane change right"
    elif abs(turn) > 0.3:
        motion = "turning left" if turn > 0 else "turning right"
    else:
        motion = "driving straight"
    parts = [plan.look.describe(), motion]
    stopped = traffic.ego_speeds < 0.3
    if stopped.sum() / traffic.fps > 1.0:
        parts.append("ego waits")
    seen = {}
    for boxes in annotations:
        for box in boxes:
            if box["visibility"] >= 2:
                seen[box["agent"]] = box["category"]
    vehicles = sum(c.startswith("vehicle.") for c in seen.values())
    people = sum(c.startswith("human.") for c in seen.values())
    parts.append(f"{vehicles} vehicles, {people} pedestrians")
    return ", ".join(parts)


def _render_in_worker(args):
    config, plan, staging, ticks = args
    import torch

    from drivesim.data.synth import raycast

    torch.set_num_threads(1)  # scenes run side by side, one core each
    raycast.THREADS = 1
    return render_scene(config, plan, staging, ticks)


def generate(config: SynthConfig, progress: bool = True) -> Path:
    """Write the whole data set to `config.out`; the folder appears only once complete."""
    config.validate()
    out = Path(config.out)
    rig = rigs.load_rig(config.rig, (config.width, config.height))
    staging = staging_folder(out)
    plans = [plan_scene(config, i) for i in range(config.scenes)]
    workers = config.workers or min(os.cpu_count() or 1, config.scenes)
    started = time.time()
    try:
        for folder in ("samples", "sweeps"):
            for camera in rig.names:
                (staging / folder / camera).mkdir(parents=True, exist_ok=True)
        (staging / "samples" / "LIDAR_TOP").mkdir(parents=True)
        results = _render_all(config, plans, staging, workers, progress)
        _write_tables(config, rig, results, staging)
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if progress:
        frames = config.scenes * config.frames
        elapsed = time.time() - started
        print(f"wrote {config.scenes} scenes, {frames} frames x {len(rig.names)} cameras to {out} "
              f"in {elapsed:.1f} s ({frames / elapsed:.2f} frames/s)")
    return out


def _render_all(config, plans, staging, workers, progress) -> list[SceneResult]:
    total = config.scenes * config.frames
    bar = tqdm(total=total, unit="frame", desc="synth", disable=not progress, smoothing=0.1)
    if workers <= 1:
        class Tick:
            def put(self, n):
                bar.update(n)

        results = [render_scene(config, plan, staging, Tick()) for plan in plans]
        bar.close()
        return results
    context = multiprocessing.get_context("spawn")  # torch and open3d do not like fork
    with context.Manager() as manager:
        ticks = manager.Queue()
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            futures = [pool.submit(_render_in_worker, (config, plan, staging, ticks)) for plan in plans]
            done = 0
            while done < total:
                if all(f.done() for f in futures) and ticks.empty():
                    break
                try:
                    bar.update(ticks.get(timeout=0.5))
                    done += 1
                except Exception:
                    continue
            results = [f.result() for f in futures]
    bar.close()
    return results


def _write_tables(config: SynthConfig, rig: rigs.Rig, results: list[SceneResult], staging: Path) -> None:
    writer = NuScenesWriter(staging, config.version, seed=config.seed)
    calibrated = {}
    for camera in rig.cameras:
        calibrated[camera.name] = writer.add_calibrated_sensor(camera.name, "camera", camera.ego_from_cam,
                                                               camera.intrinsics)
    calibrated["LIDAR_TOP"] = writer.add_calibrated_sensor("LIDAR_TOP", "lidar", EGO_FROM_LIDAR)
    logs_by_location: dict[int, list[str]] = {}
    scenes_meta = {}
    for result in results:
        plan = result.plan
        town_name = f"drivesim-town-{plan.location}"
        date = time.strftime("%Y-%m-%d", time.gmtime(result.timestamps[0] / 1e6))
        log = writer.add_log(plan.logfile, "drivesim-ego", date, town_name)
        logs_by_location.setdefault(plan.location, []).append(log)
        writer.begin_scene(plan.name, result.description, log)
        every = config.frames_per_key
        for k, boxes in enumerate(result.annotations):
            frame = k * every
            sample = writer.add_sample(result.timestamps[frame])
            for sweep in range(max(0, frame - every + 1), frame):
                for v, camera in enumerate(rig.names):
                    writer.add_sample_data(camera, calibrated[camera], sample, result.timestamps[sweep],
                                           result.world_from_ego[sweep], result.images[sweep][v],
                                           config.width, config.height, is_key_frame=False)
            for v, camera in enumerate(rig.names):
                writer.add_sample_data(camera, calibrated[camera], sample, result.timestamps[frame],
                                       result.world_from_ego[frame], result.images[frame][v],
                                       config.width, config.height, is_key_frame=True)
            writer.add_sample_data("LIDAR_TOP", calibrated["LIDAR_TOP"], sample, result.timestamps[frame],
                                   result.world_from_ego[frame], result.lidar[k], 0, 0, is_key_frame=True,
                                   fileformat="pcd")
            for box in boxes:
                writer.add_annotation(sample, f"{plan.name}/{box['agent']}", box["category"], box["translation"],
                                      box["size"], box["rotation"], box["visibility"], box["attributes"],
                                      num_lidar_pts=box["num_lidar_pts"])
        writer.end_scene()
        agent_ids = sorted({box["agent"] for boxes in result.annotations for box in boxes})
        scenes_meta[plan.name] = {
            "description": result.description, "location": town_name, "logfile": plan.logfile,
            "look": asdict(plan.look), "planned_manoeuvre": plan.manoeuvre, "seed": plan.seed,
            "instances": {writer.instance_token(f"{plan.name}/{a}"): a for a in agent_ids},
        }
    for location, logs in sorted(logs_by_location.items()):
        token = writer.add_map(logs)
        town = location_town(config, location)
        side_files.write_drivable_png(town, staging / "maps" / f"{token}.png")
        side_files.write_town_json(town, staging / "drivesim" / "towns" / f"{town.name}.json")
    writer.write()
    side_files.write_json(staging / "drivesim" / "scenes.json", {
        "generator": "drivesim synth",
        "config": {k: str(v) if isinstance(v, Path) else v
                   for k, v in asdict(config).items() if k not in ("out", "overwrite", "workers")},
        "rig": config.rig, "scenes": scenes_meta})
