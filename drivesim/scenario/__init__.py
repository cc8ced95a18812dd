"""Scenarios: the rig, the ego's path, the other road users and the road that a rollout shows.

A Scenario comes from a YAML file (scenarios/*.yaml, schema in scenarios/README.md) or a stored
clip, and every edit returns a new Scenario validated again.

    trajectory.py   Trajectory (PCHIP through timed waypoints or poses), physical limits
    schema.py       Agent, Road, StartFrames, Scenario (frames, poses, layout frames, to_dict)
    validate.py     every check beyond the file's structure
    files.py        the strict YAML reader, load, save
    edits.py        set_ego_trajectory, move_ego, add/remove/move_agent, scale_speed, shift_time, mirror
    from_clip.py    a scenario replaying a stored clip
    vary.py         seeded variants: random combinations of edits, every one validated
"""

from drivesim.scenario.edits import (add_agent, mirror, move_agent, move_ego, remove_agent, scale_speed,
                                     set_ego_trajectory, shift_time)
from drivesim.scenario.files import MAX_BYTES, from_dict, load, save
from drivesim.scenario.from_clip import from_clip
from drivesim.scenario.schema import CATEGORIES, MAX_SEED, Agent, Road, Scenario, StartFrames
from drivesim.scenario.trajectory import Limits, Trajectory, limits_for
from drivesim.scenario.validate import validate
from drivesim.scenario.vary import variant

__all__ = [
    "CATEGORIES", "MAX_BYTES", "MAX_SEED", "Agent", "Limits", "Road", "Scenario", "StartFrames", "Trajectory",
    "add_agent", "from_clip", "from_dict", "limits_for", "load", "mirror", "move_agent", "move_ego", "remove_agent",
    "save", "scale_speed", "set_ego_trajectory", "shift_time", "validate", "variant",
]
