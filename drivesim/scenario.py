"""Scenarios: the rig, the ego's path, the other road users and the road that a rollout shows.

A Scenario comes from a YAML file (scenarios/*.yaml, schema in scenarios/README.md) or a stored
clip, and every edit returns a new Scenario validated again. Trajectories are shape-preserving
cubic splines (PCHIP) through the waypoints: continuous velocity, and no overshoot, so a car that
stops at a waypoint does not roll back.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import yaml

from drivesim.data.nuscenes import CATEGORIES as STORE_CATEGORIES
from drivesim.data.traffic import EGO_REAR_OVERHANG, EGO_SIZE
from drivesim.errors import ConfigError, ScenarioError
from drivesim.geometry import Rig, _RigFile, _show, load_rig, matrix_from_quaternion, matrix_from_yaw
from drivesim.render import LayoutFrame

__all__ = [
    "CATEGORIES", "MAX_BYTES", "Agent", "Limits", "Road", "Scenario", "StartFrames", "Trajectory", "add_agent",
    "from_clip", "from_dict", "limits_for", "load", "mirror", "move_agent", "move_ego", "remove_agent", "save",
    "scale_speed", "set_ego_trajectory", "shift_time",
]

MAX_BYTES = 10 * 1024 * 1024
CATEGORIES = tuple(name for name in STORE_CATEGORIES if name != "other")  # the 23 nuScenes categories
# Bounds that keep a hostile file (YAML aliases repeat a list for free) from costing minutes or gigabytes.
MAX_ITEMS = 1_000_000
MAX_FPS, MAX_DURATION = 120.0, 3600.0
CHECK_HZ = 50.0  # kinematic limits are checked on this grid, not only at the frames
MOVING = 0.3  # m/s: below this, a heading taken from the direction of travel holds its last value


@dataclass(frozen=True)
class Limits:
    """What a road user can physically do."""

    speed: float         # m/s
    acceleration: float  # m/s^2, magnitude: braking, accelerating and cornering together
    yaw_rate: float      # rad/s


VEHICLE_LIMITS = Limits(speed=70.0, acceleration=12.0, yaw_rate=2.0)
PEDESTRIAN_LIMITS = Limits(speed=12.0, acceleration=8.0, yaw_rate=2 * math.pi)
ANIMAL_LIMITS = Limits(speed=25.0, acceleration=15.0, yaw_rate=2 * math.pi)


def limits_for(category: str | None) -> Limits:
    """The ego (None) and vehicles get car limits; people and animals their own."""
    if category is not None and category.startswith("human."):
        return PEDESTRIAN_LIMITS
    return ANIMAL_LIMITS if category == "animal" else VEHICLE_LIMITS


def _frozen(array, dtype=np.float64) -> np.ndarray:
    array = np.array(array, dtype=dtype)
    array.setflags(write=False)
    return array


# ---------------------------------------------------------------- trajectories


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Timed poses. Positions are the ego's rear axle or an agent's box bottom centre, world frame.

    Orientation: `yaws` [K], or `rotations` [K, 4] (w, x, y, z; full poses, as logs give), or
    neither: the heading then follows the direction of travel.
    """

    times: np.ndarray                    # float64 [K], strictly increasing
    positions: np.ndarray                # float64 [K, 3]
    yaws: np.ndarray | None = None       # float64 [K] radians
    rotations: np.ndarray | None = None  # float64 [K, 4]

    def __post_init__(self):
        object.__setattr__(self, "times", _frozen(self.times).reshape(-1))
        object.__setattr__(self, "positions", _frozen(self.positions).reshape(-1, 3))
        if self.yaws is not None:
            object.__setattr__(self, "yaws", _frozen(self.yaws).reshape(-1))
        if self.rotations is not None:
            object.__setattr__(self, "rotations", _frozen(self.rotations).reshape(-1, 4))

    @classmethod
    def from_xy(cls, times, xy, yaws=None, z=0.0) -> Trajectory:
        """Waypoints on the ground: times [K], xy [K, 2], optional yaws [K]."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return cls(times, np.column_stack([xy, np.full(len(xy), z)]), yaws)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong) for malformed arrays, else None."""
        count = len(self.times)
        if count < 1 or len(self.positions) != count:
            return "waypoints", f"needs matching times and positions, got {count} and {len(self.positions)}"
        for name in ("yaws", "rotations"):
            value = getattr(self, name)
            if value is not None and len(value) != count:
                return name, f"has {len(value)} entries for {count} waypoints"
        if self.yaws is not None and self.rotations is not None:
            return "waypoints", "gives both yaw and full rotations; give one"
        for name in ("times", "positions", "yaws", "rotations"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                index = int(np.flatnonzero(~np.isfinite(value.reshape(count, -1)).all(axis=1))[0])
                return f"waypoints[{index}]", f"has a value that is not a finite number ({name})"
        steps = np.diff(self.times)
        if (steps <= 0).any():
            index = int(np.flatnonzero(steps <= 0)[0]) + 1
            return (f"waypoints[{index}].t", f"times must increase: {self.times[index]:g} s follows "
                                             f"{self.times[index - 1]:g} s")
        if self.rotations is not None and (np.abs(np.linalg.norm(self.rotations, axis=1) - 1) > 1e-2).any():
            return "rotations", "must be unit quaternions (w, x, y, z)"
        return None

    @cached_property
    def _position_spline(self):
        from scipy.interpolate import PchipInterpolator

        return PchipInterpolator(self.times, self.positions, axis=0, extrapolate=False)

    @cached_property
    def _yaw_spline(self):
        from scipy.interpolate import PchipInterpolator

        return PchipInterpolator(self.times, np.unwrap(self.yaws), extrapolate=False)

    @cached_property
    def _rotation_spline(self):
        from scipy.spatial.transform import Rotation, RotationSpline

        return RotationSpline(self.times, Rotation.from_quat(self.rotations[:, [1, 2, 3, 0]]))

    def _clamped(self, times) -> np.ndarray:
        # Before its first waypoint and after its last, a trajectory holds its pose.
        return np.clip(np.asarray(times, dtype=np.float64), self.start, self.end)

    def position(self, times) -> np.ndarray:
        """[F] seconds -> [F, 3]."""
        times = self._clamped(times)
        if len(self.times) == 1:
            return np.repeat(self.positions, len(times), axis=0)
        return self._position_spline(times)

    def velocity(self, times) -> np.ndarray:
        """[F] -> [F, 3] m/s (zero outside the waypoints' span)."""
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros((len(times), 3))
        inside = (times >= self.start) & (times <= self.end)
        return self._position_spline.derivative(1)(self._clamped(times)) * inside[:, None]

    def acceleration(self, times) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros((len(times), 3))
        inside = (times >= self.start) & (times <= self.end)
        return self._position_spline.derivative(2)(self._clamped(times)) * inside[:, None]

    @cached_property
    def _travel_headings(self) -> tuple[np.ndarray, np.ndarray]:
        """Headings of travel on a fixed grid, slow samples filled from their neighbours."""
        grid = np.linspace(self.start, self.end, max(2, math.ceil((self.end - self.start) * CHECK_HZ) + 1))
        velocity = self.velocity(grid)
        moving = np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING
        if not moving.any():
            return grid, np.zeros(len(grid))
        heading = np.arctan2(velocity[:, 1], velocity[:, 0])
        index = np.flatnonzero(moving)
        nearest = index[np.clip(np.searchsorted(index, np.arange(len(grid))), 0, len(index) - 1)]
        heading = np.where(moving, heading, heading[nearest])
        return grid, np.unwrap(heading)

    def moves(self) -> bool:
        if len(self.times) == 1:
            return False
        grid = np.linspace(self.start, self.end, max(2, math.ceil((self.end - self.start) * CHECK_HZ) + 1))
        velocity = self.velocity(grid)
        return bool((np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING).any())

    def rotation(self, times) -> np.ndarray:
        """[F] -> [F, 3, 3] world_from_body rotations."""
        times = self._clamped(times)
        if self.rotations is not None:
            if len(self.times) == 1:
                return np.repeat(matrix_from_quaternion(self.rotations), len(times), axis=0)
            return self._rotation_spline(times).as_matrix()
        return matrix_from_yaw(self.yaw(times))

    def yaw(self, times) -> np.ndarray:
        """[F] -> [F] heading in radians (unwrapped)."""
        times = self._clamped(times)
        if self.rotations is not None:
            rotation = self.rotation(times)
            return np.arctan2(rotation[:, 1, 0], rotation[:, 0, 0])
        if self.yaws is not None:
            return np.repeat(self.yaws, len(times)) if len(self.times) == 1 else self._yaw_spline(times)
        if len(self.times) == 1:
            return np.zeros(len(times))
        grid, heading = self._travel_headings
        velocity = self.velocity(times)
        # Interpolating the grid everywhere keeps headings continuous; exact tangents where moving.
        interpolated = np.interp(times, grid, heading)
        exact = np.arctan2(velocity[:, 1], velocity[:, 0])
        exact = interpolated + (exact - interpolated + math.pi) % (2 * math.pi) - math.pi
        return np.where(np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING, exact, interpolated)

    def yaw_rate(self, times) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros(len(times))
        inside = (times >= self.start) & (times <= self.end)
        if self.rotations is not None:
            rate = np.linalg.norm(self._rotation_spline(self._clamped(times), 1), axis=1)
        elif self.yaws is not None:
            rate = self._yaw_spline.derivative(1)(self._clamped(times))
        else:
            grid, heading = self._travel_headings
            rate = np.interp(self._clamped(times), grid, np.gradient(heading, grid))
        return rate * inside

    def mapped(self, positions=None, yaws=None, rotations=None, times=None) -> Trajectory:
        """A copy with some arrays replaced (edits)."""
        return Trajectory(self.times if times is None else times,
                          self.positions if positions is None else positions,
                          self.yaws if yaws is None else yaws,
                          self.rotations if rotations is None else rotations)


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
    """Lane centre lines and road edges, [P, 3] world-frame polylines."""

    lanes: tuple[np.ndarray, ...] = ()
    road_edges: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True)
class StartFrames:
    """Real frames to start from: `frame` of `clip` in the clip store `store`."""

    store: str
    clip: str
    frame: int = 0


@dataclass(frozen=True, eq=False)
class Scenario:
    """What a rollout is asked to show. Build it with load, from_dict, from_clip or an edit: they validate."""

    rig_spec: str | dict           # a views/ name, a rig YAML path, or an inline rig document
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
    base_dir: Path | None = None   # a relative rig path is read from here

    @cached_property
    def rig(self) -> Rig:
        if isinstance(self.rig_spec, dict):
            try:
                return _RigFile(Path(f"{self.source}: rig")).rig(self.rig_spec)
            except ScenarioError:
                raise
            except ConfigError as error:  # the inline rig's own checks: one error type for every scenario fault
                raise ScenarioError(str(error)) from None
        text = self.rig_spec
        if self.base_dir is not None and (text.endswith((".yaml", ".yml")) or os.sep in text):
            text = str(self.base_dir / text) if not Path(text).is_absolute() else text
        try:
            return load_rig(text)
        except ScenarioError:
            raise
        except Exception as error:  # ConfigError from the rig file; OSError and the like for odd paths
            raise ScenarioError(f"{self.source}: rig: {error}") from None

    @property
    def num_frames(self) -> int:
        return int(math.floor(self.duration * self.fps + 1e-6)) + 1

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
        polylines = [p.astype(np.float32) for p in (*self.road.lanes, *self.road.road_edges)]
        poly_types = ["lane"] * len(self.road.lanes) + ["road_edge"] * len(self.road.road_edges)
        frames = []
        for f in range(len(times)):
            rows = [np.array([*centres[a][f], *agent.size, yaws[a][f]]) for a, agent in enumerate(self.agents)
                    if present[a, f]]
            boxes = np.array(rows, dtype=np.float32).reshape(-1, 7)
            categories = [agent.category for a, agent in enumerate(self.agents) if present[a, f]]
            frames.append(LayoutFrame(world_from_ego=poses[f], boxes=boxes, categories=categories,
                                      polylines=polylines, poly_types=list(poly_types)))
        return frames

    def summary(self) -> str:
        rig = self.rig
        return (f"{self.name or '(unnamed)'}: rig {rig.name} ({len(rig.cameras)} cameras), {self.duration:g} s at "
                f"{self.fps:g} fps ({self.num_frames} frames), {len(self.agents)} agent(s), "
                f"{len(self.road.lanes)} lane(s), {len(self.road.road_edges)} road edge(s)")

    def to_dict(self) -> dict:
        """The YAML document (load(save(s)) == s up to 1e-6 rounding)."""
        document = {"name": self.name, "prompt": self.prompt, "rig": self.rig_spec, "fps": _plain(self.fps),
                    "duration": _plain(self.duration), "seed": self.seed}
        if self.start_frames is not None:
            document["start_frames"] = {"store": self.start_frames.store, "clip": self.start_frames.clip,
                                        "frame": self.start_frames.frame}
        document["ego"] = _trajectory_document(self.ego)
        document["agents"] = [_agent_document(agent) for agent in self.agents]
        document["road"] = {"lanes": [_points_document(p) for p in self.road.lanes],
                            "road_edges": [_points_document(p) for p in self.road.road_edges]}
        return document



# ---------------------------------------------------------------- validation


def _rectangle_corners(centre, width, length, yaw) -> np.ndarray:
    forward, left = np.array([math.cos(yaw), math.sin(yaw)]), np.array([-math.sin(yaw), math.cos(yaw)])
    return np.array([centre + sx * length / 2 * forward + sy * width / 2 * left
                     for sx, sy in ((1, 1), (1, -1), (-1, -1), (-1, 1))])


def _rectangles_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating axis test for two convex quadrilaterals [4, 2]."""
    for corners in (a, b):
        for i in range(2):
            edge = corners[i + 1] - corners[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def _ego_footprint(scenario: Scenario, time: float) -> np.ndarray:
    width, length, _ = EGO_SIZE
    position, yaw = scenario.ego.position([time])[0], scenario.ego.yaw([time])[0]
    # The ego's origin is its rear axle: the box centre lies ahead of it.
    centre = position[:2] + (length / 2 - EGO_REAR_OVERHANG) * np.array([math.cos(yaw), math.sin(yaw)])
    return _rectangle_corners(centre, width, length, yaw)


def _kinematic_problem(trajectory: Trajectory, limits: Limits) -> str | None:
    if len(trajectory.times) < 2:
        return None
    grid = np.union1d(np.linspace(trajectory.start, trajectory.end,
                                  math.ceil((trajectory.end - trajectory.start) * CHECK_HZ) + 1), trajectory.times)
    checks = (("speed", np.linalg.norm(trajectory.velocity(grid), axis=1), limits.speed, "m/s"),
              ("acceleration", np.linalg.norm(trajectory.acceleration(grid), axis=1), limits.acceleration, "m/s^2"),
              ("yaw rate", np.abs(trajectory.yaw_rate(grid)), limits.yaw_rate, "rad/s"))
    for name, values, limit, unit in checks:
        if not np.isfinite(values).all() or (values > limit * (1 + 1e-9)).any():
            index = int(np.argmax(np.where(np.isfinite(values), values, np.inf)))
            return (f"is physically impossible: {name} {values[index]:.3g} {unit} at t = {grid[index]:.3g} s "
                    f"exceeds {limit:g} {unit}")
    return None


def validate(scenario: Scenario) -> Scenario:
    """Every check beyond the file's structure; returns the scenario, or raises ScenarioError."""
    source = scenario.source

    def fail(where: str, problem: str):
        raise ScenarioError(f"{source}: {where}: {problem}" if where else f"{source}: {problem}")

    if not isinstance(scenario.prompt, str) or not scenario.prompt.strip():
        fail("prompt", "must be a non-empty text")
    if not (isinstance(scenario.fps, (int, float)) and 0 < scenario.fps <= MAX_FPS):
        fail("fps", f"must be a number in (0, {MAX_FPS:g}], got {_show(scenario.fps)}")
    if not (isinstance(scenario.duration, (int, float)) and 0 < scenario.duration <= MAX_DURATION):
        fail("duration", f"must be a number of seconds in (0, {MAX_DURATION:g}], got {_show(scenario.duration)}")
    if not (isinstance(scenario.seed, int) and not isinstance(scenario.seed, bool) and scenario.seed >= 0):
        fail("seed", f"must be an integer >= 0, got {_show(scenario.seed)}")
    scenario.rig  # noqa: B018 - loading it is the check (unknown rig, bad inline rig)
    problem = scenario.ego.problem()
    if problem:
        fail(f"ego.{problem[0]}", problem[1])
    if scenario.ego.start > 1e-9 or scenario.ego.end < scenario.duration - 1e-9:
        fail("ego.waypoints", f"must cover the whole scenario, 0 to {scenario.duration:g} s; they run from "
                              f"{scenario.ego.start:g} to {scenario.ego.end:g} s")
    if scenario.ego.yaws is None and scenario.ego.rotations is None and not scenario.ego.moves():
        fail("ego.waypoints", "never move, so they need a yaw")
    problem = _kinematic_problem(scenario.ego, limits_for(None))
    if problem:
        fail("ego", problem)
    ego_start = _ego_footprint(scenario, 0.0)
    seen = set()
    for index, agent in enumerate(scenario.agents):
        where = f"agents[{index}] ({agent.id})"
        if not isinstance(agent.id, str) or not agent.id:
            fail(f"agents[{index}].id", f"must be a non-empty name, got {_show(agent.id)}")
        if agent.id in seen:
            fail(f"{where}.id", f"repeats the id {agent.id!r}")
        seen.add(agent.id)
        if agent.category not in CATEGORIES:
            fail(f"{where}.category", f"unknown category {_show(agent.category)}; nuScenes categories: "
                                      f"{', '.join(CATEGORIES)}")
        size = np.asarray(agent.size, dtype=np.float64)
        if size.shape != (3,) or not np.isfinite(size).all() or (size <= 0).any() or (size > 30).any():
            fail(f"{where}.size", f"must be width, length, height in (0, 30] m, got {_show(agent.size)}")
        problem = agent.trajectory.problem()
        if problem:
            fail(f"{where}.{problem[0]}", problem[1])
        if agent.parked and len(agent.trajectory.times) != 1:
            fail(f"{where}.parked", "a parked agent has exactly one pose")
        if not agent.parked and agent.trajectory.yaws is None and agent.trajectory.rotations is None \
                and not agent.trajectory.moves():
            fail(f"{where}.waypoints", "never move, so they need a yaw (or make the agent parked)")
        problem = _kinematic_problem(agent.trajectory, limits_for(agent.category))
        if problem:
            fail(where, problem)
        if agent.present([0.0])[0]:
            position, yaw = agent.trajectory.position([0.0])[0], agent.trajectory.yaw([0.0])[0]
            box = _rectangle_corners(position[:2], size[0], size[1], yaw)
            if _rectangles_overlap(box, ego_start):
                fail(where, f"overlaps the ego at the start (agent at x {position[0]:.2f}, y {position[1]:.2f}; "
                            f"ego box {EGO_SIZE[1]:g} m long, its rear axle at the ego's position)")
    for name in ("lanes", "road_edges"):
        for index, points in enumerate(getattr(scenario.road, name)):
            if points.ndim != 2 or points.shape[1] != 3 or len(points) < 2:
                fail(f"road.{name}[{index}]", "must have at least 2 points of x, y[, z]")
            if not np.isfinite(points).all():
                fail(f"road.{name}[{index}]", "has a value that is not a finite number")
    return scenario


# ---------------------------------------------------------------- reading a document


_TOP = {"name", "prompt", "rig", "fps", "duration", "seed", "start_frames", "ego", "agents", "road"}
_TOP_REQUIRED = ("prompt", "rig", "fps", "duration", "ego")


class _Reader:
    """Strict reader of a scenario document: every error names the source and the field."""

    def __init__(self, source: str):
        self.source = source
        self.items = 0  # entries of all lists read so far: aliases make huge documents from small files

    def error(self, where: str, problem: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {where}: {problem}" if where else f"{self.source}: {problem}")

    def mapping(self, value, where: str, allowed: set, required=()) -> dict:
        if not isinstance(value, dict):
            raise self.error(where, f"must be a mapping, got {_show(value)}")
        extra = sorted(str(key) for key in value if key not in allowed)
        if extra:
            raise self.error(where, f"has unknown key(s) {', '.join(extra)}; allowed: {', '.join(sorted(allowed))}")
        missing = [key for key in required if key not in value]
        if missing:
            raise self.error(where, f"is missing {', '.join(missing)}")
        return value

    def sequence(self, value, where: str, minimum: int = 0) -> list:
        if not isinstance(value, list):
            raise self.error(where, f"must be a list, got {_show(value)}")
        self.items += len(value)
        if self.items > MAX_ITEMS:
            raise self.error(where, f"makes the scenario too large: more than {MAX_ITEMS} list entries in all")
        if len(value) < minimum:
            raise self.error(where, f"needs at least {minimum} entries, got {len(value)}")
        return value

    def number(self, value, where: str) -> float:
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        except OverflowError:  # YAML integers are unbounded
            number = math.inf
        if number is None:
            raise self.error(where, f"must be a number, got {_show(value)}")
        if not math.isfinite(number):
            raise self.error(where, f"must be a finite number, got {_show(value)}")
        return number

    def text(self, value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"must be a non-empty text, got {_show(value)}")
        return value

    def integer(self, value, where: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.error(where, f"must be an integer >= 0, got {_show(value)}")
        return value

    def points(self, value, where: str) -> np.ndarray:
        rows = []
        for i, point in enumerate(self.sequence(value, where, minimum=2)):
            if not isinstance(point, list) or len(point) not in (2, 3):
                raise self.error(f"{where}[{i}]", f"must be [x, y] or [x, y, z], got {_show(point)}")
            rows.append([self.number(c, f"{where}[{i}]") for c in point] + [0.0] * (3 - len(point)))
        return np.array(rows)

    def trajectory(self, value: dict, where: str) -> Trajectory:
        """`waypoints: [{t, x, y, [z], [yaw]}]` or `poses: [{t, translation, rotation}]`."""
        if ("waypoints" in value) == ("poses" in value):
            raise self.error(where, "needs either waypoints (t, x, y[, z][, yaw]) or poses (t, translation, rotation)")
        if "waypoints" in value:
            items = self.sequence(value["waypoints"], f"{where}.waypoints", minimum=2)
            rows = [self.mapping(item, f"{where}.waypoints[{i}]", {"t", "x", "y", "z", "yaw"}, ("t", "x", "y"))
                    for i, item in enumerate(items)]
            with_yaw = ["yaw" in row for row in rows]
            if any(with_yaw) and not all(with_yaw):
                index = with_yaw.index(not with_yaw[0])
                raise self.error(f"{where}.waypoints[{index}]", "give yaw on every waypoint or on none")
            numbers = {key: [self.number(row.get(key, 0.0), f"{where}.waypoints[{i}].{key}")
                             for i, row in enumerate(rows)] for key in ("t", "x", "y", "z", "yaw")}
            return Trajectory(numbers["t"], np.column_stack([numbers["x"], numbers["y"], numbers["z"]]),
                              numbers["yaw"] if all(with_yaw) else None)
        items = self.sequence(value["poses"], f"{where}.poses", minimum=2)
        times, translations, rotations = [], [], []
        for i, item in enumerate(items):
            at = f"{where}.poses[{i}]"
            row = self.mapping(item, at, {"t", "translation", "rotation"}, ("t", "translation", "rotation"))
            times.append(self.number(row["t"], f"{at}.t"))
            for key, length, out in (("translation", 3, translations), ("rotation", 4, rotations)):
                if not isinstance(row[key], list) or len(row[key]) != length:
                    raise self.error(f"{at}.{key}", f"must be a list of {length} numbers, got {_show(row[key])}")
                out.append([self.number(c, f"{at}.{key}") for c in row[key]])
        return Trajectory(times, translations, rotations=rotations)

    def agent(self, value, where: str) -> Agent:
        row = self.mapping(value, where, {"id", "category", "size", "waypoints", "parked"}, ("id", "category", "size"))
        agent_id = row["id"]
        if isinstance(agent_id, int) and not isinstance(agent_id, bool):
            agent_id = str(agent_id)
        agent_id = self.text(agent_id, f"{where}.id")
        category = row["category"]
        if not isinstance(category, str) or category not in CATEGORIES:
            raise self.error(f"{where}.category", f"unknown category {_show(category)}; nuScenes categories: "
                                                  f"{', '.join(CATEGORIES)}")
        if not isinstance(row["size"], list) or len(row["size"]) != 3:
            raise self.error(f"{where}.size", f"must be [width, length, height] in metres, got {_show(row['size'])}")
        size = tuple(self.number(c, f"{where}.size") for c in row["size"])
        if ("waypoints" in row) == ("parked" in row):
            raise self.error(where, "needs either waypoints (a timed trajectory) or parked: {x, y[, z], yaw}")
        if "parked" in row:
            pose = self.mapping(row["parked"], f"{where}.parked", {"x", "y", "z", "yaw"}, ("x", "y", "yaw"))
            numbers = [self.number(pose.get(k, 0.0), f"{where}.parked.{k}") for k in ("x", "y", "z", "yaw")]
            return Agent(agent_id, category, size, Trajectory([0.0], [numbers[:3]], [numbers[3]]), parked=True)
        return Agent(agent_id, category, size, self.trajectory(row, where))

    def scenario(self, document, base_dir: Path | None) -> Scenario:
        document = self.mapping(document, "", _TOP, _TOP_REQUIRED)
        rig = document["rig"]
        if not (isinstance(rig, dict) or (isinstance(rig, str) and rig.strip())):
            raise self.error("rig", f"must be a views/ rig name, a rig file or an inline rig, got {_show(rig)}")
        fps, duration = self.number(document["fps"], "fps"), self.number(document["duration"], "duration")
        start = None
        if document.get("start_frames") is not None:
            value = self.mapping(document["start_frames"], "start_frames", {"store", "clip", "frame"},
                                 ("store", "clip"))
            start = StartFrames(self.text(value["store"], "start_frames.store"),
                                self.text(value["clip"], "start_frames.clip"),
                                self.integer(value.get("frame", 0), "start_frames.frame"))
        ego = self.trajectory(self.mapping(document["ego"], "ego", {"waypoints", "poses"}), "ego")
        agents = tuple(self.agent(value, f"agents[{i}]")
                       for i, value in enumerate(self.sequence(document.get("agents") or [], "agents")))
        road_value = self.mapping(document.get("road") or {}, "road", {"lanes", "road_edges"})
        road = Road(*(tuple(self.points(p, f"road.{name}[{i}]")
                            for i, p in enumerate(self.sequence(road_value.get(name) or [], f"road.{name}")))
                      for name in ("lanes", "road_edges")))
        name = document.get("name", "")
        if not isinstance(name, str):
            raise self.error("name", f"must be a text, got {_show(name)}")
        prompt = self.text(document["prompt"], "prompt")
        return Scenario(rig_spec=rig, fps=fps, duration=duration, ego=ego, prompt=prompt,
                        agents=agents, road=road, name=name, seed=self.integer(document.get("seed", 0), "seed"),
                        start_frames=start, source=self.source, base_dir=base_dir)


def from_dict(document, source: str = "scenario", base_dir: Path | None = None) -> Scenario:
    """A validated Scenario from a parsed YAML document; errors name `source`."""
    return validate(_Reader(source).scenario(document, base_dir))


def load(path: str | os.PathLike) -> Scenario:
    """Read and validate a scenario file (at most 10 MB, yaml.safe_load)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read the scenario: {error.strerror or error}") from None
    if not path.is_file():
        raise ScenarioError(f"{path}: not a file")
    if size > MAX_BYTES:
        raise ScenarioError(f"{path}: the file is {size / 2**20:.1f} MB; scenario files are limited to "
                            f"{MAX_BYTES // 2**20} MB")
    try:
        document = yaml.safe_load(path.read_bytes().decode("utf-8"))
    # PyYAML raises ValueError for some scalars and RecursionError for deep nesting, not only YAMLError.
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ScenarioError(f"{path}: not a readable YAML scenario: {first}") from None
    if document is None:
        raise ScenarioError(f"{path}: the file is empty")
    try:
        return from_dict(document, str(path), path.resolve().parent)
    except RecursionError:  # a self-referencing YAML alias
        raise ScenarioError(f"{path}: the document refers to itself") from None


def save(scenario: Scenario, path: str | os.PathLike) -> Path:
    """Write the scenario as YAML (atomically: the old file stays whole until the new one is)."""
    path = Path(path)
    text = yaml.safe_dump(scenario.to_dict(), sort_keys=False, default_flow_style=None, width=120)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ScenarioError(f"{path}: cannot write the scenario: {error.strerror or error}") from None
    return path


def _plain(value: float) -> float | int:
    value = round(float(value), 6)
    return int(value) if value.is_integer() else value


def _points_document(points: np.ndarray) -> list:
    return [[_plain(c) for c in (p if p[2] != 0 else p[:2])] for p in points]


def _trajectory_document(trajectory: Trajectory) -> dict:
    if trajectory.rotations is not None:
        return {"poses": [{"t": _plain(t), "translation": [_plain(c) for c in p], "rotation": [_plain(c) for c in q]}
                          for t, p, q in zip(trajectory.times, trajectory.positions, trajectory.rotations)]}
    rows = []
    for i, (t, p) in enumerate(zip(trajectory.times, trajectory.positions)):
        row = {"t": _plain(t), "x": _plain(p[0]), "y": _plain(p[1])}
        if p[2] != 0:
            row["z"] = _plain(p[2])
        if trajectory.yaws is not None:
            row["yaw"] = _plain(trajectory.yaws[i])
        rows.append(row)
    return {"waypoints": rows}


def _agent_document(agent: Agent) -> dict:
    document = {"id": agent.id, "category": agent.category, "size": [_plain(c) for c in agent.size]}
    if agent.parked:
        x, y, z = agent.trajectory.positions[0]
        document["parked"] = {"x": _plain(x), "y": _plain(y), **({"z": _plain(z)} if z else {}),
                              "yaw": _plain(agent.trajectory.yaw([0.0])[0])}
    else:
        document.update(_trajectory_document(agent.trajectory))
    return document


# ---------------------------------------------------------------- edits: each returns a new, validated Scenario


def _edited(scenario: Scenario, what: str, **changes) -> Scenario:
    return validate(replace(scenario, source=f"{scenario.source} ({what})", **changes))


def _agent_index(scenario: Scenario, agent_id: str) -> int:
    scenario.agent(agent_id)  # names the known agents when there is no such one
    return next(i for i, agent in enumerate(scenario.agents) if agent.id == agent_id)


def set_ego_trajectory(scenario: Scenario, trajectory: Trajectory) -> Scenario:
    return _edited(scenario, "new ego trajectory", ego=trajectory)


def move_ego(scenario: Scenario, forward: float = 0.0, left: float = 0.0) -> Scenario:
    """Offset every ego waypoint in its own heading: left = 3.5 is one lane to the left."""
    yaw = scenario.ego.yaw(scenario.ego.times)
    offset = np.column_stack([forward * np.cos(yaw) - left * np.sin(yaw), forward * np.sin(yaw) + left * np.cos(yaw),
                              np.zeros(len(yaw))])
    return _edited(scenario, f"ego moved {forward:g} m forward, {left:g} m left",
                   ego=scenario.ego.mapped(positions=scenario.ego.positions + offset))


def add_agent(scenario: Scenario, agent: Agent) -> Scenario:
    return _edited(scenario, f"agent {agent.id} added", agents=(*scenario.agents, agent))


def remove_agent(scenario: Scenario, agent_id: str) -> Scenario:
    index = _agent_index(scenario, agent_id)
    return _edited(scenario, f"agent {agent_id} removed", agents=scenario.agents[:index] + scenario.agents[index + 1:])


def move_agent(scenario: Scenario, agent_id: str, dx: float = 0.0, dy: float = 0.0) -> Scenario:
    """Translate one agent's whole trajectory by (dx, dy) metres in the world frame."""
    index = _agent_index(scenario, agent_id)
    agent = scenario.agents[index]
    moved = replace(agent, trajectory=agent.trajectory.mapped(positions=agent.trajectory.positions + [dx, dy, 0.0]))
    return _edited(scenario, f"agent {agent_id} moved", agents=_with(scenario.agents, index, moved))


def _with(agents: tuple, index: int, agent: Agent) -> tuple:
    return agents[:index] + (agent,) + agents[index + 1:]


def scale_speed(scenario: Scenario, factor: float, agent_id: str | None = None) -> Scenario:
    """The ego (agent_id None) or one agent drives the same path `factor` times as fast.

    Waypoint times shrink towards the first one. An ego that arrives sooner ends the scenario sooner.
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ScenarioError(f"{scenario.source}: speed factor must be a number > 0, got {_show(factor)}")

    def faster(trajectory: Trajectory) -> Trajectory:
        return trajectory.mapped(times=trajectory.start + (trajectory.times - trajectory.start) / factor)

    what = f"speed x{factor:g}"
    if agent_id is None:
        ego = faster(scenario.ego)
        return _edited(scenario, f"ego {what}", ego=ego, duration=min(scenario.duration, ego.end))
    index = _agent_index(scenario, agent_id)
    agent = scenario.agents[index]
    if agent.parked:
        raise ScenarioError(f"{scenario.source}: agent {agent_id} is parked: it has no speed to scale")
    moved = replace(agent, trajectory=faster(agent.trajectory))
    return _edited(scenario, f"agent {agent_id} {what}", agents=_with(scenario.agents, index, moved))


def shift_time(scenario: Scenario, seconds: float, agent_id: str | None = None) -> Scenario:
    """One moving agent, or all of them (None), happen `seconds` later (earlier when negative)."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)):
        raise ScenarioError(f"{scenario.source}: time shift must be a finite number, got {_show(seconds)}")
    indices = range(len(scenario.agents)) if agent_id is None else [_agent_index(scenario, agent_id)]
    agents = scenario.agents
    for index in indices:
        agent = agents[index]
        if not agent.parked:
            agents = _with(agents, index, replace(agent, trajectory=agent.trajectory.mapped(
                times=agent.trajectory.times + seconds)))
    return _edited(scenario, f"{'agents' if agent_id is None else agent_id} shifted {seconds:g} s", agents=agents)


_SIDES = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def mirror(scenario: Scenario) -> Scenario:
    """Reflect the world across the x axis (y -> -y): left turns become right turns, and the prompt says so."""
    flip = np.array([1.0, -1.0, 1.0])

    def mirrored(trajectory: Trajectory) -> Trajectory:
        rotations = None if trajectory.rotations is None else trajectory.rotations * [1.0, -1.0, 1.0, -1.0]
        yaws = None if trajectory.yaws is None else -trajectory.yaws
        return Trajectory(trajectory.times, trajectory.positions * flip, yaws, rotations)

    agents = tuple(replace(agent, trajectory=mirrored(agent.trajectory)) for agent in scenario.agents)
    road = Road(tuple(p * flip for p in scenario.road.lanes), tuple(p * flip for p in scenario.road.road_edges))
    prompt = re.sub(r"\b(left|right|Left|Right|LEFT|RIGHT)\b", lambda m: _SIDES[m.group(1)], scenario.prompt)
    return _edited(scenario, "mirrored", ego=mirrored(scenario.ego), agents=agents, road=road, prompt=prompt)


# ---------------------------------------------------------------- a scenario from a stored clip


def _rig_document(name: str, width: int, height: int, cameras: list[str], intrinsics, ego_from_cam) -> dict:
    """An inline rig from a clip's calibration; neighbours: the two nearest cameras by azimuth."""
    from drivesim.geometry import quaternion_from_matrix

    axis = ego_from_cam[:, :2, 2]
    azimuth = np.arctan2(axis[:, 1], axis[:, 0])
    difference = np.abs((azimuth[:, None] - azimuth[None, :] + math.pi) % (2 * math.pi) - math.pi)
    np.fill_diagonal(difference, np.inf)
    entries = []
    for v, camera in enumerate(cameras):
        nearest = np.argsort(difference[v], kind="stable")[:min(2, len(cameras) - 1)]
        k = intrinsics[v]
        entries.append({
            "name": camera,
            "intrinsics": {key: _plain(value) for key, value in
                           zip(("fx", "fy", "cx", "cy"), (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))},
            "translation": [_plain(c) for c in ego_from_cam[v, :3, 3]],
            "rotation": [_plain(c) for c in quaternion_from_matrix(ego_from_cam[v, :3, :3].astype(np.float64))],
            "neighbours": [cameras[int(n)] for n in nearest]})
    return {"name": name, "image_size": {"width": int(width), "height": int(height)}, "cameras": entries}


def from_clip(store_path: str | os.PathLike, clip_id: str) -> Scenario:
    """A scenario replaying a stored clip, in its first ego frame: the clip's rig, ego poses, tracks and road.

    Tracks seen in fewer than two frames, and boxes of category "other", are left out; a track that
    stays put for the whole clip becomes a parked agent.
    """
    from drivesim.data.store import open_store, read_clip, stored_clip_ids
    from drivesim.errors import DataError
    from drivesim.geometry import invert, quaternion_from_matrix

    root = open_store(store_path)
    if clip_id not in stored_clip_ids(Path(store_path)):
        known = stored_clip_ids(Path(store_path))
        shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        raise DataError(f"store {store_path}: no clip {clip_id!r}; clips: {shown or '(none)'}")
    names = tuple(n for n in ("intrinsics", "ego_from_cam", "world_from_ego", "timestamps", "boxes", "box_offsets",
                              "box_category", "box_track", "polylines", "poly_offsets", "poly_type"))
    clip = read_clip(root, clip_id, names)
    attrs, settings = clip["attrs"], dict(root.attrs.get("settings", {}))
    categories, poly_types = list(root.attrs["categories"]), list(root.attrs["poly_types"])
    frames = len(clip["world_from_ego"])
    fps = float(attrs.get("fps") or settings.get("fps") or 0)
    if frames < 2 or not fps > 0:
        raise DataError(f"store {store_path}: clip {clip_id} has {frames} frame(s) and fps {fps}: nothing to replay")
    times = np.arange(frames) / fps
    ego0_from_world = invert(clip["world_from_ego"][0])
    ego_poses = ego0_from_world @ clip["world_from_ego"]  # [T, 4, 4]
    ego = Trajectory(times, ego_poses[:, :3, 3], rotations=quaternion_from_matrix(ego_poses[:, :3, :3]))

    boxes, offsets = clip["boxes"].astype(np.float64), clip["box_offsets"]
    frame_of_row = np.repeat(np.arange(frames), np.diff(offsets))
    rotation, translation = ego0_from_world[:3, :3], ego0_from_world[:3, 3]
    centres = boxes[:, :3] @ rotation.T + translation
    heading = np.arctan2(rotation[1, 0], rotation[0, 0])
    agents = []
    for track in np.unique(clip["box_track"]):
        rows = np.flatnonzero(clip["box_track"] == track)
        category = categories[int(clip["box_category"][rows[0]])]
        if len(rows) < 2 or category not in CATEGORIES:
            continue
        rows = rows[np.argsort(frame_of_row[rows], kind="stable")]
        size = tuple(float(c) for c in boxes[rows[0], 3:6])
        bottoms = centres[rows] - [0.0, 0.0, size[2] / 2]
        yaws = np.unwrap(boxes[rows, 6] + heading)
        agent_id = f"track{int(track)}"
        if len(rows) == frames and np.linalg.norm(bottoms - bottoms[0], axis=1).max() < 0.3:
            agents.append(Agent(agent_id, category, size, Trajectory([0.0], bottoms[:1], yaws[:1]), parked=True))
        else:
            agents.append(Agent(agent_id, category, size, Trajectory(times[frame_of_row[rows]], bottoms, yaws)))

    lanes, edges = [], []
    points = clip["polylines"].astype(np.float64) @ rotation.T + translation
    for k, type_index in enumerate(clip["poly_type"]):
        line = points[clip["poly_offsets"][k]:clip["poly_offsets"][k + 1]]
        kind = poly_types[int(type_index)]
        if len(line) >= 2 and kind in ("lane", "road_edge"):
            (lanes if kind == "lane" else edges).append(line)

    width, height = settings.get("width"), settings.get("height")
    cameras = list(attrs.get("cameras") or settings.get("cameras") or [])
    rig = _rig_document(clip_id, width, height, cameras, clip["intrinsics"].astype(np.float64),
                        clip["ego_from_cam"].astype(np.float64))
    caption = attrs.get("caption") or f"a drive replayed from clip {clip_id}"
    scenario = Scenario(rig_spec=rig, fps=fps, duration=float(times[-1]), ego=ego, prompt=caption,
                        agents=tuple(agents), road=Road(tuple(lanes), tuple(edges)), name=clip_id,
                        start_frames=StartFrames(str(store_path), clip_id, 0),
                        source=f"clip {clip_id} of store {store_path}")
    return validate(scenario)
