"""The tiny scenario the rollout tests share: three front cameras, a lead car and a parked truck."""

from __future__ import annotations

from drivesim.scenario import from_dict

CAMERAS = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]  # the front3 rig


def scenario_document(duration: float = 0.25, fps: float = 12, seed: int = 3) -> dict:
    return {
        "name": "tiny_cruise", "prompt": "a sunny road, a car ahead", "rig": "front3", "fps": fps,
        "duration": duration, "seed": seed,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 14 * duration, "y": 0}]},
        "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.85, 4.5, 1.55],
                    "waypoints": [{"t": 0, "x": 20, "y": 0}, {"t": duration, "x": 20 + 14 * duration, "y": 0}]},
                   {"id": "parked", "category": "vehicle.truck", "size": [2.5, 8.0, 3.0],
                    "parked": {"x": 15, "y": -3, "yaw": 0}}],
        "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]], [[-10, 5], [100, 5]]]},
    }


def make_scenario(**options):
    return from_dict(scenario_document(**options), source="test scenario")
