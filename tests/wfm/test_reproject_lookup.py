"""reproject's look-up (each point asked of its own camera, then of the others only while none has taken it)
and object_motion's batched box poses give bit for bit what the plain versions give: every point projected
into every camera with the preference taken by argmax, and one box at a time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from drivesim.geometry import invert, matrix_from_yaw
from drivesim.rigs import load_rig
from drivesim.wfm.reproject import NEAR, _rays_ego, ground_depth, object_motion, reproject

WIDTH, HEIGHT = 64, 36
RIG = load_rig("nuscenes", size=(WIDTH, HEIGHT))


def plain_reproject(source, intrinsics, ego_from_cam, source_from_target, depth=None, objects=None, motion=None):
    """reproject as first written: all points into all cameras ([U, N]), own camera preferred by argmax."""
    views, _, height, width = source.shape
    frames = source_from_target.shape[0]
    rays = _rays_ego(intrinsics, ego_from_cam, width, height)
    z = ground_depth(intrinsics, ego_from_cam, width, height)[None].expand(frames, -1, -1, -1)
    if depth is not None:
        z = torch.where(depth > 0, depth, z)
    points = ego_from_cam[None, :, None, None, :3, 3] + z[..., None] * rays[None]
    still = (points @ source_from_target[:, None, None, :3, :3].transpose(-1, -2)
             + source_from_target[:, None, None, None, :3, 3])
    if objects is not None:
        moving = objects >= 0
        frame = torch.arange(frames)[:, None, None, None].expand_as(moving)
        carry = motion[frame[moving], objects[moving]]
        still[moving] = (carry[:, :3, :3] @ points[moving][..., None])[..., 0] + carry[:, :3, 3]
    cam_from_ego = invert(ego_from_cam)
    flat = still.reshape(-1, 3)
    in_cams = flat @ cam_from_ego[:, :3, :3].transpose(-1, -2) + cam_from_ego[:, None, :3, 3]
    pixels = in_cams @ intrinsics.transpose(-1, -2)
    uv = pixels[..., :2] / pixels[..., 2:].clamp_min(1e-9)
    inside = (in_cams[..., 2] > NEAR) & (uv[..., 0] >= -0.5) & (uv[..., 0] <= width - 0.5) \
        & (uv[..., 1] >= -0.5) & (uv[..., 1] <= height - 0.5)
    own = torch.arange(views)[None, :, None, None].expand(frames, -1, height, width).reshape(-1)
    index = torch.arange(own.numel())
    preference = inside.to(torch.int64) * 2
    preference[own, index] += 1
    chosen = preference.argmax(dim=0)
    seen = inside.any(dim=0)
    base = torch.stack(torch.meshgrid(torch.arange(height, dtype=source.dtype),
                                      torch.arange(width, dtype=source.dtype), indexing="ij"), dim=-1)
    base = base[None, None].expand(frames, views, -1, -1, -1).reshape(-1, 2)
    u = torch.where(seen, uv[chosen, index, 0], base[:, 1]).clamp(0, width - 1)
    v = torch.where(seen, uv[chosen, index, 1], base[:, 0]).clamp(0, height - 1)
    canvas = source.permute(1, 2, 0, 3).reshape(1, 3, height, views * width)
    x = (chosen.to(source.dtype) * width + u + 0.5) / (views * width) * 2 - 1
    y = (v + 0.5) / height * 2 - 1
    grid = torch.stack([x, y], dim=-1).reshape(1, 1, -1, 2)
    sampled = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.reshape(3, frames, views, height, width).permute(1, 2, 0, 3, 4), seen.reshape(frames, views,
                                                                                                 height, width)


def pose(dx: float, dy: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0, dx], [s, c, 0, dy], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_look_up_gives_the_plain_look_ups_bits(dtype):
    """Turns of up to 80 degrees send most pixels into other cameras, some into none; random depths (some
    missing) and boxes riding along make every branch count."""
    generator = torch.Generator().manual_seed(0)
    views, frames = len(RIG.cameras), 4
    intrinsics = torch.tensor(RIG.intrinsics, dtype=dtype)
    ego_from_cam = torch.tensor(RIG.ego_from_cam, dtype=dtype)
    source = torch.rand(views, 3, HEIGHT, WIDTH, generator=generator, dtype=dtype)
    targets = torch.tensor(np.stack([pose(0, 0, 0), pose(3, 1, 0.4), pose(-2, 4, 1.4), pose(20, -9, -1.1)]),
                           dtype=dtype)
    depth = torch.rand(frames, views, HEIGHT, WIDTH, generator=generator, dtype=dtype) * 40 - 5  # <= 0: none
    objects = torch.randint(-1, 3, (frames, views, HEIGHT, WIDTH), generator=generator)
    motion = torch.tensor(np.stack([[pose(1, 2, 0.3), pose(-4, 0, -0.8), pose(0, 0, 0)]] * frames), dtype=dtype)

    video, seen = reproject(source, intrinsics, ego_from_cam, targets, depth, objects=objects, object_motion=motion)
    expected, expected_seen = plain_reproject(source, intrinsics, ego_from_cam, targets, depth, objects, motion)
    assert torch.equal(seen, expected_seen) and torch.equal(video, expected)
    assert 0.1 < seen.float().mean() < 0.95  # some pixels no camera sees, most that one does

    still, still_seen = reproject(source, intrinsics, ego_from_cam, targets)
    expected, expected_seen = plain_reproject(source, intrinsics, ego_from_cam, targets)
    assert torch.equal(still_seen, expected_seen) and torch.equal(still, expected)


def test_a_frame_redrawn_alone_or_among_others_is_the_same():
    """The rollout redraws each chunk's frames together: a frame's pixels must not depend on the others."""
    intrinsics = torch.tensor(RIG.intrinsics, dtype=torch.float32)
    ego_from_cam = torch.tensor(RIG.ego_from_cam, dtype=torch.float32)
    source = torch.rand(len(RIG.cameras), 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor(np.stack([pose(1, 0, 0.2), pose(5, 2, 0.9), pose(8, 5, 1.5)]), dtype=torch.float32)
    together, _ = reproject(source, intrinsics, ego_from_cam, targets)
    for f in range(len(targets)):
        alone, _ = reproject(source, intrinsics, ego_from_cam, targets[f:f + 1])
        assert torch.equal(alone[0], together[f])


def plain_object_motion(world_from_ego, source_pose, boxes, source_boxes):
    """object_motion as first written: one box at a time."""
    frames = len(world_from_ego)
    count = max([len(b) for b in boxes], default=0)
    source_from_world = np.linalg.inv(np.asarray(source_pose, np.float64))
    motion = np.tile(np.eye(4), (frames, max(count, 1), 1, 1))

    def box_pose(box):
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = matrix_from_yaw(np.float64(box[6])), box[:3]
        return pose

    for f in range(frames):
        motion[f, :] = source_from_world @ np.asarray(world_from_ego[f], np.float64)
        for m, (box, then) in enumerate(zip(boxes[f], source_boxes[f])):
            if then is not None:
                motion[f, m] = source_from_world @ box_pose(then) @ np.linalg.inv(box_pose(box)) @ world_from_ego[f]
    return motion


def test_object_motion_poses_every_box_at_once_with_the_same_bits():
    rng = np.random.default_rng(2)
    world_from_ego = np.stack([pose(1e4 + 3 * f, -2e4 + f, 0.1 * f) for f in range(5)])
    source_pose = pose(1e4, -2e4, -0.05)
    boxes, source_boxes = [], []
    for f in range(5):
        count = [3, 4, 0, 2, 5][f]
        now = np.concatenate([rng.normal(0, 30, (count, 3)) + [1e4, -2e4, 0], rng.uniform(1, 5, (count, 3)),
                              rng.uniform(-np.pi, np.pi, (count, 1))], axis=1).astype(np.float32)
        boxes.append(now)
        source_boxes.append([None if (f + m) % 3 == 0 else now[m] + np.float32([2, -1, 0, 0, 0, 0, 0.3])
                             for m in range(count)])
    got = object_motion(world_from_ego, source_pose, boxes, source_boxes)
    assert got.shape == (5, 5, 4, 4)
    assert np.array_equal(got, plain_object_motion(world_from_ego, source_pose, boxes, source_boxes))
    nobody = [np.zeros((0, 7), np.float32)] * 2
    assert np.array_equal(object_motion(world_from_ego[:2], source_pose, nobody, [[], []]),
                          plain_object_motion(world_from_ego[:2], source_pose, nobody, [[], []]))
