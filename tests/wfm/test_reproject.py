"""Redrawing a frame at another ego pose (drivesim/wfm/reproject.py): a still world of textured ground and a
wall along the street, drawn from the source pose, must come out as the same world drawn from the target."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.geometry import camera_rays
from drivesim.rigs import load_rig
from drivesim.wfm.reproject import FAR, WALL_HEIGHT, ground_depth, object_motion, reproject, scene_depth

WIDTH, HEIGHT = 96, 54
RIG = load_rig("nuscenes", size=(WIDTH, HEIGHT))
K = torch.tensor(RIG.intrinsics, dtype=torch.float64)
E = torch.tensor(RIG.ego_from_cam, dtype=torch.float64)
WALL_Y = 7.0  # the wall stands along the street, on the left
EDGE = np.array([[-200.0, WALL_Y, 0.0], [200.0, WALL_Y, 0.0]])


def wall_depth(world_from_ego: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    depth, box = scene_depth(RIG.intrinsics, RIG.ego_from_cam, WIDTH, HEIGHT, world_from_ego, edges)
    assert (box == -1).all()  # no boxes: nothing is a box
    return depth


def pose(dx: float, dy: float, yaw: float) -> np.ndarray:
    """source_from_target (and world_from_ego with the source at the origin)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0, dx], [s, c, 0, dy], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)


def scene_points(world_from_ego: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel of every camera at this pose: the world point it sees (ground or wall) [V, H, W, 3] and its
    camera-frame depth [V, H, W] (the scene depth)."""
    walls = torch.from_numpy(wall_depth(world_from_ego[None], [EDGE]))[0]
    depth = torch.minimum(ground_depth(K, E, WIDTH, HEIGHT), walls)
    rays = camera_rays(K, WIDTH, HEIGHT)
    rays = rays / rays[..., 2:3]
    ego = E[:, None, None, :3, 3] + depth[..., None] * (rays @ E[:, None, :3, :3].transpose(-1, -2))
    transform = torch.from_numpy(world_from_ego)
    return ego @ transform[:3, :3].T + transform[:3, 3], depth


def texture(points: torch.Tensor) -> torch.Tensor:
    """Smooth colours of a world point [..., 3] -> [..., 3] in [0, 1]: the ground varies with x, y; the wall
    with x and height."""
    x, y, z = points.unbind(-1)
    return torch.stack([0.5 + 0.5 * torch.sin(x / 6), 0.5 + 0.5 * torch.cos(y / 7 + z / 5),
                        0.5 + 0.5 * torch.sin((x - y) / 9 + z / 4)], dim=-1)


def source_frame() -> torch.Tensor:
    points, _ = scene_points(np.eye(4))
    return texture(points).permute(0, 3, 1, 2).contiguous()  # [V, 3, H, W]


def test_the_identity_pose_gives_the_source_back():
    source = torch.rand(len(RIG.cameras), 3, HEIGHT, WIDTH, dtype=torch.float64)
    video, seen = reproject(source, K, E, torch.eye(4, dtype=torch.float64)[None].repeat(2, 1, 1))
    assert video.shape == (2, len(RIG.cameras), 3, HEIGHT, WIDTH) and seen.all()
    assert torch.allclose(video, source.expand_as(video), atol=1e-4)


@settings(max_examples=12, deadline=None)
@given(dx=st.floats(-4, 6), dy=st.floats(-1.5, 1.5), yaw=st.floats(-0.9, 0.9))
def test_a_still_world_redrawn_at_a_new_pose_matches_it_drawn_there(dx, dy, yaw):
    source = source_frame()
    target = pose(dx, dy, yaw)
    points, depth = scene_points(target)
    walls = torch.from_numpy(wall_depth(target[None], [EDGE]))
    depth_given = torch.where(torch.isfinite(walls), walls, torch.zeros_like(walls))
    video, seen = reproject(source, K, E, torch.from_numpy(target)[None], depth_given)
    expected = texture(points).permute(0, 3, 1, 2)
    # Near points, seen from the source too: far ground is a few pixels wide there and blurs in the lookup.
    near = (depth < 15) & seen[0] & (torch.linalg.vector_norm(points[..., :2], dim=-1) < 15)
    assert near.float().mean() > 0.2
    error = (video[0] - expected).abs().mean(dim=1)[near]
    assert error.mean() < 0.03, f"mean error {error.mean():.3f} over {int(near.sum())} pixels"
    if math.hypot(dx, dy) > 2 or abs(yaw) > 0.3:  # holding the source still is far off
        assert (source - expected).abs().mean(dim=1)[near].mean() > 3 * error.mean()


def test_wall_depth_puts_hits_on_the_wall_and_nothing_past_its_ends():
    depth = torch.from_numpy(wall_depth(np.eye(4)[None], [np.array([[0.0, WALL_Y, 0.0], [20.0, WALL_Y, 0.0]])]))[0]
    hit = torch.isfinite(depth)
    assert hit.any() and not hit.all()
    rays = camera_rays(K, WIDTH, HEIGHT)
    rays = rays / rays[..., 2:3]
    directions = rays @ E[:, None, :3, :3].transpose(-1, -2)
    points = E[:, None, None, :3, 3] + torch.where(hit, depth, 0)[..., None] * directions
    on = points[hit]
    assert torch.allclose(on[:, 1], torch.full_like(on[:, 1], WALL_Y), atol=1e-3)
    assert (on[:, 0] > -1e-3).all() and (on[:, 0] < 20 + 1e-3).all()
    assert (on[:, 2] > -1e-3).all() and (on[:, 2] < WALL_HEIGHT + 1e-3).all()
    back = [v for v, camera in enumerate(RIG.cameras) if camera.name == "CAM_BACK_RIGHT"][0]
    assert not hit[back].any()  # it looks away from the wall
    empty = wall_depth(np.eye(4)[None], [])
    assert np.isinf(empty).all()


def test_ground_depth_is_far_above_the_horizon_and_near_below():
    depth = ground_depth(K, E, WIDTH, HEIGHT)
    assert depth.max() == FAR and depth.min() > 1
    assert (depth[:, -1] < depth[:, 0]).all()  # the bottom row sees the ground nearer than the top row


@pytest.mark.parametrize("case", ["source", "intrinsics", "poses", "depth", "far"])
def test_bad_inputs_are_named(case):
    source = torch.zeros(len(RIG.cameras), 3, HEIGHT, WIDTH)
    args = dict(source=source, intrinsics=K.float(), ego_from_cam=E.float(), source_from_target=torch.eye(4)[None])
    if case == "source":
        args["source"] = source[:, :2]
    elif case == "intrinsics":
        args["intrinsics"] = K[:2].float()
    elif case == "poses":
        args["source_from_target"] = torch.eye(4)
    elif case == "depth":
        args["depth"] = torch.zeros(1, 2, HEIGHT, WIDTH)
    else:
        args["far"] = 0.0
    with pytest.raises(ConfigError, match=case if case != "poses" else "source_from_target"):
        reproject(**args)


@settings(max_examples=6, deadline=None)
@given(dx=st.floats(0, 3), lead=st.floats(10, 16), crossing=st.floats(4, 7))
def test_a_crossing_car_is_redrawn_where_it_drove_not_where_it_stood(dx, lead, crossing):
    """A red car crosses the road ahead, `crossing` metres to the left, while the ego drives dx: redrawn with
    its motion the target's car pixels are red; as still world they show the road where it stood."""
    start_box = np.array([lead, -crossing / 2, 0.75, 1.8, 4.5, 1.5, math.pi / 2])
    moved_box = start_box + [0, crossing, 0, 0, 0, 0, 0]
    target = pose(dx, 0.0, 0.0)
    depth, box = scene_depth(RIG.intrinsics, RIG.ego_from_cam, WIDTH, HEIGHT, np.eye(4)[None], [], [start_box[None]])
    points, _ = scene_points(np.eye(4))
    red = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    source = torch.where(torch.from_numpy(box[0] >= 0)[..., None], red, texture(points)).permute(0, 3, 1, 2)
    depth, box = scene_depth(RIG.intrinsics, RIG.ego_from_cam, WIDTH, HEIGHT, target[None], [], [moved_box[None]])
    on_car = torch.from_numpy(box[0] >= 0)
    assert on_car.sum() > 20
    given_depth = torch.from_numpy(np.where(np.isfinite(depth), depth, 0.0))
    motion = object_motion(target[None], np.eye(4), [moved_box[None]], [[start_box]])
    video, _ = reproject(source, K, E, torch.from_numpy(target)[None], given_depth, objects=torch.from_numpy(box),
                         object_motion=torch.from_numpy(motion))
    still, _ = reproject(source, K, E, torch.from_numpy(target)[None], given_depth)

    def redness(frame):
        return float(((frame - red[:, None, None]).abs().sum(dim=1) < 0.3)[on_car].float().mean())

    assert redness(video[0]) > 0.75  # the rest: its edges, blended in the lookup, at this small size
    assert redness(still[0]) < redness(video[0]) - 0.3
