"""What the editor's forms turn into: ego trajectory presets, the waypoint table, new agents.

Every function returns a new, validated Scenario or raises ScenarioError naming the field, so the page
can show the message beside the form. Presets start where the ego starts (its pose at t = 0) and run
for the scenario's duration; the heading follows the direction of travel.
"""

from __future__ import annotations

import math

import numpy as np

from drivesim.errors import ScenarioError
from drivesim.render import super_category
from drivesim.scenario import Scenario, from_dict, set_ego_trajectory
from drivesim.scenario.trajectory import Trajectory

PRESETS = ("keep lane", "lane change left", "lane change right", "stop", "turn left", "turn right")
LANE_WIDTH = 3.5   # metres: one lane change
STEP = 0.25        # seconds between preset waypoints: dense enough that PCHIP follows the intended curve
# width, length, height (m) of a new agent by super-category: typical nuScenes boxes
DEFAULT_SIZES = {"car": (1.9, 4.6, 1.6), "truck": (2.5, 8.0, 3.2), "bus": (2.9, 11.0, 3.4),
                 "bicycle": (0.7, 1.8, 1.4), "pedestrian": (0.7, 0.7, 1.75), "barrier": (0.5, 0.5, 1.0),
                 "other": (1.0, 1.0, 1.0)}


def ego_speed(scenario: Scenario) -> float:
    """The ego's mean speed over the scenario (m/s): what presets keep unless told otherwise."""
    times = np.linspace(0.0, scenario.duration, 64)
    path = np.linalg.norm(np.diff(scenario.ego.position(times)[:, :2], axis=0), axis=1).sum()
    return float(path / scenario.duration)


def _smoothstep(u: np.ndarray) -> np.ndarray:
    """0 -> 1 with zero slope and zero curvature at both ends: a lateral move with no jolt in the steering."""
    u = np.clip(u, 0.0, 1.0)
    return u ** 3 * (10 - 15 * u + 6 * u ** 2)


def _local_path(preset: str, times: np.ndarray, speed: float, start: float, span: float,
                radius: float) -> np.ndarray:
    """[N, 2] positions in the ego's start frame (x forward, y left) for a preset."""
    if preset == "keep lane":
        return np.column_stack([speed * times, np.zeros_like(times)])
    if preset in ("lane change left", "lane change right"):
        side = 1.0 if preset.endswith("left") else -1.0
        return np.column_stack([speed * times, side * LANE_WIDTH * _smoothstep((times - start) / span)])
    if preset == "stop":
        # Constant speed until `start`, then braking evenly to a halt over `span` seconds.
        braking = np.clip(times - start, 0.0, span)
        travelled = speed * np.minimum(times, start) + speed * braking - speed / (2 * span) * braking ** 2
        return np.column_stack([travelled, np.zeros_like(times)])
    if preset in ("turn left", "turn right"):
        side = 1.0 if preset.endswith("left") else -1.0
        distance = speed * times
        arc_start, arc_length = speed * start, radius * math.pi / 2
        along = np.clip(distance - arc_start, 0.0, arc_length)
        angle = along / radius
        x = np.minimum(distance, arc_start) + radius * np.sin(angle)
        y = side * radius * (1 - np.cos(angle))
        after = np.maximum(distance - arc_start - arc_length, 0.0)  # straight on after the quarter circle
        return np.column_stack([x, y + side * after])
    raise ScenarioError(f"ego preset must be one of {', '.join(PRESETS)}, got {preset!r}")


def apply_preset(scenario: Scenario, preset: str, speed: float | None = None, start: float = 1.0,
                 span: float = 4.0, radius: float = 15.0) -> Scenario:
    """The ego drives `preset` from its start pose: `speed` m/s (default: its current mean speed), the
    manoeuvre beginning at `start` s and lasting `span` s (lane change, stop), turns on a `radius` m arc."""
    speed = ego_speed(scenario) if speed is None else speed
    for name, value, low in (("speed", speed, 0.0), ("start", start, 0.0), ("span", span, 0.1),
                             ("radius", radius, 1.0)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= low):
            raise ScenarioError(f"{scenario.source}: preset {preset}: {name} must be a number >= {low:g}, "
                                f"got {value!r}")
    times = np.arange(0.0, scenario.duration + 1e-9, STEP)
    if times[-1] < scenario.duration - 1e-9:
        times = np.append(times, scenario.duration)
    local = _local_path(preset, times, float(speed), float(start), float(span), float(radius))
    origin = scenario.ego.position([0.0])[0]
    yaw = float(scenario.ego.yaw([0.0])[0])
    rotation = np.array([[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]])
    world = local @ rotation.T + origin[:2]
    yaws = None
    if speed < 0.05:  # standing still: the heading cannot follow a direction of travel, so it is held
        yaws = np.full(len(times), yaw)
    trajectory = Trajectory(times, np.column_stack([world, np.full(len(times), origin[2])]), yaws)
    return set_ego_trajectory(scenario, trajectory)


def waypoint_rows(trajectory: Trajectory) -> list[dict]:
    """The waypoint table the page shows: t, x, y and yaw in degrees (None when the heading follows travel)."""
    yaws = trajectory.yaw(trajectory.times) if trajectory.yaws is not None or trajectory.rotations is not None \
        else None
    return [{"t": float(t), "x": float(p[0]), "y": float(p[1]),
             "yaw_deg": None if yaws is None else float(np.degrees(yaws[i]))}
            for i, (t, p) in enumerate(zip(trajectory.times, trajectory.positions))]


def _cell(row: dict, key: str):
    """A table cell as the scenario reader expects it: numbers stay numbers, blanks are missing."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value) and key == "yaw_deg"):
        return None
    if hasattr(value, "item"):  # numpy and pandas scalars
        value = value.item()
    return value


def with_ego_waypoints(scenario: Scenario, rows: list[dict]) -> Scenario:
    """The scenario with the ego following the table's rows; errors name the row and column
    ("ego.waypoints[2].t"). Yaw is either given on every row or on none (then the heading follows travel)."""
    document = scenario.to_dict()
    waypoints = []
    yaw_given = [_cell(row, "yaw_deg") is not None for row in rows]
    if any(yaw_given) and not all(yaw_given):
        missing = yaw_given.index(False)
        raise ScenarioError(f"{scenario.source}: ego.waypoints[{missing}].yaw_deg: give a yaw on every row "
                            "or on none (then the heading follows the direction of travel)")
    for row in rows:
        waypoint = {key: _cell(row, key) for key in ("t", "x", "y")}
        z = float(scenario.ego.positions[0, 2])
        if z:
            waypoint["z"] = z
        if all(yaw_given) and rows:
            yaw = _cell(row, "yaw_deg")
            waypoint["yaw"] = math.radians(yaw) if isinstance(yaw, (int, float)) else yaw
        waypoints.append(waypoint)
    document["ego"] = {"waypoints": waypoints}
    return _rebuilt(scenario, document)


def _rebuilt(scenario: Scenario, document: dict) -> Scenario:
    return from_dict(document, scenario.source, scenario.base_dir)


def new_agent(scenario: Scenario, agent_id: str, category: str, x: float, y: float, yaw_deg: float = 0.0,
              speed: float = 0.0, size: tuple[float, float, float] | None = None) -> Scenario:
    """The scenario with one more agent at (x, y) heading yaw_deg: parked at speed 0, else driving straight
    on at `speed` m/s for the whole scenario. Its size defaults to a typical one for its category."""
    document = scenario.to_dict()
    size = list(size) if size is not None else list(DEFAULT_SIZES[super_category(category)]) \
        if isinstance(category, str) else [1.0, 1.0, 1.0]
    entry: dict = {"id": agent_id, "category": category, "size": size}
    try:
        yaw = math.radians(float(yaw_deg))
        speed = float(speed)
        x, y = float(x), float(y)
    except (TypeError, ValueError):
        raise ScenarioError(f"{scenario.source}: new agent {agent_id!r}: x, y, yaw and speed must be numbers") \
            from None
    if not math.isfinite(speed) or speed < 0:
        raise ScenarioError(f"{scenario.source}: new agent {agent_id!r}: speed must be a number >= 0, got {speed}")
    if speed == 0:
        entry["parked"] = {"x": x, "y": y, "yaw": yaw}
    else:
        end = scenario.duration
        entry["waypoints"] = [{"t": 0.0, "x": x, "y": y, "yaw": yaw},
                              {"t": end, "x": x + speed * end * math.cos(yaw), "y": y + speed * end * math.sin(yaw),
                               "yaw": yaw}]
    document["agents"] = [*document["agents"], entry]
    return _rebuilt(scenario, document)
