"""Tests for drivesim.wfm.conditioning: Plücker ray maps, time pooling, and the ray, trajectory and layout encoders."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from einops import reduce
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim import geometry, rigs
from drivesim.errors import ConfigError
from drivesim.wfm.conditioning import LayoutEncoder, RayEncoder, TrajectoryEncoder, plucker_maps, pool_time

FAST = settings(max_examples=25, deadline=None)


def nuscenes_cameras(width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The nuScenes rig at width x height: intrinsics [1, 6, 3, 3], ego_from_cam [1, 6, 4, 4], float64."""
    rig = rigs.load_rig("nuscenes", (width, height))
    return torch.tensor(rig.intrinsics)[None], torch.tensor(rig.ego_from_cam)[None]


def ego_pose(forward: float = 0.0, left: float = 0.0, yaw: float = 0.0) -> torch.Tensor:
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = geometry.matrix_from_yaw(torch.tensor(yaw, dtype=torch.float64))
    pose[0, 3], pose[1, 3] = forward, left
    return pose


def full_resolution_average(intrinsics, ego_from_cam, ego0_from_ego, width, height, rows, columns):
    """The reference plucker_maps avoids building: every pixel's ray, averaged per cell, then normalised."""
    ego0_from_cam = geometry.compose(ego0_from_ego[:, None], ego_from_cam[:, :, None])
    rays = geometry.plucker_rays(intrinsics[:, :, None], ego0_from_cam, width, height)
    pooled = reduce(rays, "b v f (gh ch) (gw cw) c -> b v f c gh gw", "mean", gh=rows, gw=columns)
    return pooled / torch.linalg.vector_norm(pooled[:, :, :, :3], dim=3, keepdim=True)


# ---------------------------------------------------------------- plucker_maps


def test_plucker_maps_match_the_full_resolution_average():
    width, height, rows, columns = 192, 128, 4, 6  # 32 x 32 pixel cells, 4 x 4 samples each
    intrinsics, ego_from_cam = nuscenes_cameras(width, height)
    poses = torch.stack([ego_pose(), ego_pose(4.0, 0.5, 0.2), ego_pose(9.0, 2.0, 0.6)])[None]
    maps = plucker_maps(intrinsics, ego_from_cam, poses, (width, height), (rows, columns))
    reference = full_resolution_average(intrinsics, ego_from_cam, poses, width, height, rows, columns)
    assert maps.shape == (1, 6, 3, 6, rows, columns)
    torch.testing.assert_close(maps, reference, atol=2e-3, rtol=0)
    directions = maps[:, :, :, :3]
    torch.testing.assert_close(torch.linalg.vector_norm(directions, dim=3), torch.ones(1, 6, 3, rows, columns,
                                                                                       dtype=torch.float64))


def test_plucker_maps_keep_float32_inputs_in_float32():
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    maps = plucker_maps(intrinsics.float(), ego_from_cam.float(), ego_pose()[None, None].float(), (96, 64), (4, 6))
    assert maps.dtype == torch.float32
    reference = plucker_maps(intrinsics, ego_from_cam, ego_pose()[None, None], (96, 64), (4, 6))
    torch.testing.assert_close(maps, reference.float(), atol=1e-5, rtol=0)


def test_a_forward_move_changes_moments_not_directions():
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    translation = torch.tensor([5.0, 0.0, 0.0], dtype=torch.float64)
    poses = torch.stack([ego_pose(), ego_pose(forward=5.0)])[None]
    maps = plucker_maps(intrinsics, ego_from_cam, poses, (96, 64), (4, 6))
    directions, moments = maps[:, :, :, :3], maps[:, :, :, 3:]
    torch.testing.assert_close(directions[:, :, 1], directions[:, :, 0], atol=1e-12, rtol=0)
    # The camera centre moved by t, so every moment gains t x direction.
    gained = torch.linalg.cross(translation[:, None, None].expand_as(directions[:, :, 0]), directions[:, :, 0], dim=2)
    torch.testing.assert_close(moments[:, :, 1] - moments[:, :, 0], gained, atol=1e-12, rtol=0)
    assert (moments[:, :, 1] - moments[:, :, 0]).abs().max() > 1.0


def test_a_turn_rotates_directions():
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    yaw = 0.4
    poses = torch.stack([ego_pose(), ego_pose(yaw=yaw)])[None]
    maps = plucker_maps(intrinsics, ego_from_cam, poses, (96, 64), (4, 6))
    rotation = geometry.matrix_from_yaw(torch.tensor(yaw, dtype=torch.float64))
    rotated = torch.einsum("ij,bvjhw->bvihw", rotation, maps[:, :, 0, :3])
    torch.testing.assert_close(maps[:, :, 1, :3], rotated, atol=1e-12, rtol=0)


def test_permuting_views_permutes_the_maps():
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    poses = torch.stack([ego_pose(), ego_pose(3.0, 1.0, 0.1)])[None]
    order = torch.tensor([3, 0, 5, 1, 4, 2])
    maps = plucker_maps(intrinsics, ego_from_cam, poses, (96, 64), (4, 6))
    permuted = plucker_maps(intrinsics[:, order], ego_from_cam[:, order], poses, (96, 64), (4, 6))
    torch.testing.assert_close(permuted, maps[:, order])


def test_plucker_maps_reject_a_grid_that_does_not_split_the_image():
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    with pytest.raises(ConfigError, match="96x64"):
        plucker_maps(intrinsics, ego_from_cam, ego_pose()[None, None], (96, 64), (5, 6))


@pytest.mark.parametrize("which", ["intrinsics", "ego_from_cam", "ego0_from_ego"])
def test_plucker_maps_name_the_badly_shaped_input(which):
    intrinsics, ego_from_cam = nuscenes_cameras(96, 64)
    inputs = {"intrinsics": intrinsics, "ego_from_cam": ego_from_cam, "ego0_from_ego": ego_pose()[None, None]}
    inputs[which] = inputs[which][..., :2]
    with pytest.raises(ConfigError, match=which):
        plucker_maps(**inputs, image_size=(96, 64), grid=(4, 6))


coordinate = st.floats(-1.0, 1.0)
unit_quaternions = (st.tuples(coordinate, coordinate, coordinate, coordinate)
                    .filter(lambda q: math.hypot(*q) > 0.1).map(lambda q: np.array(q) / math.hypot(*q)))
rigid_transforms = st.builds(geometry.transform_from, st.tuples(*[st.floats(-20.0, 20.0)] * 3).map(np.array),
                             unit_quaternions)
# Focal lengths and principal points relative to a 24 x 16 image: from fisheye-wide to telephoto.
intrinsics_24x16 = st.builds(lambda fx, fy, cx, cy: np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
                             st.floats(6.0, 200.0), st.floats(6.0, 200.0), st.floats(-10.0, 34.0),
                             st.floats(-10.0, 26.0))


@st.composite
def rigs_and_trajectories(draw):
    views, frames = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    intrinsics = np.stack([draw(intrinsics_24x16) for _ in range(views)])
    ego_from_cam = np.stack([draw(rigid_transforms) for _ in range(views)])
    ego0_from_ego = np.stack([draw(rigid_transforms) for _ in range(frames)])
    return (torch.from_numpy(intrinsics)[None], torch.from_numpy(ego_from_cam)[None],
            torch.from_numpy(ego0_from_ego)[None])


@FAST
@given(rigs_and_trajectories(), st.sampled_from([(2, 3), (4, 4), (1, 1), (16, 24)]))
def test_plucker_maps_are_lines_for_any_rig_and_trajectory(cameras, grid):
    intrinsics, ego_from_cam, ego0_from_ego = cameras
    maps = plucker_maps(intrinsics, ego_from_cam, ego0_from_ego, (24, 16), grid, samples=24)
    directions, moments = maps[:, :, :, :3], maps[:, :, :, 3:]
    ones = torch.ones_like(directions[:, :, :, 0])
    torch.testing.assert_close(torch.linalg.vector_norm(directions, dim=3), ones, atol=1e-9, rtol=0)
    # A moment is orthogonal to its direction, and its length is the line's distance from the origin:
    # at most the distance of the camera centre the line passes through.
    torch.testing.assert_close((directions * moments).sum(dim=3), 0 * ones, atol=1e-9, rtol=0)
    centres = geometry.compose(ego0_from_ego[:, None], ego_from_cam[:, :, None])[..., :3, 3]
    assert (torch.linalg.vector_norm(moments, dim=3) <= torch.linalg.vector_norm(centres, dim=-1)[..., None, None]
            + 1e-9).all()
    # With a sample per pixel (samples >= any cell side here) the maps are the full-resolution average.
    reference = full_resolution_average(intrinsics, ego_from_cam, ego0_from_ego, 24, 16, *grid)
    torch.testing.assert_close(maps, reference, atol=1e-9, rtol=1e-9)


# ---------------------------------------------------------------- pool_time


def test_pool_time_keeps_frame_zero_and_averages_groups():
    video = torch.randn(2, 3, 9, 4, 5)
    pooled = pool_time(video, 4, dim=2)
    assert pooled.shape == (2, 3, 3, 4, 5)
    torch.testing.assert_close(pooled[:, :, 0], video[:, :, 0])
    torch.testing.assert_close(pooled[:, :, 1], video[:, :, 1:5].mean(dim=2))
    torch.testing.assert_close(pooled[:, :, 2], video[:, :, 5:9].mean(dim=2))


def test_pool_time_of_one_frame_is_that_frame():
    image = torch.randn(2, 1, 3)
    torch.testing.assert_close(pool_time(image, 4, dim=1), image)


@FAST
@given(st.integers(0, 4), st.integers(1, 5), st.integers(-3, 2))
def test_pool_time_pools_any_axis(groups, temporal_compression, dim):
    frames = 1 + groups * temporal_compression
    shape = [2, 3, 2]
    shape[dim] = frames
    values = torch.randn(shape)
    pooled = pool_time(values, temporal_compression, dim=dim)
    expected_shape = list(shape)
    expected_shape[dim] = 1 + groups
    assert list(pooled.shape) == expected_shape
    by_frame, pooled_by_frame = values.movedim(dim, 0), pooled.movedim(dim, 0)
    for latent in range(1, groups + 1):
        first = 1 + (latent - 1) * temporal_compression
        torch.testing.assert_close(pooled_by_frame[latent], by_frame[first:first + temporal_compression].mean(0))


@pytest.mark.parametrize("frames", [2, 8, 10])
def test_pool_time_rejects_frame_counts_the_tokenizer_cannot_group(frames):
    with pytest.raises(ConfigError, match=f"{frames} frames"):
        pool_time(torch.zeros(1, 1, frames), 4, dim=2)


def test_pool_time_rejects_a_bad_compression():
    with pytest.raises(ConfigError, match="temporal_compression"):
        pool_time(torch.zeros(1, 1, 5), 0)


# ---------------------------------------------------------------- encoders


def test_ray_encoder_embeds_each_patch_from_its_own_ray():
    torch.manual_seed(0)
    encoder = RayEncoder(16)
    rays = torch.randn(2, 3, 2, 6, 4, 5)
    tokens = encoder(rays)
    assert tokens.shape == (2, 3, 2, 4, 5, 16)
    changed = rays.clone()
    changed[1, 2, 1, :, 3, 4] += 1.0
    difference = (encoder(changed) - tokens).abs().amax(dim=-1)
    assert difference[1, 2, 1, 3, 4] > 0
    difference[1, 2, 1, 3, 4] = 0
    assert difference.max() == 0


def test_ray_encoder_rejects_other_than_six_channels():
    with pytest.raises(ConfigError, match="rays"):
        RayEncoder(8)(torch.zeros(1, 1, 1, 3, 2, 2))


def trajectory(frames: int) -> torch.Tensor:
    return torch.stack([ego_pose(forward=2.0 * f, yaw=0.05 * f) for f in range(frames)])[None]


def test_trajectory_encoder_gives_one_token_per_frame_from_its_own_pose():
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(32)
    poses = trajectory(9).repeat(2, 1, 1, 1)
    tokens = encoder(poses)
    assert tokens.shape == (2, 9, 32)
    moved = poses.clone()
    moved[1, 4] = ego_pose(forward=8.5, left=0.3, yaw=0.25)
    difference = (encoder(moved) - tokens).abs().amax(dim=-1)
    assert difference[1, 4] > 1e-4
    difference[1, 4] = 0
    assert difference.max() == 0


def test_trajectory_encoder_sees_translation_rotation_and_time():
    torch.manual_seed(0)
    encoder = TrajectoryEncoder(32)
    base = encoder(trajectory(5))
    for changed in (ego_pose(forward=1.0), ego_pose(left=1.0), ego_pose(yaw=0.3)):
        poses = trajectory(5)
        poses[0, 3] = poses[0, 3] @ changed
        assert (encoder(poses)[0, 3] - base[0, 3]).abs().max() > 1e-4
    standing = encoder(ego_pose()[None, None].expand(1, 5, 4, 4))
    assert (standing[0, 1] - standing[0, 2]).abs().max() > 1e-4  # same pose, another moment in the clip


@pytest.mark.parametrize("kind", LayoutEncoder.KINDS)
def test_layout_encoder_starts_at_exactly_zero_and_learns(kind):
    torch.manual_seed(0)
    encoder = LayoutEncoder(channels=3, dim=16, spatial=8, temporal=4, kind=kind)
    layout = torch.rand(2, 2, 5, 3, 32, 48)
    out = encoder(layout)
    assert out.shape == (2, 2, 2, 4, 6, 16)
    assert torch.equal(out, torch.zeros_like(out))
    (out * torch.randn_like(out)).sum().backward()
    assert encoder.project.weight.grad.abs().sum() > 0
    with torch.no_grad():
        encoder.project.weight -= encoder.project.weight.grad
    assert encoder(layout).abs().max() > 0


@pytest.mark.parametrize("kind", LayoutEncoder.KINDS)
def test_layout_of_later_frames_reaches_only_their_latent_frame(kind):
    torch.manual_seed(0)
    encoder = LayoutEncoder(channels=2, dim=8, spatial=4, temporal=4, kind=kind)
    torch.nn.init.normal_(encoder.project.weight)
    layout = torch.rand(1, 2, 9, 2, 16, 16)
    changed = layout.clone()
    changed[:, :, 5:] = torch.rand_like(changed[:, :, 5:])
    before, after = encoder(layout), encoder(changed)
    torch.testing.assert_close(after[:, :, :2], before[:, :, :2], atol=0, rtol=0)
    assert (after[:, :, 2] - before[:, :, 2]).abs().max() > 1e-4


@pytest.mark.parametrize("shape, problem", [((1, 1, 5, 3, 30, 32), "patches"), ((1, 1, 5, 2, 32, 32), "layout"),
                                            ((1, 1, 4, 3, 32, 32), "4 frames")])
def test_layout_encoder_rejects_maps_it_cannot_place(shape, problem):
    with pytest.raises(ConfigError, match=problem):
        LayoutEncoder(channels=3, dim=8, spatial=8)(torch.zeros(shape))


def test_patch_layout_encoder_sees_every_pixel_of_its_patch_only():
    torch.manual_seed(0)
    encoder = LayoutEncoder(channels=2, dim=8, spatial=16, temporal=4, kind="patch")
    torch.nn.init.normal_(encoder.project.weight)
    layout = torch.rand(1, 1, 1, 2, 64, 64)
    before = encoder(layout)[0, 0, 0]  # [4, 4, 8]: one feature per 16x16 patch
    for row, column in ((0, 0), (37, 50), (63, 63)):  # any pixel, the corners included
        changed = layout.clone()
        changed[..., row, column] += 1
        moved = (encoder(changed)[0, 0, 0] - before).abs().amax(dim=-1) > 1e-6
        assert moved[row // 16, column // 16]
        # stride-2 3x3 convolutions reach one patch further at most
        far = [(r, c) for r in range(4) for c in range(4) if abs(r - row // 16) > 1 or abs(c - column // 16) > 1]
        assert not any(moved[r, c] for r, c in far)


def test_patch_layout_encoder_costs_a_fraction_of_conv():
    def multiply_adds(encoder, height=128, width=256):
        total, size = 0, (height, width)
        for layer in encoder.convs:
            if isinstance(layer, torch.nn.PixelUnshuffle):
                size = (size[0] // layer.downscale_factor, size[1] // layer.downscale_factor)
            if isinstance(layer, torch.nn.Conv2d):
                size = (size[0] // layer.stride[0], size[1] // layer.stride[1])
                total += size[0] * size[1] * layer.weight.numel()
        return total

    conv, patch = (LayoutEncoder(7, 256, spatial=16, kind=kind) for kind in ("conv", "patch"))
    assert multiply_adds(patch) < multiply_adds(conv) / 5
    with pytest.raises(ConfigError, match="kind must be one of conv, patch"):
        LayoutEncoder(7, 256, kind="dense")


def test_layout_encoder_needs_a_power_of_two_patch():
    with pytest.raises(ConfigError, match="power of two"):
        LayoutEncoder(channels=3, dim=8, spatial=12)
