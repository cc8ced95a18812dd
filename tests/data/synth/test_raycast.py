"""The ray-cast renderer on hand-built scenes whose answer is known: where a box appears, how far
it is, what is sky, where its shadow falls, how night and fog look, what is hidden, what the
lidar hits, and that the same inputs give the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial import ConvexHull

from drivesim import geometry
from drivesim.data.synth.meshes import Material, Mesh, box, merge
from drivesim.data.synth.raycast import Look, Renderer

WIDTH, HEIGHT = 96, 64
FOCAL = 60.0
K = np.array([[FOCAL, 0.0, (WIDTH - 1) / 2], [0.0, FOCAL, (HEIGHT - 1) / 2], [0.0, 0.0, 1.0]])
CAMERA_HEIGHT = 1.2
NO_LAMPS = np.zeros((0, 3))
GREY = (0.3, 0.3, 0.3)


def _looking_east(x=0.0, y=0.0, z=CAMERA_HEIGHT) -> np.ndarray:
    """world_from_cam of a level camera facing +x (OpenCV: x right = -y world, y down = -z world)."""
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([[0, -1, 0], [0, 0, -1], [1, 0, 0]])
    pose[:3, 3] = (x, y, z)
    return pose


def _looking_down(height: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = np.column_stack([[1, 0, 0], [0, -1, 0], [0, 0, -1]])
    pose[:3, 3] = (0.0, 0.0, height)
    return pose


def _ground(half: float = 300.0, albedo=GREY) -> Mesh:
    # Curb concrete has no procedural texture: flat albedo makes brightness comparisons clean.
    return box(-half, half, -half, half, -0.2, 0.0, Material.CURB, albedo)


def _block(x0, x1, y0, y1, z0, z1, instance, albedo=(0.8, 0.8, 0.8)) -> Mesh:
    return box(x0, x1, y0, y1, z0, z1, Material.METAL, albedo).transformed(0, 0, 0, 0, instance)


def _render(renderer: Renderer, dynamic: Mesh, pose: np.ndarray, intrinsics=K, frame_index: int = 0):
    frame = renderer.render(dynamic, pose[None], intrinsics[None], WIDTH, HEIGHT, frame_index)
    return frame.images[0], frame.instance[0], frame.depth[0]


def _luminance(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64).mean(axis=-1)


def _pixel_centres() -> np.ndarray:
    return geometry.pixel_grid(WIDTH, HEIGHT, like=np.zeros(0)).reshape(-1, 2).astype(np.float64)


@settings(max_examples=6, deadline=None)
@given(distance=st.floats(6.0, 30.0), lateral=st.floats(-4.0, 4.0), length=st.floats(0.5, 5.0),
       width=st.floats(0.5, 3.0), height=st.floats(0.5, 3.0))
def test_a_box_covers_exactly_the_pixels_inside_its_projected_outline(distance, lateral, length, width, height):
    """Pixel centres at integer coordinates: a pixel is the box's iff its centre falls inside the
    convex hull of the box corners as geometry.project places them."""
    renderer = Renderer(_ground(), Look(), NO_LAMPS, seed=0)
    pose = _looking_east()
    x0, y0 = distance, lateral - width / 2
    _, instance, depth = _render(renderer, _block(x0, x0 + length, y0, y0 + width, 0.0, height, 7), pose)
    corners = np.array([(x, y, z) for x in (x0, x0 + length) for y in (y0, y0 + width) for z in (0.0, height)])
    pixels, corner_depth = geometry.project(K, geometry.transform_points(geometry.invert(pose), corners))
    assert (corner_depth > 0).all()
    hull = ConvexHull(pixels)
    signed = (_pixel_centres() @ hull.equations[:, :2].T + hull.equations[:, 2]).max(axis=1).reshape(HEIGHT, WIDTH)
    expected = signed < 0
    clear_of_edges = np.abs(signed) > 1e-3  # float32 rays may go either way on an edge itself
    assert np.array_equal((instance == 7)[clear_of_edges], expected[clear_of_edges])
    assert expected.any()
    # No face of the box is nearer than its near face, nor farther than its far corners.
    seen = depth[instance == 7]
    assert seen.min() >= distance - 1e-3 and seen.max() <= distance + length + 1e-3


def test_depth_of_a_facing_wall_is_its_distance_and_of_the_ground_its_analytic_range():
    renderer = Renderer(_ground(), Look(), NO_LAMPS, seed=0)
    _, instance, depth = _render(renderer, _block(9.0, 11.0, -1.3, 0.7, 0.0, 2.2, 3), _looking_east())
    wall = instance == 3
    assert wall.sum() > 50
    np.testing.assert_allclose(depth[wall], 9.0, rtol=1e-5)  # depth is camera z, not ray length
    rows = np.broadcast_to(np.arange(HEIGHT)[:, None], (HEIGHT, WIDTH))
    ground = ~wall & (rows > K[1, 2])
    # A level camera at height h sees the ground at row v at depth h * f / (v - cy).
    np.testing.assert_allclose(depth[ground], CAMERA_HEIGHT * FOCAL / (rows[ground] - K[1, 2]), rtol=1e-4)
    assert (instance[ground] == 0).all()


def test_rays_above_the_horizon_see_sky_at_infinite_depth():
    renderer = Renderer(_ground(), Look(), NO_LAMPS, seed=0)
    image, instance, depth = _render(renderer, Mesh.empty(), _looking_east())
    rows = np.broadcast_to(np.arange(HEIGHT)[:, None], (HEIGHT, WIDTH))
    sky = rows < K[1, 2]
    assert np.isinf(depth[sky]).all() and (instance[sky] == 0).all()
    assert np.isfinite(depth[~sky]).all()
    # A clear day sky is blue: more blue than red above the horizon.
    assert image[sky][:, 2].astype(int).mean() > image[sky][:, 0].astype(int).mean() + 10


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_box_casts_a_shadow_away_from_the_sun_on_a_sunny_day(seed):
    """Seen from above: ground points whose path to the sun meets the box are darker than the rest."""
    renderer = Renderer(_ground(), Look("day", "clear"), NO_LAMPS, seed=seed)
    sun = renderer.light.sun_direction.astype(np.float64)
    assert sun[2] > 0
    low, high = np.array([-1.5, -1.5, 0.0]), np.array([1.5, 1.5, 8.0])
    pose = _looking_down(30.0)
    image, instance, _ = _render(renderer, _block(*np.ravel([low, high], order="F"), 4), pose)
    directions = geometry.camera_rays(K, WIDTH, HEIGHT).reshape(-1, 3) @ pose[:3, :3].T
    on_ground = pose[:3, 3] + directions * (pose[2, 3] / -directions[:, 2:3])

    def sun_blocked_by(grow: float) -> np.ndarray:
        """Slab test of each ground point's ray toward the sun against the box grown by `grow`."""
        with np.errstate(divide="ignore", invalid="ignore"):
            near, far = (low - grow - on_ground) / sun, (high + grow - on_ground) / sun
        enter = np.nanmax(np.minimum(near, far), axis=1)
        leave = np.nanmin(np.maximum(near, far), axis=1)
        return ((leave >= enter) & (leave > 0)).reshape(HEIGHT, WIDTH)

    ground = instance == 0
    luminance = _luminance(image)
    # Rays that graze an edge of the box may go either way: judge only clear cases.
    in_shadow = luminance[ground & sun_blocked_by(-0.05)]
    in_sun = luminance[ground & ~sun_blocked_by(+0.05)]
    assert len(in_shadow) >= 10
    assert in_shadow.max() < in_sun.min()
    assert in_shadow.mean() < 0.8 * in_sun.mean()


def test_the_same_scene_at_night_is_much_darker_than_by_day():
    dynamic = _block(8.0, 12.0, -1.0, 1.0, 0.0, 1.5, 1)
    day = _render(Renderer(_ground(), Look("day", "clear"), NO_LAMPS, seed=5), dynamic, _looking_east())
    night = _render(Renderer(_ground(), Look("night", "clear"), NO_LAMPS, seed=5), dynamic, _looking_east())
    assert _luminance(night[0]).mean() < 0.3 * _luminance(day[0]).mean()
    np.testing.assert_array_equal(night[1], day[1])  # lighting changes colours, not geometry
    np.testing.assert_array_equal(night[2], day[2])


def test_headlights_light_the_road_ahead_at_night_and_do_nothing_by_day():
    pose = _looking_east()
    lamps = np.array([[0.5, 0.7, 0.7], [0.5, -0.7, 0.7]])
    forward = np.array([1.0, 0.0, 0.0])
    night = Renderer(_ground(), Look("night", "clear"), NO_LAMPS, seed=2)
    dark = _render(night, Mesh.empty(), pose)[0]
    night.set_headlights((lamps, forward))
    lit = _render(night, Mesh.empty(), pose)[0]
    road_ahead = np.s_[HEIGHT // 2 + 6:, WIDTH // 2 - 10:WIDTH // 2 + 10]
    assert _luminance(lit[road_ahead]).mean() > _luminance(dark[road_ahead]).mean() + 20
    sky = np.s_[: HEIGHT // 2 - 2]
    np.testing.assert_array_equal(lit[sky], dark[sky])
    day = Renderer(_ground(), Look("day", "clear"), NO_LAMPS, seed=2)
    before = _render(day, Mesh.empty(), pose)[0]
    day.set_headlights((lamps, forward))
    np.testing.assert_array_equal(_render(day, Mesh.empty(), pose)[0], before)


def test_street_lamps_light_the_ground_beneath_them_at_night():
    pose = _looking_down(20.0)
    lamp = np.array([[4.0, 0.0, 7.25]])
    without = _render(Renderer(_ground(), Look("night", "clear"), NO_LAMPS, seed=1), Mesh.empty(), pose)[0]
    with_lamp = _render(Renderer(_ground(), Look("night", "clear"), lamp, seed=1), Mesh.empty(), pose)[0]
    below = geometry.project(K, geometry.transform_points(geometry.invert(pose), np.array([[4.0, 0.0, 0.0]])))[0][0]
    u, v = np.round(below).astype(int)
    assert _luminance(with_lamp)[v, u] > _luminance(without)[v, u] + 30
    far = _luminance(with_lamp)[:, :10].mean() - _luminance(without)[:, :10].mean()
    assert _luminance(with_lamp)[v, u] - _luminance(without)[v, u] > 2 * far  # falls off with distance


def _contrast(image: np.ndarray, instance: np.ndarray, agent: int) -> float:
    """|object - ground just below it| in mean luminance."""
    rows, cols = np.nonzero(instance == agent)
    below = np.zeros_like(instance, bool)
    below[rows.max() + 1:rows.max() + 4, cols.min():cols.max() + 1] = True
    below &= instance == 0
    luminance = _luminance(image)
    return abs(luminance[instance == agent].mean() - luminance[below].mean())


def test_fog_washes_out_distant_objects_more_than_near_ones():
    dark_ground = _ground(albedo=(0.05, 0.05, 0.05))
    near = _block(7.0, 8.0, 1.5, 2.5, 0.0, 1.5, 1)
    far = _block(60.0, 62.0, -6.0, 0.0, 0.0, 6.0, 2)
    dynamic = merge([near, far])
    # Overcast and fog differ only in the fog: both have no sun and the same ambient light.
    overcast = _render(Renderer(dark_ground, Look("day", "overcast"), NO_LAMPS, seed=3), dynamic, _looking_east())
    foggy = _render(Renderer(dark_ground, Look("day", "fog"), NO_LAMPS, seed=3), dynamic, _looking_east())
    near_kept = _contrast(foggy[0], foggy[1], 1) / _contrast(overcast[0], overcast[1], 1)
    far_kept = _contrast(foggy[0], foggy[1], 2) / _contrast(overcast[0], overcast[1], 2)
    assert far_kept < 0.35
    assert near_kept > 0.5 and near_kept > 2 * far_kept


def test_visibility_counts_a_hidden_object_in_its_silhouette_but_never_as_first_hit():
    renderer = Renderer(_ground(), Look(), NO_LAMPS, seed=3)
    wall = _block(7.5, 8.5, -2.0, 2.0, 0.0, 3.0, 1)
    hidden = _block(14.5, 15.5, -0.5, 0.5, 0.0, 1.5, 2)
    aside = _block(11.0, 13.0, 4.0, 6.0, 0.0, 1.5, 3)
    behind_camera = _block(-12.0, -10.0, -1.0, 1.0, 0.0, 1.5, 4)
    dynamic = merge([wall, hidden, aside, behind_camera])
    pose = _looking_east()
    (counts,) = renderer.visibility(dynamic, pose[None], K[None], WIDTH, HEIGHT)
    assert counts[2][0] == 0 and counts[2][1] > 0
    assert counts[1][0] == counts[1][1] > 0 and counts[3][0] == counts[3][1] > 0
    assert 4 not in counts
    # First hits are exactly the instance mask of a render.
    _, instance, _ = _render(renderer, dynamic, pose)
    assert {agent: seen for agent, (seen, _) in counts.items() if seen} == {
        a: int((instance == a).sum()) for a in (1, 3)}
    # A coarser grid counts about stride**2 times fewer pixels.
    (coarse,) = renderer.visibility(dynamic, pose[None], K[None], WIDTH, HEIGHT, stride=2)
    assert coarse[2][0] == 0 and coarse[1][1] == pytest.approx(counts[1][1] / 4, rel=0.15)
    assert renderer.visibility(Mesh.empty(), pose[None], K[None], WIDTH, HEIGHT) == [{}]


def test_lidar_hits_a_box_at_its_range_and_tags_the_points_with_its_id():
    renderer = Renderer(_ground(), Look(), NO_LAMPS, seed=0)
    dynamic = merge([_block(7.5, 8.5, -2.0, 2.0, 0.0, 3.0, 1), _block(-5.0, -3.0, 6.0, 8.0, 0.0, 2.0, 9)])
    world_from_lidar = np.eye(4)
    world_from_lidar[:3, :3] = geometry.matrix_from_yaw(np.float64(0.6))
    world_from_lidar[:3, 3] = (1.0, 0.5, 1.8)
    points, ids = renderer.lidar(dynamic, world_from_lidar)
    assert points.shape == (len(ids), 5) and points.dtype == np.float32
    assert set(np.unique(ids)) == {0, 1, 9}
    world = geometry.transform_points(world_from_lidar, points[:, :3].astype(np.float64))
    wall = world[ids == 1]
    # The near face of the wall is at x = 7.5 world; every hit lies on the wall's surface.
    assert len(wall) > 100
    np.testing.assert_allclose(wall[:, 0], 7.5, atol=1e-3)
    assert (np.abs(wall[:, 1]) <= 2.0 + 1e-3).all() and (wall[:, 2] >= -1e-3).all() and (wall[:, 2] <= 3.0 + 1e-3).all()
    np.testing.assert_allclose(world[ids == 0][:, 2], 0.0, atol=1e-3)  # the rest is ground
    assert (np.linalg.norm(points[:, :3], axis=1) < 70.0).all()
    assert (points[ids > 0, 3] > points[ids == 0, 3].max()).all()  # agents return more intensity
    assert set(np.unique(points[:, 4])) <= set(range(32))


def test_rendering_is_deterministic_and_noise_varies_only_with_the_frame():
    dynamic = _block(8.0, 12.0, -1.0, 1.0, 0.0, 1.5, 1)
    poses = np.stack([_looking_east(), _looking_east(y=2.0)])
    intrinsics = np.stack([K, K])

    def render(frame_index, look=Look("dusk", "rain")):
        return Renderer(_ground(), look, NO_LAMPS, seed=9).render(dynamic, poses, intrinsics, WIDTH, HEIGHT,
                                                                  frame_index)

    first, again, later = render(3), render(3), render(4)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.instance, again.instance)
    np.testing.assert_array_equal(first.depth, again.depth)
    assert first.images.shape == (2, HEIGHT, WIDTH, 3) and first.images.dtype == np.uint8
    assert not np.array_equal(first.images, later.images)
    np.testing.assert_array_equal(first.depth, later.depth)
    assert not np.array_equal(first.images[0], first.images[1])  # each camera its own view and noise
