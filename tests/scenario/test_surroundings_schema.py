"""What a scenario holds for the dense scene maps: painted lane lines, crosswalks, stop lines, sidewalk width and
building setback under road:, and time_of_day and weather. They round-trip through files, default when absent,
are refused by name when bad (fuzzed), come from a stored clip as render.layout_frames_from_clip sees it, are
mirrored with the world, and travel into a rollout's store."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_helpers import _document, _write, assert_same_map_lines

from drivesim import scenario as sc
from drivesim.errors import ConfigError, ScenarioError
from drivesim.render import BUILDING_SETBACK, SIDEWALK_WIDTH, Surroundings, layout_frames_from_clip

CROSSWALK = ((30, -3), (30, 5), (33, 5), (33, -3))


def _dense_document() -> dict:
    document = _document()
    document.update(time_of_day="night", weather="rain")
    document["road"].update(
        lane_lines=[{"type": "dashed", "points": [[-10, 1.75], [100, 1.75]]},
                    {"type": "solid", "points": [[-10, -1.9], [100, -1.9, 0.05]]},
                    {"type": "double_yellow", "points": [[-10, 3.5], [100, 3.5]]}],
        crosswalks=[[list(p) for p in CROSSWALK], [[50, -3], [50, 5], [53, 5], [50, -3]]],  # the second closed already
        stop_lines=[[[28, -2], [28, 1.7]]], sidewalk_width=4.5, building_setback=2)
    return document


def _by_type(polylines, kinds) -> dict:
    found = {}
    for line, kind in zip(polylines, kinds):
        found.setdefault(kind, []).append(np.asarray(line))
    return found


def test_the_new_fields_round_trip_and_reach_every_layout_frame(tmp_path):
    scenario = sc.load(_write(tmp_path, _dense_document()))
    road = scenario.road
    assert [kind for kind, _ in road.lane_lines] == ["dashed", "solid", "double_yellow"]
    assert road.sidewalk_width == 4.5 and road.building_setback == 2.0
    assert (scenario.time_of_day, scenario.weather) == ("night", "rain")
    again = sc.load(sc.save(scenario, tmp_path / "again.yaml"))
    assert again.to_dict() == scenario.to_dict()
    saved = yaml.safe_load((tmp_path / "again.yaml").read_text())
    assert saved["time_of_day"] == "night" and saved["weather"] == "rain"
    assert saved["road"]["lane_lines"][0] == {"type": "dashed", "points": [[-10, 1.75], [100, 1.75]]}
    assert saved["road"]["crosswalks"][0] == [list(p) for p in CROSSWALK] and saved["road"]["sidewalk_width"] == 4.5

    frames = scenario.layout_frames()
    assert len(frames) == scenario.num_frames
    for frame in frames:
        assert frame.surroundings == Surroundings(4.5, 2.0, "night", "rain")
    frame = frames[0]
    assert frame.poly_types == ["lane", "road_edge", "lane_divider", "solid_line", "double_yellow", "crosswalk",
                                "crosswalk", "stop_line"]
    assert all(line.dtype == np.float32 and line.shape[1] == 3 for line in frame.polylines)
    crosswalks = _by_type(frame.polylines, frame.poly_types)["crosswalk"]
    np.testing.assert_array_equal(crosswalks[0][:, :2], [*CROSSWALK, CROSSWALK[0]])  # closed when drawn
    assert len(crosswalks[1]) == 4  # closed in the file already: not closed twice
    assert "3 lane line(s), 2 crosswalk(s), 1 stop line(s); night, rain" in scenario.summary()


def test_absent_fields_take_their_defaults(tmp_path):
    document = _document()
    scenario = sc.load(_write(tmp_path, document))
    road = scenario.road
    assert road.lane_lines == road.crosswalks == road.stop_lines == ()
    assert (road.sidewalk_width, road.building_setback) == (SIDEWALK_WIDTH, BUILDING_SETBACK)
    assert (scenario.time_of_day, scenario.weather) == ("day", "clear")
    frame = scenario.layout_frames([0.0])[0]
    assert frame.surroundings == Surroundings() and frame.poly_types == ["lane", "road_edge"]
    del document["road"]
    assert sc.load(_write(tmp_path, document, "bare.yaml")).road.sidewalk_width == SIDEWALK_WIDTH


def _set(document, path, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value, message", [
    (("road", "lane_lines", 2, "type"), "dotted",
     r"road\.lane_lines\[2\]\.type: 'dotted' must be one of dashed, solid, double_yellow$"),
    (("road", "lane_lines", 0, "type"), ["dashed"], r"road\.lane_lines\[0\]\.type: \['dashed'\] must be one of"),
    (("road", "lane_lines", 1, "colour"), "white", r"road\.lane_lines\[1\]: has unknown key\(s\) colour"),
    (("road", "lane_lines", 1), {"points": [[0, 0], [1, 0]]}, r"road\.lane_lines\[1\]: is missing type"),
    (("road", "lane_lines", 1, "points"), [[0, 0]], r"road\.lane_lines\[1\]\.points: needs at least 2 entries"),
    (("road", "lane_lines", 1, "points", 1, 0), math.nan, r"road\.lane_lines\[1\]\.points\[1\]: must be a finite"),
    (("road", "crosswalks", 0), [[0, 0], [1, 0]], r"road\.crosswalks\[0\]: needs at least 3 entries"),
    (("road", "crosswalks", 0), [[0, 0], [1, 0], [0, 0]], r"road\.crosswalks\[0\]: needs at least 3 corners, got 2"),
    (("road", "crosswalks", 1, 2), [1, "x"], r"road\.crosswalks\[1\]\[2\]: must be a number"),
    (("road", "stop_lines", 0), [[28, 0]], r"road\.stop_lines\[0\]: needs at least 2 entries"),
    (("road", "stop_lines"), {"a": 1}, r"road\.stop_lines: must be a list"),
    (("road", "sidewalk_width"), -0.5, r"road\.sidewalk_width: must be a finite number of metres from 0 to 20, got"),
    (("road", "sidewalk_width"), 20.5, r"road\.sidewalk_width: must be a finite number of metres from 0 to 20"),
    (("road", "sidewalk_width"), math.inf, r"road\.sidewalk_width: must be a finite number"),
    (("road", "sidewalk_width"), "wide", r"road\.sidewalk_width: must be a number, got 'wide'"),
    (("road", "building_setback"), 101, r"road\.building_setback: must be a finite number of metres from 0 to 100"),
    (("road", "building_setback"), True, r"road\.building_setback: must be a number, got True"),
    (("road", "kerbs"), [], r"road: has unknown key\(s\) kerbs"),
    (("weather",), "snow", r"weather: 'snow' must be one of clear, overcast, rain, fog$"),
    (("weather",), None, r"weather: None must be one of"),
    (("time_of_day",), "noon", r"time_of_day: 'noon' must be one of day, dusk, night$"),
    (("time_of_day",), 3, r"time_of_day: 3 must be one of"),
])
def test_each_bad_value_is_refused_in_one_line_naming_its_field(tmp_path, path, value, message):
    file = _write(tmp_path, _set(_dense_document(), path, value), "scenario.yaml")
    with pytest.raises(ScenarioError, match=message) as caught:
        sc.load(file)
    text = str(caught.value)
    assert text.startswith(f"{file}: ") and "\n" not in text and isinstance(caught.value, ConfigError)


def test_a_scenario_built_in_code_is_validated_as_strictly():
    scenario = sc.from_dict(_dense_document(), "built")
    bad = [(replace(scenario, weather="snow"), "built: weather: 'snow' must be one of"),
           (replace(scenario, road=replace(scenario.road, lane_lines=(("dotted", np.zeros((2, 3))),))),
            "built: road.lane_lines[0].type: 'dotted' must be one of dashed, solid, double_yellow"),
           (replace(scenario, road=replace(scenario.road, sidewalk_width=np.float32(25))),
            "built: road.sidewalk_width: must be a finite number of metres from 0 to 20"),
           (replace(scenario, road=replace(scenario.road, crosswalks=(np.eye(3)[:2],))),
            "built: road.crosswalks[0]: needs at least 3 corners, got 2"),
           (replace(scenario, road=replace(scenario.road, stop_lines=(np.full((2, 3), np.nan),))),
            "built: road.stop_lines[0]: has a value that is not a finite number")]
    for edited, message in bad:
        with pytest.raises(ScenarioError) as caught:
            sc.validate(edited)
        assert str(caught.value).startswith(message)


_NEW_FIELDS = [("time_of_day",), ("weather",), ("road", "sidewalk_width"), ("road", "building_setback"),
               ("road", "lane_lines"), ("road", "lane_lines", 0), ("road", "lane_lines", 0, "type"),
               ("road", "lane_lines", 1, "points"), ("road", "lane_lines", 2, "points", 0),
               ("road", "crosswalks"), ("road", "crosswalks", 0), ("road", "crosswalks", 0, 1),
               ("road", "stop_lines"), ("road", "stop_lines", 0), ("road", "stop_lines", 0, 0, 1), ("road",)]
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                  st.text(max_size=8), st.sampled_from(["dashed", "solid", "double_yellow", "night", "fog", "day"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_NEW_FIELDS), _value), min_size=1, max_size=3))
def test_fuzzed_new_fields_load_or_raise_one_line_scenario_errors(tmp_path, mutations):
    document = _dense_document()
    for path, value in mutations:
        try:
            _set(document, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation replaced the parent
    file = tmp_path / "fuzz.yaml"
    try:
        file.write_text(yaml.safe_dump(document))
    except yaml.YAMLError:
        return
    try:
        scenario = sc.load(file)
    except ScenarioError as error:
        assert str(error).startswith(f"{file}: ") and "\n" not in str(error)
        return
    scenario.layout_frames([0.0])  # what loads, draws
    assert sc.from_dict(scenario.to_dict(), "again").to_dict() == scenario.to_dict()


# ---------------------------------------------------------------- from a stored clip

STORE_TYPES = ["lane", "road_edge", "lane_divider", "crosswalk", "stop_line", "solid_line", "double_yellow",
               "carpark_area"]  # the last: a type no layout frame holds


@pytest.fixture
def marked_store(tmp_path):
    """A 5-frame clip heading +y in the world, with one line of every type and a closed crosswalk; its attrs
    record a sidewalk width and setback and its caption says night and rain."""
    from drivesim.data import store
    from drivesim.rigs import load_rig

    frames, cameras = 5, ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    path = tmp_path / "store"
    root = store.create_store(path, {"width": 32, "height": 16, "frames": frames, "cameras": cameras, "fps": 10.0},
                              ["vehicle.car", "other"], STORE_TYPES)
    times = np.arange(frames) / 10.0
    world_from_ego = np.tile(np.eye(4), (frames, 1, 1))
    world_from_ego[:, :3, :3] = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    world_from_ego[:, 0, 3], world_from_ego[:, 1, 3] = 100.0, 200.0 + 8.0 * times
    lines = [("lane", [[100, 190], [100, 260]]), ("crosswalk", [[96, 230], [104, 230], [104, 233], [96, 233],
                                                                [96, 230]]),
             ("road_edge", [[98, 190], [98, 260]]), ("double_yellow", [[101.8, 190], [101.8, 260]]),
             ("lane_divider", [[103.5, 190], [103.5, 260]]), ("stop_line", [[98, 228], [101.8, 228]]),
             ("solid_line", [[96.2, 190], [96.2, 260]]), ("carpark_area", [[90, 200], [92, 200], [92, 205]]),
             ("crosswalk", [[96, 250], [104, 250], [104, 253]]),  # cut open at the store's radius: drawn closed
             ("lane", [[100, 261]])]  # one point: draws nothing
    points = np.concatenate([np.column_stack([np.array(p, np.float64), np.zeros(len(p))]) for _, p in lines])
    rig = load_rig("front3", (32, 16))
    clip = store.Clip(
        clip_id="scene-m-0000", frames=np.zeros((frames, 3, 16, 32, 3), np.uint8),
        intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
        world_from_ego=world_from_ego, timestamps=(times * 1e6).astype(np.int64),
        boxes=np.zeros((0, 10), np.float32), box_offsets=np.zeros(frames + 1, np.int32),
        box_category=np.zeros(0, np.int16), box_track=np.zeros(0, np.int32),
        polylines=points.astype(np.float32), poly_offsets=np.cumsum([0, *(len(p) for _, p in lines)]).astype(np.int32),
        poly_type=np.array([STORE_TYPES.index(kind) for kind, _ in lines], np.int16),
        attrs={"scene": "scene-m", "split": "train", "caption": "night, rain, a straight road", "cameras": cameras,
               "fps": 10.0, "sidewalk_width": 5.0, "building_setback": 1.5})
    store.write_clip(path, clip)
    root.attrs["clips"] = {clip.clip_id: {"scene": "scene-m", "split": "train", "caption": "x"}}
    return path


def test_from_clip_fills_them_as_the_store_layout_frames_see_them(marked_store):
    from drivesim.data.store import open_clip, open_store

    scenario = sc.from_clip(marked_store, "scene-m-0000")
    road = scenario.road
    assert [kind for kind, _ in road.lane_lines] == ["double_yellow", "dashed", "solid"]  # the store's order
    assert [len(c) for c in road.crosswalks] == [4, 3]  # the closing repeat dropped
    assert len(road.stop_lines) == 1 and len(road.lanes) == 1
    assert (road.sidewalk_width, road.building_setback) == (5.0, 1.5)
    assert (scenario.time_of_day, scenario.weather) == ("night", "rain")

    assert_same_map_lines(scenario, marked_store, "scene-m-0000")
    root = open_store(marked_store)
    stored = layout_frames_from_clip(open_clip(root, "scene-m-0000"), list(root.attrs["categories"]),
                                     list(root.attrs["poly_types"]))
    ours = scenario.layout_frames()
    assert len(ours) == len(stored)
    for mine, theirs in zip(ours, stored):
        assert mine.surroundings == theirs.surroundings == Surroundings(5.0, 1.5, "night", "rain")
        np.testing.assert_allclose(stored[0].world_from_ego @ mine.world_from_ego, theirs.world_from_ego,
                                   atol=1e-6)
    assert "carpark_area" not in ours[0].poly_types and "carpark_area" not in stored[0].poly_types


def test_from_clip_round_trips_through_its_file(marked_store, tmp_path):
    scenario = sc.from_clip(marked_store, "scene-m-0000")
    again = sc.load(sc.save(scenario, tmp_path / "replay.yaml"))
    assert again.to_dict() == scenario.to_dict()
    assert again.layout_frames([0.0])[0].surroundings == scenario.layout_frames([0.0])[0].surroundings


# ---------------------------------------------------------------- edits, variants, rollouts


def test_mirror_mirrors_every_line_and_keeps_the_widths(tmp_path):
    scenario = sc.load(_write(tmp_path, _dense_document()))
    mirrored = sc.mirror(scenario)
    flip = np.array([1.0, -1.0, 1.0])
    for before, after in zip(scenario.road.crosswalks, mirrored.road.crosswalks):
        np.testing.assert_array_equal(after, before * flip)
    for (kind, before), (kind_after, after) in zip(scenario.road.lane_lines, mirrored.road.lane_lines):
        assert kind_after == kind
        np.testing.assert_array_equal(after, before * flip)
    np.testing.assert_array_equal(mirrored.road.stop_lines[0], scenario.road.stop_lines[0] * flip)
    assert (mirrored.road.sidewalk_width, mirrored.road.building_setback) == (4.5, 2.0)
    assert (mirrored.time_of_day, mirrored.weather) == ("night", "rain")
    assert len(mirrored.road.crosswalks) == 2 and len(mirrored.road.lane_lines) == 3


def test_a_varied_prompt_varies_the_scenarios_time_of_day_and_weather_too(tmp_path):
    from drivesim.scenario.vary import EDITS

    scenario = sc.load(_write(tmp_path, _dense_document()))
    for seed in range(6):
        varied, what = EDITS["prompt"](scenario, np.random.default_rng(seed))
        assert what == f"prompt {varied.time_of_day}, {varied.weather}"
        assert varied.prompt.startswith(varied.time_of_day)
        assert varied.road is scenario.road


def test_a_rollout_store_holds_every_line_type_and_the_widths(tmp_path):
    from drivesim.data.nuscenes import POLY_TYPES
    from drivesim.data.store import open_clip, open_store
    from drivesim.rigs import load_rig
    from drivesim.rollout import Rollout

    document = _dense_document()
    document.update(duration=0.25, fps=12, agents=[])
    document["ego"]["waypoints"] = [{"t": 0, "x": 0, "y": 0}, {"t": 0.25, "x": 2.5, "y": 0}]
    scenario = sc.from_dict(document, "rollout test")
    video = np.zeros((scenario.num_frames, 3, 16, 32, 3), np.uint8)
    rollout = Rollout.labelled(scenario, load_rig("front3", (32, 16)), video)
    path = rollout.write_store(tmp_path / "rollout.zarr")
    root = open_store(path)
    assert list(root.attrs["poly_types"]) == list(POLY_TYPES)
    group = open_clip(root, rollout.clip_id())
    stored = layout_frames_from_clip(group, list(root.attrs["categories"]), list(root.attrs["poly_types"]))[0]
    ours = scenario.layout_frames([0.0])[0]
    assert stored.poly_types == ours.poly_types
    for a, b in zip(stored.polylines, ours.polylines):
        np.testing.assert_array_equal(a, b)
    assert (stored.surroundings.sidewalk_width, stored.surroundings.building_setback) == (4.5, 2.0)


def test_the_editors_map_draws_the_painted_lines_and_crosswalks(tmp_path):
    from drivesim.editor.bev import bev_figure

    figure = bev_figure(sc.load(_write(tmp_path, _dense_document())), 0.0)
    kinds = {trace.meta["kind"]: trace for trace in figure.data}
    for kind in ("lane_lines_dashed", "lane_lines_solid", "lane_lines_double_yellow", "stop_lines", "crosswalks"):
        assert kind in kinds, kind
    crosswalks = kinds["crosswalks"]
    assert crosswalks.fill == "toself"
    first = list(zip(crosswalks.x, crosswalks.y))[:5]
    assert first == [(30, -3), (30, 5), (33, 5), (33, -3), (30, -3)]  # closed
    assert "lane_lines_dashed" not in {t.meta["kind"] for t in bev_figure(sc.from_dict(_document()), 0.0).data}
