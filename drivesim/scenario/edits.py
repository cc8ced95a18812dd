"""Edits of a Scenario: each returns a new Scenario, validated again."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import numpy as np

from drivesim.errors import ScenarioError
from drivesim.rigs import show_value
from drivesim.scenario.schema import Agent, Scenario
from drivesim.scenario.trajectory import Trajectory
from drivesim.scenario.validate import validate


def _edited(scenario: Scenario, what: str, **changes) -> Scenario:
    return validate(replace(scenario, source=f"{scenario.source} ({what})", **changes))


def _agent_index(scenario: Scenario, agent_id: str) -> int:
    scenario.agent(agent_id)  # names the known agents when there is no such one
    return next(i for i, agent in enumerate(scenario.agents) if agent.id == agent_id)


def set_ego_trajectory(scenario: Scenario, trajectory: Trajectory) -> Scenario:
    return _edited(scenario, "new ego trajectory", ego=trajectory)


def move_ego(scenario: Scenario, forward: float = 0.0, left: float = 0.0) -> Scenario:
    """Offset every ego waypoint in its own heading: left = 3.5 is one lane to the left."""
    yaw = scenario.ego.yaw(scenario.ego.times)
    offset = np.column_stack([forward * np.cos(yaw) - left * np.sin(yaw), forward * np.sin(yaw) + left * np.cos(yaw),
                              np.zeros(len(yaw))])
    return _edited(scenario, f"ego moved {forward:g} m forward, {left:g} m left",
                   ego=scenario.ego.mapped(positions=scenario.ego.positions + offset))


def add_agent(scenario: Scenario, agent: Agent) -> Scenario:
    return _edited(scenario, f"agent {agent.id} added", agents=(*scenario.agents, agent))


def remove_agent(scenario: Scenario, agent_id: str) -> Scenario:
    index = _agent_index(scenario, agent_id)
    return _edited(scenario, f"agent {agent_id} removed", agents=scenario.agents[:index] + scenario.agents[index + 1:])


def move_agent(scenario: Scenario, agent_id: str, dx: float = 0.0, dy: float = 0.0) -> Scenario:
    """Translate one agent's whole trajectory by (dx, dy) metres in the world frame."""
    index = _agent_index(scenario, agent_id)
    agent = scenario.agents[index]
    moved = replace(agent, trajectory=agent.trajectory.mapped(positions=agent.trajectory.positions + [dx, dy, 0.0]))
    return _edited(scenario, f"agent {agent_id} moved", agents=_with(scenario.agents, index, moved))


def _with(agents: tuple, index: int, agent: Agent) -> tuple:
    return agents[:index] + (agent,) + agents[index + 1:]


def scale_speed(scenario: Scenario, factor: float, agent_id: str | None = None) -> Scenario:
    """The ego (agent_id None) or one agent drives the same path `factor` times as fast.

    Waypoint times shrink towards the first one. An ego that arrives sooner ends the scenario sooner.
    """
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
        raise ScenarioError(f"{scenario.source}: speed factor must be a number > 0, got {show_value(factor)}")

    def faster(trajectory: Trajectory) -> Trajectory:
        return trajectory.mapped(times=trajectory.start + (trajectory.times - trajectory.start) / factor)

    what = f"speed x{factor:g}"
    if agent_id is None:
        ego = faster(scenario.ego)
        return _edited(scenario, f"ego {what}", ego=ego, duration=min(scenario.duration, ego.end))
    index = _agent_index(scenario, agent_id)
    agent = scenario.agents[index]
    if agent.parked:
        raise ScenarioError(f"{scenario.source}: agent {agent_id} is parked: it has no speed to scale")
    moved = replace(agent, trajectory=faster(agent.trajectory))
    return _edited(scenario, f"agent {agent_id} {what}", agents=_with(scenario.agents, index, moved))


def shift_time(scenario: Scenario, seconds: float, agent_id: str | None = None) -> Scenario:
    """One moving agent, or all of them (None), happen `seconds` later (earlier when negative)."""
    if not (isinstance(seconds, (int, float)) and math.isfinite(seconds)):
        raise ScenarioError(f"{scenario.source}: time shift must be a finite number, got {show_value(seconds)}")
    indices = range(len(scenario.agents)) if agent_id is None else [_agent_index(scenario, agent_id)]
    agents = scenario.agents
    for index in indices:
        agent = agents[index]
        if not agent.parked:
            agents = _with(agents, index, replace(agent, trajectory=agent.trajectory.mapped(
                times=agent.trajectory.times + seconds)))
    return _edited(scenario, f"{'agents' if agent_id is None else agent_id} shifted {seconds:g} s", agents=agents)


_SIDES = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def mirror(scenario: Scenario) -> Scenario:
    """Reflect the world across the x axis (y -> -y): left turns become right turns, and the prompt says so."""
    flip = np.array([1.0, -1.0, 1.0])

    def mirrored(trajectory: Trajectory) -> Trajectory:
        rotations = None if trajectory.rotations is None else trajectory.rotations * [1.0, -1.0, 1.0, -1.0]
        yaws = None if trajectory.yaws is None else -trajectory.yaws
        return Trajectory(trajectory.times, trajectory.positions * flip, yaws, rotations)

    agents = tuple(replace(agent, trajectory=mirrored(agent.trajectory)) for agent in scenario.agents)
    road = scenario.road.mapped(lambda points: points * flip)  # lanes, edges, lane lines, crosswalks, stop lines
    prompt = re.sub(r"\b(left|right|Left|Right|LEFT|RIGHT)\b", lambda m: _SIDES[m.group(1)], scenario.prompt)
    return _edited(scenario, "mirrored", ego=mirrored(scenario.ego), agents=agents, road=road, prompt=prompt)
