"""End to end: `synth` writes a nuScenes data set that nuscenes-devkit reads, whose boxes
cover the rendered objects, deterministically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes
from nuscenes.utils.data_classes import LidarPointCloud
from PIL import Image

from drivesim.data.synth import logs
from drivesim.folders import staging_folder
from drivesim.data.synth.box_check import box_fits
from drivesim.data.contact_sheet import contact_sheet
from drivesim.data.nuscenes_tables import TABLE_NAMES
from drivesim.data.synth.side_files import MAP_RESOLUTION, read_town_json

CAMERAS = {"CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "logs"
    config = logs.SynthConfig(out=out, scenes=2, seconds=1.5, width=448, height=256, fps=4, seed=7)
    logs.generate(config, progress=False)
    return out


@pytest.fixture(scope="module")
def nusc(dataset) -> NuScenes:
    return NuScenes("v1.0-mini", dataroot=str(dataset), verbose=False)


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_devkit_loads_all_thirteen_tables(dataset, nusc):
    assert sorted(p.stem for p in (dataset / "v1.0-mini").glob("*.json")) == sorted(TABLE_NAMES)
    assert len(nusc.scene) == 2
    assert all(scene["nbr_samples"] == 4 for scene in nusc.scene)  # 1.5 s at 2 Hz, both ends included


def test_every_sample_has_the_six_cameras_and_a_lidar(nusc):
    for sample in nusc.sample:
        assert CAMERAS <= set(sample["data"])
        assert "LIDAR_TOP" in sample["data"]


def test_key_frames_are_in_samples_and_sweeps_in_between(dataset, nusc):
    first = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    record = nusc.get("sample_data", first["data"]["CAM_FRONT"])
    chain = [record]
    while chain[-1]["next"]:
        chain.append(nusc.get("sample_data", chain[-1]["next"]))
    assert [r["is_key_frame"] for r in chain] == [True, False, True, False, True, False, True]
    assert all(r["filename"].startswith("samples/" if r["is_key_frame"] else "sweeps/") for r in chain)
    assert np.allclose(np.diff([r["timestamp"] for r in chain]), 1e6 / 4)
    image = Image.open(dataset / chain[1]["filename"])
    assert image.size == (448, 256) and image.format == "JPEG"


def test_projected_boxes_cover_the_rendered_objects(dataset):
    # The bar: for unoccluded objects larger than 20 px, the mean IoU between each
    # devkit box's projected image hull and the renderer's instance mask is at least 0.8.
    fits = box_fits(dataset)
    eligible = [f for f in fits if f.unoccluded >= 0.95 and f.mask_extent > 20]
    assert len(eligible) >= 20, f"too few unoccluded objects to judge: {len(eligible)}"
    mean_iou = float(np.mean([f.iou for f in eligible]))
    assert mean_iou >= 0.8, f"mean IoU {mean_iou:.3f} over {len(eligible)} objects"


def test_annotations_form_tracks_with_plausible_velocities(nusc):
    tracked = [i for i in nusc.instance if i["nbr_annotations"] >= 3]
    assert len(tracked) >= 5
    for instance in tracked:
        category = nusc.get("category", instance["category_token"])["name"]
        token = instance["first_annotation_token"]
        while token:
            velocity = nusc.box_velocity(token)
            speed = float(np.linalg.norm(velocity[:2]))
            limit = 3.0 if category.startswith("human") else 21.0
            assert speed <= limit, f"{category} at {speed:.1f} m/s"
            token = nusc.get("sample_annotation", token)["next"]


def test_lidar_counts_points_on_nearby_objects(dataset, nusc):
    sample = nusc.sample[0]
    lidar = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    cloud = LidarPointCloud.from_file(str(dataset / lidar["filename"]))
    assert cloud.points.shape[0] == 4 and cloud.points.shape[1] > 10_000
    annotations = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    assert any(a["num_lidar_pts"] > 20 for a in annotations)


def test_scene_description_records_time_of_day_weather_and_manoeuvre(nusc, dataset):
    meta = json.loads((dataset / "drivesim" / "scenes.json").read_text())
    for scene in nusc.scene:
        look = meta["scenes"][scene["name"]]["look"]
        assert scene["description"].startswith(f"{look['time_of_day']}, {look['weather']}, ")
        assert any(m in scene["description"] for m in ("turn", "straight", "lane change", "turning"))


def test_lane_side_file_matches_the_map_and_the_ego_drives_on_it(dataset, nusc):
    for log in nusc.log:
        town = read_town_json(dataset / "drivesim" / "towns" / f"{log['location']}.json")
        drivable = np.asarray(Image.open(dataset / nusc.get("map", log["map_token"])["filename"])) > 0
        rows = drivable.shape[0]

        def on_map(xy):
            col = (xy[:, 0] / MAP_RESOLUTION).astype(int)
            row = (rows - xy[:, 1] / MAP_RESOLUTION).astype(int)
            return drivable[np.clip(row, 0, rows - 1), np.clip(col, 0, drivable.shape[1] - 1)]

        for lane in town["lanes"]:
            assert on_map(lane["centerline"]).all()
        lanes_by_id = {lane["id"]: lane for lane in town["lanes"]}
        for lane in town["lanes"]:
            for successor in lane["successors"]:
                gap = np.linalg.norm(lane["centerline"][-1] - lanes_by_id[successor]["centerline"][0])
                assert gap < 0.5
        scene = next(s for s in nusc.scene if s["log_token"] == log["token"])
        sample = nusc.get("sample", scene["first_sample_token"])
        pose = nusc.get("ego_pose", nusc.get("sample_data", sample["data"]["CAM_FRONT"])["ego_pose_token"])
        assert on_map(np.array([pose["translation"][:2]])).all()


def test_contact_sheet_shows_six_cameras_with_boxes(dataset, tmp_path):
    sheet = contact_sheet(dataset, tmp_path / "sheet.png")
    image = np.asarray(Image.open(sheet).convert("RGB"))
    assert image.shape[1] == 3 * 448 and image.shape[0] >= 2 * 256
    orange = (image[..., 0] > 240) & (np.abs(image[..., 1].astype(int) - 158) < 12) & (image[..., 2] < 20)
    assert orange.sum() > 50  # car boxes are drawn in nuScenes' car orange


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    def run(seed, name):
        config = logs.SynthConfig(out=tmp_path / name, scenes=1, seconds=0.5, width=96, height=64, fps=12,
                                   seed=seed)
        return _tree_digest(logs.generate(config, progress=False))

    first, again, other = run(5, "a"), run(5, "b"), run(6, "c")
    assert first == again
    assert len(first) == 6 * 7 + 1 + 13 + 1 + 2 + 1  # images, lidar, tables, map, side files
    assert first != other


def test_overwrite_keeps_the_old_output_until_the_new_one_is_complete(tmp_path, monkeypatch):
    out = tmp_path / "logs"
    out.mkdir()
    (out / "keep.txt").write_text("old data")
    config = logs.SynthConfig(out=out, scenes=1, seconds=0.5, width=64, height=48, fps=2, overwrite=True)

    def crash(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(logs, "render_scene", crash)
    with pytest.raises(RuntimeError):
        logs.generate(config, progress=False)
    assert (out / "keep.txt").read_text() == "old data"
    assert [p.name for p in tmp_path.iterdir()] == ["logs"]  # no partial folder left behind
    monkeypatch.undo()
    logs.generate(config, progress=False)
    assert not (out / "keep.txt").exists() and (out / "v1.0-mini" / "scene.json").exists()


def test_parallel_workers_write_the_same_files_as_one_process(tmp_path):
    def run(workers, name):
        config = logs.SynthConfig(out=tmp_path / name, scenes=2, seconds=0.5, width=64, height=48, fps=2,
                                   seed=9, workers=workers)
        return _tree_digest(logs.generate(config, progress=False))

    assert run(2, "parallel") == run(1, "serial")


@pytest.mark.parametrize("version", ["v1.0-/../../x", "v1.0-../x", "v1.0-mini/x", "v1.0-", "v1.0-a b", "v2.0-mini",
                                     "v1.0-mini\n"])
def test_a_version_that_is_not_one_folder_name_is_refused_by_synth_export_and_the_writer(tmp_path, version):
    from drivesim.data.nuscenes_tables import NuScenesWriter
    from drivesim.errors import ConfigError
    from drivesim.export import ExportConfig

    with pytest.raises(ConfigError, match="--version must look like v1.0-mini"):
        logs.SynthConfig(out=tmp_path / "logs", version=version).validate()
    with pytest.raises(ConfigError, match="--version must look like v1.0-mini"):
        ExportConfig(rollouts=tmp_path, out=tmp_path / "export", version=version).validate()
    with pytest.raises(ConfigError, match="--version"):
        NuScenesWriter(tmp_path / "root", version)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_staging_clears_what_killed_runs_left_and_keeps_a_running_ones(tmp_path):
    import os
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead, alive = tmp_path / f".logs.partial-{finished}", tmp_path / f".logs.partial-{os.getppid()}"
    other = tmp_path / f".logs2.partial-{finished}"  # another output's
    for folder in (dead, alive, other):
        (folder / "samples").mkdir(parents=True)
    staging = staging_folder(tmp_path / "logs")
    assert staging.is_dir() and not any(staging.iterdir()) and staging.name == f".logs.partial-{os.getpid()}"
    assert not dead.exists() and alive.exists() and other.exists()
