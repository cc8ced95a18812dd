"""Edits re-validate: moving the ego, adding, removing and moving agents, speed, time shifts, mirroring."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scenario_helpers import SCENARIOS, _document

from drivesim import scenario as sc
from drivesim.errors import ScenarioError


def test_move_ego_left_shifts_every_pose_by_that_much_to_the_left():
    scenario = sc.load(SCENARIOS / "straight_cruise.yaml")
    moved = sc.move_ego(scenario, left=3.5)
    delta = moved.world_from_ego()[:, :3, 3] - scenario.world_from_ego()[:, :3, 3]
    np.testing.assert_allclose(delta, np.tile([0.0, 3.5, 0.0], (len(delta), 1)), atol=1e-9)


def test_add_remove_move_agent_and_their_errors():
    scenario = sc.from_dict(_document())
    truck = sc.Agent("truck", "vehicle.truck", (2.5, 7.0, 3.0), sc.Trajectory.from_xy([0, 4], [[40, 3.5], [80, 3.5]]))
    added = sc.add_agent(scenario, truck)
    assert [a.id for a in added.agents] == ["lead", "cone", "truck"]
    assert [a.id for a in sc.remove_agent(added, "lead").agents] == ["cone", "truck"]
    moved = sc.move_agent(added, "truck", dx=5, dy=-1)
    np.testing.assert_allclose(moved.agent("truck").trajectory.positions[:, :2], [[45, 2.5], [85, 2.5]])
    with pytest.raises(ScenarioError, match="no agent 'ghost'"):
        sc.remove_agent(scenario, "ghost")
    with pytest.raises(ScenarioError, match="repeats the id"):
        sc.add_agent(scenario, scenario.agents[0])
    with pytest.raises(ScenarioError, match="overlaps the ego"):
        sc.move_agent(scenario, "lead", dx=-19)
    with pytest.raises(ScenarioError, match="finite"):
        sc.move_agent(scenario, "lead", dx=math.nan)


def test_scale_speed_keeps_the_path_and_checks_the_limits():
    scenario = sc.from_dict(_document())
    faster = sc.scale_speed(scenario, 2.0, "lead")
    np.testing.assert_allclose(faster.agent("lead").trajectory.velocity([1.0])[0, 0], 20.0)
    ego_faster = sc.scale_speed(scenario, 2.0)
    assert ego_faster.duration == 2.0 and ego_faster.ego.position([2.0])[0, 0] == pytest.approx(40.0)
    with pytest.raises(ScenarioError, match="physically impossible: speed"):
        sc.scale_speed(scenario, 10.0, "lead")
    with pytest.raises(ScenarioError, match="parked"):
        sc.scale_speed(scenario, 2.0, "cone")


def test_shift_time_moves_an_agent_in_time():
    scenario = sc.from_dict(_document())
    shifted = sc.shift_time(scenario, 1.0, "lead")
    lead = shifted.agent("lead")
    assert not lead.present([0.5])[0] and lead.present([1.5])[0]
    np.testing.assert_allclose(lead.trajectory.position([1.0]), scenario.agent("lead").trajectory.position([0.0]))


def test_mirror_swaps_left_and_right_and_twice_is_the_identity():
    scenario = sc.load(SCENARIOS / "unprotected_left_turn.yaml")
    mirrored = sc.mirror(scenario)
    times = np.linspace(0, scenario.duration, 30)
    np.testing.assert_allclose(mirrored.ego.position(times)[:, 1], -scenario.ego.position(times)[:, 1], atol=1e-9)
    assert mirrored.ego.yaw([scenario.duration])[0] < -1.0  # the left turn is a right turn now
    assert "turns right" in mirrored.prompt
    back = sc.mirror(mirrored)
    np.testing.assert_allclose(back.world_from_ego(times), scenario.world_from_ego(times), atol=1e-9)
    assert back.prompt == scenario.prompt


def test_set_ego_trajectory_validates_the_new_one():
    scenario = sc.from_dict(_document())
    short = sc.Trajectory.from_xy([0, 2], [[0, 0], [10, 0]])
    with pytest.raises(ScenarioError, match="must cover the whole scenario"):
        sc.set_ego_trajectory(scenario, short)
    ok = sc.set_ego_trajectory(scenario, sc.Trajectory.from_xy([0, 4], [[0, 0], [30, 0]]))
    assert ok.ego.position([4.0])[0, 0] == pytest.approx(30.0)
