"""What the detector learns per camera: boxes of one frame turned into CenterNet targets at the stride of its
output (a Gaussian per object on its class's heat map, and at the object's centre cell its sub-pixel offset,
log depth, log size, heading and velocity relative to the camera ray), and the parametrisation decode.py
inverts.

Boxes here are rows [N, 9]: centre xyz, size wlh, yaw, velocity xy, all in one frame (ego or world)."""

from __future__ import annotations

import numpy as np

from drivesim.geometry import box_corners, compose, invert, project, transform_points

STRIDE = 4                 # input pixels per output cell
FOCAL_REFERENCE = 100.0    # pixels: depth is learnt as it would be under this focal length (any rig, any size)
MIN_DEPTH = 1.0            # metres: nearer box centres get no target (their boxes fill the image)
MAX_DEPTH = 60.0           # metres: the synthetic logs annotate to 60 m, nuScenes' eval scores to 50 m
MIN_OVERLAP = 0.7          # CenterNet's Gaussian radius: a centre this far off still overlaps this much
# The regression channels at an object's centre cell, in order.
REGRESSION = ("offset_u", "offset_v", "log_depth", "log_w", "log_l", "log_h", "sin_alpha", "cos_alpha",
              "velocity_along", "velocity_across")
# Channels a horizontal image flip negates (decode.py's angles and velocities are relative to the ray).
FLIP_NEGATES = (REGRESSION.index("offset_u"), REGRESSION.index("sin_alpha"), REGRESSION.index("velocity_across"))


def boxes_in_frame(boxes: np.ndarray, a_from_b: np.ndarray) -> np.ndarray:
    """[N, 9] boxes (centre, wlh, yaw, velocity xy) in frame b -> the same boxes in frame a (rigid a_from_b)."""
    a_from_b = np.asarray(a_from_b, np.float64)
    boxes = np.asarray(boxes, np.float64)
    rotation = a_from_b[:3, :3]
    heading = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(len(boxes))], -1) @ rotation.T
    velocity = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], -1) @ rotation.T
    out = boxes[:, :9].copy()
    out[:, :3] = transform_points(a_from_b, boxes[:, :3])
    out[:, 6] = np.arctan2(heading[:, 1], heading[:, 0])
    out[:, 7:9] = velocity[:, :2]
    return out


def ray_azimuth(points_cam: np.ndarray, ego_from_cam: np.ndarray) -> np.ndarray:
    """[N] azimuth (ego frame, about z) of the rays from the camera through camera-frame points [N, 3]."""
    rays = points_cam @ np.asarray(ego_from_cam, np.float64)[:3, :3].T  # [N, 3] directions in the ego frame
    return np.arctan2(rays[:, 1], rays[:, 0])


def focal(intrinsics: np.ndarray) -> float:
    """One focal length in pixels (the geometric mean of fx and fy), which sets how big a metre looks."""
    return float(np.sqrt(intrinsics[0, 0] * intrinsics[1, 1]))


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's radius (cells) within which a corner-shifted box of this size keeps `min_overlap` IoU (its
    three cases, as CenterNet and CenterPoint compute them)."""
    area, span = width * height, height + width
    r1 = (span + np.sqrt(span ** 2 - 4 * area * (1 - min_overlap) / (1 + min_overlap))) / 2
    r2 = (2 * span + np.sqrt(4 * span ** 2 - 16 * (1 - min_overlap) * area)) / 2
    b3 = -2 * min_overlap * span
    r3 = (b3 + np.sqrt(b3 ** 2 - 16 * min_overlap * (min_overlap - 1) * area)) / 2
    return float(min(r1, r2, r3))


def draw_gaussian(heatmap: np.ndarray, centre: tuple[int, int], radius: float) -> None:
    """Raise heatmap [h, w] to a Gaussian of peak 1 at cell `centre` (column, row), in place (max, not sum)."""
    sigma = max(radius, 0.5) / 3 + 1 / 6  # CenterNet: diameter 2r + 1 spans 6 sigma
    reach = max(1, int(np.ceil(3 * sigma)))
    column, row = centre
    height, width = heatmap.shape
    rows = np.arange(max(0, row - reach), min(height, row + reach + 1))
    columns = np.arange(max(0, column - reach), min(width, column + reach + 1))
    bump = np.exp(-((rows[:, None] - row) ** 2 + (columns[None] - column) ** 2) / (2 * sigma ** 2))
    window = heatmap[rows[0]:rows[-1] + 1, columns[0]:columns[-1] + 1]
    np.maximum(window, bump, out=window)


def _extent(boxes_ego: np.ndarray, cam_from_ego: np.ndarray, intrinsics: np.ndarray, width: int,
            height: int) -> np.ndarray:
    """[N, 2] (width, height) in pixels of each box's projection, cut to the image (corners behind the camera
    dropped: the box's centre is in front, so some corners are)."""
    corners = transform_points(cam_from_ego, box_corners(boxes_ego[:, :7]).reshape(-1, 3)).reshape(-1, 8, 3)
    pixels, depth = project(intrinsics, corners)  # [N, 8, 2], [N, 8]
    front = depth > 0.1
    low = np.where(front[..., None], pixels, np.inf).min(1).clip([0, 0], [width - 1, height - 1])
    high = np.where(front[..., None], pixels, -np.inf).max(1).clip([0, 0], [width - 1, height - 1])
    return np.maximum(high - low, 1.0)


def encode_camera(boxes_ego: np.ndarray, labels: np.ndarray, intrinsics: np.ndarray, ego_from_cam: np.ndarray,
                  width: int, height: int, classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One camera's targets: heat map [C, h, w], regression [R, h, w] and centre mask [h, w] (float32), for
    boxes [N, 9] in the ego frame with class indices [N] (-1: not a target)."""
    cells_w, cells_h = width // STRIDE, height // STRIDE
    heatmap = np.zeros((classes, cells_h, cells_w), np.float32)
    regression = np.zeros((len(REGRESSION), cells_h, cells_w), np.float32)
    mask = np.zeros((cells_h, cells_w), np.float32)
    cam_from_ego = invert(np.asarray(ego_from_cam, np.float64))
    centres = transform_points(cam_from_ego, np.asarray(boxes_ego[:, :3], np.float64))  # [N, 3]
    pixels, depth = project(np.asarray(intrinsics, np.float64), centres)
    inside = ((depth > MIN_DEPTH) & (depth < MAX_DEPTH) & (labels >= 0)
              & (pixels[:, 0] >= -0.5) & (pixels[:, 0] < width - 0.5)
              & (pixels[:, 1] >= -0.5) & (pixels[:, 1] < height - 0.5))
    if not inside.any():
        return heatmap, regression, mask
    boxes = np.asarray(boxes_ego, np.float64)[inside]
    extent = _extent(boxes, cam_from_ego, np.asarray(intrinsics, np.float64), width, height) / STRIDE
    # Output cell coordinates: cell j's centre is at j, pixel edges (not centres) scale (resize_intrinsics).
    cells = (pixels[inside] + 0.5) / STRIDE - 0.5
    nearest = np.clip(np.round(cells).astype(np.int64), 0, [cells_w - 1, cells_h - 1])
    azimuth = ray_azimuth(centres[inside], ego_from_cam)
    kinds = labels[inside]
    alpha = boxes[:, 6] - azimuth  # heading relative to the ray: what one image shows of it
    cos_az, sin_az = np.cos(azimuth), np.sin(azimuth)
    values = np.stack([
        *(cells - nearest).T,
        np.log(depth[inside] * FOCAL_REFERENCE / focal(intrinsics)),
        *np.log(np.maximum(boxes[:, 3:6], 1e-3)).T,
        np.sin(alpha), np.cos(alpha),
        cos_az * boxes[:, 7] + sin_az * boxes[:, 8],    # velocity along the ray
        -sin_az * boxes[:, 7] + cos_az * boxes[:, 8],   # and across it (to its left)
    ], -1).astype(np.float32)  # [n, R]
    # Farthest first, so where two centres share a cell the nearer (visible) object's values stay.
    for i in np.argsort(-depth[inside]):
        column, row = nearest[i]
        draw_gaussian(heatmap[kinds[i]], (column, row), gaussian_radius(extent[i, 1], extent[i, 0]))
        heatmap[kinds[i], row, column] = 1.0  # the exact peak the focal loss counts as positive
        regression[:, row, column] = values[i]
        mask[row, column] = 1.0
    return heatmap, regression, mask


def encode_frame(boxes_ego: np.ndarray, labels: np.ndarray, intrinsics: np.ndarray, ego_from_cam: np.ndarray,
                 width: int, height: int, classes: int) -> dict[str, np.ndarray]:
    """Targets of every camera of one frame: heatmap [V, C, h, w], regression [V, R, h, w], mask [V, h, w]."""
    per_camera = [encode_camera(boxes_ego, labels, k, e, width, height, classes)
                  for k, e in zip(intrinsics, ego_from_cam)]
    heatmap, regression, mask = (np.stack(parts) for parts in zip(*per_camera))
    return {"heatmap": heatmap, "regression": regression, "mask": mask}


def flip_targets(targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The targets of the horizontally mirrored images: maps mirrored, and what turns with the mirror negated."""
    flipped = {name: np.ascontiguousarray(value[..., ::-1]) for name, value in targets.items()}
    flipped["regression"][:, list(FLIP_NEGATES)] *= -1
    return flipped


def visible_in_any(boxes_ego: np.ndarray, intrinsics: np.ndarray, ego_from_cam: np.ndarray, width: int,
                   height: int) -> np.ndarray:
    """[N] bool: the box centre is in front of some camera and inside its image (the stand-in for the devkit's
    `num_pts > 0`: the store keeps no lidar counts)."""
    seen = np.zeros(len(boxes_ego), bool)
    for k, e in zip(np.asarray(intrinsics, np.float64), np.asarray(ego_from_cam, np.float64)):
        pixels, depth = project(k, transform_points(invert(e), np.asarray(boxes_ego[:, :3], np.float64)))
        seen |= ((depth > 0) & (pixels[:, 0] >= -0.5) & (pixels[:, 0] < width - 0.5)
                 & (pixels[:, 1] >= -0.5) & (pixels[:, 1] < height - 0.5))
    return seen


def ego_from_cameras(world_from_ego: np.ndarray, world_from_ego_cam: np.ndarray, ego_from_cam: np.ndarray):
    """[V, 4, 4]: each camera in the frame's reference ego frame, through the ego pose at its own capture time
    (store.camera_poses), so boxes of the frame project where that camera saw them."""
    return compose(invert(np.asarray(world_from_ego, np.float64))[None], np.asarray(world_from_ego_cam, np.float64),
                   np.asarray(ego_from_cam, np.float64))
