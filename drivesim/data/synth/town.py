"""A procedural town: a grid of roads with lanes, intersections, sidewalks, buildings.

The town is pure 2D map data (lanes, markings, curbs, lots) in the world frame;
meshes.py turns it into triangles and traffic.py drives on its lanes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

LANE_WIDTH = 3.5
PARKING_WIDTH = 2.4
SIDEWALK_WIDTH = 3.0
CURB_HEIGHT = 0.15
CROSSWALK_WIDTH = 3.0
STOP_LINE_SETBACK = 1.0  # between the stop line and the crosswalk


@dataclass(frozen=True)
class Lane:
    """A lane centre line in the direction of travel, with its successors in the lane graph."""

    id: int
    points: np.ndarray  # (N, 2) world xy, metres, ordered along travel
    width: float
    successors: tuple[int, ...]
    turn: str  # "" on a road, "straight" | "left" | "right" through an intersection
    left: int | None = None  # same-direction neighbour lanes, for lane changes
    right: int | None = None

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.points, axis=0), axis=1).sum())


@dataclass(frozen=True)
class Marking:
    """A painted line: `kind` is solid_white, dashed_white, double_yellow or stop_line."""

    kind: str
    points: np.ndarray  # (N, 2)


@dataclass(frozen=True)
class Building:
    footprint: np.ndarray  # (4, 2) corners, counter-clockwise
    height: float
    style: int  # index into the facade palette


@dataclass(frozen=True)
class Block:
    """The raised area between roads: sidewalk ring, then lots with buildings or a park."""

    outline: np.ndarray  # (N, 2) curb polygon (rounded rectangle), counter-clockwise
    park: bool
    inner: np.ndarray  # (4, 2) the lot area inside the sidewalk


@dataclass
class Town:
    """Everything static in the world; units metres, world frame x east, y north, z up."""

    name: str
    size: tuple[float, float]
    xs: np.ndarray  # x of north-south roads
    ys: np.ndarray  # y of east-west roads
    half_widths_x: np.ndarray  # half width of the road at each xs
    half_widths_y: np.ndarray
    lanes: list[Lane] = field(default_factory=list)
    markings: list[Marking] = field(default_factory=list)
    crosswalks: list[np.ndarray] = field(default_factory=list)  # (4, 2) polygons
    blocks: list[Block] = field(default_factory=list)
    buildings: list[Building] = field(default_factory=list)
    trees: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, height
    poles: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, yaw of the arm
    parking_spots: list[tuple[float, float, float]] = field(default_factory=list)  # x, y, yaw
    lanes_per_direction_x: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    lanes_per_direction_y: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    # Connector lanes whose paths cross or merge: at most one of each pair may be in use.
    conflicts: dict[int, frozenset[int]] = field(default_factory=dict)

    def road_edges(self) -> list[np.ndarray]:
        """Curb lines (closed polylines) around every block."""
        return [np.vstack([b.outline, b.outline[:1]]) for b in self.blocks]

    def drivable(self, points: np.ndarray) -> np.ndarray:
        """True where a world xy point lies on a road or intersection (not on a block)."""
        points = np.asarray(points, dtype=np.float64)
        on_x = np.zeros(points.shape[:-1], dtype=bool)
        for x, hw in zip(self.xs, self.half_widths_x):
            on_x |= np.abs(points[..., 0] - x) <= hw
        for y, hw in zip(self.ys, self.half_widths_y):
            on_x |= np.abs(points[..., 1] - y) <= hw
        inside = (points[..., 0] >= 0) & (points[..., 0] <= self.size[0])
        inside &= (points[..., 1] >= 0) & (points[..., 1] <= self.size[1])
        return on_x & inside


def _polyline(start, end, step: float = 2.0) -> np.ndarray:
    start, end = np.asarray(start, float), np.asarray(end, float)
    n = max(2, int(np.ceil(np.linalg.norm(end - start) / step)) + 1)
    return start + np.linspace(0.0, 1.0, n)[:, None] * (end - start)


def _bezier(p0, h0, p1, h1, step: float = 1.0) -> np.ndarray:
    """A cubic Bézier from p0 leaving along h0 to p1 arriving along h1 (a turn connector)."""
    p0, p1, h0, h1 = (np.asarray(a, float) for a in (p0, p1, h0, h1))
    reach = 0.55 * np.linalg.norm(p1 - p0)
    c0, c1 = p0 + h0 * reach, p1 - h1 * reach
    n = max(4, int(np.ceil(np.linalg.norm(p1 - p0) * 1.3 / step)))
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * c0 + 3 * (1 - t) * t**2 * c1 + t**3 * p1


def _rounded_rectangle(x0, y0, x1, y1, radius: float, segments: int = 4) -> np.ndarray:
    radius = min(radius, (x1 - x0) / 2 - 0.01, (y1 - y0) / 2 - 0.01)
    corners = [(x1 - radius, y0 + radius, -np.pi / 2), (x1 - radius, y1 - radius, 0.0),
               (x0 + radius, y1 - radius, np.pi / 2), (x0 + radius, y0 + radius, np.pi)]
    points = []
    for cx, cy, a0 in corners:
        for a in np.linspace(a0, a0 + np.pi / 2, segments + 1):
            points.append((cx + radius * np.cos(a), cy + radius * np.sin(a)))
    return np.array(points)


class _LaneGraph:
    """Collects lanes while the town is laid out, then links successors."""

    def __init__(self):
        self.lanes: list[dict] = []

    def add(self, points, turn="", **extra) -> int:
        self.lanes.append(dict(points=np.asarray(points, float), turn=turn, successors=[], **extra))
        return len(self.lanes) - 1

    def freeze(self) -> list[Lane]:
        return [Lane(id=i, points=d["points"], width=LANE_WIDTH, successors=tuple(d["successors"]),
                     turn=d["turn"], left=d.get("left"), right=d.get("right"))
                for i, d in enumerate(self.lanes)]


def _axis_positions(rng, extent: float, count: int) -> np.ndarray:
    gaps = rng.uniform(85.0, 130.0, size=count - 1)
    positions = np.concatenate([[0.0], np.cumsum(gaps)])
    return positions + (extent - positions[-1]) / 2


def generate_town(seed: int, name: str = "drivesim-town", grid: tuple[int, int] = (4, 4)) -> Town:
    """Lay out a grid town: roads of 1 or 2 lanes a direction, parking strips, blocks, buildings."""
    rng = np.random.default_rng(seed)
    nx, ny = grid
    size = (float(rng.uniform(420, 520)), float(rng.uniform(420, 520)))
    xs, ys = _axis_positions(rng, size[0], nx), _axis_positions(rng, size[1], ny)
    lanes_x = rng.choice([1, 2, 2], size=nx)  # lanes per direction of each north-south road
    lanes_y = rng.choice([1, 2, 2], size=ny)
    parking_x = rng.random(nx) < 0.6
    parking_y = rng.random(ny) < 0.6
    hw_x = lanes_x * LANE_WIDTH + parking_x * PARKING_WIDTH
    hw_y = lanes_y * LANE_WIDTH + parking_y * PARKING_WIDTH
    town = Town(name=name, size=size, xs=xs, ys=ys, half_widths_x=hw_x, half_widths_y=hw_y,
                lanes_per_direction_x=lanes_x, lanes_per_direction_y=lanes_y)
    layout = _RoadLayout(town, (parking_x, parking_y))
    for i in range(nx):
        layout.lay_road(0, i)
    for j in range(ny):
        layout.lay_road(1, j)
    layout.connect_intersections()
    town.lanes = layout.graph.freeze()
    town.conflicts = _connector_conflicts(town.lanes)
    _lay_blocks(town, rng)
    return town


@dataclass
class _Segment:
    """One stretch of a road between two intersections (or an intersection and the town's edge)."""

    axis: int            # 0: a north-south road (x fixed), 1: east-west (y fixed)
    index: int           # which road of that axis
    fixed: float         # the road's centre line coordinate
    start: float         # `along` coordinates where the stretch begins and ends
    end: float
    start_node: int | None  # the crossing road at `start`, None at the town's edge
    end_node: int | None
    lanes: int           # lanes per direction
    half_width: float

    def point(self, along: float, offset: float) -> tuple[float, float]:
        """A point `along` the road, `offset` metres to the left of the +along direction."""
        return (self.fixed - offset, along) if self.axis == 0 else (along, self.fixed + offset)


class _RoadLayout:
    """Lays out a town's roads, segment by segment, then connects them through every intersection."""

    def __init__(self, town: Town, parking: tuple[np.ndarray, np.ndarray]):
        self.town, self.parking = town, parking
        self.graph = _LaneGraph()
        # Lane ids leaving / entering a node, innermost lane first, by (axis, road, node, direction).
        self.leaving: dict[tuple, list[int]] = {}
        self.entering: dict[tuple, list[int]] = {}

    def lay_road(self, axis: int, index: int) -> None:
        """Lanes, markings and parking of one road, segment by segment between intersections."""
        town = self.town
        cross = town.ys if axis == 0 else town.xs  # positions of the crossing roads
        cross_hw = town.half_widths_y if axis == 0 else town.half_widths_x
        stops = [0.0] + [c for c in cross] + [town.size[1] if axis == 0 else town.size[0]]
        for seg in range(len(stops) - 1):
            a = stops[seg] + (cross_hw[seg - 1] if seg > 0 else 0.0)
            b = stops[seg + 1] - (cross_hw[seg] if seg < len(cross) else 0.0)
            if b - a < 5.0:
                continue
            segment = _Segment(axis, index, (town.xs if axis == 0 else town.ys)[index], a, b,
                               seg - 1 if seg > 0 else None, seg if seg < len(cross) else None,
                               int((town.lanes_per_direction_x if axis == 0 else town.lanes_per_direction_y)[index]),
                               (town.half_widths_x if axis == 0 else town.half_widths_y)[index])
            self._lay_segment(segment, bool(self.parking[axis][index]))

    def _lay_segment(self, segment: _Segment, has_parking: bool) -> None:
        # Painted lines stop at the stop lines, clear of the crosswalks.
        setback = CROSSWALK_WIDTH + STOP_LINE_SETBACK
        paint = (segment.start + (setback if segment.start_node is not None else 0.0),
                 segment.end - (setback if segment.end_node is not None else 0.0))
        for sign in (+1, -1):  # +1 travels toward increasing `along`
            self._lay_direction(segment, sign, paint, has_parking)
        point = segment.point
        self.town.markings.append(Marking("double_yellow", np.array([point(paint[0], 0.0), point(paint[1], 0.0)])))
        # Crosswalks across the whole road just outside each intersection.
        for end, inward, node in ((segment.start, +1, segment.start_node), (segment.end, -1, segment.end_node)):
            if node is None:
                continue
            lo, hi = end, end + inward * CROSSWALK_WIDTH
            width = segment.half_width
            self.town.crosswalks.append(np.array([point(lo, -width), point(lo, width), point(hi, width),
                                                  point(hi, -width)]))

    def _lay_direction(self, segment: _Segment, sign: int, paint: tuple[float, float], has_parking: bool) -> None:
        """The lanes of one direction of a segment, their stop line, dividers, edge line and parking."""
        town, graph, point, n_lanes = self.town, self.graph, segment.point, segment.lanes
        a, b = segment.start, segment.end
        ids = []
        for k in range(n_lanes):
            offset = -sign * (k + 0.5) * LANE_WIDTH  # right-hand traffic
            p0, p1 = (point(a, offset), point(b, offset)) if sign > 0 else (point(b, offset), point(a, offset))
            ids.append(graph.add(_polyline(p0, p1)))
        for k in range(n_lanes):  # left is toward the centre line (smaller k)
            graph.lanes[ids[k]]["left"] = ids[k - 1] if k > 0 else None
            graph.lanes[ids[k]]["right"] = ids[k + 1] if k + 1 < n_lanes else None
        direction = (segment.axis, sign)
        src, dst = (segment.start_node, segment.end_node) if sign > 0 else (segment.end_node, segment.start_node)
        if src is not None:
            self.leaving[(segment.axis, segment.index, src, direction)] = ids
        if dst is not None:
            self.entering[(segment.axis, segment.index, dst, direction)] = ids
            # Stop line at the entry of the next intersection.
            stop_at = (b if sign > 0 else a) - sign * (CROSSWALK_WIDTH + STOP_LINE_SETBACK)
            town.markings.append(Marking("stop_line", np.array(
                [point(stop_at, 0.0), point(stop_at, -sign * n_lanes * LANE_WIDTH)])))
        # Dashed dividers between same-direction lanes, solid edge line before parking.
        for k in range(1, n_lanes):
            town.markings.append(Marking("dashed_white", np.array(
                [point(paint[0], -sign * k * LANE_WIDTH), point(paint[1], -sign * k * LANE_WIDTH)])))
        edge = -sign * n_lanes * LANE_WIDTH
        town.markings.append(Marking("solid_white", np.array([point(paint[0], edge), point(paint[1], edge)])))
        if has_parking:
            axis = segment.axis
            yaw = (np.pi / 2 if sign > 0 else -np.pi / 2) if axis == 0 else (0.0 if sign > 0 else np.pi)
            park_offset = -sign * (n_lanes * LANE_WIDTH + PARKING_WIDTH / 2)
            for along in np.arange(a + 12.0, b - 12.0, 6.5):
                x, y = point(along, park_offset)
                town.parking_spots.append((x, y, yaw))

    def connect_intersections(self) -> None:
        """Connectors through every intersection: straight through, right from the rightmost lane, left
        from the leftmost lane."""
        for i in range(len(self.town.xs)):
            for j in range(len(self.town.ys)):
                arms = {(0, +1): (0, i, j), (0, -1): (0, i, j), (1, +1): (1, j, i), (1, -1): (1, j, i)}
                for direction, (axis, road, node) in arms.items():
                    inbound = self.entering.get((axis, road, node, direction))
                    if inbound:
                        self._connect_arm(arms, direction, inbound)

    def _connect_arm(self, arms: dict, direction: tuple[int, int], inbound: list[int]) -> None:
        graph = self.graph
        heading_in = _heading(direction)
        for turn, out_dir in (("straight", direction), ("left", _turn_left(direction)),
                              ("right", _turn_right(direction))):
            o_axis, o_road, o_node = arms[out_dir]
            outbound = self.leaving.get((o_axis, o_road, o_node, out_dir))
            if not outbound:
                continue
            if turn == "straight":
                pairs = list(zip(inbound, outbound))
            elif turn == "left":
                pairs = [(inbound[0], outbound[0])]
            else:
                pairs = [(inbound[-1], outbound[-1])]
            for lane_in, lane_out in pairs:
                p0 = graph.lanes[lane_in]["points"][-1]
                p1 = graph.lanes[lane_out]["points"][0]
                pts = _polyline(p0, p1) if turn == "straight" else _bezier(p0, heading_in, p1, _heading(out_dir))
                cid = graph.add(pts, turn=turn)
                graph.lanes[lane_in]["successors"].append(cid)
                graph.lanes[cid]["successors"].append(lane_out)


def _connector_conflicts(lanes: list[Lane], clearance: float = 3.3) -> dict[int, frozenset[int]]:
    """Pairs of connectors that come within `clearance` metres of each other, except connectors
    leaving the same lane (car-following orders those). The clearance exceeds a vehicle's width
    because long bodies swing wide on tight turns; it stays below the 3.5 m between parallel lanes."""
    connectors = [lane for lane in lanes if lane.turn]
    predecessor = {s: lane.id for lane in lanes for s in lane.successors if lanes[s].turn}
    dense = {c.id: _resample(c.points, 0.5) for c in connectors}
    conflicts: dict[int, set[int]] = {c.id: set() for c in connectors}
    for i, a in enumerate(connectors):
        for b in connectors[i + 1:]:
            if predecessor[a.id] == predecessor[b.id]:
                continue
            if np.abs(a.points[0] - b.points[0]).max() > 45.0:  # other intersection
                continue
            gap = np.linalg.norm(dense[a.id][:, None, :] - dense[b.id][None, :, :], axis=-1).min()
            if gap < clearance:
                conflicts[a.id].add(b.id)
                conflicts[b.id].add(a.id)
    return {k: frozenset(v) for k, v in conflicts.items()}


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
    dense = np.arange(0.0, s[-1] + step / 2, step)
    return np.stack([np.interp(dense, s, points[:, k]) for k in range(2)], axis=-1)


def _heading(direction) -> np.ndarray:
    axis, sign = direction
    return np.array([0.0, float(sign)]) if axis == 0 else np.array([float(sign), 0.0])


def _turn_left(direction):
    axis, sign = direction
    # east (1,+1) -> north (0,+1) -> west (1,-1) -> south (0,-1) -> east
    return {(1, 1): (0, 1), (0, 1): (1, -1), (1, -1): (0, -1), (0, -1): (1, 1)}[(axis, sign)]


def _turn_right(direction):
    return {v: k for k, v in {(1, 1): (0, 1), (0, 1): (1, -1), (1, -1): (0, -1), (0, -1): (1, 1)}.items()}[direction]


def _lay_blocks(town: Town, rng: np.random.Generator) -> None:
    """Blocks between roads (border blocks run to the edge), buildings along their sidewalks."""
    xs_edges = [0.0] + [v for x, hw in zip(town.xs, town.half_widths_x) for v in (x - hw, x + hw)] + [town.size[0]]
    ys_edges = [0.0] + [v for y, hw in zip(town.ys, town.half_widths_y) for v in (y - hw, y + hw)] + [town.size[1]]
    for bx in range(0, len(xs_edges), 2):
        for by in range(0, len(ys_edges), 2):
            x0, x1, y0, y1 = xs_edges[bx], xs_edges[bx + 1], ys_edges[by], ys_edges[by + 1]
            if x1 - x0 < 12 or y1 - y0 < 12:
                continue
            park = rng.random() < 0.15
            inner = np.array([[x0 + SIDEWALK_WIDTH, y0 + SIDEWALK_WIDTH], [x1 - SIDEWALK_WIDTH, y0 + SIDEWALK_WIDTH],
                              [x1 - SIDEWALK_WIDTH, y1 - SIDEWALK_WIDTH], [x0 + SIDEWALK_WIDTH, y1 - SIDEWALK_WIDTH]])
            town.blocks.append(Block(_rounded_rectangle(x0, y0, x1, y1, 5.0), park, inner))
            if park:
                for _ in range(int((x1 - x0) * (y1 - y0) / 250)):
                    town.trees.append((rng.uniform(x0 + 6, x1 - 6), rng.uniform(y0 + 6, y1 - 6), rng.uniform(5, 9)))
            else:
                _line_block_with_buildings(town, rng, inner)
            _street_furniture(town, rng, x0, y0, x1, y1)


def _line_block_with_buildings(town: Town, rng, inner: np.ndarray) -> None:
    (ix0, iy0), (ix1, iy1) = inner[0], inner[2]
    depth = min(18.0, (ix1 - ix0) / 2, (iy1 - iy0) / 2)
    # Four rows of facades facing the streets; corner lots belong to the east/west rows.
    rows = [((ix0, iy0), (1, 0), (0, 1), ix1 - ix0), ((ix1, iy1), (-1, 0), (0, -1), ix1 - ix0),
            ((ix0, iy1 - depth), (0, -1), (1, 0), iy1 - iy0 - 2 * depth),
            ((ix1, iy0 + depth), (0, 1), (-1, 0), iy1 - iy0 - 2 * depth)]
    for origin, along, inward, length in rows:
        origin, along, inward = (np.asarray(v, float) for v in (origin, along, inward))
        s = 0.0
        while s < length - 4.0:
            width = min(rng.uniform(10, 26), length - s)
            d = depth * rng.uniform(0.75, 1.0)
            p0 = origin + along * s
            corners = np.array([p0, p0 + along * width, p0 + along * width + inward * d, p0 + inward * d])
            (ax, ay), (bx, by) = corners[1] - corners[0], corners[2] - corners[1]
            if ax * by - ay * bx < 0:  # keep footprints counter-clockwise
                corners = corners[::-1]
            height = float(rng.choice([rng.uniform(6, 14), rng.uniform(14, 40)], p=[0.6, 0.4]))
            town.buildings.append(Building(corners, height, int(rng.integers(0, 8))))
            s += width + rng.uniform(0.0, 3.0)


def _street_furniture(town: Town, rng, x0, y0, x1, y1) -> None:
    """Street trees and lamp posts on the sidewalk, near the curb."""
    inset = 0.8
    for (ax, ay), (bx, by), yaw in (((x0, y0), (x1, y0), -np.pi / 2), ((x1, y1), (x0, y1), np.pi / 2),
                                    ((x0, y1), (x0, y0), np.pi), ((x1, y0), (x1, y1), 0.0)):
        start, end = np.array([ax, ay]), np.array([bx, by])
        length = np.linalg.norm(end - start)
        if length < 20:
            continue
        direction = (end - start) / length
        normal_in = np.array([-direction[1], direction[0]])  # blocks are counter-clockwise
        for s in np.arange(10.0, length - 8.0, 28.0):
            p = start + direction * s + normal_in * inset
            town.poles.append((p[0], p[1], yaw))
        if rng.random() < 0.5:
            for s in np.arange(22.0, length - 8.0, 14.0):
                p = start + direction * s + normal_in * 1.2
                town.trees.append((p[0], p[1], rng.uniform(4.5, 7.5)))
