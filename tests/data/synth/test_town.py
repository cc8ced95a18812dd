"""The procedural town: a lane graph that connects, turns the way it says, and stays on the road;
buildings, trees and lamp posts off it; the same seed, the same town."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data.synth.town import LANE_WIDTH, Town, generate_town

FEW = settings(max_examples=4, deadline=None)
seeds = st.integers(0, 2**31 - 1)
EXPECTED_TURN_DEGREES = {"straight": 0.0, "left": 90.0, "right": -90.0}


@pytest.fixture(scope="module")
def town() -> Town:
    return generate_town(7)


def _direction(points: np.ndarray, at_end: bool) -> np.ndarray:
    step = points[-1] - points[-2] if at_end else points[1] - points[0]
    return step / np.linalg.norm(step)


def _signed_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """Counter-clockwise angle from direction a to direction b, in (-180, 180]."""
    return float(np.degrees(np.arctan2(a[0] * b[1] - a[1] * b[0], a @ b)))


def _predecessors(town: Town) -> dict[int, list[int]]:
    before: dict[int, list[int]] = {lane.id: [] for lane in town.lanes}
    for lane in town.lanes:
        for successor in lane.successors:
            before[successor].append(lane.id)
    return before


def _check_lane_graph_connects(town: Town) -> None:
    for lane in town.lanes:
        for successor in lane.successors:
            gap = np.linalg.norm(town.lanes[successor].points[0] - lane.points[-1])
            assert gap < 0.5, f"lane {lane.id} ends {gap:.2f} m from the start of its successor {successor}"


def _check_connectors_turn_as_labelled(town: Town) -> None:
    """A connector's heading change, from the road lane that enters it to the road lane it feeds
    (both straight), is 0, +90 or -90 degrees as its label says; and it never swerves against
    its turn (a left turn between roads of unequal width flattens by about 1 degree at its end)."""
    before = _predecessors(town)
    for lane in town.lanes:
        if not lane.turn:
            continue
        (entry,), (exit_,) = before[lane.id], lane.successors
        assert town.lanes[entry].turn == "" and town.lanes[exit_].turn == ""
        heading_in = _direction(town.lanes[entry].points, at_end=True)
        heading_out = _direction(town.lanes[exit_].points, at_end=False)
        turned = _signed_degrees(heading_in, heading_out)
        assert turned == pytest.approx(EXPECTED_TURN_DEGREES[lane.turn], abs=1.0), (lane.id, lane.turn)
        steps = np.diff(lane.points, axis=0)
        bends = [_signed_degrees(a / np.linalg.norm(a), b / np.linalg.norm(b)) for a, b in zip(steps[:-1], steps[1:])]
        if lane.turn == "left":
            assert min(bends) > -2.0, f"left connector {lane.id} swerves right"
        elif lane.turn == "right":
            assert max(bends) < 2.0, f"right connector {lane.id} swerves left"
        else:
            assert np.abs(bends).max(initial=0.0) < 1e-6


def _check_lanes_on_drivable_ground(town: Town) -> None:
    for lane in town.lanes:
        # Centre line and both lane edges: the whole lane is road, not just its middle.
        tangent = np.gradient(lane.points, axis=0)
        tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
        left = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
        for offset in (-0.49 * lane.width, 0.0, 0.49 * lane.width):
            points = lane.points + offset * left
            assert town.drivable(points).all(), f"lane {lane.id} ({lane.turn or 'road'}) leaves the road"


def _check_scenery_off_the_road(town: Town) -> None:
    for building in town.buildings:
        centre = building.footprint.mean(axis=0)
        # Corners and edge midpoints, pulled a hair inside the footprint.
        outline = np.concatenate([building.footprint, (building.footprint + np.roll(building.footprint, -1, 0)) / 2])
        assert not town.drivable(centre + 0.999 * (outline - centre)).any(), "a building stands on the road"
    assert not town.drivable(np.array([(x, y) for x, y, _ in town.trees])).any(), "a tree stands on the road"
    assert not town.drivable(np.array([(x, y) for x, y, _ in town.poles])).any(), "a lamp post stands on the road"


def test_every_lane_flows_into_its_successors(town):
    _check_lane_graph_connects(town)
    assert sum(len(lane.successors) for lane in town.lanes) > len(town.lanes) / 2


def test_connectors_turn_the_way_their_label_says(town):
    _check_connectors_turn_as_labelled(town)
    assert {lane.turn for lane in town.lanes} == {"", "straight", "left", "right"}


def test_every_road_lane_can_turn_or_go_on_at_an_inner_intersection(town):
    """Road lanes that end inside the town feed a connector; border lanes may end at the edge."""
    width, height = town.size
    for lane in town.lanes:
        if lane.turn:
            continue
        x, y = lane.points[-1]
        at_edge = min(x, y, width - x, height - y) < 1.0
        assert lane.successors or at_edge, f"lane {lane.id} dead-ends at ({x:.1f}, {y:.1f})"


def test_lanes_lie_on_drivable_ground(town):
    _check_lanes_on_drivable_ground(town)


def test_buildings_trees_and_poles_stand_off_the_road(town):
    _check_scenery_off_the_road(town)


def test_parking_spots_are_on_the_road_beside_the_lanes(town):
    spots = np.array(town.parking_spots)
    assert len(spots) and town.drivable(spots[:, :2]).all()
    centres = np.concatenate([lane.points for lane in town.lanes if lane.turn == ""])
    nearest_lane = np.min(np.linalg.norm(spots[:, None, :2] - centres[None], axis=-1), axis=1)
    # A car parked there (1.85 m wide) clears a car driving in the outer lane.
    assert nearest_lane.min() > 1.85 + 0.2


def test_lane_neighbours_run_alongside_one_lane_width_to_the_side(town):
    checked = 0
    for lane in town.lanes:
        for neighbour, side in ((lane.left, +1), (lane.right, -1)):
            if neighbour is None:
                continue
            other = town.lanes[neighbour].points
            forward = _direction(lane.points, at_end=False)
            assert _direction(other, at_end=False) @ forward == pytest.approx(1.0)
            offset = other[0] - lane.points[0]
            leftward = np.array([-forward[1], forward[0]])
            assert offset @ leftward == pytest.approx(side * LANE_WIDTH)
            assert town.lanes[neighbour].right == lane.id if side > 0 else town.lanes[neighbour].left == lane.id
            checked += 1
    assert checked > 0


def test_drivable_is_true_on_roads_and_false_on_blocks(town):
    on_road = np.array([[town.xs[1], 5.0], [town.xs[0], town.ys[2]], [30.0, town.ys[3]]])
    assert town.drivable(on_road).all()
    block_centres = np.array([block.inner.mean(axis=0) for block in town.blocks])
    assert not town.drivable(block_centres).any()
    outside = np.array([[-1.0, town.ys[0]], [town.size[0] + 1.0, town.ys[0]]])
    assert not town.drivable(outside).any()
    assert town.drivable(on_road.reshape(3, 1, 2)).shape == (3, 1)


def test_grid_sets_the_number_of_roads():
    town = generate_town(3, grid=(3, 5))
    assert (len(town.xs), len(town.ys)) == (3, 5)
    assert np.all(np.diff(town.xs) > 2 * LANE_WIDTH) and np.all(np.diff(town.ys) > 2 * LANE_WIDTH)


def test_same_seed_gives_the_same_town_and_another_seed_another():
    a, b, c = generate_town(11), generate_town(11), generate_town(12)
    assert a.size == b.size and len(a.lanes) == len(b.lanes) and len(a.buildings) == len(b.buildings)
    assert all(np.array_equal(x.points, y.points) and x.successors == y.successors for x, y in zip(a.lanes, b.lanes))
    assert all(np.array_equal(x.footprint, y.footprint) and x.height == y.height
               for x, y in zip(a.buildings, b.buildings))
    assert a.trees == b.trees and a.parking_spots == b.parking_spots
    assert a.size != c.size and not np.array_equal(a.xs, c.xs)


@FEW
@given(seed=seeds)
def test_any_town_is_connected_turns_right_and_keeps_scenery_off_the_road(seed):
    town = generate_town(seed)
    _check_lane_graph_connects(town)
    _check_connectors_turn_as_labelled(town)
    _check_lanes_on_drivable_ground(town)
    _check_scenery_off_the_road(town)
