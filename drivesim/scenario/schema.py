"""The Scenario: the rig, the ego's path, the other road users and the road that a rollout shows."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from drivesim.data.nuscenes import CATEGORIES as STORE_CATEGORIES
from drivesim.errors import ConfigError, ScenarioError
from drivesim.rigs import Rig, _RigFile, show_value, views_folder, load_rig, rig_names
from drivesim.render import BUILDING_SETBACK, SIDEWALK_WIDTH, LayoutFrame, Surroundings
from drivesim.scenario.trajectory import Trajectory

CATEGORIES = tuple(name for name in STORE_CATEGORIES if name != "other")  # the 23 nuScenes categories
MAX_SEED = 2**62  # seeds are 0 .. MAX_SEED - 1: torch takes 64-bit seeds, and a rollout adds the chunk index
_RIG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# A painted line's kind in a scenario file -> its polyline type (drivesim.render.MAP_POLY_TYPES, the store's).
LANE_LINE_TYPES = {"dashed": "lane_divider", "solid": "solid_line", "double_yellow": "double_yellow"}
MAX_SIDEWALK_WIDTH, MAX_BUILDING_SETBACK = 20.0, 100.0  # metres
CLOSED = 1e-3  # metres: a polygon whose last point lies this near its first is closed


@dataclass(frozen=True, eq=False)
class Agent:
    """A road user other than the ego: a box that follows a trajectory, or stands parked."""

    id: str
    category: str                     # a nuScenes category
    size: tuple[float, float, float]  # width, length, height (nuScenes wlh), metres
    trajectory: Trajectory            # one pose when parked
    parked: bool = False

    def present(self, times) -> np.ndarray:
        """[F] -> [F] bool: a moving agent exists from its first waypoint to its last."""
        times = np.asarray(times, dtype=np.float64)
        if self.parked:
            return np.ones(len(times), dtype=bool)
        eps = 1e-9
        return (times >= self.trajectory.start - eps) & (times <= self.trajectory.end + eps)


@dataclass(frozen=True, eq=False)
class Road:
    """Lane centre lines, road edges, painted lines, crosswalks and stop lines, [P, 3] world-frame polylines;
    and how wide the sidewalks beyond the road edges are and how far the buildings stand back from them."""

    lanes: tuple[np.ndarray, ...] = ()
    road_edges: tuple[np.ndarray, ...] = ()
    lane_lines: tuple[tuple[str, np.ndarray], ...] = ()  # (kind: a key of LANE_LINE_TYPES, points)
    crosswalks: tuple[np.ndarray, ...] = ()  # polygons of >= 3 corners, drawn closed
    stop_lines: tuple[np.ndarray, ...] = ()
    sidewalk_width: float = SIDEWALK_WIDTH      # metres, 0 to MAX_SIDEWALK_WIDTH
    building_setback: float = BUILDING_SETBACK  # metres from the sidewalk's back, 0 to MAX_BUILDING_SETBACK

    def map_polylines(self) -> tuple[list[np.ndarray], list[str]]:
        """(float32 [P, 3] polylines, their drivesim.render.MAP_POLY_TYPES): lanes, road edges, lane lines,
        crosswalks (closed: the first corner repeated at the end), stop lines."""
        lines = [*(("lane", p) for p in self.lanes), *(("road_edge", p) for p in self.road_edges),
                 *((LANE_LINE_TYPES[kind], p) for kind, p in self.lane_lines),
                 *(("crosswalk", closed_polygon(p)) for p in self.crosswalks),
                 *(("stop_line", p) for p in self.stop_lines)]
        return [np.asarray(p).astype(np.float32) for _, p in lines], [kind for kind, _ in lines]

    def mapped(self, transform) -> Road:
        """The road with `transform` ([P, 3] -> [P, 3]) applied to every polyline; widths kept."""
        return Road(tuple(transform(p) for p in self.lanes), tuple(transform(p) for p in self.road_edges),
                    tuple((kind, transform(p)) for kind, p in self.lane_lines),
                    tuple(transform(p) for p in self.crosswalks), tuple(transform(p) for p in self.stop_lines),
                    self.sidewalk_width, self.building_setback)


def is_closed(points: np.ndarray) -> bool:
    """Whether a polygon's last point repeats its first (within CLOSED metres)."""
    points = np.asarray(points)
    return len(points) > 1 and bool(np.allclose(points[0], points[-1], rtol=0.0, atol=CLOSED))


def closed_polygon(points: np.ndarray) -> np.ndarray:
    """The polygon with its first corner repeated at the end, unless it ends there already."""
    points = np.asarray(points)
    return points if len(points) == 0 or is_closed(points) else np.concatenate([points, points[:1]])


@dataclass(frozen=True)
class StartFrames:
    """Real frames to start from: `frame` of `clip` in the clip store `store`."""

    store: str
    clip: str
    frame: int = 0


@dataclass(frozen=True, eq=False)
class Scenario:
    """What a rollout is asked to show. Build it with load, from_dict, from_clip or an edit: they validate."""

    rig_spec: str | dict           # a views/ name or an inline rig document (never a path: see rig)
    fps: float
    duration: float                # seconds; frames at 0, 1/fps, ... up to duration
    ego: Trajectory
    prompt: str
    agents: tuple[Agent, ...] = ()
    road: Road = Road()
    name: str = ""
    seed: int = 0
    start_frames: StartFrames | None = None
    source: str = "scenario"       # names the scenario in errors: its file, or what it came from
    base_dir: Path | None = None   # the scenario file's folder: a relative start_frames.store lies here
    time_of_day: str = "day"       # one of drivesim.render.TIMES_OF_DAY
    weather: str = "clear"         # one of drivesim.render.WEATHERS

    @cached_property
    def rig(self) -> Rig:
        """The rig named in views/, or the inline one. A scenario never names a rig file: a file someone
        uploads to the editor must not make the server open (and quote) a path of its choosing; a rig file
        given on the command line (`--rig FILE`) is inlined instead (files.load)."""
        if isinstance(self.rig_spec, dict):
            try:
                return _RigFile(Path(f"{self.source}: rig")).rig(self.rig_spec)
            except ScenarioError:
                raise
            except ConfigError as error:  # the inline rig's own checks: one error type for every scenario fault
                raise ScenarioError(str(error)) from None
        if not _RIG_NAME.fullmatch(self.rig_spec) or self.rig_spec not in rig_names():
            raise ScenarioError(f"{self.source}: rig: no such rig {show_value(self.rig_spec)} in {views_folder()} "
                                f"(rigs: {', '.join(rig_names()) or '(none)'}); a scenario names one of those or "
                                "holds its rig inline, and a rig file is given with --rig FILE")
        try:
            return load_rig(self.rig_spec)
        except ConfigError as error:  # a broken views/ file
            raise ScenarioError(f"{self.source}: rig: {error}") from None

    def start_store(self) -> Path | None:
        """Where start_frames.store lies: a relative path is taken from the scenario file's folder (from the
        working directory for a scenario that has no file), so a scenario travels with its start frames."""
        if self.start_frames is None:
            return None
        store = Path(self.start_frames.store)
        if store.is_absolute() or self.base_dir is None:
            return store
        return Path(self.base_dir) / store

    @property
    def num_frames(self) -> int:
        # 1e-4, not less: durations are saved to 6 decimals (plain_value), which may drop up to 5e-7 s x fps
        return int(math.floor(self.duration * self.fps + 1e-4)) + 1

    def frame_times(self) -> np.ndarray:
        """[F] seconds of the scenario's frames."""
        return np.arange(self.num_frames) / self.fps

    def agent(self, agent_id: str) -> Agent:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        known = ", ".join(agent.id for agent in self.agents) or "(none)"
        raise ScenarioError(f"{self.source}: no agent {agent_id!r}; agents: {known}")

    def world_from_ego(self, times=None) -> np.ndarray:
        """[F] seconds (default: the frames) -> [F, 4, 4] float64 ego poses."""
        times = self.frame_times() if times is None else np.asarray(times, dtype=np.float64).reshape(-1)
        poses = np.tile(np.eye(4), (len(times), 1, 1))
        poses[:, :3, :3] = self.ego.rotation(times)
        poses[:, :3, 3] = self.ego.position(times)
        return poses

    def layout_frames(self, times=None) -> list:
        """One drivesim.render.LayoutFrame per time (default: the frames), world frame."""
        times = self.frame_times() if times is None else np.asarray(times, dtype=np.float64).reshape(-1)
        poses = self.world_from_ego(times)
        present = np.array([agent.present(times) for agent in self.agents]).reshape(len(self.agents), len(times))
        centres = [agent.trajectory.position(times) + [0.0, 0.0, agent.size[2] / 2] for agent in self.agents]
        yaws = [agent.trajectory.yaw(times) for agent in self.agents]
        polylines, poly_types = self.road.map_polylines()
        surroundings = self.surroundings()
        frames = []
        for f in range(len(times)):
            rows = [np.array([*centres[a][f], *agent.size, yaws[a][f]]) for a, agent in enumerate(self.agents)
                    if present[a, f]]
            boxes = np.array(rows, dtype=np.float32).reshape(-1, 7)
            categories = [agent.category for a, agent in enumerate(self.agents) if present[a, f]]
            frames.append(LayoutFrame(world_from_ego=poses[f], boxes=boxes, categories=categories,
                                      polylines=polylines, poly_types=list(poly_types), surroundings=surroundings))
        return frames

    def surroundings(self) -> Surroundings:
        """The road's sidewalk width and building setback, the scenario's time of day and weather."""
        return Surroundings(float(self.road.sidewalk_width), float(self.road.building_setback), self.time_of_day,
                            self.weather)

    def summary(self) -> str:
        rig = self.rig
        return (f"{self.name or '(unnamed)'}: rig {rig.name} ({len(rig.cameras)} cameras), {self.duration:g} s at "
                f"{self.fps:g} fps ({self.num_frames} frames), {len(self.agents)} agent(s), "
                f"{len(self.road.lanes)} lane(s), {len(self.road.road_edges)} road edge(s)"
                + "".join(f", {count} {what}" for count, what in ((len(self.road.lane_lines), "lane line(s)"),
                                                                   (len(self.road.crosswalks), "crosswalk(s)"),
                                                                   (len(self.road.stop_lines), "stop line(s)"))
                          if count)
                + f"; {self.time_of_day}, {self.weather}")

    def to_dict(self) -> dict:
        """The YAML document (load(save(s)) == s up to 1e-6 rounding)."""
        document = {"name": self.name, "prompt": self.prompt, "rig": self.rig_spec, "fps": plain_value(self.fps),
                    "duration": plain_value(self.duration), "seed": self.seed, "time_of_day": self.time_of_day,
                    "weather": self.weather}
        if self.start_frames is not None:
            document["start_frames"] = {"store": self.start_frames.store, "clip": self.start_frames.clip,
                                        "frame": self.start_frames.frame}
        document["ego"] = _trajectory_document(self.ego)
        document["agents"] = [_agent_document(agent) for agent in self.agents]
        road = self.road
        document["road"] = {"lanes": [_points_document(p) for p in road.lanes],
                            "road_edges": [_points_document(p) for p in road.road_edges],
                            "lane_lines": [{"type": kind, "points": _points_document(p)}
                                           for kind, p in road.lane_lines],
                            "crosswalks": [_points_document(p) for p in road.crosswalks],
                            "stop_lines": [_points_document(p) for p in road.stop_lines],
                            "sidewalk_width": plain_value(road.sidewalk_width),
                            "building_setback": plain_value(road.building_setback)}
        return document


def plain_value(value: float) -> float | int:
    """A number as a scenario file holds it: rounded to 6 decimals, an int when whole."""
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value


def _points_document(points: np.ndarray) -> list:
    return [[plain_value(c) for c in (p if p[2] != 0 else p[:2])] for p in points]


def _trajectory_document(trajectory: Trajectory) -> dict:
    if trajectory.rotations is not None:
        return {"poses": [{"t": plain_value(t), "translation": [plain_value(c) for c in p],
                           "rotation": [plain_value(c) for c in q]}
                          for t, p, q in zip(trajectory.times, trajectory.positions, trajectory.rotations)]}
    rows = []
    for i, (t, p) in enumerate(zip(trajectory.times, trajectory.positions)):
        row = {"t": plain_value(t), "x": plain_value(p[0]), "y": plain_value(p[1])}
        if p[2] != 0:
            row["z"] = plain_value(p[2])
        if trajectory.yaws is not None:
            row["yaw"] = plain_value(trajectory.yaws[i])
        rows.append(row)
    return {"waypoints": rows}


def _agent_document(agent: Agent) -> dict:
    document = {"id": agent.id, "category": agent.category, "size": [plain_value(c) for c in agent.size]}
    if agent.parked:
        x, y, z = agent.trajectory.positions[0]
        document["parked"] = {"x": plain_value(x), "y": plain_value(y), **({"z": plain_value(z)} if z else {}),
                              "yaw": plain_value(agent.trajectory.yaw([0.0])[0])}
    else:
        document.update(_trajectory_document(agent.trajectory))
    return document
