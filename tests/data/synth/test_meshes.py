"""Meshes of agents and of the town: every agent fills its annotated box exactly, poses move it
rigidly, and the town mesh covers the map with valid triangles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data.synth.meshes import Material, Mesh, agent_mesh, agents_mesh, lamp_positions, merge, town_mesh
from drivesim.data.synth.town import CURB_HEIGHT, generate_town
from drivesim.data.synth.traffic import CATEGORIES, Agent

FEW = settings(max_examples=12, deadline=None)


def _agent(category: str, size, style: int = 0, agent_id: int = 1, frames: int = 1) -> Agent:
    return Agent(agent_id, category, tuple(float(v) for v in size), np.zeros((frames, 4)), np.zeros(frames),
                 np.ones(frames, bool), parked=False, style=style)


def _box_bounds(size) -> tuple[np.ndarray, np.ndarray]:
    """Box frame: x forward (length), y left (width), z up from the bottom centre."""
    w, l, h = size
    return np.array([-l / 2, -w / 2, 0.0]), np.array([l / 2, w / 2, h])


def _check_valid(mesh: Mesh) -> None:
    assert mesh.vertices.dtype == np.float32 and mesh.triangles.dtype == np.int32
    assert len(mesh.material) == len(mesh.albedo) == len(mesh.instance) == len(mesh.triangles)
    assert mesh.triangles.min() >= 0 and mesh.triangles.max() < len(mesh.vertices)
    assert np.isfinite(mesh.vertices).all()
    edges = np.cross(*(mesh.vertices[mesh.triangles[:, k]] - mesh.vertices[mesh.triangles[:, 0]] for k in (1, 2)))
    assert (np.linalg.norm(edges, axis=1) > 0).all(), "degenerate (zero-area) triangles"


@st.composite
def agents(draw):
    """Any category at its size scaled by up to +-40% per axis, any style."""
    category = draw(st.sampled_from(sorted(CATEGORIES)))
    mean = CATEGORIES[category].size
    size = tuple(round(v * draw(st.floats(0.6, 1.4)), 3) for v in mean)
    return _agent(category, size, style=draw(st.integers(0, 1 << 16)))


@pytest.mark.parametrize("category", sorted(CATEGORIES))
@pytest.mark.parametrize("style", [0, 1, 2])
def test_every_category_fills_its_box_exactly_at_its_mean_size(category, style):
    size = CATEGORIES[category].size
    mesh = agent_mesh(_agent(category, size, style))
    _check_valid(mesh)
    low, high = _box_bounds(size)
    np.testing.assert_allclose(mesh.vertices.min(axis=0), low, atol=1e-5)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), high, atol=1e-5)


@FEW
@given(agent=agents())
def test_the_annotated_box_is_the_tight_box_of_the_agent_mesh(agent):
    mesh = agent_mesh(agent)
    _check_valid(mesh)
    low, high = _box_bounds(agent.size)
    np.testing.assert_allclose(mesh.vertices.min(axis=0), low, atol=1e-5)
    np.testing.assert_allclose(mesh.vertices.max(axis=0), high, atol=1e-5)


def test_agent_meshes_carry_materials_a_renderer_knows_and_a_style_changes_only_looks():
    a = agent_mesh(_agent("vehicle.car", CATEGORIES["vehicle.car"].size, style=4))
    b = agent_mesh(_agent("vehicle.car", CATEGORIES["vehicle.car"].size, style=4))
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.albedo, b.albedo)
    assert set(np.unique(a.material)) <= {int(m) for m in Material}
    assert {Material.BODY, Material.CABIN, Material.TYRE, Material.HEADLIGHT, Material.TAILLIGHT} <= set(a.material)
    assert (a.albedo >= 0).all() and (a.albedo <= 1).all()
    painted = [agent_mesh(_agent("vehicle.car", CATEGORIES["vehicle.car"].size, style=s)) for s in range(12)]
    assert len({tuple(m.albedo[m.material == Material.BODY][0]) for m in painted}) > 3


@FEW
@given(x=st.floats(-500, 500), y=st.floats(-500, 500), z=st.floats(0, 1), yaw=st.floats(-np.pi, np.pi),
       instance=st.integers(1, 10_000))
def test_transformed_moves_the_box_rigidly_and_labels_every_triangle(x, y, z, yaw, instance):
    size = (2.0, 5.0, 1.6)
    local = agent_mesh(_agent("vehicle.car", size))
    posed = local.transformed(x, y, z, yaw, instance)
    assert (posed.instance == instance).all() and posed.instance.dtype == np.int32
    assert np.array_equal(posed.triangles, local.triangles) and np.array_equal(posed.material, local.material)
    # Back into the box frame: the same vertices (up to float32 rounding of world coordinates).
    c, s = np.cos(yaw), np.sin(yaw)
    offset = posed.vertices.astype(np.float64) - (x, y, z)
    back = np.stack([c * offset[:, 0] + s * offset[:, 1], -s * offset[:, 0] + c * offset[:, 1], offset[:, 2]], 1)
    np.testing.assert_allclose(back, local.vertices, atol=2e-4)
    # The box's forward axis points along yaw: the headlights lead.
    front = posed.vertices[posed.triangles[posed.material == Material.HEADLIGHT]].reshape(-1, 3).mean(axis=0)
    rear = posed.vertices[posed.triangles[posed.material == Material.TAILLIGHT]].reshape(-1, 3).mean(axis=0)
    heading = (front - rear)[:2] / np.linalg.norm((front - rear)[:2])
    np.testing.assert_allclose(heading, [c, s], atol=1e-3)


def test_agents_mesh_poses_only_agents_present_at_the_frame_and_reuses_their_meshes():
    car = _agent("vehicle.car", (1.8, 4.4, 1.5), agent_id=5, frames=3)
    walker = _agent("human.pedestrian.adult", (0.6, 0.7, 1.7), agent_id=9, frames=3)
    car.poses[:] = [(10, 0, 0, 0), (12, 0, 0, 0.5), (14, 1, 0, 1.0)]
    walker.poses[:] = (3, 4, CURB_HEIGHT, np.pi)
    walker.present[:] = [True, False, True]
    cache: dict[int, Mesh] = {}
    both = agents_mesh([car, walker], 0, cache)
    assert set(np.unique(both.instance)) == {5, 9} and set(cache) == {5, 9}
    cached_car = cache[5]
    only_car = agents_mesh([car, walker], 1, cache)
    assert set(np.unique(only_car.instance)) == {5} and cache[5] is cached_car
    expected = cached_car.transformed(12, 0, 0, 0.5, 5)
    np.testing.assert_array_equal(only_car.vertices, expected.vertices)
    walker_vertices = both.vertices[np.unique(both.triangles[both.instance == 9])]
    assert walker_vertices[:, 2].min() == pytest.approx(CURB_HEIGHT)  # standing on the sidewalk
    assert len(agents_mesh([], 0, {}).triangles) == 0


def test_merge_keeps_each_part_triangles_on_its_own_vertices():
    a = agent_mesh(_agent("movable_object.trafficcone", (0.4, 0.4, 0.75))).transformed(0, 0, 0, 0, 1)
    b = agent_mesh(_agent("movable_object.barrier", (0.5, 2.0, 1.0))).transformed(10, 0, 0, 0, 2)
    merged = merge([a, Mesh.empty(), b])
    _check_valid(merged)
    for part, instance in ((a, 1), (b, 2)):
        mine = merged.triangles[merged.instance == instance]
        np.testing.assert_array_equal(merged.vertices[mine], part.vertices[part.triangles])


@pytest.fixture(scope="module")
def town():
    return generate_town(5)


@pytest.fixture(scope="module")
def static(town) -> Mesh:
    return town_mesh(town)


def test_town_mesh_covers_the_map_with_static_triangles(town, static):
    mesh = static
    _check_valid(mesh)
    assert (mesh.instance == 0).all()
    low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    assert low[0] < 0 and low[1] < 0 and high[0] > town.size[0] and high[1] > town.size[1]
    tallest = max(b.height for b in town.buildings)
    assert high[2] == pytest.approx(CURB_HEIGHT + tallest, abs=1e-3)
    assert {Material.ASPHALT, Material.PAINT, Material.SIDEWALK, Material.CURB, Material.WALL, Material.ROOF,
            Material.METAL, Material.LAMP} <= set(mesh.material)


def test_every_building_stands_on_the_sidewalk_up_to_its_height(town, static):
    walls = static.vertices[np.unique(static.triangles[static.material == Material.WALL])].astype(np.float64)
    corners = np.concatenate([np.column_stack([b.footprint, np.full(4, z)]) for b in town.buildings
                              for z in (CURB_HEIGHT, CURB_HEIGHT + b.height)])
    distance = np.min(np.linalg.norm(corners[:, None, :] - walls[None, :, :], axis=-1), axis=1)
    assert distance.max() < 1e-3


def test_street_lamps_hang_from_the_pole_arms(town):
    lamps = lamp_positions(town)
    assert lamps.shape == (len(town.poles), 3)
    poles = np.array(town.poles)
    np.testing.assert_allclose(np.linalg.norm(lamps[:, :2] - poles[:, :2], axis=1), 2.2, atol=1e-6)
    assert (lamps[:, 2] > 7.0).all()
