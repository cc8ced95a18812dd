"""The editor's bird's-eye view: what a user sees from above at the time the slider gives."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivesim.data.synth.traffic import EGO_REAR_OVERHANG, EGO_SIZE
from drivesim.editor.bev import MARGIN, bev_figure, box_polygon
from drivesim.render import PALETTE
from drivesim.scenario import from_dict, load

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def late_agent_document() -> dict:
    """An ego driving 8 s; `early` drives from the start, `late` appears at t = 2, `truck` stands parked."""
    return {
        "name": "late_agent", "prompt": "a road, a car joins later", "rig": "front3", "fps": 12, "duration": 8,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": 8, "x": 80, "y": 0}]},
        "agents": [{"id": "early", "category": "vehicle.car", "size": [1.85, 4.5, 1.55],
                    "waypoints": [{"t": 0, "x": 20, "y": 0}, {"t": 8, "x": 100, "y": 0}]},
                   {"id": "late", "category": "human.pedestrian.adult", "size": [0.7, 0.7, 1.8],
                    "waypoints": [{"t": 2, "x": 40, "y": 6}, {"t": 6, "x": 40, "y": -6}]},
                   {"id": "truck", "category": "vehicle.truck", "size": [2.5, 8.0, 3.0],
                    "parked": {"x": 30, "y": -4, "yaw": 0}}],
        "road": {"lanes": [[[-500, 0], [500, 0]]], "road_edges": [[[-500, -2], [500, -2]], [[-500, 5], [500, 5]]]},
    }


@pytest.fixture(scope="module")
def late_agent():
    return from_dict(late_agent_document(), source="test scenario")


@pytest.fixture(scope="module")
def left_turn():
    return load(SCENARIOS / "unprotected_left_turn.yaml")


def traces(figure, kind: str) -> list:
    return [trace for trace in figure.data if trace.meta["kind"] == kind]


def box_ids(figure) -> set[str]:
    return {trace.meta["agent"] for trace in traces(figure, "agent_box")}


def outline(trace) -> np.ndarray:
    return np.column_stack([trace.x, trace.y]).astype(np.float64)


def test_agents_get_a_box_only_while_present(late_agent):
    before = bev_figure(late_agent, 1.0)
    assert box_ids(before) == {"early", "truck"}
    assert len(traces(before, "agent_box")) == 2  # one box trace per present agent
    late_path = [t for t in traces(before, "agent_path") if t.meta["agent"] == "late"]
    assert len(late_path) == 1 and late_path[0].opacity < 1  # an absent agent's path is faint

    during = bev_figure(late_agent, 3.0)
    assert box_ids(during) == {"early", "late", "truck"}
    assert sorted(traces(during, "agent_labels")[0].text) == ["early", "late", "truck"]

    after = bev_figure(late_agent, 7.0)
    assert box_ids(after) == {"early", "truck"}


def test_a_parked_agent_has_no_path_and_boxes_take_their_palette_colour(late_agent):
    figure = bev_figure(late_agent, 3.0)
    assert {t.meta["agent"] for t in traces(figure, "agent_path")} == {"early", "late"}
    boxes = {t.meta["agent"]: t for t in traces(figure, "agent_box")}
    for agent_id, key in (("early", "car"), ("late", "pedestrian"), ("truck", "truck")):
        r, g, b = (round(255 * c) for c in PALETTE[key])
        assert boxes[agent_id].fillcolor.startswith(f"rgba({r}, {g}, {b},")


def test_agent_boxes_sit_on_their_trajectory(late_agent):
    figure = bev_figure(late_agent, 4.0)
    agent = late_agent.agent("late")
    box = outline(next(t for t in traces(figure, "agent_box") if t.meta["agent"] == "late"))
    centre, yaw = agent.trajectory.position([4.0])[0, :2], agent.trajectory.yaw([4.0])[0]
    np.testing.assert_allclose(box, box_polygon(*centre, yaw, agent.size[0], agent.size[1]), atol=1e-9)
    assert yaw == pytest.approx(-math.pi / 2, abs=1e-6)  # walking towards -y: the box faces down


@pytest.mark.parametrize("time", [0.0, 4.0, 7.25, 8.5, 10.0])
def test_the_ego_box_is_centred_ahead_of_its_rear_axle(left_turn, time):
    box = outline(traces(bev_figure(left_turn, time), "ego_box")[0])
    position, yaw = left_turn.ego.position([time])[0, :2], left_turn.ego.yaw([time])[0]
    expected = position + (EGO_SIZE[1] / 2 - EGO_REAR_OVERHANG) * np.array([math.cos(yaw), math.sin(yaw)])
    np.testing.assert_allclose(box[:4].mean(axis=0), expected, atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(box[0] - box[1]), EGO_SIZE[0], atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(box[1] - box[2]), EGO_SIZE[1], atol=1e-9)


def test_a_heading_cue_is_drawn_for_the_ego_and_each_present_agent(late_agent):
    headings = traces(bev_figure(late_agent, 3.0), "headings")[0]
    assert list(headings.x).count(None) == 1 + 3


def test_waypoint_hover_texts_give_index_and_time(left_turn):
    waypoints = traces(bev_figure(left_turn, 0.0), "ego_waypoints")[0]
    assert len(waypoints.hovertext) == len(left_turn.ego.times)
    for index, (text, t) in enumerate(zip(waypoints.hovertext, left_turn.ego.times)):
        assert f"t = {t:.2f} s" in text and f"waypoint {index}" in text
    assert "t = 7.50 s" in waypoints.hovertext[15]


def test_the_ego_path_is_drawn_densely_over_the_whole_scenario(left_turn):
    path = traces(bev_figure(left_turn, 0.0), "ego_path")[0]
    assert len(path.x) >= 100
    np.testing.assert_allclose(outline(path)[[0, -1]], left_turn.ego.position([0.0, 10.0])[:, :2], atol=1e-9)


def test_title_tells_the_time_and_out_of_range_times_are_clamped(late_agent):
    assert "t = 2.00 s" in bev_figure(late_agent, 2.0).layout.title.text
    assert "t = 0.00 s" in bev_figure(late_agent, -3.0).layout.title.text
    late = bev_figure(late_agent, 99.0)
    assert "t = 8.00 s" in late.layout.title.text
    np.testing.assert_allclose(outline(traces(late, "ego_box")[0])[:4].mean(axis=0)[0],
                               80 + EGO_SIZE[1] / 2 - EGO_REAR_OVERHANG, atol=1e-6)


def test_the_selected_agent_is_outlined_thicker(late_agent):
    figure = bev_figure(late_agent, 3.0, selected="late")
    widths = {t.meta["agent"]: t.line.width for t in traces(figure, "agent_box")}
    assert widths["late"] > max(widths["early"], widths["truck"])
    plain = {t.meta["agent"]: t.line.width for t in traces(bev_figure(late_agent, 3.0), "agent_box")}
    assert len(set(plain.values())) == 1


def test_the_view_fits_the_paths_not_a_kilometre_of_road(late_agent):
    layout = bev_figure(late_agent, 0.0).layout
    # Paths span x 0..100 (ego to 80, early to 100) and y -6..6 (late); the road runs from -500 to 500.
    assert list(layout.xaxis.range) == pytest.approx([0 - MARGIN, 100 + MARGIN])
    assert list(layout.yaxis.range) == pytest.approx([-6 - MARGIN, 6 + MARGIN])


def test_layout_settings_for_the_editor(late_agent, left_turn):
    layout = bev_figure(left_turn, 5.0).layout
    assert layout.yaxis.scaleanchor == "x" and layout.height == 500 and layout.showlegend
    assert layout.uirevision == "unprotected_left_turn"  # zoom persists while the same scenario is edited
    assert bev_figure(late_agent, 5.0).layout.uirevision == "late_agent"
    lanes, edges = traces(bev_figure(left_turn, 5.0), "lanes")[0], traces(bev_figure(left_turn, 5.0), "road_edges")[0]
    assert lanes.line.dash == "dash" and edges.line.dash is None
    assert list(lanes.x).count(None) == len(left_turn.road.lanes)
    assert list(edges.x).count(None) == len(left_turn.road.road_edges)


def test_the_figure_serialises(left_turn):
    assert len(bev_figure(left_turn, 5.0, selected="oncoming_first").to_json()) > 1000


coordinate = st.floats(-1e4, 1e4, allow_nan=False)
extent = st.floats(0.1, 30.0, allow_nan=False)


@given(coordinate, coordinate, st.floats(-20.0, 20.0, allow_nan=False), extent, extent)
def test_box_polygon(x, y, yaw, width, length):
    polygon = box_polygon(x, y, yaw, width, length)
    assert polygon.shape == (5, 2)
    np.testing.assert_array_equal(polygon[0], polygon[4])  # closed
    np.testing.assert_allclose(polygon[:4].mean(axis=0), [x, y], atol=1e-6)
    sides = np.linalg.norm(np.diff(polygon, axis=0), axis=1)  # front, right, rear, left edges
    np.testing.assert_allclose(sides, [width, length, width, length], atol=1e-6)
    heading = np.array([math.cos(yaw), math.sin(yaw)])
    np.testing.assert_allclose((polygon[0] + polygon[1]) / 2, [x + length / 2 * heading[0],
                                                               y + length / 2 * heading[1]], atol=1e-6)
    left = np.array([-heading[1], heading[0]])
    assert (polygon[0] - [x, y]) @ left > 0 > (polygon[1] - [x, y]) @ left  # front-left is on the left
    np.testing.assert_allclose(box_polygon(x, y, yaw + 2 * math.pi, width, length), polygon, atol=1e-6)
