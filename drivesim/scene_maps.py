"""Dense scene maps per camera and frame: what every pixel sees in a proxy world built from the map.

The sparse layout maps (render.py) draw boxes and two kinds of line; everything between them is left for
the world model to invent. These maps fill every pixel instead, from what both a stored clip and a
scenario hold (LayoutFrame: boxes, typed polylines, Surroundings), so training and simulation see
identical inputs:

- the ground plane z = 0 of each frame's ego frame, classed by the road edges: road on the side of an
  edge where the lanes are, then a kerb band, the sidewalk (Surroundings.sidewalk_width), open ground;
  crosswalk polygons on the road; painted lines (dashed, solid, double, stop lines) at a fixed pixel width;
- a proxy facade: a wall WALL_HEIGHT high, set back sidewalk_width + building_setback from every road edge
  on its far side from the road (as wfm/reproject.py raises walls on road edges);
- the boxes, each classed by super-category, with the heading cue (front half) and instance edges;
- sky where a ray meets nothing; metric depth of it all; time of day and weather as constant planes.

One function draws (render_scene), and the model's channels are derived from its result (scene_channels),
so the paint baseline, the pictures and the model read the same maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from drivesim.errors import ConfigError
from drivesim.geometry import box_corners, box_rotation_matrices, camera_rays, compose, invert, transform_points
from drivesim.render import (BOX_TRIANGLES, MAP_POLY_TYPES, TIMES_OF_DAY, WEATHERS, LayoutFrame, Surroundings,
                             _draw_lines, _rig_at, render_layout, super_category)
from drivesim.rigs import Rig

__all__ = ["CLASSES", "KINDS", "SCENE_CHANNELS", "SceneMaps", "channel_count", "render_maps", "render_scene",
           "scene_channels"]

# Region classes (one per pixel), then painted lines drawn over the ground classes.
REGION_CLASSES = ("sky", "ground", "road", "crosswalk", "kerb", "sidewalk", "building",
                  "car", "truck", "bus", "bicycle", "pedestrian", "barrier", "other")
LINE_CLASSES = ("lane_divider", "solid_line", "double_yellow", "stop_line")
CLASSES = REGION_CLASSES + LINE_CLASSES
GROUND_CLASSES = ("ground", "road", "crosswalk", "kerb", "sidewalk")
LOOK_CHANNELS = ("dusk", "night", "overcast", "rain", "fog")
# One-hot classes, the lane centre lines (guidance, under the paint), the front half of boxes, instance
# edges, depth, then the look.
SCENE_CHANNELS = (*CLASSES, "lane", "box_front", "edge", "depth", *LOOK_CHANNELS)
KINDS = ("sparse", "dense")  # which maps a world model takes: render.render_layout's or these

MAX_DEPTH = 100.0     # metres at which the depth channel reaches 1 (as render.py)
GROUND_FAR = 250.0    # metres: ground farther than this along the ray counts as sky (the horizon)
WALL_HEIGHT = 12.0    # metres: the proxy facade
KERB_WIDTH = 0.3      # metres of kerb band beyond a road edge
LANE_REACH = 2.0      # metres from a lane centre line that count as road where no road edge is given
SIDE_PROBE = 1.0      # metres either side of an edge segment at which the lanes are looked for
EDGE_SAMPLE = 0.5     # metres between the samples of road edges that find a point's nearest edge
GRID_CELL = 0.25      # metres: the grid that finds each ground point's nearest edge (then measured exactly)
GRID_REACH = 120.0    # metres around the ego path the grid covers; farther ground is open ground
_CLASS = {name: i for i, name in enumerate(CLASSES)}


@dataclass(frozen=True, eq=False)
class SceneMaps:
    """What render_scene draws, per camera and frame [V, F, H, W]."""

    classes: np.ndarray     # uint8 index into CLASSES
    depth: np.ndarray       # float32 camera-frame z, metres (inf: sky)
    instance: np.ndarray    # int32: 1 + the box's index in its frame, 0 for no box
    box_front: np.ndarray   # bool: the front half of a box
    lane: np.ndarray        # bool: a lane centre line, where the ground shows
    look: tuple[str, str]   # (time of day, weather)


# ---------------------------------------------------------------- the static map


@dataclass(frozen=True, eq=False)
class _Map:
    """The static part, world frame: edge segments with the side the road is on, lines, crosswalks, walls."""

    edge_a: np.ndarray        # [S, 2]
    edge_b: np.ndarray        # [S, 2]
    road_side: np.ndarray     # [S] +1: the road is left of a -> b, -1: right
    edge_grid: _NearestGrid | None   # the nearest road-edge segment of a point
    lanes: tuple | None              # lane segment ends a, b [L, 2] and their _NearestGrid
    crosswalks: list[np.ndarray]
    lines: tuple[np.ndarray, np.ndarray, np.ndarray]  # segment ends a, b [L, 3], channel [L]: LINE_CLASSES, lane
    walls: tuple[np.ndarray, np.ndarray]              # vertices [Q*4, 3], triangles [Q*2, 3]
    surroundings: Surroundings


class _NearestGrid:
    """Which of some segments is nearest each point, looked up in a grid of GRID_CELL cells over `bounds`
    (the Euclidean distance transform of the cells the segments' samples fall in: C code without the deep
    recursion of a k-d tree, which crashed the training process). The choice is approximate by a cell; the
    callers measure the distance to the chosen segment exactly."""

    def __init__(self, a: np.ndarray, b: np.ndarray, low: np.ndarray, high: np.ndarray):
        self.low = np.floor(low / GRID_CELL) * GRID_CELL
        self.shape = tuple(np.ceil((high - self.low) / GRID_CELL).astype(np.int64) + 1)
        points, segment = _samples(a, b, GRID_CELL / 2)
        cells = np.floor((points - self.low) / GRID_CELL).astype(np.int64)
        inside = np.all((cells >= 0) & (cells < self.shape), axis=1)
        owner = np.full(self.shape, -1, np.int64)
        owner[cells[inside, 0], cells[inside, 1]] = segment[inside]
        self.empty = not inside.any()
        if self.empty:
            self.nearest = owner
            return
        _, (rows, cols) = ndimage.distance_transform_edt(owner < 0, return_distances=True, return_indices=True)
        self.nearest = owner[rows, cols]

    def query(self, points: np.ndarray) -> np.ndarray:
        """[N, 2] -> the nearest segment's index [N]; -1 off the grid (or no segment on it)."""
        cells = np.floor((points - self.low) / GRID_CELL).astype(np.int64)
        inside = np.all((cells >= 0) & (cells < self.shape), axis=1)
        found = np.full(len(points), -1, np.int64)
        if not self.empty:
            found[inside] = self.nearest[cells[inside, 0], cells[inside, 1]]
        return found


def _distance_to_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point [N, 2] to its own segment a[N] -> b[N]."""
    direction = b - a
    s = np.clip(np.sum((points - a) * direction, axis=1) / np.maximum(np.sum(direction**2, axis=1), 1e-12), 0, 1)
    return np.linalg.norm(points - (a + s[:, None] * direction), axis=1)


def _samples(a: np.ndarray, b: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points every `step` metres along segments a -> b [S, 2] (ends included), and each one's segment."""
    counts = np.maximum(np.ceil(np.linalg.norm(b - a, axis=1) / step).astype(np.int64), 1) + 1
    segment = np.repeat(np.arange(len(a)), counts)
    along = (np.arange(len(segment)) - np.repeat(np.cumsum(counts) - counts, counts)) / (counts[segment] - 1)
    return a[segment] + (b - a)[segment] * along[:, None], segment


def _segments_of(polylines: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    pieces = [np.asarray(p, np.float64).reshape(-1, 3) for p in polylines]
    pieces = [p for p in pieces if len(p) >= 2]
    if not pieces:
        return np.zeros((0, 3)), np.zeros((0, 3))
    return np.concatenate([p[:-1] for p in pieces]), np.concatenate([p[1:] for p in pieces])


def _lane_distance(lanes: tuple[np.ndarray, np.ndarray, _NearestGrid] | None, points: np.ndarray) -> np.ndarray:
    """Distance of points [N, 2] to the nearest lane centre line (inf off the grid or without lanes)."""
    distance = np.full(len(points), np.inf)
    if lanes is None:
        return distance
    a, b, grid = lanes
    segment = grid.query(points)
    found = segment >= 0
    distance[found] = _distance_to_segments(points[found], a[segment[found]], b[segment[found]])
    return distance


def _road_sides(a: np.ndarray, b: np.ndarray, lanes, fallback: np.ndarray) -> np.ndarray:
    """Per edge segment, +1 where the road (the nearer lane) is on its left, -1 on its right; without lanes
    near it, the side of `fallback` (the first ego position)."""
    direction = b - a
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    middle = (a + b) / 2
    left = _lane_distance(lanes, middle + SIDE_PROBE * normal)
    right = _lane_distance(lanes, middle - SIDE_PROBE * normal)
    towards = np.sum((fallback[None] - middle) * normal, axis=1)
    return np.where(np.isfinite(left) | np.isfinite(right), np.where(left <= right, 1.0, -1.0),
                    np.where(towards >= 0, 1.0, -1.0))


def _walls(a: np.ndarray, b: np.ndarray, road_side: np.ndarray, distance: float) -> tuple[np.ndarray, np.ndarray]:
    """Quads WALL_HEIGHT high along every edge segment, moved `distance` away from the road."""
    if not len(a):
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    direction = b - a
    normal = np.stack([-direction[:, 1], direction[:, 0]], axis=1)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    away = -road_side[:, None] * normal * distance
    # Each quad reaches a little past its segment's ends, so the walls on the outside of a curve (offset
    # segments fan apart there) leave no slit of sky between them: a gap of about distance x the turn.
    along = direction / np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-12)
    reach = (0.25 + 0.1 * distance) * along
    p, q = a + away - reach, b + away + reach
    low, high = np.zeros((len(a), 1)), np.full((len(a), 1), WALL_HEIGHT)
    vertices = np.stack([np.hstack([p, low]), np.hstack([q, low]), np.hstack([q, high]), np.hstack([p, high])], 1)
    base = 4 * np.arange(len(a))[:, None]
    triangles = np.concatenate([base + [0, 1, 2], base + [0, 2, 3]])
    return vertices.reshape(-1, 3), triangles


def _static_map(frame: LayoutFrame, path: np.ndarray) -> _Map:
    """The static map of `frame` (its polylines and Surroundings), its grids covering GRID_REACH around the
    ego positions `path` [F, 2] (world frame)."""
    kinds = list(frame.poly_types)
    unknown = sorted(set(kinds) - set(MAP_POLY_TYPES))
    if unknown:
        raise ConfigError(f"polyline type {unknown[0]!r} must be one of {', '.join(MAP_POLY_TYPES)}")
    lines_of = {kind: [p for p, k in zip(frame.polylines, kinds) if k == kind] for kind in MAP_POLY_TYPES}
    low, high = path.min(axis=0) - GRID_REACH, path.max(axis=0) + GRID_REACH
    lane_a, lane_b = (ends[:, :2] for ends in _segments_of(lines_of["lane"]))
    lanes = (lane_a, lane_b, _NearestGrid(lane_a, lane_b, low, high)) if len(lane_a) else None
    edge_a, edge_b = _segments_of(lines_of["road_edge"])
    edge_a, edge_b = edge_a[:, :2], edge_b[:, :2]
    keep = np.linalg.norm(edge_b - edge_a, axis=1) > 1e-6
    edge_a, edge_b = edge_a[keep], edge_b[keep]
    road_side = _road_sides(edge_a, edge_b, lanes, path[0])
    edge_grid = _NearestGrid(edge_a, edge_b, low, high) if len(edge_a) else None
    starts, ends, channels = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0, np.int64)]
    for c, kind in enumerate((*LINE_CLASSES, "lane")):
        a, b = _segments_of(lines_of[kind])
        starts.append(a), ends.append(b), channels.append(np.full(len(a), c))
    crosswalks = [np.asarray(p, np.float64).reshape(-1, 3)[:, :2] for p in lines_of["crosswalk"]]
    surroundings = frame.surroundings
    walls = _walls(edge_a, edge_b, road_side, surroundings.sidewalk_width + surroundings.building_setback)
    return _Map(edge_a, edge_b, road_side, edge_grid, lanes,
                [c for c in crosswalks if len(c) >= 3],
                (np.concatenate(starts), np.concatenate(ends), np.concatenate(channels)), walls, surroundings)


def _inside(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of points [N, 2] against a polygon [P, 2] (closed or not)."""
    inside = np.zeros(len(points), bool)
    x, y = points[:, 0], points[:, 1]
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, axis=0)):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < at)
    return inside


def _ground_classes(world_map: _Map, points: np.ndarray) -> np.ndarray:
    """The class of ground points [N, 2] (world frame)."""
    classes = np.full(len(points), _CLASS["ground"], np.uint8)
    if not len(points):
        return classes
    if world_map.edge_grid is not None:
        segment = world_map.edge_grid.query(points)
        found = segment >= 0  # off the grid: far from every edge, open ground
        a, b = world_map.edge_a[segment[found]], world_map.edge_b[segment[found]]
        distance = _distance_to_segments(points[found], a, b)
        direction = b - a
        side = np.sign(direction[:, 0] * (points[found, 1] - a[:, 1]) - direction[:, 1] * (points[found, 0] - a[:, 0]))
        off_road = np.full(len(points), np.inf)
        off_road[found] = np.where(side * world_map.road_side[segment[found]] > 0, -distance, distance)
        classes[off_road <= 0] = _CLASS["road"]
        classes[(off_road > 0) & (off_road <= KERB_WIDTH)] = _CLASS["kerb"]
        sidewalk = max(world_map.surroundings.sidewalk_width, KERB_WIDTH)
        classes[(off_road > KERB_WIDTH) & (off_road <= sidewalk)] = _CLASS["sidewalk"]
    elif world_map.lanes is not None:
        classes[_lane_distance(world_map.lanes, points) <= LANE_REACH] = _CLASS["road"]
    road = np.flatnonzero(classes == _CLASS["road"])
    for polygon in world_map.crosswalks:
        low, high = polygon.min(axis=0), polygon.max(axis=0)
        near = road[np.all((points[road] >= low) & (points[road] <= high), axis=1)]
        classes[near[_inside(points[near], polygon)]] = _CLASS["crosswalk"]
    return classes


# ---------------------------------------------------------------- one frame


def _cast(vertices: np.ndarray, triangles: np.ndarray, origins: np.ndarray, directions: np.ndarray):
    """Ray distance (inf: miss) and triangle id (-1) of rays [N, 3] (unit directions) against a mesh."""
    import open3d as o3d

    if not len(triangles):
        return np.full(len(origins), np.inf), np.full(len(origins), -1, np.int64)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
    rays = np.concatenate([origins, directions], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays), nthreads=0)
    distance = hit["t_hit"].numpy().astype(np.float64)
    triangle = np.where(np.isfinite(distance), hit["primitive_ids"].numpy().astype(np.int64), -1)
    return distance, triangle


def _draw_frame(world_map: _Map, frame: LayoutFrame, rig: Rig, rays_cam: np.ndarray, out: dict, f: int) -> None:
    views, pixels = rays_cam.shape[:2]
    frame_rig = _rig_at(rig, frame)
    world_from_ego = np.asarray(frame.world_from_ego, np.float64)
    ego_from_world = invert(world_from_ego)
    directions = rays_cam @ frame_rig.ego_from_cam[:, :3, :3].transpose(0, 2, 1)  # [V, P, 3] unit, ego frame
    origins = np.broadcast_to(frame_rig.ego_from_cam[:, None, :3, 3], directions.shape)

    # Boxes and walls in one mesh, in the ego frame (world coordinates can be ~1e5 m).
    boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 7)
    box_vertices = transform_points(ego_from_world, box_corners(boxes, frame.box_rotation).reshape(-1, 3))
    box_triangles = (BOX_TRIANGLES[None] + 8 * np.arange(len(boxes))[:, None, None]).reshape(-1, 3)
    wall_vertices, wall_triangles = world_map.walls
    vertices = np.concatenate([box_vertices, transform_points(ego_from_world, wall_vertices)])
    triangles = np.concatenate([box_triangles, wall_triangles + len(box_vertices)]).astype(np.int64)
    distance, triangle = _cast(vertices, triangles, origins.reshape(-1, 3), directions.reshape(-1, 3))
    distance, triangle = distance.reshape(views, pixels), triangle.reshape(views, pixels)

    # The ground plane z = 0 of the ego frame.
    down = directions[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        ground_t = np.where(down < -1e-9, origins[..., 2] / -down, np.inf)
    ground_t = np.where(ground_t <= GROUND_FAR, ground_t, np.inf)
    on_ground = ground_t < distance
    hit = np.where(on_ground, ground_t, distance)

    classes = np.full((views, pixels), _CLASS["sky"], np.uint8)
    box_count = len(box_triangles)
    on_box = ~on_ground & (triangle >= 0) & (triangle < box_count)
    on_wall = ~on_ground & (triangle >= box_count)
    classes[on_wall] = _CLASS["building"]
    box = np.where(on_box, triangle // len(BOX_TRIANGLES), -1)
    if len(boxes):
        box_class = np.array([_CLASS[super_category(c)] for c in frame.categories], np.uint8)
        classes[on_box] = box_class[box[on_box]]
        # The hit point's side of the box centre along the box's forward axis: the heading cue.
        points = origins + directions * np.where(on_box, hit, 0.0)[..., None]
        centres = transform_points(ego_from_world, boxes[:, :3])
        forward = box_rotation_matrices(boxes, frame.box_rotation)[:, :, 0] @ ego_from_world[:3, :3].T
        v, p = np.nonzero(on_box)
        ahead = np.sum((points[v, p] - centres[box[v, p]]) * forward[box[v, p]], axis=-1)
        out["box_front"][v, f, p] = ahead > 0
    ground_points = (origins + directions * np.where(on_ground, ground_t, 0.0)[..., None])[on_ground]
    world_points = transform_points(world_from_ego, ground_points)[:, :2]
    classes[on_ground] = _ground_classes(world_map, world_points)
    z = hit * rays_cam[..., 2]  # camera-frame depth

    # Painted lines and lane centre lines at a fixed pixel width, where the ground shows nearest.
    starts, ends, channels = world_map.lines
    if len(starts):
        world_from_cams = compose(world_from_ego, frame_rig.ego_from_cam)
        in_cams = transform_points(invert(world_from_cams), np.concatenate([starts, ends]))
        occluder = np.where(on_ground, np.inf, z)
        for view in range(views):
            painted = np.zeros((len(LINE_CLASSES) + 1, pixels), np.float32)
            _draw_lines(in_cams[view, :len(starts)], in_cams[view, len(starts):], channels,
                        rig.intrinsics[view], rig.width, rig.height, occluder[view], painted)
            ground = on_ground[view]
            out["lane"][view, f] = (painted[-1] > 0) & ground
            for c in range(len(LINE_CLASSES)):  # later classes win where two lines meet
                classes[view, (painted[c] > 0) & ground] = _CLASS[LINE_CLASSES[c]]
    out["classes"][:, f] = classes
    out["depth"][:, f] = np.where(np.isfinite(z), z, np.inf)
    out["instance"][:, f] = box + 1


def render_scene(rig: Rig, frames: list[LayoutFrame], size: tuple[int, int] | None = None) -> SceneMaps:
    """The dense scene maps of every camera of `rig` (resized to size = (width, height) if given) and every
    frame. The map (polylines, Surroundings) is taken from the first frame: it is static in a clip and in a
    scenario alike."""
    if size is not None:
        rig = rig.resized(*size)
    views, width, height = len(rig.cameras), rig.width, rig.height
    shape = (views, len(frames), height * width)
    out = {"classes": np.zeros(shape, np.uint8), "depth": np.zeros(shape, np.float32),
           "instance": np.zeros(shape, np.int32), "box_front": np.zeros(shape, bool), "lane": np.zeros(shape, bool)}
    look = ("day", "clear")
    if frames:
        path = np.array([np.asarray(frame.world_from_ego, np.float64)[:2, 3] for frame in frames])
        world_map = _static_map(frames[0], path)
        surroundings = frames[0].surroundings
        if surroundings.time_of_day not in TIMES_OF_DAY or surroundings.weather not in WEATHERS:
            raise ConfigError(f"surroundings: time_of_day {surroundings.time_of_day!r} must be one of "
                              f"{', '.join(TIMES_OF_DAY)} and weather {surroundings.weather!r} one of "
                              f"{', '.join(WEATHERS)}")
        look = (surroundings.time_of_day, surroundings.weather)
        rays_cam = camera_rays(rig.intrinsics, width, height).reshape(views, -1, 3)
        for f, frame in enumerate(frames):
            _draw_frame(world_map, frame, rig, rays_cam, out, f)
    unflat = {name: value.reshape(views, len(frames), height, width) for name, value in out.items()}
    return SceneMaps(look=look, **unflat)


def _instance_edges(instance: np.ndarray) -> np.ndarray:
    """[..., H, W] bool: a box pixel whose right or lower neighbour belongs to another instance, or the
    neighbour of such a pixel."""
    edge = np.zeros(instance.shape, bool)
    horizontal = instance[..., :, 1:] != instance[..., :, :-1]
    vertical = instance[..., 1:, :] != instance[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge


def scene_channels(maps: SceneMaps) -> np.ndarray:
    """The world model's input, float32 [V, F, C, H, W] in [0, 1], channels SCENE_CHANNELS."""
    views, frames, height, width = maps.classes.shape
    out = np.zeros((views, frames, len(SCENE_CHANNELS), height, width), np.float32)
    for c in range(len(CLASSES)):
        out[:, :, c] = maps.classes == c
    index = {name: i for i, name in enumerate(SCENE_CHANNELS)}
    out[:, :, index["lane"]] = maps.lane
    out[:, :, index["box_front"]] = maps.box_front
    out[:, :, index["edge"]] = _instance_edges(maps.instance)
    out[:, :, index["depth"]] = np.minimum(maps.depth / MAX_DEPTH, 1.0)
    time_of_day, weather = maps.look
    if time_of_day in LOOK_CHANNELS:
        out[:, :, index[time_of_day]] = 1.0
    if weather in LOOK_CHANNELS:
        out[:, :, index[weather]] = 1.0
    return out


def channel_count(kind: str) -> int:
    """How many layout channels a model taking `kind` maps has."""
    from drivesim.render import LAYOUT_CHANNELS

    if kind not in KINDS:
        raise ConfigError(f"layout maps {kind!r} must be one of {', '.join(KINDS)}")
    return len(LAYOUT_CHANNELS) if kind == "sparse" else len(SCENE_CHANNELS)


def render_maps(kind: str, rig: Rig, frames: list[LayoutFrame], size: tuple[int, int] | None = None) -> np.ndarray:
    """The layout input of a world model taking `kind` maps, float32 [V, F, C, H, W]."""
    channel_count(kind)
    if kind == "sparse":
        return render_layout(rig, frames, size=size)
    return scene_channels(render_scene(rig, frames, size=size))


# Colours of the pictures (scenarios/README.md, the contact sheet): a street read at a glance.
CLASS_COLOURS = {
    "sky": (135, 190, 235), "ground": (120, 110, 80), "road": (70, 70, 75), "crosswalk": (200, 200, 200),
    "kerb": (230, 160, 40), "sidewalk": (160, 150, 140), "building": (150, 90, 70), "car": (20, 60, 230),
    "truck": (120, 30, 220), "bus": (230, 30, 230), "bicycle": (30, 200, 40), "pedestrian": (230, 30, 30),
    "barrier": (240, 230, 30), "other": (128, 128, 128), "lane_divider": (255, 255, 255),
    "solid_line": (255, 255, 255), "double_yellow": (255, 200, 0), "stop_line": (255, 255, 255),
}


def picture(maps: SceneMaps) -> np.ndarray:
    """uint8 [V, F, H, W, 3]: each class its colour, darkened with distance, instance edges black."""
    palette = np.array([CLASS_COLOURS[name] for name in CLASSES], np.float32)
    image = palette[maps.classes]
    shade = 1.0 - 0.5 * np.minimum(np.nan_to_num(maps.depth, posinf=MAX_DEPTH) / MAX_DEPTH, 1.0)
    image = image * np.where(maps.classes == _CLASS["sky"], 1.0, shade)[..., None]
    image[_instance_edges(maps.instance) & (maps.instance > 0)] = 0
    return image.clip(0, 255).astype(np.uint8)
