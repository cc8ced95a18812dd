"""Tests for drivesim.geometry: transforms, projection, rays, epipolar geometry and rig files."""

import functools
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from drivesim.errors import ConfigError
from drivesim.geometry import (camera_rays, compose, crop_intrinsics, fundamental_matrix, invert,
                               matrix_from_quaternion, matrix_from_yaw, pixel_grid, plucker_rays, project,
                               quaternion_from_matrix, resize_intrinsics, slerp, transform_from, transform_points,
                               translation_rotation_from, unproject, yaw_from_matrix)
from drivesim.rigs import load_rig

VIEWS = Path(__file__).resolve().parents[1] / "views"
FAST = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------- strategies

coordinate = st.floats(-1.0, 1.0, allow_nan=False)
unit_quaternions = (
    st.tuples(coordinate, coordinate, coordinate, coordinate)
    .filter(lambda q: math.hypot(*q) > 0.1)
    .map(lambda q: np.array(q) / math.hypot(*q))
)
translations = st.tuples(*[st.floats(-50.0, 50.0)] * 3).map(np.array)
rigid_transforms = st.builds(transform_from, translations, unit_quaternions)
intrinsics = st.builds(
    lambda fx, fy, cx, cy: np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]),
    st.floats(50.0, 3000.0), st.floats(50.0, 3000.0), st.floats(-100.0, 2000.0), st.floats(-100.0, 2000.0),
)
points_in_front = st.integers(1, 8).flatmap(
    lambda n: st.lists(
        st.tuples(st.floats(-20.0, 20.0), st.floats(-20.0, 20.0), st.floats(0.1, 100.0)), min_size=n, max_size=n
    )
).map(np.array)


@functools.cache
def nuscenes_rig():
    return load_rig("nuscenes")  # parsed once: YAML parsing would dominate the property tests


def sampson_distance(fundamental, pixels1, pixels2):
    """First-order geometric distance (pixels) of pixel pairs to the epipolar constraint."""
    x1 = np.concatenate([pixels1, np.ones_like(pixels1[:, :1])], axis=1)
    x2 = np.concatenate([pixels2, np.ones_like(pixels2[:, :1])], axis=1)
    line2, line1 = x1 @ fundamental.T, x2 @ fundamental  # F x1 and F^T x2
    error = np.sum(x2 * line2, axis=1)
    return np.abs(error) / np.sqrt(line2[:, 0] ** 2 + line2[:, 1] ** 2 + line1[:, 0] ** 2 + line1[:, 1] ** 2)


# ---------------------------------------------------------------- rotations and transforms


@FAST
@given(unit_quaternions)
def test_quaternion_matrix_round_trip(q):
    rotation = matrix_from_quaternion(q)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    back = quaternion_from_matrix(rotation)
    assert back[0] >= 0
    assert abs(np.dot(back, q)) == pytest.approx(1.0, abs=1e-9)  # q and -q are the same rotation


@FAST
@given(st.tuples(coordinate, coordinate, coordinate).filter(lambda a: math.hypot(*a) > 0.1), st.floats(-1e-6, 1e-6))
def test_quaternion_from_matrix_is_exact_near_half_turns(axis, delta):
    axis = np.array(axis) / math.hypot(*axis)
    angle = math.pi + delta  # w = cos(angle / 2) ~ 0: the branch a trace-only formula gets wrong
    rotation = matrix_from_quaternion(np.concatenate([[math.cos(angle / 2)], math.sin(angle / 2) * axis]))
    np.testing.assert_allclose(matrix_from_quaternion(quaternion_from_matrix(rotation)), rotation, atol=1e-12)


def test_quarter_turn_yaw_has_the_textbook_quaternion():
    half = math.sqrt(0.5)
    np.testing.assert_allclose(quaternion_from_matrix(matrix_from_yaw(np.array(math.pi / 2))), [half, 0, 0, half])
    np.testing.assert_allclose(matrix_from_yaw(np.array(math.pi / 2)) @ [1.0, 0, 0], [0, 1.0, 0], atol=1e-15)


@FAST
@given(st.floats(-math.pi + 1e-9, math.pi))
def test_yaw_matrix_round_trip(yaw):
    assert yaw_from_matrix(matrix_from_yaw(np.array(yaw))) == pytest.approx(yaw, abs=1e-12)


def _turn(q_from, q_to) -> float:
    """The angle (radians) of the rotation taking q_from's to q_to's, read off the matrices."""
    relative = quaternion_from_matrix(matrix_from_quaternion(q_from).T @ matrix_from_quaternion(q_to))
    return 2 * math.atan2(np.linalg.norm(relative[1:]), abs(relative[0]))


@FAST
@given(unit_quaternions, unit_quaternions, st.floats(0.0, 1.0), st.booleans())
def test_slerp_turns_at_a_constant_rate_along_the_shorter_arc(q0, q1, amount, flip):
    assume(_turn(q0, q1) < math.pi - 1e-3)  # a half turn has no shorter arc
    q = slerp(q0, -q1 if flip else q1, np.array(amount))  # q and -q are one rotation
    assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
    whole = _turn(q0, q1)
    assert _turn(q0, q) == pytest.approx(amount * whole, abs=1e-7)
    assert _turn(q, q1) == pytest.approx((1 - amount) * whole, abs=1e-7)


@FAST
@given(unit_quaternions, unit_quaternions, st.floats(0.0, 1.0))
def test_slerp_matches_pyquaternion_the_devkit_interpolates_with(q0, q1, amount):
    from pyquaternion import Quaternion

    expected = Quaternion.slerp(Quaternion(q0), Quaternion(q1), amount).rotation_matrix
    np.testing.assert_allclose(matrix_from_quaternion(slerp(q0, q1, np.array(amount))), expected, atol=1e-6)


def test_slerp_ends_at_its_ends_and_batches():
    q0 = np.array([[1.0, 0, 0, 0], [0.0, 1, 0, 0]])
    q1 = np.array([[math.cos(0.5), 0, 0, math.sin(0.5)], [0.0, 1, 0, 0]])
    np.testing.assert_allclose(slerp(q0, q1, np.array([0.0, 0.3])), q0, atol=1e-15)
    np.testing.assert_allclose(slerp(q0, q1, np.array([1.0, 1.0])), q1, atol=1e-15)
    halfway = slerp(torch.tensor(q0[:1]), torch.tensor(q1[:1]), torch.tensor([0.5]))
    assert isinstance(halfway, torch.Tensor)
    np.testing.assert_allclose(halfway.numpy(), [[math.cos(0.25), 0, 0, math.sin(0.25)]], atol=1e-15)


@FAST
@given(translations, unit_quaternions)
def test_transform_round_trips_through_translation_and_rotation(translation, q):
    back_translation, back_q = translation_rotation_from(transform_from(translation, q))
    np.testing.assert_allclose(back_translation, translation)
    assert abs(np.dot(back_q, q)) == pytest.approx(1.0, abs=1e-9)


@FAST
@given(rigid_transforms)
def test_invert_composes_to_identity(a_from_b):
    np.testing.assert_allclose(compose(a_from_b, invert(a_from_b)), np.eye(4), atol=1e-12)
    np.testing.assert_allclose(compose(invert(a_from_b), a_from_b), np.eye(4), atol=1e-12)


@FAST
@given(rigid_transforms, rigid_transforms, points_in_front)
def test_composed_transform_maps_points_through_each_frame(a_from_b, b_from_c, points_c):
    direct = transform_points(compose(a_from_b, b_from_c), points_c)
    np.testing.assert_allclose(direct, transform_points(a_from_b, transform_points(b_from_c, points_c)), atol=1e-9)


def test_batch_dims_broadcast():
    rng = np.random.default_rng(0)
    transforms = transform_from(rng.normal(size=(2, 3, 3)), rng.normal(size=(3, 4)))  # (2, 3, 4, 4)
    points = rng.normal(size=(3, 5, 3))
    moved = transform_points(transforms, points)
    assert moved.shape == (2, 3, 5, 3)
    np.testing.assert_allclose(moved[1, 2], transform_points(transforms[1, 2], points[2]))


# ---------------------------------------------------------------- projection and rays


@FAST
@given(intrinsics, points_in_front)
def test_project_unproject_round_trip(k, points):
    pixels, depth = project(k, points)
    np.testing.assert_allclose(depth, points[:, 2])
    np.testing.assert_allclose(unproject(k, pixels, depth), points, rtol=1e-9, atol=1e-9)


def test_pixel_grid_holds_pixel_centres_in_column_row_order():
    grid = pixel_grid(5, 3)
    assert grid.shape == (3, 5, 2) and grid.dtype == torch.float32
    assert grid[2, 4].tolist() == [4.0, 2.0] and grid[0, 0].tolist() == [0.0, 0.0]
    like = pixel_grid(5, 3, like=np.zeros(1, np.float64))
    assert isinstance(like, np.ndarray) and like.dtype == np.float64
    np.testing.assert_array_equal(like, grid.numpy())


@FAST
@given(intrinsics)
def test_camera_rays_are_unit_and_project_to_their_pixels(k):
    rays = camera_rays(k, 7, 4)
    assert rays.shape == (4, 7, 3)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=-1), 1.0)
    pixels, _ = project(k, rays.reshape(-1, 3))
    np.testing.assert_allclose(pixels, pixel_grid(7, 4).numpy().reshape(-1, 2), atol=1e-6)


@FAST
@given(intrinsics, rigid_transforms, st.floats(-30.0, 30.0))
def test_plucker_moment_is_zero_for_points_on_the_ray(k, world_from_cam, distance):
    rays = plucker_rays(k, world_from_cam, 6, 4).reshape(-1, 6)
    direction, moment = rays[:, :3], rays[:, 3:]
    np.testing.assert_allclose(np.linalg.norm(direction, axis=-1), 1.0)
    points = world_from_cam[:3, 3] + distance * direction
    # p x d - m = 0 exactly for the points p of the line, wherever on it p lies.
    np.testing.assert_allclose(np.cross(points, direction) - moment, 0.0, atol=1e-9)


@FAST
@given(intrinsics, rigid_transforms, st.integers(0, 3), st.integers(0, 5), st.floats(0.5, 80.0))
def test_plucker_ray_passes_through_the_point_seen_at_its_pixel(k, world_from_cam, row, col, depth):
    point_cam = unproject(k, np.array([[col, row]], float), np.array([depth]))
    point_world = transform_points(world_from_cam, point_cam)[0]
    ray = plucker_rays(k, world_from_cam, 6, 4)[row, col]
    direction, moment = ray[:3], ray[3:]
    np.testing.assert_allclose(np.cross(point_world, direction), moment, atol=1e-8)
    assert np.dot(point_world - world_from_cam[:3, 3], direction) > 0  # in front, not behind


# Random poses put some points behind camera 2 or near the baseline: many draws are set aside by design.
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(intrinsics, intrinsics, translations, unit_quaternions, points_in_front)
def test_fundamental_matrix_holds_for_any_camera_pair(k1, k2, translation, q, points_cam1):
    cam2_from_cam1 = transform_from(translation / 10, q)
    baseline = invert(cam2_from_cam1)[:3, 3]  # camera 2's centre in camera 1
    # Without a baseline (a pure rotation) F is zero: the epipolar constraint is undefined.
    assume(np.linalg.norm(baseline) > 1e-3)
    # Points on the baseline project to the epipoles, where the constraint says nothing.
    assume(np.all(np.linalg.norm(np.cross(points_cam1, baseline), axis=-1) > 0.1 * np.linalg.norm(baseline)))
    points_cam2 = transform_points(cam2_from_cam1, points_cam1)
    assume(np.all(points_cam2[:, 2] > 0.1))
    pixels1, _ = project(k1, points_cam1)
    pixels2, _ = project(k2, points_cam2)
    fundamental = fundamental_matrix(k1, k2, cam2_from_cam1)
    assert np.all(sampson_distance(fundamental, pixels1, pixels2) < 1e-6)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.floats(25.0, 31.5), st.floats(3.0, 80.0), st.floats(0.0, 3.0))
def test_point_seen_by_two_overlapping_cameras_satisfies_epipolar_constraint(yaw_degrees, distance, height):
    rig = nuscenes_rig()
    front, front_left = rig.camera("CAM_FRONT"), rig.camera("CAM_FRONT_LEFT")
    yaw = math.radians(yaw_degrees)
    point_ego = np.array([[distance * math.cos(yaw), distance * math.sin(yaw), height]])
    pixels, depths = [], []
    for camera in (front, front_left):
        pixel, depth = project(camera.intrinsics, transform_points(invert(camera.ego_from_cam), point_ego))
        pixels.append(pixel)
        depths.append(depth[0])
        assume(depth[0] > 0 and -0.5 <= pixel[0, 0] <= rig.width - 0.5 and -0.5 <= pixel[0, 1] <= rig.height - 0.5)
    cam2_from_cam1 = compose(invert(front_left.ego_from_cam), front.ego_from_cam)
    fundamental = fundamental_matrix(front.intrinsics, front_left.intrinsics, cam2_from_cam1)
    assert sampson_distance(fundamental, pixels[0], pixels[1])[0] < 1e-6


# ---------------------------------------------------------------- intrinsics for resized and cropped images


@FAST
@given(intrinsics, points_in_front, st.floats(0.1, 4.0), st.floats(0.1, 4.0))
def test_resized_intrinsics_match_resized_pixels(k, points, scale_x, scale_y):
    pixels, _ = project(k, points)
    resized, _ = project(resize_intrinsics(k, scale_x, scale_y), points)
    # A pixel's edges, not its centre, scale: centre u of the original lands at (u + 0.5) s - 0.5.
    np.testing.assert_allclose(resized, (pixels + 0.5) * [scale_x, scale_y] - 0.5, rtol=1e-9, atol=1e-6)


@FAST
@given(intrinsics, points_in_front, st.integers(-500, 500), st.integers(-500, 500))
def test_crop_shifts_principal_point(k, points, left, top):
    cropped = crop_intrinsics(k, float(left), float(top))
    np.testing.assert_allclose(cropped[:2, 2], k[:2, 2] - [left, top])
    np.testing.assert_allclose(project(cropped, points)[0], project(k, points)[0] - [left, top], atol=1e-6)


# ---------------------------------------------------------------- numpy and torch


def _sample_calls():
    rng = np.random.default_rng(1)
    k = np.array([[800.0, 0, 320], [0, 790, 240], [0, 0, 1]]) + np.zeros((2, 1, 1))
    transform = transform_from(rng.normal(size=(2, 3)), rng.normal(size=(2, 4)))
    points = rng.normal(size=(2, 5, 3)) + [0, 0, 5]
    return [
        (matrix_from_quaternion, (rng.normal(size=(2, 4)),)),
        (quaternion_from_matrix, (transform[:, :3, :3],)),
        (transform_from, (rng.normal(size=(2, 3)), rng.normal(size=(2, 4)))),
        (translation_rotation_from, (transform,)),
        (matrix_from_yaw, (rng.normal(size=(2,)),)),
        (yaw_from_matrix, (transform[:, :3, :3],)),
        (compose, (transform, transform[::-1])),
        (invert, (transform,)),
        (transform_points, (transform, points)),
        (project, (k, points)),
        (unproject, (k, rng.uniform(0, 600, size=(2, 5, 2)), rng.uniform(1, 9, size=(2, 5)))),
        (camera_rays, (k, 6, 4)),
        (plucker_rays, (k, transform, 6, 4)),
        (fundamental_matrix, (k, k[::-1], transform)),
        (resize_intrinsics, (k, 0.28, 256 / 900)),
        (crop_intrinsics, (k, 10.0, 20.0)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("function, args", _sample_calls(), ids=lambda v: getattr(v, "__name__", ""))
def test_numpy_and_torch_inputs_give_equal_results(function, args, dtype):
    numpy_args = [a.astype(dtype) if isinstance(a, np.ndarray) else a for a in args]
    torch_args = [torch.from_numpy(a.copy()) if isinstance(a, np.ndarray) else a for a in numpy_args]
    from_numpy, from_torch = function(*numpy_args), function(*torch_args)
    if not isinstance(from_numpy, tuple):
        from_numpy, from_torch = (from_numpy,), (from_torch,)
    for numpy_out, torch_out in zip(from_numpy, from_torch, strict=True):
        assert isinstance(numpy_out, np.ndarray) and numpy_out.dtype == dtype
        assert isinstance(torch_out, torch.Tensor) and torch_out.dtype == torch.from_numpy(numpy_out).dtype
        np.testing.assert_allclose(numpy_out, torch_out.numpy(), rtol=1e-6, atol=1e-6)


def test_half_precision_tensors_come_back_in_half_precision():
    k = torch.tensor([[100.0, 0, 8], [0, 100, 4], [0, 0, 1]], dtype=torch.bfloat16)
    rays = camera_rays(k, 16, 8)
    assert rays.dtype == torch.bfloat16 and rays.shape == (8, 16, 3)


# ---------------------------------------------------------------- rigs

NUSCENES_YAWS = {
    "CAM_FRONT_LEFT": 55, "CAM_FRONT": 0, "CAM_FRONT_RIGHT": -55,
    "CAM_BACK_LEFT": 110, "CAM_BACK": 180, "CAM_BACK_RIGHT": -110,
}


def test_nuscenes_rig_has_six_cameras_looking_around_the_car():
    rig = load_rig("nuscenes")
    assert rig.names == tuple(NUSCENES_YAWS) and (rig.width, rig.height) == (1600, 900)
    assert rig.intrinsics.shape == (6, 3, 3) and rig.ego_from_cam.shape == (6, 4, 4)
    for camera in rig.cameras:
        optical_axis = camera.ego_from_cam[:3, 2]  # camera z in the ego frame
        yaw = math.degrees(math.atan2(optical_axis[1], optical_axis[0]))
        assert abs((yaw - NUSCENES_YAWS[camera.name] + 180) % 360 - 180) < 3, camera.name
        assert abs(optical_axis[2]) < 0.05, camera.name  # looks at the horizon
        assert camera.ego_from_cam[:3, 1] @ [0, 0, 1] < -0.99, camera.name  # image y points down
        assert 1.4 < camera.ego_from_cam[2, 3] < 1.7, camera.name  # mounted on the roof


def test_nuscenes_neighbours_form_a_ring_and_front3_a_chain():
    ring = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT"]
    neighbours = load_rig("nuscenes").neighbours
    for i, name in enumerate(ring):
        assert set(neighbours[name]) == {ring[i - 1], ring[(i + 1) % len(ring)]}
    front3 = load_rig(VIEWS / "front3.yaml")
    assert front3.names == ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT")
    assert front3.neighbours == {
        "CAM_FRONT_LEFT": ("CAM_FRONT",),
        "CAM_FRONT": ("CAM_FRONT_LEFT", "CAM_FRONT_RIGHT"),
        "CAM_FRONT_RIGHT": ("CAM_FRONT",),
    }
    for camera in front3.cameras:  # the same calibration as the full rig
        np.testing.assert_array_equal(camera.intrinsics, nuscenes_rig().camera(camera.name).intrinsics)
        np.testing.assert_array_equal(camera.ego_from_cam, nuscenes_rig().camera(camera.name).ego_from_cam)


def test_resized_rig_projects_points_to_scaled_pixel_centres():
    full, small = load_rig("nuscenes"), load_rig("nuscenes", size=(448, 256))
    assert (small.width, small.height) == (448, 256) and small.names == full.names
    points = np.random.default_rng(2).uniform([-5, -3, 2], [5, 3, 60], size=(20, 3))
    for big, little in zip(full.cameras, small.cameras):
        np.testing.assert_array_equal(big.ego_from_cam, little.ego_from_cam)
        pixels, _ = project(big.intrinsics, points)
        expected = (pixels + 0.5) * [448 / 1600, 256 / 900] - 0.5
        np.testing.assert_allclose(project(little.intrinsics, points)[0], expected, atol=1e-9)


def test_rig_arrays_cannot_be_edited_in_place():
    camera = load_rig("front3").cameras[0]
    with pytest.raises(ValueError):
        camera.intrinsics[0, 0] = 1.0


def test_unknown_camera_name_raises_config_error():
    with pytest.raises(ConfigError, match="CAM_TOP"):
        load_rig("front3").camera("CAM_TOP")


def test_load_rig_reads_named_rigs_from_drivesim_views(tmp_path, monkeypatch):
    shutil.copy(VIEWS / "front3.yaml", tmp_path / "mine.yaml")
    monkeypatch.setenv("DRIVESIM_VIEWS", str(tmp_path))
    assert load_rig("mine").names == ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT")
    with pytest.raises(ConfigError, match="mine"):  # the message lists the rigs there are
        load_rig("nuscenes")


def _valid_document(name: str = "nuscenes") -> dict:
    return yaml.safe_load((VIEWS / f"{name}.yaml").read_text())


def _edited(edit) -> dict:
    document = _valid_document()
    edit(document)
    return document


BAD_DOCUMENTS = {
    "cameras[2].intrinsics.fx": _edited(lambda d: d["cameras"][2]["intrinsics"].update(fx=-3)),
    "image_size.width": _edited(lambda d: d["image_size"].update(width=0)),
    "cameras[0].rotation": _edited(lambda d: d["cameras"][0].update(rotation=[0, 0, 0, 0])),
    "cameras[1].translation": _edited(lambda d: d["cameras"][1].update(translation=[1, 2])),
    "cameras[3].name": _edited(lambda d: d["cameras"][3].update(name="CAM_FRONT")),
    "cameras[4].neighbours[0]": _edited(lambda d: d["cameras"][4].update(neighbours=["CAM_TOP"])),
    "cameras[5]": _edited(lambda d: d["cameras"][5].pop("neighbours")),
    "cameras[5].intrinsics": _edited(lambda d: d["cameras"][5]["intrinsics"].update(k1=0.1)),
    "cameras": _edited(lambda d: d.update(cameras=[])),
    "name": _edited(lambda d: d.update(name=None)),
}


@pytest.mark.parametrize("field", BAD_DOCUMENTS)
def test_bad_rig_field_raises_config_error_naming_file_and_field(field, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(BAD_DOCUMENTS[field]))
    with pytest.raises(ConfigError) as caught:
        load_rig(path)
    assert str(path) in str(caught.value) and f" {field} " in str(caught.value)


def _node_paths(node, path=()):
    yield path
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _node_paths(child, (*path, key))


junk = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([10**400, -(10**400)]), st.floats(), st.text(max_size=8),
    st.lists(st.integers(-5, 5), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_fuzzed_rig_files_raise_only_config_error_naming_the_file(tmp_path, data):
    document = _valid_document("front3")  # the smaller rig: YAML parsing is most of the time here
    paths = list(_node_paths(document))[1:]
    *parents, key = data.draw(st.sampled_from(paths))
    parent = document
    for step in parents:
        parent = parent[step]
    action = data.draw(st.sampled_from(["delete", "replace", "add"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = data.draw(junk)
    elif isinstance(parent, dict):
        parent[data.draw(st.text(min_size=1, max_size=5))] = data.draw(junk)
    path = tmp_path / "fuzzed.yaml"
    path.write_text(yaml.safe_dump(document))
    try:
        load_rig(path)
    except ConfigError as error:
        assert str(path) in str(error)
    else:  # a required field or a referenced camera cannot go missing unnoticed
        assert action != "delete" or isinstance(parent, list)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=60))
def test_arbitrary_text_is_rejected_with_config_error(tmp_path, text):
    path = tmp_path / "text.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="text.yaml"):
        load_rig(path)


@pytest.mark.parametrize(
    "content",
    [b"name: [unclosed", b"name: !!int x", b"made: 2001-13-45", b"\xff\xfe not utf-8", b"[" * 5000 + b"]" * 5000,
     b"name: &a [*a]", b"- just\n- a list", b"cameras: " + b"1" * 5000],
    ids=["syntax", "bad-int-tag", "bad-date", "not-utf8", "deep-nesting", "recursive", "list", "huge-int"],
)
def test_unreadable_rig_files_raise_config_error(tmp_path, content):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="broken.yaml"):
        load_rig(path)


def test_missing_rig_file_and_bad_size_raise_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such rig file"):
        load_rig(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="size"):
        load_rig("front3", size=(448, 0))
