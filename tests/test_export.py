"""`drivesim export`: rollouts of a tiny random world model written as a nuScenes v1.0 data set that
nuscenes-devkit loads, alone and merged with the synthetic logs; boxes project where the rollout put
them; the merged set is left untouched; bad options exit 2 naming the option."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim import geometry
from drivesim.cli import main
from drivesim.data.store import open_store, read_clip, stored_clip_ids
from drivesim.export import (BASE_SEED, JPEG_QUALITY, MANIFEST, MAP_MARGIN, ExportConfig, annotation_fields, export,
                             world_offset, write_map)
from drivesim.scenario import from_dict
from drivesim.rollout import ROLLOUT_STORE
from drivesim.simulate import RolloutConfig, rollout
from drivesim.wfm.pipeline import WorldModelPipeline

VERSION = "v1.0-mini"


def scenario_document(name: str, duration: float) -> dict:
    """A front3 drive at 12 fps: a lead car, a parked truck and a pedestrian who appears at 0.4 s."""
    return {
        "name": name, "prompt": "a sunny road, a car ahead", "rig": "front3", "fps": 12,
        "duration": duration, "seed": 3,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 14 * duration, "y": 0}]},
        "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.85, 4.5, 1.55],
                    "waypoints": [{"t": 0, "x": 20, "y": 0}, {"t": duration, "x": 20 + 10 * duration, "y": 0}]},
                   {"id": "parked", "category": "vehicle.truck", "size": [2.5, 8.0, 3.0],
                    "parked": {"x": 15, "y": -3, "yaw": 0.3}},
                   {"id": "walker", "category": "human.pedestrian.adult", "size": [0.6, 0.7, 1.75],
                    "waypoints": [{"t": 0.4, "x": 25, "y": -4}, {"t": duration, "x": 25, "y": -4 + duration}]}],
        "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]], [[-10, 5], [100, 5]]]},
    }


@pytest.fixture(scope="module")
def rollouts(tiny_wfm_run, tmp_path_factory) -> Path:
    """a/ (1.0 s: 13 frames, key frames 0, 6, 12), b/ (its first 11 frames as a scenario of 10/12 s: the
    last four frames follow the last key frame) and c/, a copy of a/ (the same clip id: scene names must
    still differ). b/ is cut from a/ rather than generated: only its length matters, and a rollout costs."""
    pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")
    base = tmp_path_factory.mktemp("rollouts")
    scenario = from_dict(scenario_document("export_cruise", 1.0), source="test scenario")
    result = rollout(scenario, pipeline, RolloutConfig(steps=1), progress=False)
    result.save(base / "a")
    short = dataclasses.replace(scenario, name="export_cruise_short", duration=10 / 12)
    per_frame = {name: getattr(result, name)[:11] for name in ("video", "world_from_ego", "timestamps")}
    dataclasses.replace(result, scenario=short, labels=result.labels.first(11), **per_frame).save(base / "b")
    shutil.copytree(base / "a", base / "c")
    return base


@pytest.fixture(scope="module")
def exported(rollouts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "nuscenes"
    assert main(["export", "--rollouts", str(rollouts), "--out", str(out)]) == 0
    return out


def load(dataroot: Path):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(VERSION, dataroot=str(dataroot), verbose=False)


def rollout_clip(folder: Path) -> tuple[dict, list[str]]:
    store = folder / ROLLOUT_STORE
    root = open_store(store)
    return read_clip(root, stored_clip_ids(store)[0]), list(root.attrs["categories"])


def frame_rows(clip: dict, frame: int) -> range:
    return range(int(clip["box_offsets"][frame]), int(clip["box_offsets"][frame + 1]))


def camera_chain(nusc, scene: dict, channel: str) -> list[dict]:
    """Every sample_data of one channel in a scene, key frames and sweeps, in time order."""
    record = nusc.get("sample_data", nusc.get("sample", scene["first_sample_token"])["data"][channel])
    chain = [record]
    while chain[-1]["next"]:
        chain.append(nusc.get("sample_data", chain[-1]["next"]))
    return chain


# ---------------------------------------------------------------- a plain export


def test_export_writes_one_scene_per_clip_with_unique_names_and_a_manifest(exported, rollouts):
    nusc = load(exported)
    names = sorted(scene["name"] for scene in nusc.scene)
    assert names == ["gen-export_cruise", "gen-export_cruise-2", "gen-export_cruise_short"]
    manifest = json.loads((exported / MANIFEST).read_text())
    generated = {entry["scene"]: entry for entry in manifest["generated"]}
    assert manifest["merged"] is None and set(generated) == set(names)
    assert generated["gen-export_cruise"]["rollout"] == str((rollouts / "a").resolve())
    assert generated["gen-export_cruise-2"]["rollout"] == str((rollouts / "c").resolve())
    assert generated["gen-export_cruise_short"]["scenario"] == "export_cruise_short"
    assert generated["gen-export_cruise_short"]["dropped_frames"] == 4  # frames 7 to 10 follow key frame 6
    assert generated["gen-export_cruise_short"]["key_frames"] == 2
    assert generated["gen-export_cruise"]["dropped_frames"] == 0
    for scene in nusc.scene:
        log = nusc.get("log", scene["log_token"])
        assert log["location"] == "drivesim-generated" and log["map_token"]
        assert Path(nusc.get("map", log["map_token"])["filename"]).name == f"{scene['name']}.png"
        count = 2 if scene["name"] == "gen-export_cruise_short" else 3  # 2 Hz key frames
        assert scene["nbr_samples"] == count
        samples = nusc.sample[[s["token"] for s in nusc.sample].index(scene["first_sample_token"]):][:count]
        assert [s["scene_token"] for s in samples] == [scene["token"]] * count
        assert np.diff([s["timestamp"] for s in samples]).tolist() == [500_000] * (count - 1)
    # (13 + 13 + 7) frames x 3 cameras, and one empty LIDAR_TOP cloud per key frame
    assert len(nusc.sample) == 8 and len(nusc.sample_data) == 33 * 3 + 8
    lidar = [sd for sd in nusc.sample_data if sd["filename"].startswith("samples/LIDAR_TOP/")]
    assert len(lidar) == 8 and all((exported / sd["filename"]).stat().st_size == 0 for sd in lidar)
    assert not list(exported.parent.glob(".nuscenes.partial-*"))


def test_annotations_are_the_rollouts_boxes_at_key_frames(exported, rollouts):
    nusc = load(exported)
    manifest = {e["scene"]: e for e in json.loads((exported / MANIFEST).read_text())["generated"]}
    for scene in nusc.scene:
        clip, categories = rollout_clip(Path(manifest[scene["name"]]["rollout"]))
        offset = np.asarray(manifest[scene["name"]]["world_offset"])
        tracks = clip["attrs"]["tracks"]
        instance_track: dict[str, str] = {}
        sample = nusc.get("sample", scene["first_sample_token"])
        for key in range(scene["nbr_samples"]):
            frame = 6 * key
            rows = list(frame_rows(clip, frame))
            anns = [nusc.get("sample_annotation", token) for token in sample["anns"]]
            assert len(anns) == len(rows)
            for ann in anns:
                centre = np.asarray(ann["translation"]) - offset
                row = min(rows, key=lambda n: np.linalg.norm(clip["boxes"][n, :3] - centre))
                box = clip["boxes"][row]
                np.testing.assert_allclose(centre, box[:3], atol=1e-4)
                np.testing.assert_allclose(ann["size"], box[3:6], atol=1e-6)
                yaw = geometry.yaw_from_matrix(geometry.matrix_from_quaternion(np.asarray(ann["rotation"])))
                assert np.isclose(np.cos(yaw - box[6]), 1.0, atol=1e-9)
                assert ann["category_name"] == categories[clip["box_category"][row]]
                assert ann["num_lidar_pts"] == 1 and ann["visibility_token"] == "4"
                track = tracks[clip["box_track"][row]]
                assert instance_track.setdefault(ann["instance_token"], track) == track
                attribute = [nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
                assert attribute == {"lead": ["vehicle.moving"], "parked": ["vehicle.parked"],
                                     "walker": ["pedestrian.moving"]}[track]
            sample = nusc.get("sample", sample["next"]) if sample["next"] else None
        assert sample is None
        assert sorted(instance_track.values()) == ["lead", "parked", "walker"]  # one instance per track
        counts = {track: nusc.get("instance", token)["nbr_annotations"] for token, track in instance_track.items()}
        keys = scene["nbr_samples"]
        assert counts == {"lead": keys, "parked": keys, "walker": keys - 1}  # the walker appears at 0.4 s
        lead = next(token for token, track in instance_track.items() if track == "lead")
        velocity = nusc.box_velocity(nusc.get("instance", lead)["first_annotation_token"])
        np.testing.assert_allclose(velocity[:2], [10, 0], atol=0.05)  # the devkit's, from neighbours


def test_boxes_project_where_the_rollout_put_them(exported):
    """Every camera frame, key frames and sweeps: the devkit's camera-frame box centres through the written
    intrinsics land within 0.5 px of the rollout's world boxes through its own poses and calibration."""
    from nuscenes.utils.geometry_utils import BoxVisibility

    nusc = load(exported)
    manifest = {e["scene"]: e for e in json.loads((exported / MANIFEST).read_text())["generated"]}
    compared = 0
    for scene in nusc.scene:
        clip, _ = rollout_clip(Path(manifest[scene["name"]]["rollout"]))
        tracks = clip["attrs"]["tracks"]
        start = nusc.get("sample", scene["first_sample_token"])["timestamp"]
        frame_of = {int(start + t): f for f, t in enumerate(clip["timestamps"] - clip["timestamps"][0])}
        for v, channel in enumerate(clip["attrs"]["cameras"]):
            world_from_cam = clip["world_from_ego"] @ clip["ego_from_cam"][v].astype(np.float64)
            for record in camera_chain(nusc, scene, channel):
                frame = frame_of[record["timestamp"]]
                sample = nusc.get("sample", record["sample_token"])
                before = set()
                if sample["prev"] and not record["is_key_frame"]:
                    # The devkit interpolates only objects annotated in both key frames around a sweep.
                    before = {nusc.get("sample_annotation", a)["instance_token"]
                              for a in nusc.get("sample", sample["prev"])["anns"]}
                _, boxes, intrinsic = nusc.get_sample_data(record["token"], box_vis_level=BoxVisibility.NONE)
                for box in boxes:
                    ann = nusc.get("sample_annotation", box.token)
                    if not record["is_key_frame"] and ann["instance_token"] not in before:
                        continue
                    track = tracks.index(_track_of(nusc, ann, clip, manifest[scene["name"]]))
                    rows = [n for n in frame_rows(clip, frame) if clip["box_track"][n] == track]
                    assert len(rows) == 1
                    centre_world = clip["boxes"][rows[0], :3].astype(np.float64)
                    in_cam = geometry.transform_points(geometry.invert(world_from_cam[frame]), centre_world[None])
                    if in_cam[0, 2] < 1.0 or box.center[2] < 1.0:
                        continue
                    expected, _ = geometry.project(clip["intrinsics"][v].astype(np.float64), in_cam)
                    got, _ = geometry.project(np.asarray(intrinsic), box.center[None])
                    assert np.abs(got - expected).max() < 0.5, (scene["name"], channel, frame, track)
                    compared += 1
    assert compared > 100


def _track_of(nusc, ann: dict, clip: dict, entry: dict) -> str:
    """The rollout track of an annotation: the row of its key frame with the same centre."""
    sample = nusc.get("sample", ann["sample_token"])
    first = nusc.get("sample", nusc.get("scene", sample["scene_token"])["first_sample_token"])
    frame = round((sample["timestamp"] - first["timestamp"]) / 1e6 * 12)
    centre = np.asarray(ann["translation"]) - np.asarray(entry["world_offset"])
    row = min(frame_rows(clip, frame), key=lambda n: np.linalg.norm(clip["boxes"][n, :3] - centre))
    return clip["attrs"]["tracks"][clip["box_track"][row]]


def test_images_and_ego_poses_are_the_rollouts(exported, rollouts):
    from PIL import Image

    nusc = load(exported)
    clip, _ = rollout_clip(rollouts / "a")
    entry = next(e for e in json.loads((exported / MANIFEST).read_text())["generated"] if e["clip"] == "export_cruise"
                 and e["rollout"].endswith("/a"))
    scene = next(s for s in nusc.scene if s["name"] == entry["scene"])
    for v, channel in enumerate(clip["attrs"]["cameras"]):
        chain = camera_chain(nusc, scene, channel)
        assert len(chain) == 13 and [r["is_key_frame"] for r in chain] == [f % 6 == 0 for f in range(13)]
        for f, record in enumerate(chain):
            folder = "samples" if f % 6 == 0 else "sweeps"
            assert record["filename"].startswith(f"{folder}/{channel}/")
            image = np.asarray(Image.open(exported / record["filename"]))
            assert image.shape == clip["frames"].shape[2:]
            encoded = io.BytesIO()  # the rollout's frame through the same JPEG encoding: the same pixels
            Image.fromarray(clip["frames"][f, v]).save(encoded, format="JPEG", quality=JPEG_QUALITY)
            assert np.array_equal(image, np.asarray(Image.open(encoded)))
            pose = nusc.get("ego_pose", record["ego_pose_token"])
            expected = clip["world_from_ego"][f].copy()
            expected[:3, 3] += entry["world_offset"]
            np.testing.assert_allclose(geometry.transform_from(np.asarray(pose["translation"]),
                                                               np.asarray(pose["rotation"])), expected, atol=1e-9)
            if record["is_key_frame"]:  # sweeps name the next key frame (the devkit interpolates from it)
                assert nusc.get("sample", record["sample_token"])["timestamp"] == record["timestamp"]
            else:
                assert nusc.get("sample", record["sample_token"])["timestamp"] > record["timestamp"]


# ---------------------------------------------------------------- merging


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file's size, modification time and content hash."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         hashlib.sha1(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def all_tokens(dataroot: Path) -> dict[str, list[str]]:
    return {path.stem: [record["token"] for record in json.loads(path.read_text())]
            for path in sorted((dataroot / VERSION).glob("*.json"))}


def test_merge_with_the_synthetic_logs(synthetic_logs, rollouts, tmp_path):
    before = snapshot(synthetic_logs)
    original = all_tokens(synthetic_logs)
    out = tmp_path / "merged"
    result = export(ExportConfig(rollouts=rollouts / "a", out=out, merge_with=synthetic_logs))
    assert snapshot(synthetic_logs) == before  # the merged set is untouched

    nusc = load(out)
    synthetic_scenes = json.loads((synthetic_logs / VERSION / "scene.json").read_text())
    assert len(nusc.scene) == len(synthetic_scenes) + 1
    names = [scene["name"] for scene in nusc.scene]
    assert len(set(names)) == len(names) and "gen-export_cruise" in names
    merged = all_tokens(out)
    for table, tokens in merged.items():
        assert len(set(tokens)) == len(tokens), table
    shared_by_name = {"category", "attribute", "sensor", "visibility"}
    for table, tokens in merged.items():
        new = set(tokens) - set(original[table])
        assert not new & {t for ts in original.values() for t in ts}, table  # no collision anywhere
        if table in shared_by_name:
            assert not new, table  # the synthetic logs have every name already: the generated ones point there
    for table in ("category", "attribute", "sensor"):
        names_of = [record.get("name", record.get("channel")) for record in getattr(nusc, table)]
        assert len(set(names_of)) == len(names_of), table
    # every file of the merged set's records is there, hard-linked when on the same filesystem
    for record in nusc.sample_data:
        assert (out / record["filename"]).is_file(), record["filename"]
    image = next(r["filename"] for r in json.loads((synthetic_logs / VERSION / "sample_data.json").read_text()))
    assert (out / image).stat().st_ino == (synthetic_logs / image).stat().st_ino
    assert result.linked_files > 0 and result.copied_files == 0
    # the synthetic annotations still resolve to their categories
    assert {ann["category_name"] for ann in nusc.sample_annotation} >= {"vehicle.car", "vehicle.truck"}

    manifest = json.loads((out / MANIFEST).read_text())
    assert [e["scene"] for e in manifest["generated"]] == ["gen-export_cruise"]
    assert manifest["generated"][0]["rollout"] == str((rollouts / "a").resolve())
    assert manifest["generated"][0]["scenario"] == "export_cruise"
    assert manifest["merged"]["dataroot"] == str(synthetic_logs.resolve())
    assert sorted(manifest["merged"]["scenes"]) == sorted(s["name"] for s in json.loads(
        (synthetic_logs / VERSION / "scene.json").read_text()))
    assert (out / "drivesim" / "scenes.json").is_file()  # the synthetic side files come along
    assert snapshot(synthetic_logs) == before


def test_merging_into_an_earlier_export_picks_another_seed_and_name(exported, rollouts, tmp_path):
    """The earlier export used the same writer seed: every token would collide, so the next seed is used."""
    out = tmp_path / "again"
    code = main(["export", "--rollouts", str(rollouts / "a"), "--out", str(out), "--merge-with", str(exported)])
    assert code == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["writer_seed"] == BASE_SEED + 1
    assert [e["scene"] for e in manifest["generated"]] == ["gen-export_cruise-3"]
    assert manifest["merged"]["manifest"] == json.loads((exported / MANIFEST).read_text())
    nusc = load(out)
    assert len(nusc.scene) == 4 and len(nusc.sample) == 8 + 3
    for table, tokens in all_tokens(out).items():
        assert len(set(tokens)) == len(tokens), table


# ---------------------------------------------------------------- errors and atomicity


@pytest.mark.parametrize("case", ["missing rollouts", "rollouts is a file", "no rollout.zarr", "broken rollout.zarr",
                                  "out not empty", "out is a rollout", "merge-with missing", "merge-with not nuscenes",
                                  "out inside merge-with", "bad version"])
def test_errors_exit_2_naming_the_option(rollouts, tmp_path, capsys, case):
    args = {"--rollouts": str(rollouts / "a"), "--out": str(tmp_path / "out")}
    named, flags = None, []
    if case == "missing rollouts":
        args["--rollouts"], named = str(tmp_path / "nope"), "--rollouts"
    elif case == "rollouts is a file":
        (tmp_path / "file").write_text("x")
        args["--rollouts"], named = str(tmp_path / "file"), "--rollouts"
    elif case == "no rollout.zarr":
        (tmp_path / "empty" / "sub").mkdir(parents=True)
        args["--rollouts"], named = str(tmp_path / "empty"), "--rollouts"
    elif case == "broken rollout.zarr":
        (tmp_path / "broken" / ROLLOUT_STORE).mkdir(parents=True)
        args["--rollouts"], named = str(tmp_path / "broken"), "--rollouts"
    elif case == "out not empty":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "mine.txt").write_text("precious")
        named = "--overwrite"
    elif case == "out is a rollout":
        shutil.copytree(rollouts / "a", tmp_path / "out")
        args["--rollouts"], named, flags = str(tmp_path / "out"), "--out", ["--overwrite"]
    elif case == "merge-with missing":
        args["--merge-with"], named = str(tmp_path / "gone"), "--merge-with"
    elif case == "merge-with not nuscenes":
        (tmp_path / "plain").mkdir()
        args["--merge-with"], named = str(tmp_path / "plain"), "--merge-with"
    elif case == "out inside merge-with":
        copy = tmp_path / "logs"
        (copy / VERSION).mkdir(parents=True)
        (copy / VERSION / "scene.json").write_text("[]")
        args["--merge-with"], args["--out"], named = str(copy), str(copy / "out"), "--out"
    else:
        args["--version"], named = "mini", "--version"
    before = snapshot(tmp_path)
    code = main(["export", *[x for pair in args.items() for x in pair], *flags])
    err = capsys.readouterr().err
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert snapshot(tmp_path) == before  # nothing written, nothing half-written
    assert not list(tmp_path.glob(".*partial*"))


def test_a_failure_leaves_no_output_and_keeps_the_old_one(rollouts, tmp_path, monkeypatch):
    import drivesim.export as module

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "write_tables", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export(ExportConfig(rollouts=rollouts / "a", out=out, overwrite=True))
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the partial folder is gone
    monkeypatch.undo()
    export(ExportConfig(rollouts=rollouts / "a", out=out, overwrite=True))
    assert not (out / "old.txt").exists() and (out / VERSION / "scene.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------- geometry properties

finite = st.floats(-500, 500, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(centre=st.tuples(finite, finite, st.floats(-3, 3)), size=st.tuples(*[st.floats(0.1, 20)] * 3),
       yaw=st.floats(-10, 10), offset=st.tuples(st.integers(-1000, 1000), st.integers(-1000, 1000)))
def test_annotation_fields_give_the_devkit_the_same_box(centre, size, yaw, offset):
    """nuScenes boxes: length along the heading (yaw about +z), width across it; the corners the devkit
    computes from the written fields are the rollout box's corners, shifted."""
    from nuscenes.utils.data_classes import Box
    from pyquaternion import Quaternion

    row = np.array([*centre, *size, yaw, 0, 0, 1], np.float64)
    shift = np.array([*offset, 0.0])
    fields = annotation_fields(row, shift)
    corners = Box(fields["translation"], fields["size"], Quaternion(fields["rotation"])).corners().T  # [8, 3]
    w, length, h = size
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
    local = signs * [length / 2, w / 2, h / 2]
    expected = local @ geometry.matrix_from_yaw(np.float64(yaw)).T + np.asarray(centre) + shift
    assert np.allclose(np.sort(corners, axis=0), np.sort(expected, axis=0), atol=1e-6)
    assert np.isclose(np.linalg.norm(fields["rotation"]), 1.0)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-150, 150), st.floats(-150, 150)), min_size=2, max_size=6))
def test_shifted_lines_lie_on_the_devkit_map_mask(tmp_path_factory, points):
    """After world_offset every point is at >= MAP_MARGIN, and the map PNG marks it drivable where the
    devkit's MapMask looks it up."""
    from nuscenes.utils.map_mask import MapMask

    line = np.asarray(points, np.float64)
    offset = world_offset(line)
    shifted = line + offset[:2]
    assert np.all(shifted >= MAP_MARGIN) and np.all(shifted.min(axis=0) < MAP_MARGIN + 1)
    assert np.all(offset == np.round(offset))
    path = tmp_path_factory.mktemp("map") / "map.png"
    write_map(path, [shifted])
    mask = MapMask(str(path), resolution=0.1)
    assert mask.is_on_mask(shifted[:, 0], shifted[:, 1]).all()
    far = shifted.max(axis=0) + 20  # beyond the lane's 1.75 m half-width, still on the map
    assert not mask.is_on_mask(np.array([far[0]]), np.array([far[1]])).any()
