"""Bird's-eye view of a scenario at one time: the road, the ego's path and box, and the other road users.

The editor shows this next to the camera layout preview, so an edit (a moved waypoint, a shifted agent) is
seen from above before anything is rendered. Coordinates are those of the scenario files: x forward (east)
on the horizontal axis, y left (north) on the vertical axis, at equal scale, so the car's left is up.

Every trace carries `meta = {"kind": ..., "agent": id or None}` so callers and tests can find the traces of
one kind without relying on their order: kinds are "crosswalks", "lanes", "road_edges", "lane_lines_dashed",
"lane_lines_solid", "lane_lines_double_yellow", "stop_lines", "ego_path", "ego_waypoints", "ego_box", "agent_path",
"agent_box", "agent_labels" and "headings".
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from drivesim.data.synth.traffic import EGO_REAR_OVERHANG, EGO_SIZE
from drivesim.render import PALETTE, super_category
from drivesim.scenario.schema import Agent, Scenario, closed_polygon

__all__ = ["EGO_COLOUR", "MARGIN", "bev_figure", "box_polygon", "ego_box_centre"]

MARGIN = 30.0            # metres of view around the ego's and the agents' paths
PATH_SAMPLES = 200       # points of a drawn path: smooth at any zoom, cheap to send
EGO_COLOUR = (1.0, 0.55, 0.0)  # orange: no super-category of the palette uses it
LANE_COLOUR = "rgb(150, 150, 150)"
EDGE_COLOUR = "rgb(60, 60, 60)"
SELECTED_COLOUR = "rgb(0, 0, 0)"
CROSSWALK_COLOUR, CROSSWALK_FILL = "rgb(120, 200, 120)", "rgba(120, 200, 120, 0.35)"
STOP_LINE_COLOUR = "rgb(220, 60, 60)"
LANE_LINE_STYLES = {  # a painted line's kind -> (legend name, plotly line)
    "dashed": ("dashed lines", dict(color="rgb(110, 110, 110)", width=1, dash="dot")),
    "solid": ("solid lines", dict(color="rgb(110, 110, 110)", width=1)),
    "double_yellow": ("double yellow lines", dict(color="rgb(215, 170, 0)", width=2)),
}
FIGURE_HEIGHT = 500


def box_polygon(x: float, y: float, yaw: float, width: float, length: float) -> np.ndarray:
    """The closed outline [5, 2] of a box centred at (x, y) heading `yaw`: front-left, front-right,
    rear-right, rear-left and the front-left again (plotly's fill="toself" wants it closed)."""
    forward = np.array([math.cos(yaw), math.sin(yaw)])
    left = np.array([-math.sin(yaw), math.cos(yaw)])
    centre = np.array([x, y], dtype=np.float64)
    corners = [centre + along * length / 2 * forward + side * width / 2 * left
               for along, side in ((1, 1), (1, -1), (-1, -1), (-1, 1), (1, 1))]
    return np.array(corners)


def ego_box_centre(scenario: Scenario, time: float) -> tuple[np.ndarray, float]:
    """(centre [2], yaw) of the ego's box at `time`: its origin is the rear axle, so the centre lies
    length/2 - EGO_REAR_OVERHANG ahead of the trajectory's position."""
    position, yaw = scenario.ego.position([time])[0], float(scenario.ego.yaw([time])[0])
    ahead = EGO_SIZE[1] / 2 - EGO_REAR_OVERHANG
    return position[:2] + ahead * np.array([math.cos(yaw), math.sin(yaw)]), yaw


def _rgba(rgb: tuple[float, float, float], alpha: float = 1.0, scale: float = 1.0) -> str:
    """A plotly colour from 0..1 channels; scale < 1 darkens (box outlines)."""
    r, g, b = (int(round(255 * min(1.0, c * scale))) for c in rgb)
    return f"rgba({r}, {g}, {b}, {alpha:g})"


def _joined(polylines) -> tuple[list, list]:
    """Many polylines as one trace's x and y, separated by None gaps: one legend entry, one trace."""
    xs, ys = [], []
    for points in polylines:
        xs.extend(np.asarray(points)[:, 0].tolist() + [None])
        ys.extend(np.asarray(points)[:, 1].tolist() + [None])
    return xs, ys


def _road_traces(scenario: Scenario) -> list[go.Scatter]:
    road = scenario.road
    lane_lines = {kind: [p for k, p in road.lane_lines if k == kind] for kind in LANE_LINE_STYLES}
    traces = []
    for kind, polylines, name, line in (
            ("crosswalks", [closed_polygon(p) for p in road.crosswalks], "crosswalks",
             dict(color=CROSSWALK_COLOUR, width=1)),
            ("lanes", road.lanes, "lane centres", dict(color=LANE_COLOUR, width=1, dash="dash")),
            ("road_edges", road.road_edges, "road edges", dict(color=EDGE_COLOUR, width=2)),
            *((f"lane_lines_{kind}", lane_lines[kind], name, line) for kind, (name, line) in LANE_LINE_STYLES.items()),
            ("stop_lines", road.stop_lines, "stop lines", dict(color=STOP_LINE_COLOUR, width=3))):
        if polylines:
            xs, ys = _joined(polylines)
            fill = dict(fill="toself", fillcolor=CROSSWALK_FILL) if kind == "crosswalks" else {}
            traces.append(go.Scatter(x=xs, y=ys, mode="lines", name=name, line=line, hoverinfo="skip",
                                     meta={"kind": kind, "agent": None}, **fill))
    return traces


def _sample_times(start: float, end: float) -> np.ndarray:
    return np.linspace(start, end, PATH_SAMPLES) if end > start else np.array([start])


def _ego_traces(scenario: Scenario, time: float) -> list[go.Scatter]:
    """The ego's path, its waypoints (hover: index and time) and its box at `time`."""
    path = scenario.ego.position(_sample_times(0.0, scenario.duration))
    waypoints = scenario.ego.positions
    hover = [f"ego waypoint {i}<br>t = {t:.2f} s<br>x = {p[0]:.2f} m, y = {p[1]:.2f} m"
             for i, (t, p) in enumerate(zip(scenario.ego.times, waypoints))]
    centre, yaw = ego_box_centre(scenario, time)
    outline = box_polygon(centre[0], centre[1], yaw, EGO_SIZE[0], EGO_SIZE[1])
    return [
        go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines", name="ego path", hoverinfo="skip",
                   line=dict(color=_rgba(EGO_COLOUR), width=2), meta={"kind": "ego_path", "agent": None}),
        go.Scatter(x=waypoints[:, 0], y=waypoints[:, 1], mode="markers", name="ego waypoints",
                   hovertext=hover, hoverinfo="text",
                   marker=dict(color=_rgba(EGO_COLOUR), size=8, line=dict(color="white", width=1)),
                   meta={"kind": "ego_waypoints", "agent": None}),
        go.Scatter(x=outline[:, 0], y=outline[:, 1], mode="lines", fill="toself", name="ego",
                   fillcolor=_rgba(EGO_COLOUR, 0.8), line=dict(color=_rgba(EGO_COLOUR, scale=0.6), width=2),
                   hoveron="fills", meta={"kind": "ego_box", "agent": None}),
    ]


def _agent_pose(agent: Agent, time: float) -> tuple[np.ndarray, float]:
    return agent.trajectory.position([time])[0, :2], float(agent.trajectory.yaw([time])[0])


def _agent_traces(scenario: Scenario, time: float, selected: str | None) -> tuple[list[go.Scatter], list]:
    """Per agent: its path (moving agents; faint while absent) and its box when present. Also returns the
    boxes drawn, (centre, yaw, length, width, label, hover), for the shared label and heading traces."""
    traces, drawn = [], []
    for agent in scenario.agents:
        colour = PALETTE[super_category(agent.category)]
        present = bool(agent.present([time])[0])
        if not agent.parked:
            path = agent.trajectory.position(_sample_times(agent.trajectory.start, agent.trajectory.end))
            traces.append(go.Scatter(x=path[:, 0], y=path[:, 1], mode="lines", name=f"{agent.id} path",
                                     legendgroup=agent.id, showlegend=False, hoverinfo="skip",
                                     opacity=1.0 if present else 0.3, line=dict(color=_rgba(colour), width=1),
                                     meta={"kind": "agent_path", "agent": agent.id}))
        if not present:
            continue
        centre, yaw = _agent_pose(agent, time)
        width, length = agent.size[0], agent.size[1]
        outline = box_polygon(centre[0], centre[1], yaw, width, length)
        chosen = agent.id == selected
        line = dict(color=SELECTED_COLOUR, width=4) if chosen else dict(color=_rgba(colour, scale=0.6), width=1)
        traces.append(go.Scatter(x=outline[:, 0], y=outline[:, 1], mode="lines", fill="toself", name=agent.id,
                                 legendgroup=agent.id, fillcolor=_rgba(colour, 0.9 if chosen else 0.6),
                                 line=line, hoveron="fills", meta={"kind": "agent_box", "agent": agent.id}))
        hover = (f"{agent.id} ({agent.category}){' parked' if agent.parked else ''}<br>"
                 f"x = {centre[0]:.2f} m, y = {centre[1]:.2f} m, yaw = {math.degrees(yaw):.0f}°")
        drawn.append((centre, yaw, length, width, agent.id, hover))
    return traces, drawn


def _heading_trace(boxes: list[tuple[np.ndarray, float, float, float]]) -> go.Scatter:
    """A white arrowhead on the front half of every box (centre, yaw, length, width): which way it faces."""
    xs, ys = [], []
    for centre, yaw, length, width in boxes:
        forward = np.array([math.cos(yaw), math.sin(yaw)])
        left = np.array([-math.sin(yaw), math.cos(yaw)])
        tip = centre + 0.45 * length * forward
        base = centre + 0.05 * length * forward
        for point in (tip, base + 0.3 * width * left, base - 0.3 * width * left, tip):
            xs.append(float(point[0]))
            ys.append(float(point[1]))
        xs.append(None)
        ys.append(None)
    return go.Scatter(x=xs, y=ys, mode="lines", fill="toself", fillcolor="rgba(255, 255, 255, 0.85)",
                      line=dict(color="rgba(255, 255, 255, 0.85)", width=1), name="headings", showlegend=False,
                      hoverinfo="skip", meta={"kind": "headings", "agent": None})


def _label_trace(drawn: list) -> go.Scatter:
    """Every present agent's id at its box centre; hovering it tells the category and pose."""
    return go.Scatter(x=[float(d[0][0]) for d in drawn], y=[float(d[0][1]) for d in drawn], mode="text",
                      text=[d[4] for d in drawn], hovertext=[d[5] for d in drawn], hoverinfo="text",
                      textfont=dict(size=11, color="black"), textposition="top center", name="agent ids",
                      showlegend=False, meta={"kind": "agent_labels", "agent": None})


def _view_ranges(scenario: Scenario) -> tuple[list[float], list[float]]:
    """Axis ranges: the ego's and the agents' paths +/- MARGIN, so a long road line does not shrink them."""
    points = [scenario.ego.position(_sample_times(0.0, scenario.duration))[:, :2]]
    for agent in scenario.agents:
        points.append(agent.trajectory.position(_sample_times(agent.trajectory.start, agent.trajectory.end))[:, :2])
    points = np.concatenate(points)
    low, high = points.min(axis=0) - MARGIN, points.max(axis=0) + MARGIN
    return [float(low[0]), float(high[0])], [float(low[1]), float(high[1])]


def bev_figure(scenario: Scenario, time: float, selected: str | None = None) -> go.Figure:
    """The scenario from above at `time` (clamped to [0, duration]); agent `selected` is outlined thick."""
    time = float(np.clip(time, 0.0, scenario.duration))
    traces = _road_traces(scenario)
    agent_traces, drawn = _agent_traces(scenario, time, selected)
    ego_traces = _ego_traces(scenario, time)
    ego_centre, ego_yaw = ego_box_centre(scenario, time)
    boxes = [(ego_centre, ego_yaw, EGO_SIZE[1], EGO_SIZE[0])] + [d[:4] for d in drawn]
    # Drawn last = on top: paths under boxes, heading cues and labels over them.
    figure = go.Figure(traces + agent_traces + ego_traces + [_heading_trace(boxes), _label_trace(drawn)])
    x_range, y_range = _view_ranges(scenario)
    figure.update_layout(
        title=dict(text=f"{scenario.name or 'scenario'}: t = {time:.2f} s", x=0.01),
        height=FIGURE_HEIGHT, showlegend=True, uirevision=scenario.name or scenario.source,
        margin=dict(l=50, r=10, t=40, b=40), plot_bgcolor="rgb(235, 235, 235)",
        # below the plot, so the map gets the column's whole width
        legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0.0),
        xaxis=dict(title="x (m), forward / east", range=x_range, zeroline=False),
        yaxis=dict(title="y (m), left / north", range=y_range, scaleanchor="x", scaleratio=1, zeroline=False))
    return figure
