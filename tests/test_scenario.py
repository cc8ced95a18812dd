"""Scenarios: every shipped file validates, trajectories pass through their waypoints smoothly, edits
re-validate, and every bad input gets a ScenarioError naming the file and the field."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim import scenario as sc
from drivesim.cli import main
from drivesim.errors import ConfigError, DataError, ScenarioError

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
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


def test_interpolation_passes_through_the_waypoints_with_continuous_velocity():
    scenario = sc.load(SCENARIOS / "lane_change_left.yaml")
    ego = scenario.ego
    np.testing.assert_allclose(ego.position(ego.times), ego.positions, atol=1e-9)
    for knot in ego.times[1:-1]:  # velocity is continuous across every waypoint
        before, after = ego.velocity([knot - 1e-6]), ego.velocity([knot + 1e-6])
        np.testing.assert_allclose(before, after, atol=1e-3)
    dense = np.linspace(0, scenario.duration, 2001)
    steps = np.diff(ego.position(dense), axis=0)
    assert np.abs(np.diff(steps, axis=0)).max() < 1e-3  # no kinks between samples 4 ms apart
    yaw = ego.yaw(dense)
    assert np.abs(np.diff(yaw)).max() < 1e-3 and yaw.max() > 0.03  # it turns left, smoothly


def test_a_car_that_stops_does_not_roll_back():
    scenario = sc.load(SCENARIOS / "hard_braking.yaml")
    x = scenario.ego.position(np.linspace(0, scenario.duration, 4001))[:, 0]
    assert (np.diff(x) >= -1e-9).all()


def test_explicit_yaw_is_interpolated_and_heading_follows_travel_without_it():
    trajectory = sc.Trajectory.from_xy([0, 1, 2], [[0, 0], [1, 1], [2, 2]], yaws=[0.0, 0.5, 1.0])
    np.testing.assert_allclose(trajectory.yaw([0.5, 1.5]), [0.25, 0.75], atol=1e-9)
    travel = sc.Trajectory.from_xy([0, 1, 2], [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_allclose(travel.yaw([0.3, 1.7]), [math.pi / 4] * 2, atol=1e-9)


# ---------------------------------------------------------------- edits


def test_move_ego_left_shifts_every_pose_by_that_much_to_the_left():
    scenario = sc.load(SCENARIOS / "straight_cruise.yaml")
    moved = sc.move_ego(scenario, left=3.5)
    delta = moved.world_from_ego()[:, :3, 3] - scenario.world_from_ego()[:, :3, 3]
    np.testing.assert_allclose(delta, np.tile([0.0, 3.5, 0.0], (len(delta), 1)), atol=1e-9)


def test_add_remove_move_agent_and_their_errors():
    scenario = sc.from_dict(_document())
    truck = sc.Agent("truck", "vehicle.truck", (2.5, 7.0, 3.0), sc.Trajectory.from_xy([0, 4], [[40, 3.5], [80, 3.5]]))
    added = sc.add_agent(scenario, truck)
    assert [a.id for a in added.agents] == ["lead", "cone", "truck"]
    assert [a.id for a in sc.remove_agent(added, "lead").agents] == ["cone", "truck"]
    moved = sc.move_agent(added, "truck", dx=5, dy=-1)
    np.testing.assert_allclose(moved.agent("truck").trajectory.positions[:, :2], [[45, 2.5], [85, 2.5]])
    with pytest.raises(ScenarioError, match="no agent 'ghost'"):
        sc.remove_agent(scenario, "ghost")
    with pytest.raises(ScenarioError, match="repeats the id"):
        sc.add_agent(scenario, scenario.agents[0])
    with pytest.raises(ScenarioError, match="overlaps the ego"):
        sc.move_agent(scenario, "lead", dx=-19)
    with pytest.raises(ScenarioError, match="finite"):
        sc.move_agent(scenario, "lead", dx=math.nan)


def test_scale_speed_keeps_the_path_and_checks_the_limits():
    scenario = sc.from_dict(_document())
    faster = sc.scale_speed(scenario, 2.0, "lead")
    np.testing.assert_allclose(faster.agent("lead").trajectory.velocity([1.0])[0, 0], 20.0)
    ego_faster = sc.scale_speed(scenario, 2.0)
    assert ego_faster.duration == 2.0 and ego_faster.ego.position([2.0])[0, 0] == pytest.approx(40.0)
    with pytest.raises(ScenarioError, match="physically impossible: speed"):
        sc.scale_speed(scenario, 10.0, "lead")
    with pytest.raises(ScenarioError, match="parked"):
        sc.scale_speed(scenario, 2.0, "cone")


def test_shift_time_moves_an_agent_in_time():
    scenario = sc.from_dict(_document())
    shifted = sc.shift_time(scenario, 1.0, "lead")
    lead = shifted.agent("lead")
    assert not lead.present([0.5])[0] and lead.present([1.5])[0]
    np.testing.assert_allclose(lead.trajectory.position([1.0]), scenario.agent("lead").trajectory.position([0.0]))


def test_mirror_swaps_left_and_right_and_twice_is_the_identity():
    scenario = sc.load(SCENARIOS / "unprotected_left_turn.yaml")
    mirrored = sc.mirror(scenario)
    times = np.linspace(0, scenario.duration, 30)
    np.testing.assert_allclose(mirrored.ego.position(times)[:, 1], -scenario.ego.position(times)[:, 1], atol=1e-9)
    assert mirrored.ego.yaw([scenario.duration])[0] < -1.0  # the left turn is a right turn now
    assert "turns right" in mirrored.prompt
    back = sc.mirror(mirrored)
    np.testing.assert_allclose(back.world_from_ego(times), scenario.world_from_ego(times), atol=1e-9)
    assert back.prompt == scenario.prompt


def test_set_ego_trajectory_validates_the_new_one():
    scenario = sc.from_dict(_document())
    short = sc.Trajectory.from_xy([0, 2], [[0, 0], [10, 0]])
    with pytest.raises(ScenarioError, match="must cover the whole scenario"):
        sc.set_ego_trajectory(scenario, short)
    ok = sc.set_ego_trajectory(scenario, sc.Trajectory.from_xy([0, 4], [[0, 0], [30, 0]]))
    assert ok.ego.position([4.0])[0, 0] == pytest.approx(30.0)


# ---------------------------------------------------------------- invalid input


def _set(document, path, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value, message", [
    (("ego", "waypoints", 1, "t"), 5.0, r"ego\.waypoints\[2\]\.t: times must increase"),
    (("ego", "waypoints", 1, "t"), 0.0, r"ego\.waypoints\[1\]\.t: times must increase"),
    (("agents", 0, "waypoints", 1, "t"), 0.0, r"agents\[0\] \(lead\)\.waypoints\[1\]\.t: times must increase"),
    (("ego", "waypoints", 1, "x"), math.nan, r"ego\.waypoints\[1\]\.x: must be a finite number"),
    (("agents", 0, "size", 1), math.inf, r"agents\[0\]\.size: must be a finite number"),
    (("fps",), math.nan, r"fps: must be a finite number"),
    (("rig",), "no_such_rig", r"rig: no such rig .no_such_rig. in"),
    (("agents", 0, "category"), "vehicle.spaceship", r"agents\[0\]\.category: unknown category 'vehicle.spaceship'"),
    (("agents", 0, "waypoints", 0, "x"), 1.5, r"agents\[0\] \(lead\): overlaps the ego at the start"),
    (("wheather",), "rain", r"unknown key\(s\) wheather"),
    (("agents", 0, "colour"), "red", r"agents\[0\]: has unknown key\(s\) colour"),
    (("ego", "waypoints", 1, "x"), 200.0, r"ego: is physically impossible: (speed|acceleration)"),
    (("ego", "waypoints", 1, "y"), 30.0, r"ego: is physically impossible"),
    (("agents", 0, "waypoints", 1, "x"), 2000.0, r"agents\[0\] \(lead\): is physically impossible: speed"),
    (("ego", "waypoints", 2, "t"), 3.0, r"ego\.waypoints: must cover the whole scenario"),
    (("prompt",), "", r"prompt: must be a non-empty text"),
    (("agents", 1, "size"), [0.4, -1, 0.7], r"agents\[1\] \(cone\)\.size"),
])
def test_invalid_scenarios_get_an_error_naming_the_file_and_the_field(tmp_path, path, value, message):
    file = _write(tmp_path, _set(_document(), path, value))
    with pytest.raises(ScenarioError, match=message) as caught:
        sc.load(file)
    assert str(caught.value).startswith(str(file)) and isinstance(caught.value, ConfigError)


def test_spinning_in_place_is_physically_impossible(tmp_path):
    document = _document()
    # Steps under pi: yaws are unwrapped, so a jump of more than half a turn reads as the short way round.
    document["ego"]["waypoints"] = [{"t": t, "x": 0, "y": 0, "yaw": 3.0 * t} for t in range(5)]
    document["agents"] = []
    with pytest.raises(ScenarioError, match="yaw rate"):
        sc.load(_write(tmp_path, document))


def test_a_file_over_10_mb_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as handle:
        handle.write("# padding\n" * (sc.MAX_BYTES // 10 + 1))
    with pytest.raises(ScenarioError, match="limited to 10 MB"):
        sc.load(path)


def test_alias_bombs_are_refused_quickly(tmp_path):
    lines = ["a: &a [[0, 0], [1, 1]]"]
    for level in range(1, 8):
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} [{', '.join(['*' + chr(96 + level)] * 10)}]")
    document = yaml.safe_load("\n".join(lines))
    base = _document()
    base["road"]["lanes"] = document["h"]
    with pytest.raises(ScenarioError):
        sc.from_dict(base, "bomb")


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("[1, 2", "not a readable YAML"), ("- 1\n- 2\n", "must be a mapping"),
    ("!!python/object:os.system {}", "not a readable YAML"), ("prompt: [", "not a readable YAML"),
])
def test_unreadable_files_get_a_scenario_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        sc.load(path)


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        sc.load(tmp_path / "none.yaml")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                  st.text(max_size=8), st.sampled_from(["vehicle.car", "front3", "nuscenes", "t", "x"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, (*prefix, index))


_PATHS = list(_paths(_document()))[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _value), max_size=3))
def test_fuzzed_documents_load_or_raise_only_scenario_errors(tmp_path, mutations):
    document = _document()
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
        sc.load(file)
    except ScenarioError as error:
        assert str(error).startswith(str(file))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.sampled_from(FILES).map(lambda p: p.read_bytes()[:400])))
def test_fuzzed_bytes_load_or_raise_only_scenario_errors(tmp_path, data):
    file = tmp_path / "fuzz.yaml"
    file.write_bytes(data)
    try:
        sc.load(file)
    except ScenarioError:
        pass


# ---------------------------------------------------------------- from a clip, and the CLI


@pytest.fixture
def clip_store(tmp_path):
    from drivesim.data import store

    frames, cameras = 13, ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    settings_ = {"width": 32, "height": 16, "frames": frames, "cameras": cameras, "fps": 12.0}
    path = tmp_path / "store"
    root = store.create_store(path, settings_, ["vehicle.car", "human.pedestrian.adult", "other"],
                              ["lane", "road_edge", "lane_divider"])
    times = np.arange(frames) / 12.0
    world_from_ego = np.tile(np.eye(4), (frames, 1, 1))
    world_from_ego[:, :3, :3] = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # heading +y in the world
    world_from_ego[:, 0, 3], world_from_ego[:, 1, 3] = 100.0, 200.0 + 10.0 * times
    rows, offsets = [], [0]
    for t in times:
        rows.append([100.0, 220.0 + 12.0 * t, 0.8, 1.8, 4.5, 1.6, math.pi / 2, 0, 12, 1])  # car ahead
        rows.append([104.0, 215.0, 0.9, 0.6, 0.7, 1.8, 0.0, 0, 0, 1])  # standing pedestrian
        offsets.append(len(rows))
    rig = __import__("drivesim.rigs", fromlist=["load_rig"]).load_rig("front3", (32, 16))
    clip = store.Clip(
        clip_id="scene-a-0000", frames=np.zeros((frames, 3, 16, 32, 3), np.uint8),
        intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
        world_from_ego=world_from_ego, timestamps=(times * 1e6).astype(np.int64),
        boxes=np.array(rows, np.float32), box_offsets=np.array(offsets, np.int32),
        box_category=np.tile(np.array([0, 1], np.int16), frames), box_track=np.tile(np.array([3, 4], np.int32), frames),
        polylines=np.array([[100, 190, 0], [100, 260, 0], [98, 190, 0], [98, 260, 0], [0, 0, 0], [1, 1, 0]],
                           np.float32),
        poly_offsets=np.array([0, 2, 4, 6], np.int32), poly_type=np.array([0, 1, 2], np.int16),
        attrs={"scene": "scene-a", "split": "train", "caption": "day; a car ahead", "cameras": cameras, "fps": 12.0})
    store.write_clip(path, clip)
    root.attrs["clips"] = {clip.clip_id: {"scene": "scene-a", "split": "train", "caption": "x"}}
    return path


def test_from_clip_replays_the_clip_in_its_first_ego_frame(clip_store, tmp_path):
    scenario = sc.from_clip(clip_store, "scene-a-0000")
    assert scenario.duration == pytest.approx(1.0) and scenario.num_frames == 13
    np.testing.assert_allclose(scenario.world_from_ego([0.0])[0], np.eye(4), atol=1e-9)
    assert scenario.ego.position([1.0])[0] == pytest.approx([10.0, 0.0, 0.0])
    car, pedestrian = scenario.agent("track3"), scenario.agent("track4")
    assert not car.parked and pedestrian.parked and pedestrian.category == "human.pedestrian.adult"
    assert car.trajectory.position([0.0])[0] == pytest.approx([20.0, 0.0, 0.0], abs=1e-4)
    assert car.trajectory.yaw([0.5])[0] == pytest.approx(0.0, abs=1e-6)
    assert len(scenario.road.lanes) == 1 and len(scenario.road.road_edges) == 1
    assert scenario.rig.names == ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT") and scenario.rig.width == 32
    assert scenario.start_frames.clip == "scene-a-0000" and scenario.prompt == "day; a car ahead"
    again = sc.load(sc.save(scenario, tmp_path / "clip.yaml"))
    np.testing.assert_allclose(again.world_from_ego(), scenario.world_from_ego(), atol=1e-5)
    np.testing.assert_allclose(again.rig.intrinsics, scenario.rig.intrinsics, atol=1e-4)


def test_every_clip_of_the_synthetic_store_replays(synthetic_store):
    """Recorded motion is thinned to 2 Hz key frames (sparser where a track still breaks the limits), so
    the project's own logs replay; the ego stays on its recorded path at the key frames."""
    from drivesim.data.store import open_store, read_clip, stored_clip_ids
    from drivesim.geometry import invert

    root = open_store(synthetic_store)
    for clip_id in stored_clip_ids(synthetic_store):
        scenario = sc.from_clip(synthetic_store, clip_id)
        poses = read_clip(root, clip_id, ("world_from_ego",))["world_from_ego"]
        recorded = (invert(poses[0]) @ poses)[:, :3, 3]
        key = np.arange(0, len(poses), 6)  # 2 Hz at 12 fps
        np.testing.assert_allclose(scenario.ego.position(key / scenario.fps), recorded[key], atol=1e-4)


def test_from_clip_names_a_missing_clip(clip_store):
    with pytest.raises(DataError, match="no clip 'nope'"):
        sc.from_clip(clip_store, "nope")


def test_cli_validate_prints_one_line_per_file_and_exits_2_on_a_bad_one(tmp_path, capsys):
    assert main(["scenario", "validate", *map(str, FILES[:2])]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all("frames" in line for line in out)
    bad = _write(tmp_path, _set(_document(), ("fps",), "fast"), "bad.yaml")
    assert main(["scenario", "validate", str(FILES[0]), str(bad)]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert captured.err.count("\n") == 1 and "bad.yaml: fps" in captured.err and "Traceback" not in captured.err


def test_cli_from_clip_writes_a_valid_scenario_and_refuses_to_overwrite(clip_store, tmp_path, capsys):
    out = tmp_path / "replay.yaml"
    assert main(["scenario", "from-clip", "--store", str(clip_store), "--clip", "scene-a-0000", "--out", str(out)]) == 0
    assert sc.load(out).name == "scene-a-0000"
    before = out.read_text()
    code = main(["scenario", "from-clip", "--store", str(clip_store), "--clip", "scene-a-0000", "--out", str(out)])
    assert code == 2 and "--out" in capsys.readouterr().err and out.read_text() == before
    missing = tmp_path / "x.yaml"
    code = main(["scenario", "from-clip", "--store", str(clip_store), "--clip", "nope", "--out", str(missing)])
    assert code == 2 and "no clip 'nope'" in capsys.readouterr().err and not missing.exists()


def test_from_clip_with_its_start_frame_travels_with_the_file(clip_store, tmp_path, capsys):
    """--with-start-frame: FILE.start.zarr beside the scenario holds the clip's first frame only, and the
    scenario finds it from any working directory once the two are moved together."""
    import shutil

    from drivesim.data.store import open_store, read_clip, verify

    folder = tmp_path / "made"
    folder.mkdir()
    out = folder / "replay.yaml"
    assert main(["scenario", "from-clip", "--store", str(clip_store), "--clip", "scene-a-0000", "--out", str(out),
                 "--with-start-frame"]) == 0
    frame_store = folder / "replay.start.zarr"
    assert verify(frame_store) == (1, [])  # one clip, no problems
    one = read_clip(open_store(frame_store), "scene-a-0000")
    full = read_clip(open_store(clip_store), "scene-a-0000")
    assert one["frames"].shape[0] == 1 and np.array_equal(one["frames"][0], full["frames"][0])
    assert len(one["boxes"]) == full["box_offsets"][1]
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder, moved)
    scenario = sc.load(moved / "replay.yaml")
    assert scenario.start_frames.store == "replay.start.zarr"
    assert scenario.start_store() == moved / "replay.start.zarr"
    # the store beside it is not silently replaced
    code = main(["scenario", "from-clip", "--store", str(clip_store), "--clip", "scene-a-0000", "--out",
                 str(folder / "replay.yaml"), "--with-start-frame"])
    assert code == 2 and "exists" in capsys.readouterr().err


@pytest.mark.parametrize("fps", [10, 12, 12.5, 24, 30])
@given(frames=st.integers(2, 400))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_saved_duration_keeps_its_frame_count(tmp_path, fps, frames):
    """Durations are written to 6 decimals; reading them back must not lose the last frame (41 frames at
    12 fps are 3.333333 s, 40/12 before rounding)."""
    duration = (frames - 1) / fps
    document = {**_document(), "fps": fps, "duration": duration, "agents": [],
                "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 10 * duration, "y": 0}]}}
    scenario = sc.from_dict(document, "t")
    assert scenario.num_frames == frames
    assert sc.load(sc.save(scenario, tmp_path / "s.yaml")).num_frames == frames


# ---------------------------------------------------------------- what a scenario may open (issue 19)


@pytest.mark.parametrize("rig", ["/etc/passwd", "../../../../etc/passwd", "secret.yaml", "views/front3.yaml"])
def test_a_scenario_names_a_views_rig_and_never_opens_a_file(tmp_path, rig):
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    file = _write(tmp_path, {**_document(), "rig": rig})
    with pytest.raises(ScenarioError, match=r"rig: no such rig .* in .*--rig FILE") as caught:
        sc.load(file)
    message = str(caught.value)
    assert "root:" not in message and "hunter2" not in message and "\n" not in message


def test_a_rig_file_given_with_rig_is_inlined_and_travels_with_the_scenario(tmp_path, capsys):
    rig_file = tmp_path / "my_rig.yaml"
    rig_file.write_text((SCENARIOS.parent / "views" / "front3.yaml").read_text().replace("front3", "mine"))
    file = _write(tmp_path, {**_document(), "rig": "nuscenes"})
    scenario = sc.load(file, rig=rig_file)
    assert scenario.rig.name == "mine" and len(scenario.rig.cameras) == 3
    assert isinstance(scenario.to_dict()["rig"], dict)  # the saved file holds the rig, not a path
    assert sc.load(sc.save(scenario, tmp_path / "elsewhere.yaml")).rig.name == "mine"
    assert sc.load(file, rig="front3").rig.name == "front3"
    assert main(["scenario", "validate", str(file), "--rig", str(rig_file)]) == 0
    assert "rig mine (3 cameras)" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", "password: hunter2\n",
                                     "[hunter2, {a: b\n", "\x00\x01hunter2\xff"])
def test_a_bad_rig_file_is_refused_without_quoting_it(tmp_path, capsys, content):
    rig_file = tmp_path / "notes.txt"
    rig_file.write_bytes(content.encode("latin-1"))
    file = _write(tmp_path, _document())
    assert main(["scenario", "validate", str(file), "--rig", str(rig_file)]) == 2
    err = capsys.readouterr().err
    assert str(rig_file) in err and err.count("\n") == 1
    assert "root:x" not in err and "hunter2" not in err and "Traceback" not in err


def test_a_seed_a_rollout_cannot_take_is_refused_by_validation(tmp_path):
    assert sc.from_dict({**_document(), "seed": sc.MAX_SEED - 1}, "t").seed == sc.MAX_SEED - 1
    for seed in (sc.MAX_SEED, 10**26):
        with pytest.raises(ScenarioError, match=r"seed: must be an integer from 0 to 2\*\*62-1"):
            sc.load(_write(tmp_path, {**_document(), "seed": seed}))


def test_a_relative_start_store_is_read_beside_the_file_and_saved_relative_to_the_new_one(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b" / "deeper"
    first.mkdir()
    second.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames.zarr").mkdir()  # one in the working directory too: it must not be the one found
    document = {**_document(), "start_frames": {"store": "frames.zarr", "clip": "c"}}
    scenario = sc.load(_write(first, document))
    assert scenario.start_store() == first / "frames.zarr"
    moved = sc.load(sc.save(scenario, second / "copy.yaml"))
    assert moved.start_frames.store == "../../a/frames.zarr"
    assert moved.start_store().resolve() == (first / "frames.zarr").resolve()
    # a scenario without a file (from_dict, from_clip) reads a relative store from the working directory
    loose = sc.from_dict(document, "t")
    assert loose.start_store() == Path("frames.zarr")
    assert sc.load(sc.save(loose, second / "loose.yaml")).start_store().resolve() == tmp_path / "frames.zarr"
