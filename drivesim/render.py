"""Layout control maps per camera and frame: boxes as filled cuboids coloured by category with a
heading cue, lane centre lines and road edges, and depth. The same maps condition the world model in
training (the dataset's `layout` key) and in simulation (scenarios), so both see identical inputs.

Boxes are ray cast with open3d on the CPU, or rasterised with pytorch3d when it is installed; lines
are projected and rasterised at a fixed pixel width, hidden where a box is nearer.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass, replace

import numpy as np

from drivesim.geometry import box_corners, box_rotation_matrices
from drivesim.data.store import box_rotations, camera_poses
from drivesim.errors import ConfigError
from drivesim.geometry import camera_rays, compose, invert, transform_points
from drivesim.rigs import Rig

__all__ = ["BACKENDS", "BOX_TRIANGLES", "LAYOUT_CHANNELS", "MAP_POLY_TYPES", "LayoutFrame", "PALETTE", "Surroundings",
           "clip_surroundings", "layout_frames_from_clip", "look_from_caption", "render_layout", "super_category"]

# Box colour (3), 1 on the front half of a box (the heading cue), lines (2), then depth: the camera-frame
# z of the nearest box or line over MAX_DEPTH, clipped to 1; 0 where nothing was drawn.
LAYOUT_CHANNELS = ("box_red", "box_green", "box_blue", "box_front", "lane", "road_edge", "depth")
BACKENDS = ("auto", "open3d", "pytorch3d")
MAX_DEPTH = 100.0   # metres at which the depth channel reaches 1
NEAR = 0.1          # metres: lines and boxes nearer to a camera than this are cut off
LINE_WIDTH = 2      # pixels, at any image size
RAYCAST_THREADS = 0  # open3d ray-casting threads per process (0: all cores)

# A small fixed palette by nuScenes super-category: distinct, and never black (black is "no box").
PALETTE = {
    "car": (0.0, 0.0, 1.0),
    "truck": (0.5, 0.0, 1.0),
    "bus": (1.0, 0.0, 1.0),
    "bicycle": (0.0, 1.0, 0.0),
    "pedestrian": (1.0, 0.0, 0.0),
    "barrier": (1.0, 1.0, 0.0),
    "other": (0.5, 0.5, 0.5),
}
# nuScenes category prefixes, most specific first; anything else is "other".
_SUPER_CATEGORY = (
    ("vehicle.car", "car"), ("vehicle.emergency.police", "car"),
    ("vehicle.truck", "truck"), ("vehicle.trailer", "truck"), ("vehicle.construction", "truck"),
    ("vehicle.emergency.ambulance", "truck"),
    ("vehicle.bus", "bus"),
    ("vehicle.bicycle", "bicycle"), ("vehicle.motorcycle", "bicycle"),
    ("human.pedestrian", "pedestrian"),
    ("movable_object.barrier", "barrier"), ("movable_object.trafficcone", "barrier"),
)
# The polyline types a LayoutFrame holds: the store's and a scenario's alike. The sparse layout maps draw
# lane centre lines and road edges (POLY_TYPES); the dense scene maps (drivesim/scene_maps.py) all of them.
POLY_TYPES = ("lane", "road_edge")
MAP_POLY_TYPES = ("lane", "road_edge", "lane_divider", "solid_line", "double_yellow", "crosswalk", "stop_line")
TIMES_OF_DAY = ("day", "dusk", "night")
WEATHERS = ("clear", "overcast", "rain", "fog")
SIDEWALK_WIDTH = 3.0    # metres of sidewalk beyond a road edge, when nothing says otherwise (the synthetic town's)
BUILDING_SETBACK = 0.0  # metres from the sidewalk's back to the building fronts (the synthetic town's)

# The 12 triangles of a cuboid over box_corners' order (0-3 the front face, 4-7 the back).
_QUADS = ((0, 1, 2, 3), (4, 5, 6, 7), (0, 1, 5, 4), (3, 2, 6, 7), (0, 3, 7, 4), (1, 2, 6, 5))
BOX_TRIANGLES = np.array([t for a, b, c, d in _QUADS for t in ((a, b, c), (a, c, d))], np.int64)  # [12, 3]


@dataclass(frozen=True)
class Surroundings:
    """What a map of lines does not say about a street: how wide the sidewalks are, how far the buildings
    stand back from them, and the time of day and weather (for the dense scene maps)."""

    sidewalk_width: float = SIDEWALK_WIDTH
    building_setback: float = BUILDING_SETBACK
    time_of_day: str = "day"    # one of TIMES_OF_DAY
    weather: str = "clear"      # one of WEATHERS


def look_from_caption(caption: str) -> tuple[str, str]:
    """(time of day, weather) named in a caption ("night, rain, left turn ..."), ("day", "clear") for what it
    does not name: the synthetic logs' captions start with both, nuScenes' descriptions name "night" and "rain"."""
    words = set(re.findall(r"[a-z]+", str(caption).lower()))
    time_of_day = next((name for name in TIMES_OF_DAY[::-1] if name in words), "day")
    weather = next((name for name in WEATHERS[::-1] if name in words), "clear")
    return time_of_day, weather


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on numpy arrays is ambiguous
class LayoutFrame:
    """One frame of the world, everything in the world frame."""

    world_from_ego: np.ndarray      # float64 [4, 4]
    boxes: np.ndarray               # float32 [N, 7]: centre xyz, size wlh (width, length, height), yaw
    categories: list[str]           # N nuScenes category names
    polylines: list[np.ndarray]     # K arrays [P_k, 3]
    poly_types: list[str]           # K of MAP_POLY_TYPES
    # The ego pose when each camera of the rig took its image, float64 [V, 4, 4] (a logged frame's
    # cameras fire tens of ms apart); None: all at world_from_ego.
    world_from_ego_cam: np.ndarray | None = None
    box_rotation: np.ndarray | None = None  # [N, 4] (w, x, y, z, world frame); None: yaw only
    surroundings: Surroundings = Surroundings()


def super_category(category: str) -> str:
    """The palette key of a nuScenes category name ("vehicle.bus.rigid" -> "bus")."""
    for prefix, key in _SUPER_CATEGORY:
        if category == prefix or category.startswith(prefix + "."):
            return key
    return "other"


def pytorch3d_available() -> bool:
    return importlib.util.find_spec("pytorch3d") is not None


def _backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend!r} must be one of {', '.join(BACKENDS)}")
    if backend == "pytorch3d" and not pytorch3d_available():
        raise ConfigError("backend='pytorch3d' but pytorch3d is not installed (it has no Linux wheel on PyPI: "
                          "build it from source, or use backend='open3d')")
    if backend == "auto":
        return "pytorch3d" if pytorch3d_available() else "open3d"
    return backend


# ---------------------------------------------------------------- boxes


def _z_open3d(vertices, triangles, rig: Rig, rays_cam: np.ndarray, rays_ego: np.ndarray,
              candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Camera-frame depth z (inf on a miss) and triangle id (-1) per pixel, [V, H*W], by ray casting
    only the candidate pixels [V, H*W] (those a box's projection may cover)."""
    import open3d as o3d


    z = np.full(candidates.shape, np.inf)
    triangle = np.full(candidates.shape, -1, np.int64)
    view, pixel = np.nonzero(candidates)
    if not len(view):
        return z, triangle
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
    rays = np.concatenate([rig.ego_from_cam[view, :3, 3], rays_ego[view, pixel]], axis=-1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays), nthreads=RAYCAST_THREADS)
    distance = hit["t_hit"].numpy().astype(np.float64)
    found = np.isfinite(distance)
    view, pixel = view[found], pixel[found]
    z[view, pixel] = distance[found] * rays_cam[view, pixel, 2]
    triangle[view, pixel] = hit["primitive_ids"].numpy()[found]
    return z, triangle


def _candidates(corners_ego: np.ndarray, rig: Rig) -> np.ndarray:
    """[V, H*W]: pixels inside the projected bounding rectangle of some box (every pixel of a view a
    box crosses the near plane of)."""
    width, height = rig.width, rig.height
    mask = np.zeros((len(rig.cameras), height, width), bool)
    # Every view in one call: per point the same product as view by view, without a torch call per view.
    in_cams = transform_points(invert(rig.ego_from_cam)[:, None], corners_ego.reshape(-1, 8, 3))  # [V, N, 8, 3]
    for v in range(len(rig.cameras)):
        corners = in_cams[v]  # [N, 8, 3]
        depth = corners[..., 2]
        if ((depth <= NEAR).any(axis=1) & (depth > NEAR).any(axis=1)).any():
            mask[v] = True
            continue
        ahead = corners[(depth > NEAR).all(axis=1)]
        if not len(ahead):
            continue
        projected = ahead @ rig.intrinsics[v].T
        uv = projected[..., :2] / projected[..., 2:]
        low = np.clip(np.floor(uv.min(axis=1)) - 1, 0, [width, height]).astype(np.int64)
        high = np.clip(np.ceil(uv.max(axis=1)) + 2, 0, [width, height]).astype(np.int64)
        for (u0, v0), (u1, v1) in zip(low, high):
            mask[v, v0:v1, u0:u1] = True
    return mask.reshape(len(rig.cameras), -1)


def _z_pytorch3d(vertices, triangles, rig: Rig, rays_cam: np.ndarray, rays_ego: np.ndarray,
                 candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """As _z_open3d, by pytorch3d's rasteriser (triangles clipped at the near plane)."""
    import torch
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection

    views = len(rig.cameras)
    cam_from_ego = invert(rig.ego_from_cam)
    cameras = cameras_from_opencv_projection(
        torch.tensor(cam_from_ego[:, :3, :3], dtype=torch.float32),
        torch.tensor(cam_from_ego[:, :3, 3], dtype=torch.float32),
        torch.tensor(rig.intrinsics, dtype=torch.float32),
        torch.tensor([[rig.height, rig.width]] * views, dtype=torch.float32))
    verts = torch.tensor(vertices, dtype=torch.float32)
    faces = torch.tensor(triangles, dtype=torch.int64)
    meshes = Meshes(verts=[verts] * views, faces=[faces] * views)
    settings = RasterizationSettings(image_size=(rig.height, rig.width), blur_radius=0.0, faces_per_pixel=1,
                                     z_clip_value=NEAR, cull_backfaces=False, perspective_correct=True)
    fragments = MeshRasterizer(cameras=cameras, raster_settings=settings)(meshes)
    packed = fragments.pix_to_face[..., 0].reshape(views, -1).numpy()  # faces of mesh v start at v * F
    z = fragments.zbuf[..., 0].reshape(views, -1).numpy().astype(np.float64)
    triangle = np.where(packed >= 0, packed % len(triangles), -1)
    return np.where(triangle >= 0, z, np.inf), triangle


def _draw_boxes(frame: LayoutFrame, rig: Rig, rays_cam: np.ndarray, rays_ego: np.ndarray, backend: str,
                out: np.ndarray) -> np.ndarray:
    """Fill the box channels of out [V, C, H*W]; return the box depth z per pixel [V, H*W] (inf: none)."""
    views, pixels = rays_cam.shape[:2]
    if not len(frame.boxes):
        return np.full((views, pixels), np.inf)
    boxes = np.asarray(frame.boxes, np.float64)
    ego_from_world = invert(np.asarray(frame.world_from_ego, np.float64))
    # In the ego frame: world coordinates can be ~1e5 m, where float32 keeps only centimetres.
    corners = transform_points(ego_from_world, box_corners(boxes, frame.box_rotation).reshape(-1, 3))  # [N*8, 3]
    triangles = (BOX_TRIANGLES[None] + 8 * np.arange(len(boxes))[:, None, None]).reshape(-1, 3)
    cast = _z_pytorch3d if backend == "pytorch3d" else _z_open3d
    z, triangle = cast(corners, triangles, rig, rays_cam, rays_ego, _candidates(corners, rig))

    view, pixel = np.nonzero(triangle >= 0)
    box = triangle[view, pixel] // len(BOX_TRIANGLES)
    colours = np.array([PALETTE[super_category(c)] for c in frame.categories], np.float32).reshape(-1, 3)
    out[view, 0:3, pixel] = colours[box]
    # The hit point in the ego frame, from the camera ray scaled to its depth z.
    points_cam = rays_cam[view, pixel] * (z[view, pixel] / rays_cam[view, pixel, 2])[:, None]
    ego_from_cam = rig.ego_from_cam[view]
    points = np.einsum("nij,nj->ni", ego_from_cam[:, :3, :3], points_cam) + ego_from_cam[:, :3, 3]
    centres = transform_points(ego_from_world, boxes[:, :3])
    # Each box's forward axis in the ego frame.
    forward = box_rotation_matrices(boxes, frame.box_rotation)[:, :, 0] @ ego_from_world[:3, :3].T
    ahead = np.sum((points - centres[box]) * forward[box], axis=-1)
    out[view, LAYOUT_CHANNELS.index("box_front"), pixel] = (ahead > 0).astype(np.float32)
    return z


# ---------------------------------------------------------------- lines


def _segments(polylines: list[np.ndarray], poly_types: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-frame segment ends (a [S, 3], b [S, 3]) and each segment's channel [S]."""
    starts, ends, channels = [np.zeros((0, 3))], [np.zeros((0, 3))], [np.zeros(0, np.int64)]
    for line, kind in zip(polylines, poly_types):
        if kind not in MAP_POLY_TYPES:
            raise ConfigError(f"polyline type {kind!r} must be one of {', '.join(MAP_POLY_TYPES)}")
        if kind not in POLY_TYPES:  # the sparse maps draw lane centre lines and road edges only
            continue
        line = np.asarray(line, np.float64).reshape(-1, 3)
        if len(line) < 2:
            continue
        starts.append(line[:-1]), ends.append(line[1:])
        channels.append(np.full(len(line) - 1, LAYOUT_CHANNELS.index(kind)))
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(channels)


def _clip_to_image(start: np.ndarray, delta: np.ndarray, low: float, high_x: float, high_y: float):
    """Liang-Barsky: the parameter range [s0, s1] of 2D segments start + s delta inside the rectangle."""
    s0, s1 = np.zeros(len(start)), np.ones(len(start))
    keep = np.ones(len(start), bool)
    for p, q in ((-delta[:, 0], start[:, 0] - low), (delta[:, 0], high_x - start[:, 0]),
                 (-delta[:, 1], start[:, 1] - low), (delta[:, 1], high_y - start[:, 1])):
        parallel = p == 0
        keep &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = q / p
        s0 = np.where(p < 0, np.maximum(s0, ratio), s0)
        s1 = np.where(p > 0, np.minimum(s1, ratio), s1)
    return s0, s1, keep & (s0 <= s1)


def _draw_lines(a: np.ndarray, b: np.ndarray, channels: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
                box_z: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Rasterise one camera's segments (ends a [S, 3] and b [S, 3] in the camera frame, channel [S]) into
    out [C, H*W] where no box is nearer; return line depth [H*W]."""
    line_z = np.full(width * height, np.inf)
    if not len(a):
        return line_z
    near = (a[:, 2] > NEAR) | (b[:, 2] > NEAR)
    a, b, channels = a[near], b[near], channels[near]
    # Cut at the near plane, so every end projects in front of the camera.
    with np.errstate(divide="ignore", invalid="ignore"):
        cut = ((NEAR - a[:, 2]) / (b[:, 2] - a[:, 2]))[:, None]
    a, b = np.where(a[:, 2:] < NEAR, a + (b - a) * cut, a), np.where(b[:, 2:] < NEAR, a + (b - a) * cut, b)
    pa, pb = a @ intrinsics.T, b @ intrinsics.T
    ua, ub = pa[:, :2] / pa[:, 2:], pb[:, :2] / pb[:, 2:]
    margin = width_px = LINE_WIDTH
    s0, s1, keep = _clip_to_image(ua, ub - ua, -margin, width - 1 + margin, height - 1 + margin)
    ua, delta, za, zb = ua[keep], (ub - ua)[keep], a[keep, 2], b[keep, 2]
    s0, s1, channels = s0[keep], s1[keep], channels[keep]
    if not len(ua):
        return line_z
    # Samples one pixel apart along each visible piece; 1/z is linear in screen space.
    count = np.ceil(np.abs(delta).max(axis=1) * (s1 - s0)).astype(np.int64) + 1
    segment = np.repeat(np.arange(len(ua)), count)
    step = np.arange(len(segment)) - np.repeat(np.cumsum(count) - count, count)
    s = s0[segment] + (s1 - s0)[segment] * step / np.maximum(count[segment] - 1, 1)
    uv = ua[segment] + s[:, None] * delta[segment]
    z = 1.0 / ((1 - s) / za[segment] + s / zb[segment])
    # A width_px square brush over the pixel centres nearest each sample (centres at integers).
    first = np.floor(uv - width_px / 2 + 0.5).astype(np.int64)
    offsets = np.stack(np.meshgrid(np.arange(width_px), np.arange(width_px), indexing="ij"), -1).reshape(-1, 2)
    cols = (first[:, None, 0] + offsets[None, :, 0]).ravel()
    rows = (first[:, None, 1] + offsets[None, :, 1]).ravel()
    z, channel = np.repeat(z, len(offsets)), np.repeat(channels[segment], len(offsets))
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    pixel = rows[inside] * width + cols[inside]
    z, channel = z[inside], channel[inside]
    visible = z < box_z[pixel]
    pixel, z, channel = pixel[visible], z[visible], channel[visible]
    out[channel, pixel] = 1.0
    np.minimum.at(line_z, pixel, z)
    return line_z


# ---------------------------------------------------------------- the maps


def _rig_at(rig: Rig, frame: LayoutFrame) -> Rig:
    """The rig as placed in the frame's ego frame (world_from_ego): cameras that fired at other ego poses
    (frame.world_from_ego_cam) are moved by the ego's motion in between; the rig itself when none did."""
    if frame.world_from_ego_cam is None:
        return rig
    poses = np.asarray(frame.world_from_ego_cam, np.float64)
    if poses.shape != (len(rig.cameras), 4, 4):
        raise ConfigError(f"world_from_ego_cam has shape {poses.shape}, expected ({len(rig.cameras)}, 4, 4) "
                          f"for the rig's cameras")
    if np.array_equal(poses, np.broadcast_to(frame.world_from_ego, poses.shape)):
        return rig
    ego_from_cams = compose(invert(np.asarray(frame.world_from_ego, np.float64)), poses, rig.ego_from_cam)
    return replace(rig, cameras=tuple(replace(camera, ego_from_cam=pose)
                                      for camera, pose in zip(rig.cameras, ego_from_cams)))


def render_layout(rig: Rig, frames: list[LayoutFrame], size: tuple[int, int] | None = None,
                  backend: str = "auto") -> np.ndarray:
    """Layout maps float32 [V, F, C, H, W] in [0, 1], channels LAYOUT_CHANNELS, for every camera of
    `rig` (resized to size = (width, height) if given) and every frame."""
    backend = _backend(backend)
    if size is not None:
        rig = rig.resized(*size)
    views, width, height = len(rig.cameras), rig.width, rig.height
    maps = np.zeros((views, len(frames), len(LAYOUT_CHANNELS), width * height), np.float32)
    rays_cam = camera_rays(rig.intrinsics, width, height).reshape(views, -1, 3)  # [V, H*W, 3] unit
    # In the ego frame, where the boxes are put: the same rays for every frame.
    rays_ego = rays_cam @ rig.ego_from_cam[:, :3, :3].transpose(0, 2, 1)  # [V, H*W, 3]
    depth = LAYOUT_CHANNELS.index("depth")
    for f, frame in enumerate(frames):
        out = maps[:, f]
        frame_rig, frame_rays_ego = _rig_at(rig, frame), rays_ego
        if frame_rig is not rig:
            frame_rays_ego = rays_cam @ frame_rig.ego_from_cam[:, :3, :3].transpose(0, 2, 1)
        box_z = _draw_boxes(frame, frame_rig, rays_cam, frame_rays_ego, backend, out)
        starts, ends, channels = _segments(frame.polylines, frame.poly_types)
        world_from_cams = compose(np.asarray(frame.world_from_ego, np.float64), frame_rig.ego_from_cam)
        # Both ends of every segment in every camera in one call ([V, 2S, 3]), not two calls per camera.
        in_cams = transform_points(invert(world_from_cams), np.concatenate([starts, ends]))
        for v in range(views):
            a, b = in_cams[v, :len(starts)], in_cams[v, len(starts):]
            line_z = _draw_lines(a, b, channels, rig.intrinsics[v], width, height, box_z[v], out[v])
            nearest = np.minimum(box_z[v], line_z)
            drawn = np.isfinite(nearest)
            out[v, depth, drawn] = np.minimum(nearest[drawn] / MAX_DEPTH, 1.0)
    return maps.reshape(views, len(frames), len(LAYOUT_CHANNELS), height, width)


def layout_frames_from_clip(clip, categories: list[str], poly_types: list[str], start: int = 0,
                            stop: int | None = None, views: list[int] | None = None) -> list[LayoutFrame]:
    """Frames [start, stop) of a stored clip (a zarr group or a dict of its arrays) as LayoutFrames,
    for the clip's cameras `views` (all when None) in that order: the rig they are rendered with.

    `categories` and `poly_types` are the store's name lists (root attrs) that the clip's indices
    point into; polylines of types a scenario cannot hold are left out. The time of day and weather come
    from the clip's caption (look_from_caption), the sidewalk width and building setback from the clip's
    attrs when it records them.
    """
    world_from_ego = np.asarray(clip["world_from_ego"][start:stop], np.float64)
    stop = start + len(world_from_ego)
    world_from_ego_cam = camera_poses(clip, start, stop)
    if views is not None:
        world_from_ego_cam = world_from_ego_cam[:, list(views)]
    offsets = np.asarray(clip["box_offsets"][start:stop + 1], np.int64)
    boxes = np.asarray(clip["boxes"][offsets[0]:offsets[-1]], np.float32)[:, :7]
    rotations = box_rotations(clip, int(offsets[0]), int(offsets[-1]))
    category = np.asarray(clip["box_category"][offsets[0]:offsets[-1]], np.int64)
    points = np.asarray(clip["polylines"][...], np.float32)
    poly_offsets = np.asarray(clip["poly_offsets"][...], np.int64)
    polylines, kinds = [], []
    for k, kind in enumerate(np.asarray(clip["poly_type"][...], np.int64)):
        name = poly_types[kind]
        if name in MAP_POLY_TYPES:
            polylines.append(points[poly_offsets[k]:poly_offsets[k + 1]])
            kinds.append(name)
    surroundings = clip_surroundings(dict(getattr(clip, "attrs", {}) or {}))
    frames = []
    for t in range(len(world_from_ego)):
        rows = slice(offsets[t] - offsets[0], offsets[t + 1] - offsets[0])
        frames.append(LayoutFrame(world_from_ego[t], boxes[rows], [categories[c] for c in category[rows]],
                                  polylines, kinds, world_from_ego_cam[t], rotations[rows], surroundings))
    return frames


def clip_surroundings(attrs: dict) -> Surroundings:
    """A stored clip's Surroundings from its attrs: sidewalk_width, building_setback, time_of_day and weather
    where recorded (a rollout's store), else the defaults and the look its caption names."""
    time_of_day, weather = look_from_caption(attrs.get("caption", ""))
    time_of_day = attrs.get("time_of_day") if attrs.get("time_of_day") in TIMES_OF_DAY else time_of_day
    weather = attrs.get("weather") if attrs.get("weather") in WEATHERS else weather
    return Surroundings(float(attrs.get("sidewalk_width", SIDEWALK_WIDTH)),
                        float(attrs.get("building_setback", BUILDING_SETBACK)), time_of_day, weather)
