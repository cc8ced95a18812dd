"""Scenarios from a stored clip: a clip replayed in its first ego frame (every synthetic clip, the CLI, its
start frame travelling with the file), and a one-frame clip (a key frame ingested with --frames 1) as an
Image2World scenario: the ego's path from the user (--speed, --waypoints) or from its motion in the source
log, the agents driving on."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from scenario_helpers import assert_same_map_lines

from drivesim import scenario as sc
from drivesim.cli import main
from drivesim.errors import ConfigError, DataError

TINY = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "tiny_nuscenes"
KEY_FRAME = "scene-tiny-0000"  # the first key frame: the ego at 4 m/s along +x, a parked car, a walker


def _ingest(logs: Path, out: Path, frames: str, fps: str) -> Path:
    assert main(["ingest", "--dataroot", str(logs), "--out", str(out), "--cameras", "CAM_FRONT", "--size", "160x90",
                 "--frames", frames, "--fps", fps, "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def key_frames(tmp_path_factory) -> Path:
    """The tiny log's two key frames as one-frame clips; the log stays beside the store."""
    folder = tmp_path_factory.mktemp("key-frames")
    return _ingest(Path(shutil.copytree(TINY, folder / "logs")), folder / "store", "1", "2")


def _from_clip(store: Path, out: Path, *options: str) -> int:
    return main(["scenario", "from-clip", "--store", str(store), "--clip", KEY_FRAME, "--out", str(out), *options])


def test_a_key_frame_starts_a_scenario_at_the_speed_the_log_shows(key_frames, tmp_path, capsys):
    out = tmp_path / "start.yaml"
    assert _from_clip(key_frames, out, "--with-start-frame") == 0
    assert "ego path: 4.0 m/s turning +0.0 deg/s, as in the source log" in capsys.readouterr().out
    scenario = sc.load(out)
    assert scenario.fps == 2 and scenario.num_frames == 17  # one 1 + 4k chunk at the clip's rate
    assert scenario.start_frames.store == "start.start.zarr" and scenario.start_frames.frame == 0
    np.testing.assert_allclose(scenario.ego.position([0.0, 2.0]), [[0, 0, 0], [8, 0, 0]], atol=1e-6)
    assert scenario.ego.yaw([2.0])[0] == pytest.approx(0.0, abs=1e-9)
    car, walker = (scenario.agent(a.id) for a in sorted(scenario.agents, key=lambda a: a.category, reverse=True))
    assert car.category == "vehicle.car" and car.parked
    assert car.trajectory.position([0.0])[0][:2] == pytest.approx([10.0, -2.0], abs=1e-4)
    assert not walker.parked  # walks on along +y at the 1.4 m/s the devkit gives it
    step = walker.trajectory.position([1.0])[0] - walker.trajectory.position([0.0])[0]
    assert step[:2] == pytest.approx([0.0, 1.4], abs=1e-3)


def test_speed_and_duration_give_a_straight_path(key_frames, tmp_path, capsys):
    out = tmp_path / "fast.yaml"
    assert _from_clip(key_frames, out, "--speed", "6", "--duration", "3") == 0
    scenario = sc.load(out)
    assert scenario.duration == 3 and scenario.num_frames == 7
    np.testing.assert_allclose(scenario.ego.position([3.0])[0], [18.0, 0.0, 0.0], atol=1e-6)
    assert "straight ahead at 6 m/s from --speed" in capsys.readouterr().out


def test_waypoints_give_the_path_and_its_duration(key_frames, tmp_path):
    out = tmp_path / "bend.yaml"
    assert _from_clip(key_frames, out, "--waypoints", "1:5,0", "2:10,1") == 0
    scenario = sc.load(out)
    assert scenario.duration == 2 and scenario.num_frames == 5
    np.testing.assert_allclose(scenario.ego.position([1.0, 2.0]), [[5, 0, 0], [10, 1, 0]], atol=1e-6)


def test_without_its_source_log_a_key_frame_needs_the_speed(key_frames, tmp_path, capsys):
    from drivesim.data.store import open_store

    moved = Path(shutil.copytree(key_frames, tmp_path / "store"))
    root = open_store(moved, mode="r+")
    root.attrs["settings"] = {**dict(root.attrs["settings"]), "dataroot": str(tmp_path / "gone")}
    assert _from_clip(moved, tmp_path / "a.yaml") == 2
    error = capsys.readouterr().err
    assert f"source log {tmp_path / 'gone'}, which cannot give it: no v1.0-mini tables there" in error
    assert "give the ego's path with --speed M/S or --waypoints" in error and error.count("\n") == 1
    assert not (tmp_path / "a.yaml").exists()
    assert _from_clip(moved, tmp_path / "a.yaml", "--speed", "5") == 0


@pytest.mark.parametrize("options, named", [
    (["--waypoints", "1:5"], "--waypoints 1:5: expected T:X,Y"),
    (["--waypoints", "2:5,0", "1:8,0"], "--waypoints 1:8,0: times must increase"),
    (["--waypoints", "0:0,0"], "--waypoints 0:0,0: times must increase"),
    (["--waypoints", "1:nan,0"], "--waypoints 1:nan,0: expected"),
    (["--speed", "-1"], "--speed must be from 0 to 70 m/s"),
    (["--speed", "nan"], "--speed must be"),
    (["--duration", "0"], "--duration must be a number of seconds > 0"),
    (["--waypoints", "1:5,0", "--duration", "3"], "--duration: with --waypoints"),
])
def test_bad_path_options_are_named(key_frames, tmp_path, capsys, options, named):
    out = tmp_path / "bad.yaml"
    assert _from_clip(key_frames, out, *options) == 2
    assert named in capsys.readouterr().err
    assert not out.exists()


def test_a_longer_clip_replays_its_own_path_and_refuses_another(tmp_path, capsys):
    from drivesim.scenario.from_clip import constant_path

    store = _ingest(Path(shutil.copytree(TINY, tmp_path / "logs")), tmp_path / "store", "3", "4")
    assert _from_clip(store, tmp_path / "a.yaml", "--speed", "5") == 2
    assert "--speed: clip scene-tiny-0000 has 3 frames" in capsys.readouterr().err
    assert _from_clip(store, tmp_path / "a.yaml") == 0
    with pytest.raises(ConfigError, match="only a one-frame clip takes one"):
        sc.from_clip(store, KEY_FRAME, constant_path(5.0, 0.0, 1.0))


def test_the_library_asks_for_the_ego_path_of_a_one_frame_clip(key_frames):
    from drivesim.scenario.from_clip import constant_path, logged_motion

    with pytest.raises(ConfigError, match="has one frame, which shows no motion"):
        sc.from_clip(key_frames, KEY_FRAME)
    speed, yaw_rate = logged_motion(key_frames, "scene-tiny-0001")  # the last frame: its one neighbour before
    assert speed == pytest.approx(4.0) and yaw_rate == pytest.approx(0.0)
    assert len(sc.from_clip(key_frames, KEY_FRAME, constant_path(speed, yaw_rate, 1.0)).agents) == 2


def test_a_constant_turn_rate_is_a_circular_arc():
    from drivesim.scenario.from_clip import constant_path

    path = constant_path(10.0, 0.2, 5.0)  # radius 50 m, one radian
    np.testing.assert_allclose(path.position([5.0])[0][:2], [50 * math.sin(1), 50 * (1 - math.cos(1))], atol=1e-6)
    assert path.yaw([5.0])[0] == pytest.approx(1.0)
    assert np.linalg.norm(path.velocity([2.5])[0]) == pytest.approx(10.0, rel=1e-2)


# ---------------------------------------------------------------- replaying a clip


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
    assert [kind for kind, _ in scenario.road.lane_lines] == ["dashed"]  # the store's lane_divider
    assert_same_map_lines(scenario, clip_store, "scene-a-0000")
    assert scenario.rig.names == ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT") and scenario.rig.width == 32
    assert scenario.start_frames.clip == "scene-a-0000" and scenario.prompt == "day; a car ahead"
    again = sc.load(sc.save(scenario, tmp_path / "clip.yaml"))
    np.testing.assert_allclose(again.world_from_ego(), scenario.world_from_ego(), atol=1e-5)
    np.testing.assert_allclose(again.rig.intrinsics, scenario.rig.intrinsics, atol=1e-4)


def test_every_clip_of_the_synthetic_store_replays(synthetic_store):
    """Recorded motion is thinned to 2 Hz key frames (sparser where a track still breaks the limits), so
    the project's own logs replay; the ego stays on its recorded path at the key frames, and the road draws as
    the store's layout frames draw it."""
    from drivesim.data.store import open_store, read_clip, stored_clip_ids
    from drivesim.geometry import invert

    root = open_store(synthetic_store)
    for clip_id in stored_clip_ids(synthetic_store):
        scenario = sc.from_clip(synthetic_store, clip_id)
        poses = read_clip(root, clip_id, ("world_from_ego",))["world_from_ego"]
        recorded = (invert(poses[0]) @ poses)[:, :3, 3]
        key = np.arange(0, len(poses), 6)  # 2 Hz at 12 fps
        np.testing.assert_allclose(scenario.ego.position(key / scenario.fps), recorded[key], atol=1e-4)
        assert_same_map_lines(scenario, synthetic_store, clip_id)  # every line type the town paints


def test_from_clip_names_a_missing_clip(clip_store):
    with pytest.raises(DataError, match="no clip 'nope'"):
        sc.from_clip(clip_store, "nope")


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
