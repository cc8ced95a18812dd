"""Variants of a scenario (`drivesim scenario vary`): seeded random combinations of edits, every one validated.

Variant i of seed s draws from numpy's generator seeded [s, i] alone, so the same seed gives the same variants and
a larger --count adds variants without changing the first ones. A draw is one to three edits, in the order drawn:
an agent added in a free position on a lane, one removed, one moved along its heading, the ego's or an agent's speed
scaled, the world mirrored (its road too), the time of day and weather varied (the prompt's and the scenario's
time_of_day and weather alike); plus a new rollout seed. A draw is kept only when every edit passes the strict
validator, no two road users (the ego included) overlap that did not overlap in the scenario, and the file it
becomes loads back; otherwise it is drawn again, at most MAX_DRAWS times.

Start frames are real pictures of the scenario's first frame. A variant that keeps them keeps that first frame
true: only speeds and the prompt are varied (mirroring, or adding, removing or moving agents, would contradict the
picture). Dropping them (drop_start_frames) starts the variants from noise and opens every edit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from drivesim.data.synth.traffic import EGO_SIZE
from drivesim.errors import ScenarioError
from drivesim.scenario.edits import mirror, move_agent, remove_agent, scale_speed
from drivesim.scenario.files import from_dict
from drivesim.scenario.schema import Agent, Scenario
from drivesim.scenario.trajectory import Trajectory
from drivesim.scenario.validate import ego_footprint, footprint_corners, footprints_overlap, validate

__all__ = ["EDITS", "MAX_DRAWS", "Variant", "contacts", "variant", "vary_prompt"]

MAX_DRAWS = 50
GAP = 0.5                 # metres: road users closer than this (box to box) count as touching
MOVE = (3.0, 12.0)        # metres an agent is moved along its heading, either way
SPEED_CHANGE = (0.05, 0.25)  # a speed is scaled by exp(+-u), u in this range: x0.78 to x0.95, x1.05 to x1.28
# Agents a variant adds: category, width, length, height (typical nuScenes boxes), top speed (m/s), weight.
NEW_AGENTS = (("vehicle.car", (1.9, 4.6, 1.6), 30.0, 6), ("vehicle.truck", (2.5, 8.0, 3.2), 25.0, 2),
              ("vehicle.bus.rigid", (2.9, 11.0, 3.4), 20.0, 1), ("vehicle.motorcycle", (0.8, 2.1, 1.5), 30.0, 1),
              ("vehicle.bicycle", (0.7, 1.8, 1.4), 7.0, 1))
PARKED_SHARE = 0.15       # of added agents: standing in the lane (a broken-down car, a delivery van)
# The time of day and weather the training captions name (drivesim/data/curate.py caption: "night, rain; ...").
TIMES_OF_DAY = ("day", "dusk", "night")
WEATHERS = ("clear", "rain", "fog")


@dataclass(frozen=True)
class Variant:
    scenario: Scenario
    edits: tuple[str, ...]   # what was changed, in order, for the user
    draws: int               # draws it took (1: the first was valid)


# ---------------------------------------------------------------- the prompt

_CLAUSE = re.compile(r"^\s*(?:day|dusk|night)(?:\s*,\s*(?:clear|overcast|rain|fog|snow))*\s*;\s*", re.IGNORECASE)
_TIME_WORDS = re.compile(r"\b(?:daytime|daylight|day|morning|noon|afternoon|evening|dawn|dusk|night)\b", re.IGNORECASE)
_WEATHER_ADJECTIVES = re.compile(r"\b(?:sunny|clear|overcast|rainy|foggy|snowy)\b", re.IGNORECASE)
_WEATHER_NOUNS = re.compile(r"\b(?:(?:heavy|light)\s+)?(?:rain|fog|snow)\b", re.IGNORECASE)
_AN = re.compile(r"\b([Aa])n(\s+(?:clear|rainy|foggy|day|dusk|night)\b)")  # 'an overcast day' -> 'a foggy dusk'
_ADJECTIVE = {"clear": "clear", "rain": "rainy", "fog": "foggy"}
_NOUN = {"clear": "clear weather", "rain": "rain", "fog": "fog"}


def _cased(word: str, like: str) -> str:
    return word[:1].upper() + word[1:] if like[:1].isupper() else word


def vary_prompt(prompt: str, time_of_day: str, weather: str) -> str:
    """The prompt at another time of day and weather: a leading caption clause ('night, rain; ') as the training
    captions have, and the prompt's own time and weather words replaced, so the text does not contradict itself."""
    rest = _CLAUSE.sub("", prompt, count=1)
    rest = _TIME_WORDS.sub(lambda m: _cased(time_of_day, m.group()), rest)
    rest = _WEATHER_ADJECTIVES.sub(lambda m: _cased(_ADJECTIVE[weather], m.group()), rest)
    rest = _AN.sub(r"\1\2", _WEATHER_NOUNS.sub(lambda m: _cased(_NOUN[weather], m.group()), rest))
    clause = time_of_day if weather == "clear" else f"{time_of_day}, {weather}"
    return f"{clause}; {rest}" if rest.strip() else clause


# ---------------------------------------------------------------- who touches whom


def _footprints(scenario: Scenario, times: np.ndarray) -> dict:
    """Road user ('ego' is the ego, else 'agent <id>') -> (present [F] bool, corners [F, 4, 2] grown by GAP,
    radius)."""
    width, length, _ = EGO_SIZE
    result = {"ego": (np.ones(len(times), bool), ego_footprint(scenario, times, GAP), math.hypot(width, length))}
    for agent in scenario.agents:
        width, length = agent.size[0], agent.size[1]
        corners = footprint_corners(agent.trajectory.position(times)[:, :2], width + GAP, length + GAP,
                                    agent.trajectory.yaw(times))
        result[f"agent {agent.id}"] = (agent.present(times), corners, math.hypot(width, length))
    return result


def contacts(scenario: Scenario) -> dict[frozenset, float]:
    """Pairs of road users whose boxes come within GAP of each other at a frame -> the first such time (s)."""
    times = scenario.frame_times()
    users = list(_footprints(scenario, times).items())
    found = {}
    for i, (name_a, (present_a, a, radius_a)) in enumerate(users):
        for name_b, (present_b, b, radius_b) in users[i + 1:]:
            distance = np.linalg.norm(a.mean(axis=1) - b.mean(axis=1), axis=-1)
            near = present_a & present_b & (distance < (radius_a + radius_b) / 2 + 2 * GAP)
            if near.any():
                touching = near & footprints_overlap(a, b)
                if touching.any():
                    found[frozenset((name_a, name_b))] = float(times[np.argmax(touching)])
    return found


# ---------------------------------------------------------------- the edits: (scenario, rng) -> (scenario, what)


def _ego_speed(scenario: Scenario) -> float:
    times = np.linspace(0.0, scenario.duration, 64)
    path = np.linalg.norm(np.diff(scenario.ego.position(times)[:, :2], axis=0), axis=1).sum()
    return float(path / scenario.duration)


def _add_agent(scenario: Scenario, rng: np.random.Generator):
    """A new agent somewhere on a lane (the ego's own path when the road has none), driving along it or standing."""
    lanes = [lane for lane in scenario.road.lanes if len(lane) >= 2]
    if not lanes:
        lanes = [scenario.ego.position(np.linspace(0.0, scenario.duration, 32))]
    lane = lanes[rng.integers(len(lanes))]
    weights = np.array([row[3] for row in NEW_AGENTS], dtype=np.float64)
    category, size, top_speed, _ = NEW_AGENTS[rng.choice(len(NEW_AGENTS), p=weights / weights.sum())]
    parked = rng.random() < PARKED_SHARE
    speed = 0.0 if parked else min(top_speed, rng.uniform(0.5, 1.2) * max(_ego_speed(scenario), 5.0))
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(lane, axis=0), axis=1))])
    room = along[-1] - speed * scenario.duration - size[1]
    if room <= 0:
        return None  # the lane is too short to hold it for the whole scenario
    start = size[1] / 2 + rng.uniform(0.0, room)
    agent_id = next(f"added{n}" for n in range(1, len(scenario.agents) + 2)
                    if all(agent.id != f"added{n}" for agent in scenario.agents))
    if parked:
        position = np.array([np.interp(start, along, lane[:, k]) for k in range(3)])
        segment = min(int(np.searchsorted(along, start, side="right")) - 1, len(lane) - 2)
        heading = lane[segment + 1] - lane[segment]
        trajectory = Trajectory([0.0], position[None], [math.atan2(heading[1], heading[0])])
    else:
        times = np.linspace(0.0, scenario.duration, max(2, math.ceil(scenario.duration * 2) + 1))
        positions = np.column_stack([np.interp(start + speed * times, along, lane[:, k]) for k in range(3)])
        trajectory = Trajectory(times, positions)
    added = validate(replace(scenario, agents=(*scenario.agents, Agent(agent_id, category, size, trajectory, parked)),
                             source=f"{scenario.source} (agent {agent_id} added)"))
    how = "standing" if parked else f"at {speed:.1f} m/s"
    return added, f"added {agent_id} ({category}, {how})"


def _remove_agent(scenario: Scenario, rng: np.random.Generator):
    if not scenario.agents:
        return None
    agent = scenario.agents[rng.integers(len(scenario.agents))]
    return remove_agent(scenario, agent.id), f"removed {agent.id}"


def _move_agent(scenario: Scenario, rng: np.random.Generator):
    """One agent moved along its heading at its start, forward or back: it stays in its lane on straight roads."""
    if not scenario.agents:
        return None
    agent = scenario.agents[rng.integers(len(scenario.agents))]
    distance = rng.choice([-1.0, 1.0]) * rng.uniform(*MOVE)
    yaw = float(agent.trajectory.yaw([agent.trajectory.start])[0])
    moved = move_agent(scenario, agent.id, distance * math.cos(yaw), distance * math.sin(yaw))
    return moved, f"moved {agent.id} {distance:+.1f} m"


def _scale_speed(scenario: Scenario, rng: np.random.Generator):
    """The ego's speed or a moving agent's, scaled by x0.78 to x0.95 or x1.05 to x1.28."""
    movers = [None, *(agent.id for agent in scenario.agents if not agent.parked)]
    who = movers[rng.integers(len(movers))]
    factor = math.exp(rng.choice([-1.0, 1.0]) * rng.uniform(*SPEED_CHANGE))
    return scale_speed(scenario, factor, who), f"{who or 'ego'} speed x{factor:.2f}"


def _mirror(scenario: Scenario, rng: np.random.Generator):
    return mirror(scenario), "mirrored"


def _prompt(scenario: Scenario, rng: np.random.Generator):
    time_of_day = TIMES_OF_DAY[rng.integers(len(TIMES_OF_DAY))]
    weather = WEATHERS[rng.integers(len(WEATHERS))]
    prompt = vary_prompt(scenario.prompt, time_of_day, weather)
    # The scenario's own time of day and weather (the dense scene maps draw them) say what the prompt says.
    varied = replace(scenario, prompt=prompt, time_of_day=time_of_day, weather=weather)
    return validate(varied), f"prompt {time_of_day}, {weather}"


EDITS = {"add agent": _add_agent, "remove agent": _remove_agent, "move agent": _move_agent,
         "scale speed": _scale_speed, "mirror": _mirror, "prompt": _prompt}
KEEP_START_FRAMES = ("scale speed", "prompt")  # the edits that leave the first frame as its picture shows it


# ---------------------------------------------------------------- a variant


def _draw(scenario: Scenario, rng: np.random.Generator) -> tuple[Scenario, tuple[str, ...]]:
    """One to three edits drawn without repeats and applied in the order drawn; ScenarioError when one fails."""
    kinds = list(KEEP_START_FRAMES if scenario.start_frames is not None else EDITS)
    chosen = rng.choice(len(kinds), size=min(int(rng.integers(1, 4)), len(kinds)), replace=False)
    edits = []
    for index in chosen:
        done = EDITS[kinds[index]](scenario, rng)
        if done is not None:
            scenario, what = done
            edits.append(what)
    if not edits:
        raise ScenarioError(f"{scenario.source}: no drawn edit applies")
    return scenario, tuple(edits)


def variant(scenario: Scenario, index: int, seed: int = 0, name: str | None = None,
            drop_start_frames: bool = False) -> Variant:
    """Variant `index` of `scenario` under `seed`, named `name` (default '<scenario name>_v<index>'). ScenarioError
    when MAX_DRAWS draws in a row are invalid; it names the scenario, the variant and the last draw's problem."""
    rng = np.random.default_rng([seed, index])
    base = scenario
    if drop_start_frames and base.start_frames is not None:
        base = validate(replace(base, start_frames=None))
    name = name or f"{base.name or 'scenario'}_v{index:03d}"
    allowed = contacts(base)
    problem = ""
    for draw in range(1, MAX_DRAWS + 1):
        try:
            edited, edits = _draw(base, rng)
            new = {pair: time for pair, time in contacts(edited).items() if pair not in allowed}
            if new:
                pair, time = min(new.items(), key=lambda item: item[1])
                raise ScenarioError(f"{edited.source}: {' and '.join(sorted(pair))} would touch at t = {time:.2f} s")
            edited = replace(edited, name=name, seed=int(rng.integers(0, 2**31)))
            # What the file will hold, read back through the strict reader and validator.
            checked = from_dict(edited.to_dict(), f"{base.source} variant {index}", base.base_dir)
            return Variant(checked, edits, draw)
        except ScenarioError as error:
            problem = str(error)
    raise ScenarioError(f"{base.source}: variant {index}: no valid draw in {MAX_DRAWS} tries; the last: {problem}")
