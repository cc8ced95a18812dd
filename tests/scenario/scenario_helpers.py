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


def assert_same_map_lines(scenario, store_path, clip_id: str) -> None:
    """The scenario's first layout frame holds the lines and Surroundings drivesim.render.layout_frames_from_clip
    gives for the clip, type by type in the store's order (the scenario is in the clip's first ego frame). The
    one difference by design: a crosswalk the store cut open at its radius is drawn closed by the scenario;
    lines of one point, and crosswalks of fewer than 3 corners, draw nothing and are not in the scenario."""
    import numpy as np

    from drivesim.data.store import open_clip, open_store
    from drivesim.render import layout_frames_from_clip
    from drivesim.scenario.schema import closed_polygon, is_closed

    root = open_store(store_path)
    theirs = layout_frames_from_clip(open_clip(root, clip_id), list(root.attrs["categories"]),
                                     list(root.attrs["poly_types"]), stop=1)[0]
    mine = scenario.layout_frames([0.0])[0]
    assert mine.surroundings == theirs.surroundings
    world_from_ego0 = theirs.world_from_ego
    expected, found = {}, {}
    for line, kind in zip(theirs.polylines, theirs.poly_types):
        line = np.asarray(line, np.float64)
        if kind == "crosswalk":
            corners = line[:-1] if is_closed(line) else line
            if len(corners) < 3:
                continue
            line = closed_polygon(line)
        if len(line) >= 2:
            expected.setdefault(kind, []).append(line)
    for line, kind in zip(mine.polylines, mine.poly_types):
        found.setdefault(kind, []).append(line.astype(np.float64) @ world_from_ego0[:3, :3].T + world_from_ego0[:3, 3])
    assert {kind: len(lines) for kind, lines in found.items()} == {kind: len(lines) for kind, lines in expected.items()}
    for kind, lines in expected.items():
        for a, b in zip(found[kind], lines):
            np.testing.assert_allclose(a, b, atol=1e-3, err_msg=kind)
