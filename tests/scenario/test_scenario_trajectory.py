"""Trajectories pass through their waypoints with continuous velocity, never roll back, and head where
they travel."""

from __future__ import annotations

import math

import numpy as np
from scenario_helpers import SCENARIOS

from drivesim import scenario as sc


def test_interpolation_passes_through_the_waypoints_with_continuous_velocity():
    scenario = sc.load(SCENARIOS / "lane_change_left.yaml")
    ego = scenario.ego
    np.testing.assert_allclose(ego.position(ego.times), ego.positions, atol=1e-9)
    for knot in ego.times[1:-1]:  # velocity is continuous across every waypoint
        before, after = ego.velocity([knot - 1e-6]), ego.velocity([knot + 1e-6])
        np.testing.assert_allclose(before, after, atol=1e-3)
    dense = np.linspace(0, scenario.duration, 2001)
    steps = np.diff(ego.position(dense), axis=0)
    assert np.abs(np.diff(steps, axis=0)).max() < 1e-3  # no kinks between samples 4 ms apart
    yaw = ego.yaw(dense)
    assert np.abs(np.diff(yaw)).max() < 1e-3 and yaw.max() > 0.03  # it turns left, smoothly


def test_a_car_that_stops_does_not_roll_back():
    scenario = sc.load(SCENARIOS / "hard_braking.yaml")
    x = scenario.ego.position(np.linspace(0, scenario.duration, 4001))[:, 0]
    assert (np.diff(x) >= -1e-9).all()


def test_explicit_yaw_is_interpolated_and_heading_follows_travel_without_it():
    trajectory = sc.Trajectory.from_xy([0, 1, 2], [[0, 0], [1, 1], [2, 2]], yaws=[0.0, 0.5, 1.0])
    np.testing.assert_allclose(trajectory.yaw([0.5, 1.5]), [0.25, 0.75], atol=1e-9)
    travel = sc.Trajectory.from_xy([0, 1, 2], [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_allclose(travel.yaw([0.3, 1.7]), [math.pi / 4] * 2, atol=1e-9)
