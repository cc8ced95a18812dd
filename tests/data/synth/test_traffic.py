"""Traffic on a town: plausible motion for every kind of agent, the ego manoeuvre it was asked
for, no collisions, and the same seed giving the same traffic."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.data.synth.town import CURB_HEIGHT, LANE_WIDTH, generate_town
from drivesim.data.synth.traffic import (
    CATEGORIES,
    EGO_SIZE,
    VEHICLES,
    Agent,
    Path,
    Traffic,
    ego_box_center_offset,
    simulate,
)

SECONDS, FPS = 10.0, 5.0  # long enough for the ego to reach and clear its intersection
MANOEUVRES = ("straight", "left", "right", "lane_change")
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def town():
    return generate_town(0)


@pytest.fixture(scope="module")
def scenes(town) -> dict[tuple[str, int], Traffic]:
    return {(manoeuvre, seed): simulate(town, np.random.default_rng(seed), SECONDS, FPS, manoeuvre)
            for manoeuvre in MANOEUVRES for seed in SEEDS}


def _moving_vehicles(traffic: Traffic) -> list[Agent]:
    return [a for a in traffic.agents if a.category in VEHICLES and not a.parked]


def _pedestrians(traffic: Traffic) -> list[Agent]:
    return [a for a in traffic.agents if a.category.startswith("human.pedestrian")]


def _ego_boxes(traffic: Traffic) -> np.ndarray:
    """(T, 5) x, y, yaw, length, width of the ego's box (its origin is the rear axle)."""
    x, y, yaw = traffic.ego_poses.T
    offset = ego_box_center_offset()
    length, width = EGO_SIZE[1], EGO_SIZE[0]
    return np.stack([x + offset * np.cos(yaw), y + offset * np.sin(yaw), yaw,
                     np.full_like(x, length), np.full_like(x, width)], axis=1)


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 5) x, y, yaw, length, width -> (N, 4, 2) corners."""
    x, y, yaw, length, width = boxes.T
    forward = np.stack([np.cos(yaw), np.sin(yaw)], axis=1) * (length / 2)[:, None]
    left = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1) * (width / 2)[:, None]
    centre = np.stack([x, y], axis=1)
    return np.stack([centre + forward + left, centre - forward + left, centre - forward - left,
                     centre + forward - left], axis=1)


def _separation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis test of box pairs (N, 5), (N, 5): the largest gap along any box edge normal;
    negative when the boxes overlap (then minus the shallowest penetration)."""
    ca, cb = _corners(a), _corners(b)
    best = np.full(len(a), -np.inf)
    for yaw in (a[:, 2], a[:, 2] + np.pi / 2, b[:, 2], b[:, 2] + np.pi / 2):
        axis = np.stack([np.cos(yaw), np.sin(yaw)], axis=1)[:, None, :]
        pa, pb = np.sum(ca * axis, axis=-1), np.sum(cb * axis, axis=-1)
        gap = np.maximum(pa.min(axis=1), pb.min(axis=1)) - np.minimum(pa.max(axis=1), pb.max(axis=1))
        best = np.maximum(best, gap)
    return best


def _agent_boxes(agents: list[Agent], frame: int) -> np.ndarray:
    return np.array([(a.poses[frame, 0], a.poses[frame, 1], a.poses[frame, 3], a.size[1], a.size[0])
                     for a in agents]).reshape(-1, 5)


def _closest_approach(traffic: Traffic, pairs_of) -> tuple[float, tuple]:
    """The smallest box separation over all frames among the pairs `pairs_of(frame)` names."""
    closest, where = np.inf, ()
    for frame in range(traffic.num_frames):
        a, b, names = pairs_of(frame)
        if not len(a):
            continue
        near = np.hypot(*(a[:, :2] - b[:, :2]).T) < (np.hypot(a[:, 3], a[:, 4]) + np.hypot(b[:, 3], b[:, 4])) / 2
        if not near.any():
            continue
        gaps = _separation(a[near], b[near])
        k = int(np.argmin(gaps))
        if gaps[k] < closest:
            closest, where = float(gaps[k]), (frame, [n for n, m in zip(names, near) if m][k])
    return closest, where


def test_the_ego_keeps_clear_of_every_other_agent(scenes):
    """Vehicles, parked cars, cones and pedestrians: never closer than 30 cm to the ego's box."""
    for key, traffic in scenes.items():
        ego = _ego_boxes(traffic)

        def pairs(frame):
            others = [a for a in traffic.agents if a.present[frame]]
            return (np.repeat(ego[frame:frame + 1], len(others), axis=0), _agent_boxes(others, frame),
                    [(a.id, a.category) for a in others])

        closest, where = _closest_approach(traffic, pairs)
        assert closest > 0.3, f"{key}: the ego comes within {closest:.2f} m of agent {where}"


def test_no_two_vehicles_ever_overlap(scenes):
    """Moving vehicles, parked ones and the ego (id 0): no two boxes ever intersect."""
    for key, traffic in scenes.items():
        ego = _ego_boxes(traffic)

        def pairs(frame):
            vehicles = [a for a in traffic.agents if a.category in VEHICLES and a.present[frame]]
            boxes = np.concatenate([ego[frame:frame + 1], _agent_boxes(vehicles, frame)])
            ids = [0] + [a.id for a in vehicles]
            parked = [False] + [a.parked for a in vehicles]
            i, j = np.triu_indices(len(ids), k=1)
            keep = ~(np.array(parked)[i] & np.array(parked)[j])
            i, j = i[keep], j[keep]
            return boxes[i], boxes[j], [(ids[p], ids[q]) for p, q in zip(i, j)]

        closest, where = _closest_approach(traffic, pairs)
        assert closest > 0.0, f"{key}: vehicles overlap by {-closest:.2f} m at (frame, ids) {where}"


def test_moving_vehicles_and_the_ego_drive_on_the_road(scenes, town):
    for key, traffic in scenes.items():
        assert town.drivable(traffic.ego_poses[:, :2]).all(), key
        assert town.drivable(_ego_boxes(traffic)[:, :2]).all(), key
        for agent in _moving_vehicles(traffic):
            assert town.drivable(agent.poses[agent.present, :2]).all(), (key, agent.id, agent.category)
            assert (agent.poses[agent.present, 2] == 0).all()


def test_vehicles_move_at_plausible_speeds_with_bounded_acceleration(scenes):
    dt = 1 / FPS
    for key, traffic in scenes.items():
        tracks = [(a.speeds[a.present], a.poses[a.present, :2]) for a in _moving_vehicles(traffic)]
        tracks.append((traffic.ego_speeds, traffic.ego_poses[:, :2]))
        for speeds, xy in tracks:
            assert (speeds >= 0).all() and (speeds <= 20.0).all(), key
            acceleration = np.diff(speeds) / dt
            assert acceleration.min() >= -7.0 - 1e-6 and acceleration.max() <= 2.0 + 1e-6, key  # braking, throttle
            # Each step moves the new speed times dt along the path; its chord is no longer, and
            # no shorter than a cut across a right-angled corner of the path allows.
            step = np.linalg.norm(np.diff(xy, axis=0), axis=1)
            assert (step <= speeds[1:] * dt + 1e-6).all(), key
            assert (step >= np.sqrt(0.5) * speeds[1:] * dt - 1e-6).all(), key
        moving = np.concatenate([s for s, _ in tracks])
        assert np.median(moving) > 3.0, f"{key}: traffic hardly moves"


def test_vehicles_head_where_they_drive_and_never_spin(scenes):
    """Heading follows the direction of travel, and turns the short way round: a cyclist's tight
    right turn at 5 fps turns about 50 degrees a frame, never a wrong-way spin."""
    for key, traffic in scenes.items():
        for agent in _moving_vehicles(traffic):
            xy, yaw = agent.poses[agent.present, :2], agent.poses[agent.present, 3]
            step = np.diff(xy, axis=0)
            moving = np.linalg.norm(step, axis=1) > 0.3
            course = np.arctan2(step[moving, 1], step[moving, 0])
            mismatch = np.angle(np.exp(1j * (course - yaw[:-1][moving])))
            assert np.abs(mismatch).max(initial=0.0) < np.radians(45), (key, agent.id, agent.category)
            turn_per_frame = np.angle(np.exp(1j * np.diff(yaw)))
            assert np.abs(turn_per_frame).max(initial=0.0) < np.radians(75), (key, agent.id, agent.category)


def test_pedestrians_walk_at_walking_pace_on_sidewalks_or_crosswalks(scenes, town):
    dt = 1 / FPS
    for key, traffic in scenes.items():
        walkers = _pedestrians(traffic)
        assert walkers, key
        for agent in walkers:
            frames = np.nonzero(agent.present)[0]
            xy = agent.poses[frames, :2]
            assert (agent.speeds <= 2.0).all()
            if len(frames) > 1:
                pace = np.linalg.norm(np.diff(xy, axis=0), axis=1) / (np.diff(frames) * dt)
                assert pace.max() <= 2.0, (key, agent.id)
            # On the road (a crosswalk) they stand at road level, elsewhere on the raised sidewalk.
            on_road = town.drivable(xy)
            np.testing.assert_array_equal(agent.poses[frames, 2], np.where(on_road, 0.0, CURB_HEIGHT))


def test_parked_agents_never_move(scenes, town):
    for key, traffic in scenes.items():
        parked = [a for a in traffic.agents if a.parked]
        assert parked, key
        for agent in parked:
            assert agent.present.all() and (agent.poses == agent.poses[0]).all() and (agent.speeds == 0).all()
            assert agent.category not in VEHICLES or town.drivable(agent.poses[0, :2])  # in a parking strip


def test_every_agent_is_present_for_one_unbroken_stretch(scenes):
    for key, traffic in scenes.items():
        for agent in traffic.agents:
            appearances = np.count_nonzero(np.diff(agent.present.astype(int)) == 1) + int(agent.present[0])
            assert appearances <= 1, (key, agent.id, agent.category)
        assert len({a.id for a in traffic.agents}) == len(traffic.agents) and min(a.id for a in traffic.agents) >= 1


def test_agent_sizes_stay_within_their_category_jitter(scenes):
    for traffic in scenes.values():
        for agent in traffic.agents:
            spec = CATEGORIES[agent.category]
            np.testing.assert_allclose(agent.size, spec.size, rtol=spec.jitter + 1e-3)


@pytest.mark.parametrize("manoeuvre, sign", [("left", +1), ("right", -1)])
def test_a_turn_manoeuvre_turns_the_ego_that_way(scenes, manoeuvre, sign):
    for seed in SEEDS:
        traffic = scenes[(manoeuvre, seed)]
        yaw = np.unwrap(traffic.ego_poses[:, 2])
        assert sign * np.degrees(yaw[-1] - yaw[0]) > 60, (manoeuvre, seed)
        assert traffic.ego_turns[0] == manoeuvre
        # The turn happens in the scene, not before it: the ego starts heading along its first lane.
        assert sign * np.degrees(yaw[len(yaw) // 5] - yaw[0]) < 60


def test_driving_straight_keeps_the_heading_and_a_lane_change_shifts_one_lane_sideways(scenes):
    for seed in SEEDS:
        straight = scenes[("straight", seed)]
        yaw = np.unwrap(straight.ego_poses[:, 2])
        assert np.abs(np.degrees(yaw - yaw[0])).max() < 5 and set(straight.ego_turns) <= {"straight"}
        change = scenes[("lane_change", seed)]
        yaw = np.unwrap(change.ego_poses[:, 2])
        assert np.abs(np.degrees(yaw - yaw[0])).max() < 20 and change.ego_turns[0] == "lane_change"
        heading = np.array([np.cos(yaw[0]), np.sin(yaw[0])])
        shift = change.ego_poses[-1, :2] - change.ego_poses[0, :2]
        sideways = heading[0] * shift[1] - heading[1] * shift[0]
        assert abs(sideways) == pytest.approx(LANE_WIDTH, abs=0.3)


def test_the_same_seed_gives_the_same_traffic_and_another_seed_other_traffic(town):
    a, b, c = (simulate(town, np.random.default_rng(seed), 3.0, FPS, "lane_change") for seed in (4, 4, 5))
    np.testing.assert_array_equal(a.ego_poses, b.ego_poses)
    assert a.ego_turns == b.ego_turns and len(a.agents) == len(b.agents)
    for x, y in zip(a.agents, b.agents):
        assert (x.category, x.size, x.style, x.parked) == (y.category, y.size, y.style, y.parked)
        np.testing.assert_array_equal(x.poses, y.poses)
        np.testing.assert_array_equal(x.present, y.present)
    assert not np.array_equal(a.ego_poses, c.ego_poses)
    assert a.num_frames == round(3.0 * FPS) + 1


def test_lower_density_thins_out_every_kind_of_agent(town):
    sparse, dense = (simulate(town, np.random.default_rng(0), 1.0, FPS, "straight", density=d) for d in (0.2, 1.0))
    kinds = {"moving vehicles": lambda a: a.category in VEHICLES and not a.parked,
             "parked vehicles": lambda a: a.category in VEHICLES and a.parked,
             "cones and barriers": lambda a: a.category.startswith("movable_object"),
             "pedestrians": lambda a: a.category.startswith("human")}
    for kind, is_kind in kinds.items():
        assert sum(map(is_kind, sparse.agents)) < sum(map(is_kind, dense.agents)), kind
    assert len(sparse.agents) < 0.5 * len(dense.agents)


def _arc(radius: float, degrees: float, step: float = 0.2) -> np.ndarray:
    """30 m straight along +x, then a left arc of `radius` through `degrees`, a point every <= `step` m."""
    lead_in = np.stack([np.linspace(-30.0, 0.0, 151), np.zeros(151)], axis=1)
    angles = np.radians(np.linspace(0.0, degrees, max(8, int(np.radians(degrees) * radius / step) + 1)))
    turn = np.stack([radius * np.sin(angles), radius * (1 - np.cos(angles))], axis=1)
    return np.concatenate([lead_in, turn[1:]])


@settings(max_examples=8, deadline=None)
@given(radius=st.floats(3.0, 60.0), degrees=st.floats(30.0, 180.0))
def test_path_slows_for_curves_and_brakes_in_time_for_them(radius, degrees):
    lateral, brake = 2.0, 2.5
    path = Path(_arc(radius, degrees), max_lateral_accel=lateral, brake=brake)
    on_arc = (path.s > 30.0 + 1.0) & (path.s < path.length - 1.0)
    # On the curve the limit keeps lateral acceleration v^2 / r at the allowed value (up to sampling).
    assert (path.speed_limit[on_arc] <= np.sqrt(lateral * radius) * 1.1).all()
    # Before it, the limit falls no faster than a car braking at `brake` can slow down.
    allowed = np.sqrt(path.speed_limit[1:] ** 2 + 2 * brake * np.diff(path.s))
    assert (path.speed_limit[:-1] <= allowed + 1e-9).all()
    assert path.limit_at(0.0) > path.limit_at(35.0)
    # Positions and headings: on the lead-in and at the end of the arc.
    xy, heading = path.at(np.array([10.0, path.length]))
    np.testing.assert_allclose(xy[0], [-20.0, 0.0], atol=1e-9)
    assert np.degrees(heading[1]) == pytest.approx(degrees, abs=2.5)  # the last chord's heading
    assert np.allclose(path.at(path.length + 5.0)[0], path.at(path.length)[0])  # clamps past the end
