"""Every check of a Scenario beyond its file's structure: limits, overlaps at the start, known names."""

from __future__ import annotations

import math
import numbers

import numpy as np

from drivesim.data.synth.traffic import EGO_REAR_OVERHANG, EGO_SIZE
from drivesim.errors import ScenarioError
from drivesim.rigs import show_value
from drivesim.render import TIMES_OF_DAY, WEATHERS
from drivesim.scenario.schema import (CATEGORIES, LANE_LINE_TYPES, MAX_BUILDING_SETBACK, MAX_SEED, MAX_SIDEWALK_WIDTH,
                                      Road, Scenario, is_closed)
from drivesim.scenario.trajectory import CHECK_HZ, Limits, Trajectory, limits_for

MAX_FPS, MAX_DURATION = 120.0, 3600.0


def footprint_corners(centre: np.ndarray, width: float, length: float, yaw: np.ndarray) -> np.ndarray:
    """[F, 2] centres, [F] yaws -> [F, 4, 2] the corners of a box's footprint, frame by frame."""
    yaw = np.asarray(yaw, np.float64).reshape(-1)
    forward = np.stack([np.cos(yaw), np.sin(yaw)], axis=-1)[:, None]  # [F, 1, 2]
    left = np.stack([-np.sin(yaw), np.cos(yaw)], axis=-1)[:, None]
    signs = np.array([(1, 1), (1, -1), (-1, -1), (-1, 1)], dtype=np.float64)  # [4, 2]
    centre = np.asarray(centre, np.float64).reshape(-1, 2)
    return centre[:, None] + signs[None, :, :1] * length / 2 * forward + signs[None, :, 1:] * width / 2 * left


def footprints_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[F, 4, 2] twice -> [F] bool: the separating axis test for two convex quadrilaterals, frame by frame."""
    separated = np.zeros(len(a), dtype=bool)
    for corners in (a, b):
        for i in range(2):
            edge = corners[:, i + 1] - corners[:, i]
            axis = np.stack([-edge[:, 1], edge[:, 0]], axis=-1)  # [F, 2]
            pa, pb = np.einsum("fkc,fc->fk", a, axis), np.einsum("fkc,fc->fk", b, axis)
            separated |= (pa.max(axis=1) <= pb.min(axis=1)) | (pb.max(axis=1) <= pa.min(axis=1))
    return ~separated


def ego_footprint(scenario: Scenario, times, grow: float = 0.0) -> np.ndarray:
    """[F, 4, 2] the ego's footprint at `times`, each side grown by `grow` metres in all."""
    width, length, _ = EGO_SIZE
    yaw = scenario.ego.yaw(times)
    # The ego's origin is its rear axle: the box centre lies ahead of it.
    centre = scenario.ego.position(times)[:, :2] + (length / 2 - EGO_REAR_OVERHANG) * np.stack(
        [np.cos(yaw), np.sin(yaw)], axis=-1)
    return footprint_corners(centre, width + grow, length + grow, yaw)


def kinematic_problem(trajectory: Trajectory, limits: Limits) -> str | None:
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
        fail("fps", f"must be a number in (0, {MAX_FPS:g}], got {show_value(scenario.fps)}")
    if not (isinstance(scenario.duration, (int, float)) and 0 < scenario.duration <= MAX_DURATION):
        fail("duration", f"must be a number of seconds in (0, {MAX_DURATION:g}], got {show_value(scenario.duration)}")
    seed = scenario.seed
    if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < MAX_SEED):
        fail("seed", f"must be an integer from 0 to 2**62-1, got {show_value(scenario.seed)}")
    scenario.rig  # noqa: B018 - loading it is the check (unknown rig, bad inline rig)
    problem = scenario.ego.problem()
    if problem:
        fail(f"ego.{problem[0]}", problem[1])
    if scenario.ego.start > 1e-9 or scenario.ego.end < scenario.duration - 1e-9:
        fail("ego.waypoints", f"must cover the whole scenario, 0 to {scenario.duration:g} s; they run from "
                              f"{scenario.ego.start:g} to {scenario.ego.end:g} s")
    if scenario.ego.yaws is None and scenario.ego.rotations is None and not scenario.ego.moves():
        fail("ego.waypoints", "never move, so they need a yaw")
    problem = kinematic_problem(scenario.ego, limits_for(None))
    if problem:
        fail("ego", problem)
    ego_start = ego_footprint(scenario, [0.0])
    seen = set()
    for index, agent in enumerate(scenario.agents):
        where = f"agents[{index}] ({agent.id})"
        if not isinstance(agent.id, str) or not agent.id:
            fail(f"agents[{index}].id", f"must be a non-empty name, got {show_value(agent.id)}")
        if agent.id in seen:
            fail(f"{where}.id", f"repeats the id {agent.id!r}")
        seen.add(agent.id)
        if agent.category not in CATEGORIES:
            fail(f"{where}.category", f"unknown category {show_value(agent.category)}; nuScenes categories: "
                                      f"{', '.join(CATEGORIES)}")
        size = np.asarray(agent.size, dtype=np.float64)
        if size.shape != (3,) or not np.isfinite(size).all() or (size <= 0).any() or (size > 30).any():
            fail(f"{where}.size", f"must be width, length, height in (0, 30] m, got {show_value(agent.size)}")
        problem = agent.trajectory.problem()
        if problem:
            fail(f"{where}.{problem[0]}", problem[1])
        if agent.parked and len(agent.trajectory.times) != 1:
            fail(f"{where}.parked", "a parked agent has exactly one pose")
        if not agent.parked and agent.trajectory.yaws is None and agent.trajectory.rotations is None \
                and not agent.trajectory.moves():
            fail(f"{where}.waypoints", "never move, so they need a yaw (or make the agent parked)")
        problem = kinematic_problem(agent.trajectory, limits_for(agent.category))
        if problem:
            fail(where, problem)
        if agent.present([0.0])[0]:
            position, yaw = agent.trajectory.position([0.0])[0], agent.trajectory.yaw([0.0])[0]
            box = footprint_corners(position[:2], size[0], size[1], yaw)
            if footprints_overlap(box, ego_start)[0]:
                fail(where, f"overlaps the ego at the start (agent at x {position[0]:.2f}, y {position[1]:.2f}; "
                            f"ego box {EGO_SIZE[1]:g} m long, its rear axle at the ego's position)")
    for name, allowed in (("time_of_day", TIMES_OF_DAY), ("weather", WEATHERS)):
        value = getattr(scenario, name)
        if not isinstance(value, str) or value not in allowed:
            fail(name, f"{show_value(value)} must be one of {', '.join(allowed)}")
    _check_road(scenario.road, fail)
    return scenario


def _check_road(road: Road, fail) -> None:
    """Every polyline of the road finite and long enough, lane line kinds known, widths in range."""
    lines = [*((f"road.lanes[{i}]", p, 2) for i, p in enumerate(road.lanes)),
             *((f"road.road_edges[{i}]", p, 2) for i, p in enumerate(road.road_edges)),
             *((f"road.crosswalks[{i}]", p, 3) for i, p in enumerate(road.crosswalks)),
             *((f"road.stop_lines[{i}]", p, 2) for i, p in enumerate(road.stop_lines))]
    for index, line in enumerate(road.lane_lines):
        where = f"road.lane_lines[{index}]"
        if not (isinstance(line, (tuple, list)) and len(line) == 2):
            fail(where, f"must be a (type, points) pair, got {show_value(line)}")
        kind, points = line
        if not isinstance(kind, str) or kind not in LANE_LINE_TYPES:
            fail(f"{where}.type", f"{show_value(kind)} must be one of {', '.join(LANE_LINE_TYPES)}")
        lines.append((f"{where}.points", points, 2))
    for where, points, minimum in lines:
        try:
            points = np.asarray(points, dtype=np.float64)
        except (TypeError, ValueError):
            points = np.zeros((0, 0))
        if points.ndim != 2 or points.shape[1] != 3:
            fail(where, f"must be a list of at least {minimum} points of x, y[, z]")
        if not np.isfinite(points).all():
            fail(where, "has a value that is not a finite number")
        # A crosswalk's closing repeat of its first corner is not a corner of its own.
        corners = len(points) - (minimum == 3 and is_closed(points))
        if corners < minimum:
            fail(where, f"needs at least {minimum} {'corners' if minimum == 3 else 'points'}, got {corners}")
    for name, top in (("sidewalk_width", MAX_SIDEWALK_WIDTH), ("building_setback", MAX_BUILDING_SETBACK)):
        value = getattr(road, name)
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
                and 0 <= value <= top):
            fail(f"road.{name}", f"must be a finite number of metres from 0 to {top:g}, got {show_value(value)}")
