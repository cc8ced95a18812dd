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

from drivesim.data.town import CURB_HEIGHT, LANE_WIDTH, SIDEWALK_WIDTH, Town


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


@dataclass
class _Mover:
    """A vehicle on its path. `s` is its reference point: the box centre, or the ego's rear axle."""

    path: Path
    s: float
    v: float
    v0: float
    length: float
    width: float
    agent: Agent | None  # None for the ego
    centre_offset: float = 0.0  # from the reference point forward to the box centre

    @property
    def active(self) -> bool:
        return self.s < self.path.length - 0.5


@dataclass
class _Walker:
    """A pedestrian on a straight walk; starts at `start_time` (negative: already walking)."""

    agent: Agent
    path: Path
    speed: float
    start_time: float
    s: float = 0.0

    def __post_init__(self):
        self.s = max(0.0, -self.start_time * self.speed)


def _idm(v, v0, gap, dv, a_max=1.5, b=2.5, s0=2.5, headway=1.3):
    s_star = s0 + np.maximum(0.0, v * headway + v * dv / (2 * np.sqrt(a_max * b)))
    return a_max * (1 - (v / np.maximum(v0, 0.1)) ** 4 - (s_star / np.maximum(gap, 0.1)) ** 2)


def _new_agent(rng, agent_id: int, category: str, num_frames: int, parked: bool) -> Agent:
    spec = CATEGORIES[category]
    w, l, h = (float(v * (1 + spec.jitter * rng.uniform(-1, 1))) for v in spec.size)
    return Agent(agent_id, category, (round(w, 3), round(l, 3), round(h, 3)), np.zeros((num_frames, 4)),
                 np.zeros(num_frames), np.zeros(num_frames, dtype=bool), parked, int(rng.integers(0, 1 << 16)))


def simulate(town: Town, rng: np.random.Generator, seconds: float, fps: float, manoeuvre: str,
             density: float = 1.0) -> Traffic:
    """Plan the ego route, populate its surroundings, and step everyone with IDM at `fps`."""
    num_frames = int(round(seconds * fps)) + 1
    dt = 1.0 / fps
    ego_speed = float(rng.uniform(7.0, 11.0))
    ego_path, ego_turns, ego_start = plan_ego(town, rng, ego_speed * seconds + 30, manoeuvre)
    route_xy = ego_path.points
    agents: list[Agent] = []
    movers: list[_Mover] = [_Mover(ego_path, ego_start, ego_speed * 0.8, ego_speed, EGO_SIZE[1], EGO_SIZE[0], None,
                                   centre_offset=ego_box_center_offset())]

    def near_route(xy, radius):
        return np.min(np.linalg.norm(route_xy[None, :, :] - np.asarray(xy)[:, None, :], axis=-1), axis=1) < radius

    ego_xy0, _ = ego_path.at(ego_start)
    # Moving vehicles on road lanes near the route, spaced along each lane.
    vehicle_kinds = ["vehicle.car"] * 14 + ["vehicle.truck"] * 2 + ["vehicle.bus.rigid", "vehicle.motorcycle",
                                                                     "vehicle.bicycle"]
    for lane in town.lanes:
        if lane.turn or not near_route(lane.points[[0, len(lane.points) // 2, -1]], 80).any():
            continue
        s = rng.uniform(3.0, 25.0)
        while s < lane.length - 8.0:
            if rng.random() < 0.4 * density:
                category = vehicle_kinds[int(rng.integers(len(vehicle_kinds)))]
                agent = _new_agent(rng, len(agents) + 1, category, num_frames, parked=False)
                # Trucks and buses go straight on: the grid's tightest corners are too sharp for them.
                long_vehicle = category in ("vehicle.truck", "vehicle.bus.rigid")
                route = random_route(town, rng, lane.id, 200.0, avoid_turns=long_vehicle)
                path = route_path(town, route)
                if category == "vehicle.bicycle":  # cyclists keep to the right edge of the lane
                    path = Path(_offset_right(path.points, LANE_WIDTH / 2 - 0.7), connectors=path.connectors)
                pos, _ = path.at(s)
                if np.linalg.norm(pos - ego_xy0) > 14.0:
                    lo, hi = CATEGORIES[category].speed
                    movers.append(_Mover(path, s, 0.0, float(rng.uniform(lo, hi)), agent.size[1], agent.size[0], agent))
                    movers[-1].v = movers[-1].v0 * 0.7
                    agents.append(agent)
                s += agent.size[1] + rng.uniform(10.0, 25.0)
            s += rng.uniform(12.0, 30.0)
    # Parked cars and a few cones or barriers in parking strips near the route.
    spots = np.array(town.parking_spots) if town.parking_spots else np.zeros((0, 3))
    if len(spots):
        for x, y, yaw in spots[near_route(spots[:, :2], 90)]:
            roll = rng.random()
            if roll < 0.55 * density:
                category = "vehicle.car" if rng.random() < 0.9 else "vehicle.truck"
                agent = _new_agent(rng, len(agents) + 1, category, num_frames, parked=True)
                agent.poses[:] = (x, y, 0.0, yaw)
                agent.present[:] = True
                agents.append(agent)
            elif roll < 0.62 * density:  # cones and barriers thin out with density too
                for k in range(3):
                    agent = _new_agent(rng, len(agents) + 1, "movable_object.trafficcone", num_frames, parked=True)
                    agent.poses[:] = (x + np.cos(yaw) * (k - 1) * 2.0, y + np.sin(yaw) * (k - 1) * 2.0, 0.0, yaw)
                    agent.present[:] = True
                    agents.append(agent)
            elif roll < 0.65 * density:
                agent = _new_agent(rng, len(agents) + 1, "movable_object.barrier", num_frames, parked=True)
                agent.poses[:] = (x, y, 0.0, yaw)
                agent.present[:] = True
                agents.append(agent)
    pedestrians = _spawn_pedestrians(town, rng, ego_path, ego_start, ego_speed, num_frames, seconds,
                                     len(agents) + 1, density)
    agents += [walker.agent for walker in pedestrians]

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
        _step(movers, pedestrians, frame, dt, town.conflicts, holders)
    return Traffic(fps, ego_poses, ego_speeds, ego_turns, agents)


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


def _bodies(movers: list[_Mover]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each active vehicle as points every <= 2 m along its centre line, so long vehicles block
    along their whole length: (points (P, 2), owner mover index (P,), velocity (P, 2), half width (P,))."""
    points, owners, velocities, halves = [], [], [], []
    for i, m in enumerate(movers):
        if not m.active:
            continue
        centre, yaw = m.path.at(m.s + m.centre_offset)
        heading = np.array([np.cos(yaw), np.sin(yaw)])
        along = np.linspace(-m.length / 2, m.length / 2, max(2, int(np.ceil(m.length / 2.0)) + 1))
        points.append(centre + along[:, None] * heading)
        owners.append(np.full(len(along), i))
        velocities.append(np.broadcast_to(m.v * heading, (len(along), 2)))
        halves.append(np.full(len(along), m.width / 2))
    if not points:
        return np.zeros((0, 2)), np.zeros(0, int), np.zeros((0, 2)), np.zeros(0)
    return np.concatenate(points), np.concatenate(owners), np.concatenate(velocities), np.concatenate(halves)


def _step(movers: list[_Mover], walkers: list[_Walker], frame: int, dt: float,
          conflicts: dict[int, frozenset[int]], holders: dict[int, set[int]]) -> None:
    """Advance everyone one step. A vehicle brakes for the nearest body on its path ahead of its
    front bumper, and stops before an intersection connector it could not reserve; a pedestrian
    waits while a vehicle stands in their next step."""
    points, owners, velocities, halves = _bodies(movers)
    ego = movers[0]
    if ego.active:  # others also keep clear of where the ego will be: they yield at merges
        future = ego.s + ego.centre_offset + max(ego.v, 3.0) * np.arange(0.5, 3.01, 0.5)
        predicted, yaw = ego.path.at(future)
        points = np.concatenate([points, predicted])
        owners = np.concatenate([owners, np.zeros(len(future), int)])
        velocities = np.concatenate([velocities, ego.v * np.stack([np.cos(yaw), np.sin(yaw)], axis=1)])
        halves = np.concatenate([halves, np.full(len(future), ego.width / 2)])
    walking = [w for w in walkers if w.agent.present[frame]]
    if walking:
        ahead = np.array([w.agent.poses[frame, :2] + 0.9 * np.array([np.cos(w.agent.poses[frame, 3]),
                                                                     np.sin(w.agent.poses[frame, 3])])
                          for w in walking])
        points = np.concatenate([points, ahead])
        owners = np.concatenate([owners, np.full(len(walking), -1)])
        velocities = np.concatenate([velocities, np.zeros((len(walking), 2))])
        halves = np.concatenate([halves, np.full(len(walking), 0.6)])
    lookahead = np.arange(0.5, 50.0, 1.0)
    n = len(movers)
    gap_to = np.full((n, n + 1), np.inf)  # last column: pedestrians
    lead_velocity = np.zeros((n, n + 1, 2))
    for i, m in enumerate(movers):
        if not m.active or not len(points):
            continue
        front = m.s + m.centre_offset + m.length / 2
        near = (owners != i) & (np.abs(points - m.path.at(front)[0]).max(axis=1) < 55.0)
        if not near.any():
            continue
        probe, _ = m.path.at(front + lookahead)
        d = np.linalg.norm(probe[:, None, :] - points[None, near, :], axis=-1)  # (L, near)
        hit = d < (m.width / 2 + halves[near][None, :] + 0.3)
        if not hit.any():
            continue
        struck = hit.any(axis=0)
        distance = lookahead[hit.argmax(axis=0)[struck]]
        columns = np.where(owners[near][struck] >= 0, owners[near][struck], n)
        order = np.argsort(-distance)  # nearest last, so it wins the assignment below
        gap_to[i, columns[order]] = distance[order]
        lead_velocity[i, columns[order]] = velocities[near][struck][order]
    # Two vehicles on each other's path (crossing): the one nearer the conflict goes first.
    pair = gap_to[:, :n]
    mutual = np.isfinite(pair) & np.isfinite(pair.T)
    pair[mutual & (pair <= pair.T)] = np.inf
    stop_at = _reserve_connectors(movers, gap_to.min(axis=1), conflicts, holders)
    for i, m in enumerate(movers):
        if not m.active:
            continue
        j = int(np.argmin(gap_to[i]))
        gap = gap_to[i, j]
        if stop_at[i] < gap:  # wait at the entry of a connector someone else's path crosses
            gap, j = stop_at[i], None
            lead_velocity_ij = np.zeros(2)
        else:
            lead_velocity_ij = lead_velocity[i, j]
        v0 = min(m.v0, float(m.path.limit_at(m.s + 3.0)))
        if np.isfinite(gap):
            _, yaw = m.path.at(m.s)
            lead_v = float(np.dot(lead_velocity_ij, [np.cos(yaw), np.sin(yaw)]))
            accel = _idm(m.v, v0, gap, m.v - max(lead_v, 0.0))
        else:
            accel = _idm(m.v, v0, np.inf, 0.0)
        m.v = float(np.clip(m.v + np.clip(accel, -7.0, 2.0) * dt, 0.0, 20.0))
        m.s += m.v * dt
    for walker in walkers:
        if frame * dt < walker.start_time - 1e-9:
            continue
        blocked = False
        if walker.agent.present[frame]:
            xy, yaw = walker.agent.poses[frame, :2], walker.agent.poses[frame, 3]
            step = xy + 0.9 * np.array([np.cos(yaw), np.sin(yaw)])
            for m in movers:
                if m.active and _inside(step, m, margin=0.5):
                    blocked = True
                    break
        walker.agent.speeds[frame] = 0.0 if blocked else walker.speed
        if not blocked:
            walker.s += walker.speed * dt


def _reserve_connectors(movers: list[_Mover], clear_gap: np.ndarray, conflicts: dict[int, frozenset[int]],
                        holders: dict[int, set[int]]) -> np.ndarray:
    """Intersection right of way. A vehicle reserves its next connector once it is within braking
    reach of it with nothing in between, if no connector crossing it is held by another vehicle;
    nearer vehicles ask first. It holds the connector until its rear has left it. Returns, per
    vehicle, the distance to where it must stop (inf when it may go)."""
    fronts = np.array([m.s + m.centre_offset + m.length / 2 for m in movers])
    for connector in list(holders):
        keep = set()
        for i in holders[connector]:
            span = next((sp for sp in movers[i].path.connectors if sp[0] == connector), None)
            if movers[i].active and span is not None and fronts[i] - movers[i].length < span[2] + 0.5:
                keep.add(i)
        if keep:
            holders[connector] = keep
        else:
            del holders[connector]
    stop_at = np.full(len(movers), np.inf)
    requests = []
    for i, m in enumerate(movers):
        if not m.active:
            continue
        rear = fronts[i] - m.length
        upcoming = next(((c, s0) for c, s0, s1 in m.path.connectors if s1 > rear), None)
        if upcoming is None or i in holders.get(upcoming[0], ()):
            continue
        distance = upcoming[1] - fronts[i]
        if distance <= m.v**2 / (2 * 2.5) + 4.0:
            requests.append((distance, i, upcoming[0]))
    for distance, i, connector in sorted(requests):
        crossing_held = any(holders.get(other, set()) - {i} for other in conflicts.get(connector, ()))
        if distance < 0.0 or (not crossing_held and clear_gap[i] >= distance):
            holders.setdefault(connector, set()).add(i)  # already inside: it can only go on
        else:
            stop_at[i] = max(distance - 0.5, 0.1)
    return stop_at


def _inside(point: np.ndarray, m: _Mover, margin: float) -> bool:
    centre, yaw = m.path.at(m.s + m.centre_offset)
    offset = point - centre
    along = offset[0] * np.cos(yaw) + offset[1] * np.sin(yaw)
    across = -offset[0] * np.sin(yaw) + offset[1] * np.cos(yaw)
    return abs(along) <= m.length / 2 + margin and abs(across) <= m.width / 2 + margin


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
            out.append(_Walker(agent, path, speed, start_time=-float(rng.uniform(0, path.length / speed))))
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
        out.append(_Walker(agent, Path(np.array([start, end])), speed, start_time))
    return out


def ego_box_center_offset() -> float:
    """Distance from the rear axle (ego origin) forward to the ego car's centre."""
    return EGO_SIZE[1] / 2 - EGO_REAR_OVERHANG

