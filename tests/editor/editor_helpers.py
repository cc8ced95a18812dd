"""What the editor's page tests and browser test share: a short scenario document."""

from __future__ import annotations


def short_document(name: str = "short", duration: float = 0.75) -> dict:
    """A 0.75 s front3 scenario: the ego drives 6 m straight, a parked car ahead."""
    return {"name": name, "prompt": "a car ahead on a sunny road", "rig": "front3", "fps": 12, "duration": duration,
            "seed": 2, "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 8 * duration, "y": 0}]},
            "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.8, 4.5, 1.5],
                        "parked": {"x": 15, "y": 0, "yaw": 0}}],
            "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]], [[-10, 5], [100, 5]]]}}
