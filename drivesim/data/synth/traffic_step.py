"""One time step of traffic: vehicles follow their paths with the intelligent driver model (IDM),
braking for whatever stands on their path ahead and reserving intersection connectors before they
enter them; pedestrians walk on unless a vehicle stands in their next step. traffic.py sets the scene
and calls `step` once a frame."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = ["Mover", "Route", "Walker", "idm", "step"]


class Route(Protocol):
    """What a vehicle or walker follows (traffic.Path): where it is and which way it heads at arc length s,
    the speed its curvature allows, and the intersection connectors on it as (lane, start, end) spans."""

    length: float
    connectors: list[tuple[int, float, float]]

    def at(self, s): ...

    def limit_at(self, s): ...


@dataclass
class Mover:
    """A vehicle on its path. `s` is its reference point: the box centre, or the ego's rear axle."""

    path: Route
    s: float
    v: float
    v0: float
    length: float
    width: float
    agent: Any  # traffic.Agent; None for the ego
    centre_offset: float = 0.0  # from the reference point forward to the box centre

    @property
    def active(self) -> bool:
        return self.s < self.path.length - 0.5


@dataclass
class Walker:
    """A pedestrian on a straight walk; starts at `start_time` (negative: already walking)."""

    agent: Any  # traffic.Agent
    path: Route
    speed: float
    start_time: float
    s: float = 0.0

    def __post_init__(self):
        self.s = max(0.0, -self.start_time * self.speed)


def idm(v, v0, gap, dv, a_max=1.5, b=2.5, s0=2.5, headway=1.3):
    s_star = s0 + np.maximum(0.0, v * headway + v * dv / (2 * np.sqrt(a_max * b)))
    return a_max * (1 - (v / np.maximum(v0, 0.1)) ** 4 - (s_star / np.maximum(gap, 0.1)) ** 2)


def step(movers: list[Mover], walkers: list[Walker], frame: int, dt: float,
         conflicts: dict[int, frozenset[int]], holders: dict[int, set[int]]) -> None:
    """Advance everyone one step. A vehicle brakes for the nearest body on its path ahead of its
    front bumper, and stops before an intersection connector it could not reserve; a pedestrian
    waits while a vehicle stands in their next step."""
    obstacles = _obstacles(movers, walkers, frame)
    gap_to, lead_velocity = _gaps(movers, *obstacles)
    stop_at = _reserve_connectors(movers, gap_to.min(axis=1), conflicts, holders)
    _advance_vehicles(movers, gap_to, lead_velocity, stop_at, dt)
    _advance_walkers(walkers, movers, frame, dt)


def _obstacles(movers: list[Mover], walkers: list[Walker], frame: int):
    """What a vehicle may have to brake for, as points: every vehicle's body, where the ego will be in
    the next 3 s (others yield to it at merges) and each walker's next step. (points (P, 2), owner
    mover index (P,), -1 for walkers, velocity (P, 2), half width (P,))."""
    points, owners, velocities, halves = _bodies(movers)
    ego = movers[0]
    if ego.active:
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
    return points, owners, velocities, halves


def _gaps(movers: list[Mover], points, owners, velocities, halves) -> tuple[np.ndarray, np.ndarray]:
    """(gap [n, n + 1], lead velocity [n, n + 1, 2]): how far ahead on its path each vehicle meets each
    other vehicle (the last column: any walker), inf where it does not, and that obstacle's velocity."""
    lookahead = np.arange(0.5, 50.0, 1.0)
    n = len(movers)
    gap_to = np.full((n, n + 1), np.inf)
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
    return gap_to, lead_velocity


def _advance_vehicles(movers: list[Mover], gap_to: np.ndarray, lead_velocity: np.ndarray, stop_at: np.ndarray,
                      dt: float) -> None:
    """IDM toward each vehicle's nearest obstacle (or the connector it must wait at), one step of dt."""
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
            accel = idm(m.v, v0, gap, m.v - max(lead_v, 0.0))
        else:
            accel = idm(m.v, v0, np.inf, 0.0)
        m.v = float(np.clip(m.v + np.clip(accel, -7.0, 2.0) * dt, 0.0, 20.0))
        m.s += m.v * dt


def _advance_walkers(walkers: list[Walker], movers: list[Mover], frame: int, dt: float) -> None:
    """Each walker on by one step, unless a vehicle stands where the step would land."""
    for walker in walkers:
        if frame * dt < walker.start_time - 1e-9:
            continue
        blocked = False
        if walker.agent.present[frame]:
            xy, yaw = walker.agent.poses[frame, :2], walker.agent.poses[frame, 3]
            step_to = xy + 0.9 * np.array([np.cos(yaw), np.sin(yaw)])
            blocked = any(m.active and _inside(step_to, m, margin=0.5) for m in movers)
        walker.agent.speeds[frame] = 0.0 if blocked else walker.speed
        if not blocked:
            walker.s += walker.speed * dt


def _bodies(movers: list[Mover]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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


def _reserve_connectors(movers: list[Mover], clear_gap: np.ndarray, conflicts: dict[int, frozenset[int]],
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


def _inside(point: np.ndarray, m: Mover, margin: float) -> bool:
    centre, yaw = m.path.at(m.s + m.centre_offset)
    offset = point - centre
    along = offset[0] * np.cos(yaw) + offset[1] * np.sin(yaw)
    across = -offset[0] * np.sin(yaw) + offset[1] * np.cos(yaw)
    return abs(along) <= m.length / 2 + margin and abs(across) <= m.width / 2 + margin
