"""A real frame redrawn from where the ego will be: geometry only, no learning.

Every pixel of every camera at a target ego pose is given a depth (the layout maps' depth where a box
or lane is drawn, else the flat ground z = 0 of the ego frame, else a far wall), lifted to a 3D point,
carried into the ego frame of the source frame and looked up in whichever source camera sees it (its
own camera first). The world is taken as still: a car that moves between the two poses is drawn
where it was. This is the 3D-cache idea of NVIDIA's GEN3C and of StreetCrafter's rendered-lidar
condition, with a depth a scenario already has: the rollout starts its denoising from these frames
(drivesim/simulate.py, init="reprojected"), so the picture follows the ego trajectory from the first
step and the model only has to repair what geometry gets wrong.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from drivesim.errors import ConfigError
from drivesim.geometry import camera_rays, invert, matrix_from_yaw

__all__ = ["FAR", "NEAR", "WALL_HEIGHT", "ground_depth", "object_motion", "reproject", "scene_depth"]

FAR = 60.0   # metres: the depth of rays that meet neither the layout nor the ground nearer than this
NEAR = 0.3   # metres: points nearer to a source camera than this are not looked up in it


def _check(name: str, value: Tensor, shape: tuple[int | None, ...], text: str) -> None:
    if not isinstance(value, Tensor) or value.dim() != len(shape) or any(
            expected is not None and size != expected for size, expected in zip(value.shape, shape)):
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ConfigError(f"reproject: {name} has shape {got}, expected {text}")


def _rays_ego(intrinsics: Tensor, ego_from_cam: Tensor, width: int, height: int) -> Tensor:
    """[V, H, W, 3]: per pixel, the ego-frame direction whose camera-frame z is 1 (so depth z scales it)."""
    rays = camera_rays(intrinsics, width, height)
    rays = rays / rays[..., 2:3]
    return rays @ ego_from_cam[:, None, :3, :3].transpose(-1, -2)


def ground_depth(intrinsics: Tensor, ego_from_cam: Tensor, width: int, height: int, far: float = FAR) -> Tensor:
    """[V, H, W] camera-frame depth (z) at which each pixel's ray meets the ground plane z = 0 of the ego
    frame, or `far` where it meets it farther than that or never (at and above the horizon)."""
    rays = _rays_ego(intrinsics, ego_from_cam, width, height)
    height_above = ego_from_cam[:, 2, 3][:, None, None]
    down = rays[..., 2]
    depth = torch.where(down < 0, height_above / (-down).clamp_min(1e-9), torch.full_like(down, far))
    return depth.clamp(max=far)


@torch.no_grad()
def reproject(source: Tensor, intrinsics: Tensor, ego_from_cam: Tensor, source_from_target: Tensor,
              depth: Tensor | None = None, far: float = FAR, objects: Tensor | None = None,
              object_motion: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The source frame of every camera, redrawn at each target ego pose.

    source [V, 3, H, W] (any value range); intrinsics [V, 3, 3] at W x H; ego_from_cam [V, 4, 4];
    source_from_target [F, 4, 4]: the source frame's ego pose from each target's (identity: the source
    itself); depth [F, V, H, W] camera-frame z in metres where it is known (the layout maps'), 0 or
    less where not. objects [F, V, H, W] int (-1: the still world) with object_motion [F, M, 4, 4]: pixels
    on object m move with it, carried by object_motion[f, m] (the source ego frame from the target's, for
    points riding on m) instead of source_from_target[f]. Returns (video [F, V, 3, H, W], seen bool
    [F, V, H, W]); pixels no source camera sees keep the source pixel of their own camera (seen False there).
    """
    _check_inputs(source, intrinsics, ego_from_cam, source_from_target, depth, far, objects, object_motion)
    views, _, height, width = source.shape
    frames = source_from_target.shape[0]
    dtype = torch.promote_types(source.dtype, torch.float32)
    device = source.device
    intrinsics, ego_from_cam = intrinsics.to(device, dtype), ego_from_cam.to(device, dtype)
    source_from_target = source_from_target.to(device, dtype)

    rays = _rays_ego(intrinsics, ego_from_cam, width, height)  # [V, H, W, 3]
    z = ground_depth(intrinsics, ego_from_cam, width, height, far)[None].expand(frames, -1, -1, -1)
    if depth is not None:
        depth = depth.to(device, dtype)
        z = torch.where(depth > 0, depth, z)
    points = ego_from_cam[None, :, None, None, :3, 3] + z[..., None] * rays[None]  # [F, V, H, W, 3] target ego
    still = (points @ source_from_target[:, None, None, :3, :3].transpose(-1, -2)
             + source_from_target[:, None, None, None, :3, 3])  # source ego frame
    if objects is not None:
        moving = objects.to(device) >= 0
        frame = torch.arange(frames, device=device)[:, None, None, None].expand_as(moving)
        carry = object_motion.to(device, dtype)[frame[moving], objects.to(device)[moving]]  # [K, 4, 4]
        still[moving] = (carry[:, :3, :3] @ points[moving][..., None])[..., 0] + carry[:, :3, 3]
    # Points by the camera whose pixel they are: [U, M], M = F * H * W (frames, rows, columns).
    points = still.transpose(0, 1).reshape(views, -1, 3)
    cam_from_ego = invert(ego_from_cam)  # [U, 4, 4]: the source cameras

    uv, seen, chosen = _choose_cameras(points, cam_from_ego, intrinsics, width, height)
    # Back to (frame, view, row, column) order.
    chosen = chosen.view(views, frames, -1).transpose(0, 1).reshape(-1)
    uv = uv.view(views, frames, -1, 2).transpose(0, 1).reshape(-1, 2)
    seen = seen.view(views, frames, -1).transpose(0, 1).reshape(-1)
    # Keep the pixel's own position where unseen: the hold-still fallback.
    base = torch.stack(torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                                      torch.arange(width, device=device, dtype=dtype), indexing="ij"), dim=-1)
    base = base[None, None].expand(frames, views, -1, -1, -1).reshape(-1, 2)  # (row, column)
    u = torch.where(seen, uv[:, 0], base[:, 1]).clamp(0, width - 1)
    v = torch.where(seen, uv[:, 1], base[:, 0]).clamp(0, height - 1)
    # One canvas of the source views side by side, so one grid_sample serves every camera; a sample
    # is kept inside its own view (the clamp above), so views do not bleed into each other.
    canvas = source.to(dtype).permute(1, 2, 0, 3).reshape(1, 3, height, views * width)
    x = (chosen.to(dtype) * width + u + 0.5) / (views * width) * 2 - 1
    y = (v + 0.5) / height * 2 - 1
    grid = torch.stack([x, y], dim=-1).reshape(1, 1, -1, 2)
    sampled = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
    video = sampled.reshape(3, frames, views, height, width).permute(1, 2, 0, 3, 4)
    return video.to(source.dtype), seen.reshape(frames, views, height, width)


WALL_HEIGHT = 30.0  # metres: the walls raised on road edges stand for the buildings and trees behind them


def _check_inputs(source, intrinsics, ego_from_cam, source_from_target, depth, far, objects, object_motion) -> None:
    """reproject's arguments, each refused by name when its shape or value cannot be used."""
    _check("source", source, (None, 3, None, None), "[V, 3, H, W]")
    views, _, height, width = source.shape
    _check("intrinsics", intrinsics, (views, 3, 3), f"[{views}, 3, 3]")
    _check("ego_from_cam", ego_from_cam, (views, 4, 4), f"[{views}, 4, 4]")
    _check("source_from_target", source_from_target, (None, 4, 4), "[F, 4, 4]")
    frames = source_from_target.shape[0]
    if depth is not None:
        _check("depth", depth, (frames, views, height, width), f"[{frames}, {views}, {height}, {width}]")
    if (objects is None) != (object_motion is None):
        raise ConfigError("reproject: objects and object_motion come together")
    if objects is not None:
        _check("objects", objects, (frames, views, height, width), f"[{frames}, {views}, {height}, {width}]")
        _check("object_motion", object_motion, (frames, None, 4, 4), f"[{frames}, M, 4, 4]")
        if objects.numel() and int(objects.max()) >= object_motion.shape[1]:
            raise ConfigError(f"reproject: objects names object {int(objects.max())}, object_motion has "
                              f"{object_motion.shape[1]}")
    if not far > NEAR:
        raise ConfigError(f"reproject: far must be more than {NEAR} m, got {far!r}")


def _choose_cameras(points: Tensor, cam_from_ego: Tensor, intrinsics: Tensor, width: int,
                    height: int) -> tuple[Tensor, Tensor, Tensor]:
    """Points [U, M, 3] in the source ego frame, by the camera whose pixel they are -> (pixels [U, M, 2], seen
    [U, M], the source camera each is looked up in [U, M])."""
    views, device, dtype = points.shape[0], points.device, points.dtype
    limits = torch.tensor([width - 0.5, height - 0.5], device=device, dtype=dtype)

    def look_up(at: Tensor) -> tuple[Tensor, Tensor]:
        """Where each source camera u sees points at[u] ([U, K, 3], or [K, 3]: the same points in every camera):
        pixels [U, K, 2] and whether it does [U, K]. A point gets the same bits in any batch."""
        in_cams = at @ cam_from_ego[:, :3, :3].transpose(-1, -2) + cam_from_ego[:, None, :3, 3]
        pixels = in_cams @ intrinsics.transpose(-1, -2)
        uv = pixels[..., :2] / pixels[..., 2:].clamp_min(1e-9)
        return uv, ((uv >= -0.5) & (uv <= limits)).all(dim=-1) & (in_cams[..., 2] > NEAR)

    # Own camera first; else the first other camera (in rig order) that sees the point; none does: its own, the
    # pixel held still. Only the points their own camera does not see are looked up in every camera, in one
    # batch (few large operations: on a busy machine each parallel operation waits for both threads).
    uv, seen = look_up(points)  # [U, M, 2], [U, M]: every point in its own camera
    chosen = torch.arange(views, device=device)[:, None].expand(-1, seen.shape[1]).clone()
    own, index = torch.nonzero(~seen, as_tuple=True)
    if len(own):
        other_uv, other_seen = look_up(points[own, index])  # [U, K, 2], [U, K]: their own camera sees none
        # The first camera that sees a point ranks highest (U - u); 0: none does. (amax, not argmax: an argmax
        # across cameras, the strided dimension, is a hundred times slower.)
        rank = (other_seen * torch.arange(views, 0, -1, device=device, dtype=torch.int16)[:, None]).amax(dim=0)
        found = torch.nonzero(rank).squeeze(1)
        first = views - rank[found].to(torch.int64)
        own, index = own[found], index[found]
        uv[own, index] = other_uv[first, found]
        seen[own, index] = True
        chosen[own, index] = first
    return uv, seen, chosen


def scene_depth(intrinsics: np.ndarray, ego_from_cam: np.ndarray, width: int, height: int,
                world_from_ego: np.ndarray, road_edges: list[np.ndarray], boxes: list[np.ndarray] | None = None,
                reach: float = FAR) -> tuple[np.ndarray, np.ndarray]:
    """What each pixel sees of a scenario's layout, at each ego pose of world_from_ego [F, 4, 4]: (depth
    [F, V, H, W], camera-frame z, inf where nothing is hit; box [F, V, H, W], the index into boxes[f] of
    the box hit, -1 for a wall or nothing). The layout is the road edges (world polylines [N, 3]) raised
    into walls WALL_HEIGHT high, and boxes[f] [N, 7] (centre, size wlh, yaw; world frame). A street is
    lined by kerbs with buildings, fences or trees behind them: walls at the kerb are far nearer the truth
    than a far plane. Edges farther than `reach` from every pose are left out."""
    import open3d as o3d

    from drivesim.geometry import box_corners
    from drivesim.render import BOX_TRIANGLES, RAYCAST_THREADS

    world_from_ego = np.asarray(world_from_ego, np.float64).reshape(-1, 4, 4)
    frames, views = len(world_from_ego), len(ego_from_cam)
    boxes = [np.zeros((0, 7))] * frames if boxes is None else [np.asarray(b, np.float64).reshape(-1, 7) for b in boxes]
    if len(boxes) != frames:
        raise ConfigError(f"scene_depth: {len(boxes)} frames of boxes for {frames} poses")
    walls = np.zeros((0, 4, 3))
    ends = [(np.asarray(line, np.float64)[:-1, :3], np.asarray(line, np.float64)[1:, :3])
            for line in road_edges if len(line) > 1]
    if ends:
        a = np.concatenate([start for start, _ in ends])
        b = np.concatenate([stop for _, stop in ends])
        centre = world_from_ego[:, :2, 3]
        near = np.min(np.linalg.norm((a[None, :, :2] + b[None, :, :2]) / 2 - centre[:, None], axis=-1), axis=0) < reach
        up = np.array([0.0, 0.0, WALL_HEIGHT])
        walls = np.stack([a[near], b[near], b[near] + up, a[near] + up], axis=1)  # [S, 4, 3]: a quad a segment
    quads = np.arange(len(walls))[:, None] * 4
    wall_triangles = np.concatenate([quads + [0, 1, 2], quads + [0, 2, 3]]).reshape(-1, 3)
    rays_cam = camera_rays(intrinsics, width, height).reshape(views, -1, 3)  # unit, numpy
    rays_ego = np.einsum("vij,vnj->vni", ego_from_cam[:, :3, :3], rays_cam)
    origins = np.broadcast_to(ego_from_cam[:, None, :3, 3], rays_ego.shape)
    rays = o3d.core.Tensor(np.concatenate([origins, rays_ego], axis=-1).reshape(-1, 6).astype(np.float32))
    depth = np.full((frames, views, height, width), np.inf)
    box = np.full((frames, views, height, width), -1, np.int64)
    for f in range(frames):
        corners = box_corners(boxes[f]).reshape(-1, 3) if len(boxes[f]) else np.zeros((0, 3))
        vertices = np.concatenate([walls.reshape(-1, 3), corners])
        if not len(vertices):
            continue
        triangles = np.concatenate([wall_triangles, (BOX_TRIANGLES[None] + len(walls) * 4
                                                     + 8 * np.arange(len(boxes[f]))[:, None, None]).reshape(-1, 3)])
        # In the ego frame: world coordinates can be ~1e5 m, where float32 keeps only centimetres.
        ego_from_world = np.linalg.inv(world_from_ego[f])
        local = vertices @ ego_from_world[:3, :3].T + ego_from_world[:3, 3]
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(local.astype(np.float32)), o3d.core.Tensor(triangles.astype(np.uint32)))
        hit = scene.cast_rays(rays, nthreads=RAYCAST_THREADS)
        depth[f] = (hit["t_hit"].numpy().reshape(views, -1) * rays_cam[..., 2]).reshape(views, height, width)
        triangle = hit["primitive_ids"].numpy().astype(np.int64).reshape(views, height, width)
        first_box = len(wall_triangles)
        is_box = np.isfinite(depth[f]) & (triangle >= first_box)
        box[f] = np.where(is_box, (triangle - first_box) // len(BOX_TRIANGLES), -1)
    return depth, box


def object_motion(world_from_ego: np.ndarray, source_pose: np.ndarray, boxes: list[np.ndarray],
                  source_boxes: list[np.ndarray | None]) -> np.ndarray:
    """[F, M, 4, 4]: for a point riding on box m of frame f, the source ego frame from frame f's ego frame.

    world_from_ego [F, 4, 4]; source_pose [4, 4] the source frame's world_from_ego; boxes[f] [N_f, 7] and
    source_boxes[f] [N_f] the same agents' boxes at the source time ([7] each, None where the agent was not
    there: it is then carried as the still world). M is the most boxes of any frame (rows past N_f unused)."""
    frames = len(world_from_ego)
    count = max([len(b) for b in boxes], default=0)
    world_from_ego = np.asarray(world_from_ego, np.float64)
    source_from_world = np.linalg.inv(np.asarray(source_pose, np.float64))
    still = source_from_world @ world_from_ego  # [F, 4, 4]
    motion = np.repeat(still[:, None], max(count, 1), axis=1)
    # Every box of every frame and where it was at the source time, posed at once: one matrix_from_yaw call
    # for all of them, not two per box and frame (each a torch call); the same products, batched.
    rows = [(f, m, box, then) for f in range(frames)
            for m, (box, then) in enumerate(zip(boxes[f], source_boxes[f])) if then is not None]
    if rows:
        frame, index = np.array([row[:2] for row in rows]).T
        now = _box_poses(np.array([row[2] for row in rows], np.float64).reshape(-1, 7))
        then = _box_poses(np.array([row[3] for row in rows], np.float64).reshape(-1, 7))
        motion[frame, index] = source_from_world @ then @ np.linalg.inv(now) @ world_from_ego[frame]
    return motion


def _box_poses(boxes: np.ndarray) -> np.ndarray:
    """[N, 4, 4] world_from_box of boxes [N, 7] (centre, size, yaw)."""
    pose = np.tile(np.eye(4), (len(boxes), 1, 1))
    pose[:, :3, :3], pose[:, :3, 3] = matrix_from_yaw(boxes[:, 6]), boxes[:, :3]
    return pose
