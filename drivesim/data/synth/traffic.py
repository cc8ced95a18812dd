"""Traffic on a town: the ego car and other agents, simulated frame by frame.

Vehicles follow routes through the lane graph with the intelligent driver model
(IDM): they keep their desired speed, slow for curves, and brake for whatever
stands on their path ahead (pedestrians, the ego car, other vehicles).
Pedestrians walk along sidewalks and cross at crosswalks; parked cars, cones
and barriers stand still. The result is one pose per agent per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivesim.data.synth.town import CURB_HEIGHT, LANE_WIDTH, SIDEWALK_WIDTH, Town
from drivesim.data.synth.traffic_step import Mover, Walker, step


@dataclass(frozen=True)
class CategorySpec:
    size: tuple[float, float, float]  # mean width, length, height (nuScenes wlh)
    jitter: float  # relative size variation
    speed: tuple[float, float]  # desired speed range, m/s


CATEGORIES: dict[str, CategorySpec] = {
    "vehicle.car": CategorySpec((1.85, 4.5, 1.55), 0.06, (8.0, 13.0)),
    "vehicle.truck": CategorySpec((2.45, 7.0, 3.0), 0.10, (7.0, 10.0)),
    "vehicle.bus.rigid": CategorySpec((2.9, 11.5, 3.3), 0.03, (6.5, 9.0)),
    "vehicle.motorcycle": CategorySpec((0.8, 2.1, 1.5), 0.05, (8.0, 12.0)),
    "vehicle.bicycle": CategorySpec((0.65, 1.75, 1.7), 0.05, (3.5, 5.5)),
    "human.pedestrian.adult": CategorySpec((0.65, 0.7, 1.75), 0.06, (1.1, 1.6)),
    "human.pedestrian.child": CategorySpec((0.5, 0.5, 1.2), 0.08, (0.9, 1.3)),
    "movable_object.trafficcone": CategorySpec((0.4, 0.4, 0.75), 0.0, (0.0, 0.0)),
    "movable_object.barrier": CategorySpec((0.5, 2.0, 1.0), 0.0, (0.0, 0.0)),
}
VEHICLES = ("vehicle.car", "vehicle.truck", "vehicle.bus.rigid", "vehicle.motorcycle", "vehicle.bicycle")
EGO_SIZE = (1.73, 4.08, 1.56)  # a nuScenes-like ego car; its origin is the rear axle
EGO_REAR_OVERHANG = 1.0  # metres from the rear axle to the rear bumper


@dataclass
class Agent:
    """One traffic participant: its box size and its pose in every frame."""

    id: int
    category: str
    size: tuple[float, float, float]  # w, l, h
    poses: np.ndarray  # (T, 4): x, y, z of the box bottom centre, yaw
    speeds: np.ndarray  # (T,) m/s along its heading
    present: np.ndarray  # (T,) bool: in the world at this frame
    parked: bool
    style: int  # appearance variant (paint colour, clothes)


@dataclass
class Traffic:
    """The ego's poses (rear axle, ground level) and every other agent, frame by frame."""

    fps: float
    ego_poses: np.ndarray  # (T, 3): x, y, yaw
    ego_speeds: np.ndarray  # (T,)
    ego_turns: list[str]  # connector kinds the ego drove through: "left", "right", "straight", "lane_change"
    agents: list[Agent]

    @property
    def num_frames(self) -> int:
        return len(self.ego_poses)


class Path:
    """A polyline with arc length, position, heading and a curve speed limit."""

    def __init__(self, points: np.ndarray, max_lateral_accel: float = 2.0, brake: float = 2.5,
                 connectors: list[tuple[int, float, float]] = ()):
        # (connector lane id, arc length where it starts, where it ends) along this path.
        self.connectors = list(connectors)
        keep = np.concatenate([[True], np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6])
        self.points = points[keep]
        seg = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.s[-1])
        tangent = np.gradient(self.points, self.s, axis=0)
        self.heading = np.unwrap(np.arctan2(tangent[:, 1], tangent[:, 0]))
        curvature = np.abs(np.gradient(self.heading, self.s)) if len(self.s) > 2 else np.zeros_like(self.s)
        limit = np.sqrt(max_lateral_accel / np.maximum(curvature, 1e-4))
        # Backward pass: brake in time for the slowest point ahead.
        for i in range(len(limit) - 2, -1, -1):
            limit[i] = min(limit[i], np.sqrt(limit[i + 1] ** 2 + 2 * brake * (self.s[i + 1] - self.s[i])))
        self.speed_limit = limit

    def at(self, s) -> tuple[np.ndarray, np.ndarray]:
        s = np.clip(s, 0.0, self.length)
        x = np.interp(s, self.s, self.points[:, 0])
        y = np.interp(s, self.s, self.points[:, 1])
        return np.stack([x, y], axis=-1), np.interp(s, self.s, self.heading)

    def limit_at(self, s) -> np.ndarray:
        return np.interp(s, self.s, self.speed_limit)


def _concat(polylines: list[np.ndarray]) -> np.ndarray:
    out = [polylines[0]]
    for p in polylines[1:]:
        out.append(p[1:] if np.allclose(out[-1][-1], p[0]) else p)
    return np.vstack(out)


def _connector_spans(town: Town, route: list[int], first_length: float | None = None):
    """Arc-length spans of the intersection connectors along a path made of `route`'s lanes."""
    spans, s = [], 0.0
    for k, lane_id in enumerate(route):
        length = first_length if k == 0 and first_length is not None else town.lanes[lane_id].length
        if town.lanes[lane_id].turn:
            spans.append((lane_id, s, s + length))
        s += length
    return spans


def route_path(town: Town, route: list[int], first: np.ndarray | None = None) -> Path:
    """The path along `route`'s lanes (its first lane replaced by `first` if given)."""
    polylines = [first if first is not None else town.lanes[route[0]].points] + [town.lanes[r].points
                                                                                 for r in route[1:]]
    first_length = None if first is None else float(np.linalg.norm(np.diff(first, axis=0), axis=1).sum())
    return Path(_concat(polylines), connectors=_connector_spans(town, route, first_length))


def random_route(town: Town, rng, start_lane: int, min_length: float, avoid_turns: bool = False) -> list[int]:
    """Lanes from `start_lane` on, choosing successors at random, until `min_length` metres."""
    route, length = [start_lane], town.lanes[start_lane].length
    while length < min_length:
        successors = town.lanes[route[-1]].successors
        if not successors:
            break
        if avoid_turns:
            straight = [s for s in successors if town.lanes[s].turn in ("", "straight")]
            successors = straight or successors
        nxt = int(rng.choice(successors))
        route.append(nxt)
        length += town.lanes[nxt].length
    return route


def _lane_change(a: np.ndarray, b: np.ndarray, start: float, length: float) -> np.ndarray:
    """Blend from parallel lane a into lane b between arc length start and start + length."""
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(a, axis=0), axis=1))])
    dense = np.arange(0.0, s[-1], 1.0)
    pa = np.stack([np.interp(dense, s, a[:, i]) for i in range(2)], axis=-1)
    pb = np.stack([np.interp(dense, s, b[:, i]) for i in range(2)], axis=-1)
    w = np.clip((dense - start) / length, 0.0, 1.0)
    w = w * w * (3 - 2 * w)  # smoothstep: no lateral jerk at the ends
    return np.vstack([pa + w[:, None] * (pb - pa), b[-1:]])


def plan_ego(town: Town, rng, distance: float, manoeuvre: str) -> tuple[Path, list[str], float]:
    """A route of about `distance` metres whose start is placed so the manoeuvre happens in view.

    manoeuvre: "left", "right", "straight", "lane_change". Returns the path, the
    turn kinds it contains and the start arc length.
    """
    road_lanes = [lane for lane in town.lanes if lane.turn == "" and lane.successors and lane.length > 40]
    for _ in range(400):
        lane = road_lanes[int(rng.integers(len(road_lanes)))]
        if manoeuvre == "lane_change":
            neighbour = lane.left if rng.random() < 0.5 else lane.right
            if neighbour is None or lane.length < 70:
                continue
            neighbour_lane = town.lanes[neighbour]
            rest = random_route(town, rng, neighbour, distance + 60, avoid_turns=True)[1:]
            change_at = float(rng.uniform(8.0, max(10.0, lane.length - 60.0)))
            first = _lane_change(lane.points, neighbour_lane.points, change_at, 45.0)
            path = route_path(town, [neighbour] + rest, first=first)
            start = max(0.0, change_at - rng.uniform(3.0, min(25.0, 0.25 * distance)))
            turns = ["lane_change"] + [town.lanes[r].turn for r in rest if town.lanes[r].turn]
            if path.length - start >= distance:
                return path, turns, start
            continue
        route = [lane.id]
        successors = lane.successors
        wanted = [s for s in successors if town.lanes[s].turn == manoeuvre]
        if not wanted:
            continue
        route.append(int(rng.choice(wanted)))
        route += random_route(town, rng, town.lanes[route[-1]].successors[0], distance + 60, avoid_turns=True)
        # Start so the intersection comes up early enough for the turn to happen in the scene.
        start = max(0.0, lane.length - rng.uniform(4.0, max(5.0, min(60.0, 0.3 * distance, lane.length - 5))))
        path = route_path(town, route)
        if path.length - start >= distance:
            return path, [town.lanes[r].turn for r in route if town.lanes[r].turn], start
    raise RuntimeError(f"no ego route of {distance:.0f} m for a {manoeuvre} manoeuvre in town {town.name}")


def _new_agent(rng, agent_id: int, category: str, num_frames: int, parked: bool) -> Agent:
    spec = CATEGORIES[category]
    w, l, h = (float(v * (1 + spec.jitter * rng.uniform(-1, 1))) for v in spec.size)
    return Agent(agent_id, category, (round(w, 3), round(l, 3), round(h, 3)), np.zeros((num_frames, 4)),
                 np.zeros(num_frames), np.zeros(num_frames, dtype=bool), parked, int(rng.integers(0, 1 << 16)))


def simulate(town: Town, rng: np.random.Generator, seconds: float, fps: float, manoeuvre: str,
             density: float = 1.0) -> Traffic:
    """Plan the ego route, populate its surroundings, and step everyone with IDM at `fps`."""
    num_frames = int(round(seconds * fps)) + 1
    ego_speed = float(rng.uniform(7.0, 11.0))
    ego_path, ego_turns, ego_start = plan_ego(town, rng, ego_speed * seconds + 30, manoeuvre)
    scene = _Scene(town, rng, num_frames, density, ego_path.points)
    scene.movers.append(Mover(ego_path, ego_start, ego_speed * 0.8, ego_speed, EGO_SIZE[1], EGO_SIZE[0], None,
                              centre_offset=ego_box_center_offset()))
    scene.add_lane_traffic(ego_path.at(ego_start)[0])
    scene.add_parked()
    pedestrians = _spawn_pedestrians(town, rng, ego_path, ego_start, ego_speed, num_frames, seconds,
                                     len(scene.agents) + 1, density)
    scene.agents += [walker.agent for walker in pedestrians]
    ego_poses, ego_speeds = _run(town, scene.movers, pedestrians, num_frames, 1.0 / fps)
    return Traffic(fps, ego_poses, ego_speeds, ego_turns, scene.agents)


class _Scene:
    """The agents around the ego's route as they are added: moving vehicles, then parked ones. Each draws
    from `rng` in a fixed order, so a seed gives the same traffic."""

    VEHICLE_KINDS = ["vehicle.car"] * 14 + ["vehicle.truck"] * 2 + ["vehicle.bus.rigid", "vehicle.motorcycle",
                                                                    "vehicle.bicycle"]

    def __init__(self, town: Town, rng, num_frames: int, density: float, route_xy: np.ndarray):
        self.town, self.rng, self.num_frames, self.density, self.route_xy = town, rng, num_frames, density, route_xy
        self.agents: list[Agent] = []
        self.movers: list[Mover] = []

    def near_route(self, xy, radius: float) -> np.ndarray:
        distance = np.linalg.norm(self.route_xy[None, :, :] - np.asarray(xy)[:, None, :], axis=-1)
        return np.min(distance, axis=1) < radius

    def add_lane_traffic(self, ego_xy0: np.ndarray) -> None:
        """Moving vehicles on road lanes near the route, spaced along each lane, none on the ego."""
        rng = self.rng
        for lane in self.town.lanes:
            if lane.turn or not self.near_route(lane.points[[0, len(lane.points) // 2, -1]], 80).any():
                continue
            s = rng.uniform(3.0, 25.0)
            while s < lane.length - 8.0:
                if rng.random() < 0.4 * self.density:
                    s += self._add_vehicle(lane, s, ego_xy0)
                s += rng.uniform(12.0, 30.0)

    def _add_vehicle(self, lane, s: float, ego_xy0: np.ndarray) -> float:
        """A vehicle drawn for `lane` at `s` (kept unless too near the ego); returns the gap it takes."""
        rng = self.rng
        category = self.VEHICLE_KINDS[int(rng.integers(len(self.VEHICLE_KINDS)))]
        agent = _new_agent(rng, len(self.agents) + 1, category, self.num_frames, parked=False)
        # Trucks and buses go straight on: the grid's tightest corners are too sharp for them.
        long_vehicle = category in ("vehicle.truck", "vehicle.bus.rigid")
        route = random_route(self.town, rng, lane.id, 200.0, avoid_turns=long_vehicle)
        path = route_path(self.town, route)
        if category == "vehicle.bicycle":  # cyclists keep to the right edge of the lane
            path = Path(_offset_right(path.points, LANE_WIDTH / 2 - 0.7), connectors=path.connectors)
        pos, _ = path.at(s)
        if np.linalg.norm(pos - ego_xy0) > 14.0:
            lo, hi = CATEGORIES[category].speed
            self.movers.append(Mover(path, s, 0.0, float(rng.uniform(lo, hi)), agent.size[1], agent.size[0], agent))
            self.movers[-1].v = self.movers[-1].v0 * 0.7
            self.agents.append(agent)
        return agent.size[1] + rng.uniform(10.0, 25.0)

    def add_parked(self) -> None:
        """Parked cars and a few cones or barriers in parking strips near the route."""
        spots = np.array(self.town.parking_spots) if self.town.parking_spots else np.zeros((0, 3))
        if not len(spots):
            return
        rng, density = self.rng, self.density
        for x, y, yaw in spots[self.near_route(spots[:, :2], 90)]:
            roll = rng.random()
            if roll < 0.55 * density:
                self._park("vehicle.car" if rng.random() < 0.9 else "vehicle.truck", (x, y, 0.0, yaw))
            elif roll < 0.62 * density:  # cones and barriers thin out with density too
                for k in range(3):
                    self._park("movable_object.trafficcone",
                               (x + np.cos(yaw) * (k - 1) * 2.0, y + np.sin(yaw) * (k - 1) * 2.0, 0.0, yaw))
            elif roll < 0.65 * density:
                self._park("movable_object.barrier", (x, y, 0.0, yaw))

    def _park(self, category: str, pose: tuple) -> None:
        agent = _new_agent(self.rng, len(self.agents) + 1, category, self.num_frames, parked=True)
        agent.poses[:] = pose
        agent.present[:] = True
        self.agents.append(agent)


def _run(town: Town, movers: list[Mover], pedestrians: list[Walker], num_frames: int,
         dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Record every agent's pose each frame, then step the traffic; returns the ego's poses [F, 3] (x, y,
    yaw) and speeds [F]."""
    ego_poses = np.zeros((num_frames, 3))
    ego_speeds = np.zeros(num_frames)
    holders: dict[int, set[int]] = {}  # connector lane -> movers that reserved it
    for frame in range(num_frames):
        for m in movers:
            xy, yaw = m.path.at(m.s)
            if m.agent is None:
                ego_poses[frame] = (xy[0], xy[1], yaw)
                ego_speeds[frame] = m.v
            elif m.active:
                m.agent.poses[frame] = (xy[0], xy[1], 0.0, yaw)
                m.agent.speeds[frame] = m.v
                m.agent.present[frame] = True
        for walker in pedestrians:
            if frame * dt >= walker.start_time and walker.s <= walker.path.length:
                xy, yaw = walker.path.at(walker.s)
                ground = 0.0 if town.drivable(xy) else CURB_HEIGHT
                walker.agent.poses[frame] = (xy[0], xy[1], ground, yaw)
                walker.agent.present[frame] = True
        step(movers, pedestrians, frame, dt, town.conflicts, holders)
    return ego_poses, ego_speeds


def _offset_right(points: np.ndarray, distance: float) -> np.ndarray:
    tangent = np.gradient(points, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    right = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    shifted = points + right * distance
    # Inside a corner tighter than `distance` the offset line folds back on itself, and a path
    # through the fold spins its heading the wrong way round: keep only points that advance.
    keep = [0]
    for i in range(1, len(points)):
        if np.dot(shifted[i] - shifted[keep[-1]], points[i] - points[keep[-1]]) > 0:
            keep.append(i)
    return shifted[keep]


def _spawn_pedestrians(town: Town, rng, ego_path: Path, ego_start: float, ego_speed: float, num_frames: int,
                       duration: float, first_id: int, density: float):
    """Walkers along sidewalks near the route, and a few who cross at crosswalks ahead of the ego."""
    out = []
    route_xy = ego_path.points
    for block in town.blocks:
        outline = block.outline
        centre = outline.mean(axis=0)
        for k in range(len(outline)):
            a, b = outline[k], outline[(k + 1) % len(outline)]
            if np.linalg.norm(b - a) < 20:
                continue
            mid = (a + b) / 2
            if np.min(np.linalg.norm(route_xy - mid, axis=1)) > 70 or rng.random() > 0.5 * density:
                continue
            inward = centre - mid
            inward /= np.linalg.norm(inward)
            offset = inward * rng.uniform(1.6, SIDEWALK_WIDTH - 0.6)
            start, end = (a + offset, b + offset) if rng.random() < 0.5 else (b + offset, a + offset)
            category = "human.pedestrian.adult" if rng.random() < 0.85 else "human.pedestrian.child"
            agent = _new_agent(rng, first_id + len(out), category, num_frames, parked=False)
            lo, hi = CATEGORIES[category].speed
            speed = float(rng.uniform(lo, hi))
            path = Path(np.array([start, end]))
            # Already somewhere along the walk when the scene starts.
            out.append(Walker(agent, path, speed, start_time=-float(rng.uniform(0, path.length / speed))))
    # Crossers: at crosswalks the ego will reach within the scene.
    horizon = ego_start + ego_speed * duration + 20
    for crosswalk in town.crosswalks:
        centre = crosswalk.mean(axis=0)
        d = np.linalg.norm(route_xy - centre, axis=1)
        nearest = int(np.argmin(d))
        if d[nearest] > 12 or not (ego_start + 10 < ego_path.s[nearest] < horizon) or rng.random() > 0.7 * density:
            continue
        # Walk across the road: along the crosswalk's long axis, from curb to curb plus the sidewalk.
        long_axis = crosswalk[1] - crosswalk[0]
        width = np.linalg.norm(long_axis)
        long_axis /= width
        mid_short = (crosswalk[0] + crosswalk[3]) / 2 - crosswalk[0]
        side = 1 if rng.random() < 0.5 else -1
        start = centre - side * long_axis * (width / 2 + 1.5) + rng.uniform(-0.3, 0.3) * mid_short
        end = centre + side * long_axis * (width / 2 + 1.5)
        category = "human.pedestrian.adult" if rng.random() < 0.85 else "human.pedestrian.child"
        agent = _new_agent(rng, first_id + len(out), category, num_frames, parked=False)
        lo, hi = CATEGORIES[category].speed
        speed = float(rng.uniform(lo, hi))
        # Time the crossing to begin a little before the ego arrives at the crosswalk.
        arrival = (ego_path.s[nearest] - ego_start) / max(ego_speed, 1.0)
        start_time = max(0.0, arrival - rng.uniform(4.0, 9.0))
        out.append(Walker(agent, Path(np.array([start, end])), speed, start_time))
    return out


def ego_box_center_offset() -> float:
    """Distance from the rear axle (ego origin) forward to the ego car's centre."""
    return EGO_SIZE[1] / 2 - EGO_REAR_OVERHANG

