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
from drivesim.geometry import camera_rays, invert

__all__ = ["FAR", "NEAR", "WALL_HEIGHT", "ground_depth", "reproject", "wall_depth"]

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
              depth: Tensor | None = None, far: float = FAR) -> tuple[Tensor, Tensor]:
    """The source frame of every camera, redrawn at each target ego pose.

    source [V, 3, H, W] (any value range); intrinsics [V, 3, 3] at W x H; ego_from_cam [V, 4, 4];
    source_from_target [F, 4, 4]: the source frame's ego pose from each target's (identity: the source
    itself); depth [F, V, H, W] camera-frame z in metres where it is known (the layout maps'), 0 or
    less where not. Returns (video [F, V, 3, H, W], seen bool [F, V, H, W]); pixels no source camera
    sees keep the source pixel of their own camera (seen False there).
    """
    _check("source", source, (None, 3, None, None), "[V, 3, H, W]")
    views, _, height, width = source.shape
    _check("intrinsics", intrinsics, (views, 3, 3), f"[{views}, 3, 3]")
    _check("ego_from_cam", ego_from_cam, (views, 4, 4), f"[{views}, 4, 4]")
    _check("source_from_target", source_from_target, (None, 4, 4), "[F, 4, 4]")
    frames = source_from_target.shape[0]
    if depth is not None:
        _check("depth", depth, (frames, views, height, width), f"[{frames}, {views}, {height}, {width}]")
    if not far > NEAR:
        raise ConfigError(f"reproject: far must be more than {NEAR} m, got {far!r}")
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
    points = (points @ source_from_target[:, None, None, :3, :3].transpose(-1, -2)
              + source_from_target[:, None, None, None, :3, 3])  # source ego frame
    cam_from_ego = invert(ego_from_cam)  # [U, 4, 4]: the source cameras
    flat = points.reshape(-1, 3)
    in_cams = flat @ cam_from_ego[:, :3, :3].transpose(-1, -2) + cam_from_ego[:, None, :3, 3]  # [U, N, 3]
    pixels = in_cams @ intrinsics.transpose(-1, -2)
    front = in_cams[..., 2] > NEAR
    uv = pixels[..., :2] / pixels[..., 2:].clamp_min(1e-9)
    inside = front & (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) & (uv[..., 1] >= -0.5) \
        & (uv[..., 1] <= height - 0.5)  # [U, N]
    # Own camera first (3), then any other that sees the point (2); none does: its own (1), held still.
    own = torch.arange(views, device=device)[None, :, None, None].expand(frames, -1, height, width).reshape(-1)
    index = torch.arange(own.numel(), device=device)
    preference = inside.to(torch.int64) * 2
    preference[own, index] += 1
    chosen = preference.argmax(dim=0)  # [N]
    seen = inside.any(dim=0)
    # Keep the pixel's own position where unseen: the hold-still fallback.
    base = torch.stack(torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                                      torch.arange(width, device=device, dtype=dtype), indexing="ij"), dim=-1)
    base = base[None, None].expand(frames, views, -1, -1, -1).reshape(-1, 2)  # (row, column)
    u = torch.where(seen, uv[chosen, index, 0], base[:, 1]).clamp(0, width - 1)
    v = torch.where(seen, uv[chosen, index, 1], base[:, 0]).clamp(0, height - 1)
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


def wall_depth(intrinsics: np.ndarray, ego_from_cam: np.ndarray, width: int, height: int,
               world_from_ego: np.ndarray, road_edges: list[np.ndarray], reach: float = FAR) -> np.ndarray:
    """[F, V, H, W] camera-frame depth (z) of walls raised on the road edges (world polylines [N, 3]),
    WALL_HEIGHT high, at each ego pose of world_from_ego [F, 4, 4]; inf where a ray meets none. A street
    is lined by kerbs with buildings, fences or trees behind them: this puts them at the kerb, which
    is far nearer the truth than a far wall. Edges farther than `reach` from every pose are left out."""
    import open3d as o3d

    from drivesim.data import raycast

    world_from_ego = np.asarray(world_from_ego, np.float64).reshape(-1, 4, 4)
    frames, views = len(world_from_ego), len(ego_from_cam)
    depth = np.full((frames, views, height, width), np.inf)
    ends = [(np.asarray(line, np.float64)[:-1], np.asarray(line, np.float64)[1:])
            for line in road_edges if len(line) > 1]
    if not ends:
        return depth
    a = np.concatenate([start for start, _ in ends])[:, :3]
    b = np.concatenate([stop for _, stop in ends])[:, :3]
    centre = world_from_ego[:, :2, 3]
    near = np.min(np.linalg.norm((a[None, :, :2] + b[None, :, :2]) / 2 - centre[:, None], axis=-1), axis=0) < reach
    a, b = a[near], b[near]
    if not len(a):
        return depth
    up = np.array([0.0, 0.0, WALL_HEIGHT])
    corners = np.stack([a, b, b + up, a + up], axis=1)  # [S, 4, 3]: a quad per segment
    quads = np.arange(len(a))[:, None] * 4
    triangles = np.concatenate([quads + [0, 1, 2], quads + [0, 2, 3]]).astype(np.uint32)
    rays_cam = camera_rays(intrinsics, width, height).reshape(views, -1, 3)  # unit, numpy
    rays_ego = np.einsum("vij,vnj->vni", ego_from_cam[:, :3, :3], rays_cam)
    origins = np.broadcast_to(ego_from_cam[:, None, :3, 3], rays_ego.shape)
    rays = np.concatenate([origins, rays_ego], axis=-1).reshape(-1, 6).astype(np.float32)
    for f in range(frames):
        # In the ego frame: world coordinates can be ~1e5 m, where float32 keeps only centimetres.
        local = corners.reshape(-1, 3) @ np.linalg.inv(world_from_ego[f])[:3, :3].T \
            + np.linalg.inv(world_from_ego[f])[:3, 3]
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(local.astype(np.float32)), o3d.core.Tensor(triangles))
        distance = scene.cast_rays(o3d.core.Tensor(rays), nthreads=raycast.THREADS)["t_hit"].numpy()
        depth[f] = (distance.reshape(views, -1) * rays_cam[..., 2]).reshape(views, height, width)
    return depth
