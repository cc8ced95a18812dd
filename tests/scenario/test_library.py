"""The shipped scenario library: every file loads, validates, renders on its rig and survives a save."""

from __future__ import annotations


import numpy as np
import pytest
from scenario_helpers import FILES, SCENARIOS

from drivesim import scenario as sc


def test_at_least_the_eight_named_scenarios_ship():
    names = {path.stem for path in FILES}
    assert {"straight_cruise", "lane_change_left", "lane_change_right", "unprotected_left_turn", "cut_in",
            "pedestrian_crossing", "hard_braking", "night_rain"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_scenario_file_loads_validates_and_has_a_road_agents_and_prompt(path):
    scenario = sc.load(path)
    assert scenario.prompt.strip() and scenario.agents and scenario.road.lanes and scenario.road.road_edges
    frames = scenario.layout_frames()
    assert len(frames) == scenario.num_frames == len(scenario.frame_times())
    assert scenario.world_from_ego().shape == (scenario.num_frames, 4, 4)
    assert all(f.boxes.shape[1] == 7 and len(f.categories) == len(f.boxes) for f in frames)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_scenario_file_renders_boxes_lanes_and_edges_on_its_rig(path):
    from drivesim.render import LAYOUT_CHANNELS, render_layout

    scenario = sc.load(path)
    frames = scenario.layout_frames()
    chosen = [frames[0], frames[len(frames) // 2], frames[-1]]
    maps = render_layout(scenario.rig, chosen, size=(96, 54))
    assert maps.shape == (len(scenario.rig.cameras), 3, len(LAYOUT_CHANNELS), 54, 96)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    drawn = maps.reshape(*maps.shape[:3], -1).max(axis=(0, 3))  # [3 frames, C]: what any camera shows
    boxes, lanes = drawn[:, :3].max(axis=1), drawn[:, LAYOUT_CHANNELS.index("lane")]
    edges = drawn[:, LAYOUT_CHANNELS.index("road_edge")]
    assert (boxes > 0).any(), "no agent is seen by any camera in any of the three frames"
    assert (lanes > 0).all() and (edges > 0).all(), "every frame shows the road"


def test_save_then_load_gives_the_same_scenario(tmp_path):
    original = sc.load(SCENARIOS / "cut_in.yaml")
    again = sc.load(sc.save(original, tmp_path / "copy.yaml"))
    times = np.linspace(0, original.duration, 50)
    np.testing.assert_allclose(again.world_from_ego(times), original.world_from_ego(times), atol=1e-5)
    assert [a.id for a in again.agents] == [a.id for a in original.agents] and again.prompt == original.prompt
