"""Ego presets, the waypoint table and new agents: each gives a validated scenario that does what its
name says, or a ScenarioError naming the field."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim import scenario as sc
from drivesim.editor import presets
from drivesim.errors import ScenarioError

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture(scope="module")
def cruise():
    return sc.load(SCENARIOS / "straight_cruise.yaml")


def _in_start_frame(scenario, times):
    """Ego positions in its start frame (x forward, y left)."""
    origin, yaw = scenario.ego.position([0.0])[0, :2], scenario.ego.yaw([0.0])[0]
    offset = scenario.ego.position(times)[:, :2] - origin
    return np.column_stack([offset @ [math.cos(yaw), math.sin(yaw)], offset @ [-math.sin(yaw), math.cos(yaw)]])


@pytest.mark.parametrize("side, sign", [("left", 1), ("right", -1)])
def test_a_lane_change_ends_one_lane_over_heading_the_same_way(cruise, side, sign):
    changed = presets.apply_preset(cruise, f"lane change {side}", start=1.0, span=4.0)
    local = _in_start_frame(changed, [0.0, 0.9, changed.duration])
    assert abs(local[1, 1]) < 1e-6  # still in lane before the manoeuvre starts
    assert local[2, 1] == pytest.approx(sign * presets.LANE_WIDTH, abs=1e-6)
    assert changed.ego.yaw([changed.duration])[0] == pytest.approx(cruise.ego.yaw([0.0])[0], abs=1e-3)


def test_keep_lane_holds_the_speed_it_is_given(cruise):
    kept = presets.apply_preset(cruise, "keep lane", speed=8.0)
    speeds = np.linalg.norm(kept.ego.velocity(np.linspace(0.5, kept.duration - 0.5, 20))[:, :2], axis=1)
    np.testing.assert_allclose(speeds, 8.0, rtol=1e-3)


def test_stop_comes_to_a_halt_and_stays(cruise):
    stopped = presets.apply_preset(cruise, "stop", speed=10.0, start=2.0, span=3.0)
    late = np.linspace(5.2, stopped.duration, 10)
    assert np.linalg.norm(stopped.ego.velocity(late)[:, :2], axis=1).max() < 1e-6
    travelled = _in_start_frame(stopped, [stopped.duration])[0, 0]
    assert travelled == pytest.approx(10.0 * 2.0 + 10.0 * 3.0 / 2, abs=1e-6)  # cruise, then even braking


@pytest.mark.parametrize("side, sign", [("left", 1), ("right", -1)])
def test_a_turn_ends_heading_ninety_degrees_over(cruise, side, sign):
    turned = presets.apply_preset(cruise, f"turn {side}", speed=8.0, start=1.0, radius=15.0)
    heading = turned.ego.yaw([turned.duration])[0] - cruise.ego.yaw([0.0])[0]
    assert math.remainder(heading - sign * math.pi / 2, 2 * math.pi) == pytest.approx(0.0, abs=0.02)


def test_a_preset_that_is_too_fast_is_refused_with_the_reason(cruise):
    with pytest.raises(ScenarioError, match="physically impossible"):
        presets.apply_preset(cruise, "turn left", speed=30.0, radius=5.0)
    with pytest.raises(ScenarioError, match="one of keep lane"):
        presets.apply_preset(cruise, "fly")
    with pytest.raises(ScenarioError, match="speed must be a number >= 0"):
        presets.apply_preset(cruise, "keep lane", speed=float("nan"))


def test_the_waypoint_table_round_trips(cruise):
    rows = presets.waypoint_rows(cruise.ego)
    again = presets.with_ego_waypoints(cruise, rows)
    times = np.linspace(0, cruise.duration, 30)
    np.testing.assert_allclose(again.ego.position(times), cruise.ego.position(times), atol=1e-9)


def test_changing_one_waypoint_moves_the_path_there(cruise):
    rows = presets.waypoint_rows(cruise.ego)
    rows[-1] = {**rows[-1], "y": rows[-1]["y"] + 2.0}
    edited = presets.with_ego_waypoints(cruise, rows)
    assert edited.ego.position([rows[-1]["t"]])[0, 1] == pytest.approx(rows[-1]["y"])


@pytest.mark.parametrize("change, message", [
    (lambda rows: rows[1].update(t=rows[0]["t"]), r"ego\.waypoints\[1\]\.t"),
    (lambda rows: rows[1].update(x=float("nan")), r"ego\.waypoints\[1\]\.x"),
    (lambda rows: rows[0].update(yaw_deg=10.0), r"yaw on every row or on none"),
    (lambda rows: rows[1].update(x=None), r"ego\.waypoints\[1\]"),
])
def test_a_bad_table_names_the_row_and_column(cruise, change, message):
    rows = presets.waypoint_rows(cruise.ego)
    change(rows)
    with pytest.raises(ScenarioError, match=message):
        presets.with_ego_waypoints(cruise, rows)


cells = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                  st.text(max_size=5), st.booleans())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.fixed_dictionaries({"t": cells, "x": cells, "y": cells, "yaw_deg": cells}), max_size=6))
def test_fuzzed_tables_give_a_scenario_or_a_scenario_error(cruise, rows):
    try:
        presets.with_ego_waypoints(cruise, rows)
    except ScenarioError:
        pass


def test_new_agents_parked_and_moving(cruise):
    parked = presets.new_agent(cruise, "van", "vehicle.car", 30.0, -3.5, yaw_deg=90.0)
    agent = parked.agent("van")
    assert agent.parked and agent.size == pytest.approx(presets.DEFAULT_SIZES["car"])
    assert agent.trajectory.yaw([0.0])[0] == pytest.approx(math.pi / 2)
    moving = presets.new_agent(cruise, "walker", "human.pedestrian.adult", 20.0, 6.0, yaw_deg=-90.0, speed=1.4)
    walker = moving.agent("walker")
    assert not walker.parked and walker.size == pytest.approx(presets.DEFAULT_SIZES["pedestrian"])
    end = walker.trajectory.position([cruise.duration])[0]
    assert end[:2] == pytest.approx([20.0, 6.0 - 1.4 * cruise.duration])


@pytest.mark.parametrize("options, message", [
    (dict(agent_id="lead", category="vehicle.car", x=60, y=20), "lead"),      # the id is taken
    (dict(agent_id="x", category="vehicle.spaceship", x=60, y=20), "category"),
    (dict(agent_id="x", category="vehicle.car", x=1.0, y=0.0), "overlap"),      # on top of the ego
    (dict(agent_id="x", category="vehicle.car", x="far", y=0.0), "must be numbers"),
    (dict(agent_id="x", category="vehicle.car", x=60, y=20, speed=-1), "speed must be a number >= 0"),
])
def test_bad_new_agents_are_refused_naming_the_problem(cruise, options, message):
    with pytest.raises(ScenarioError, match=message):
        presets.new_agent(cruise, **options)


numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**9, 10**9), st.text(max_size=4),
                    st.none())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(agent_id=st.one_of(st.text(max_size=12), st.none(), st.integers()),
       category=st.one_of(st.sampled_from(sc.CATEGORIES), st.text(max_size=12), st.none()),
       x=numbers, y=numbers, yaw=numbers, speed=numbers)
def test_fuzzed_new_agent_forms_give_a_scenario_or_a_scenario_error(cruise, agent_id, category, x, y, yaw, speed):
    try:
        edited = presets.new_agent(cruise, agent_id, category, x, y, yaw, speed)
    except ScenarioError:
        return
    assert len(edited.agents) == len(cruise.agents) + 1
