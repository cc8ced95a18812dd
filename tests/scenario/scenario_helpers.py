"""The scenario document the scenario tests start from, and a helper to write one."""

from __future__ import annotations

from pathlib import Path

import yaml

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
FILES = sorted(SCENARIOS.glob("*.yaml"))


def _document() -> dict:
    return {"name": "t", "prompt": "a straight road", "rig": "front3", "fps": 10, "duration": 4,
            "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": 2, "x": 20, "y": 0}, {"t": 4, "x": 40, "y": 0}]},
            "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.8, 4.5, 1.5],
                        "waypoints": [{"t": 0, "x": 20, "y": 0}, {"t": 4, "x": 60, "y": 0}]},
                       {"id": "cone", "category": "movable_object.trafficcone", "size": [0.4, 0.4, 0.7],
                        "parked": {"x": 10, "y": 3, "yaw": 0}}],
            "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2, 0.1]]]}}


def _write(tmp_path, document, name="s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(document))
    return path
