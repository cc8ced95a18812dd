"""`drivesim ingest` end to end: curated clips, resumable after a kill, the same store on every engine,
and bad input named without losing what the store already holds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim.cli import main
from drivesim.data import store
from drivesim.data.ingest import SCENES, SUMMARY
from tests.data.conftest import retime, store_contents

# Small clips keep the suite fast: 9 frames every 6 of the synthetic 12 Hz logs, at 96x56.
OPTIONS = ["--frames", "9", "--stride", "6", "--size", "96x56", "--quiet"]
TINY_OPTIONS = ["--cameras", "CAM_FRONT", "--frames", "3", "--fps", "4", "--size", "160x90", "--quiet"]


def _ingest(dataroot: Path, out: Path, *extra: str) -> int:
    return main(["ingest", "--dataroot", str(dataroot), "--out", str(out), *OPTIONS, *extra])


@pytest.fixture(scope="module")
def reference_store(synthetic_logs, tmp_path_factory) -> Path:
    """The synthetic logs ingested in one uninterrupted run on one process."""
    out = tmp_path_factory.mktemp("reference") / "store"
    assert _ingest(synthetic_logs, out) == 0
    return out


def test_ingest_of_synthetic_logs_verifies_clean(reference_store, capsys):
    assert main(["store", "verify", str(reference_store), "--quiet"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    root = store.open_store(reference_store)
    index = root.attrs["clips"]
    assert len(index) == 9  # 3 scenes x 25 frames: windows start at 0, 6, 12
    assert root.attrs["settings"]["cameras"] == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT",
                                                 "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
    frames = root["clips"][next(iter(index))]["frames"]
    assert frames.shape == (9, 6, 56, 96, 3) and frames.dtype == np.uint8


def test_no_scene_is_in_both_train_and_val(reference_store):
    index = store.open_store(reference_store).attrs["clips"]
    splits_of_scene = {}
    for entry in index.values():
        splits_of_scene.setdefault(entry["scene"], set()).add(entry["split"])
    assert all(len(splits) == 1 for splits in splits_of_scene.values())
    assert {s for splits in splits_of_scene.values() for s in splits} == {"train", "val"}


def test_summary_counts_add_up_and_captions_say_what_happened(reference_store):
    summary = json.loads((reference_store / SUMMARY).read_text())
    curation = summary["curation"]
    assert curation["scenes"] == 3
    assert curation["windows"] == curation["kept"] + sum(curation["dropped"].values())
    assert sum(curation["by_split"].values()) == curation["kept"]
    captions = {e["scene"]: e["caption"] for e in store.open_store(reference_store).attrs["clips"].values()}
    assert captions["scene-0002"].startswith("night; ")  # the seed-0 logs: day, night, rain
    assert captions["scene-0003"].startswith("rain; ")
    assert all(" m/s; " in c or "stopped" in c for c in captions.values())


def test_clip_poses_and_boxes_are_those_of_the_log(reference_store, synthetic_logs):
    from nuscenes.nuscenes import NuScenes

    nusc = NuScenes("v1.0-mini", dataroot=str(synthetic_logs), verbose=False)
    root = store.open_store(reference_store)
    clip = store.read_clip(root, "scene-0001-0000")
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    front = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
    assert clip["timestamps"][0] == front["timestamp"]
    pose = nusc.get("ego_pose", front["ego_pose_token"])
    np.testing.assert_allclose(clip["world_from_ego"][0, :3, 3], pose["translation"], atol=1e-9)
    first = slice(clip["box_offsets"][0], clip["box_offsets"][1])
    assert clip["box_offsets"][1] == len(sample["anns"])
    centres = sorted(map(tuple, np.round(clip["boxes"][first, :3], 3)))
    expected = sorted(tuple(np.round(nusc.get("sample_annotation", a)["translation"], 3)) for a in sample["anns"])
    np.testing.assert_allclose(centres, expected, atol=2e-3)


def test_tiny_hand_written_log_ingests_with_interpolated_boxes(tiny_logs, tmp_path):
    out = tmp_path / "store"
    assert main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS]) == 0
    root = store.open_store(out)
    assert list(root.attrs["clips"]) == ["scene-tiny-0000"]
    clip = store.read_clip(root, "scene-tiny-0000")
    assert clip["frames"].shape == (3, 1, 90, 160, 3)
    np.testing.assert_allclose(clip["world_from_ego"][:, 0, 3], [600.0, 601.0, 602.0])
    middle = clip["boxes"][clip["box_offsets"][1]:clip["box_offsets"][2]]
    assert np.isclose(middle[:, 1], 1595.35, atol=1e-3).sum() == 1  # the pedestrian, half-way
    assert clip["attrs"]["caption"] == "night, rain; driving straight at 4 m/s; 1 car, 1 pedestrian"
    assert clip["attrs"]["source"] == "nuscenes"
    assert main(["store", "verify", str(out), "--quiet"]) == 0


def _ingest_tiny(tiny_logs: Path, out: Path, *options: str) -> int:
    return main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), "--cameras", "CAM_FRONT", "--size",
                 "160x90", "--quiet", *options])


def test_a_10_hz_log_is_stored_at_10_fps_with_every_frame(tiny_logs, tmp_path):
    retime(tiny_logs, 99_997)  # three frames spanning 199 994 us
    out = tmp_path / "store"
    assert _ingest_tiny(tiny_logs, out, "--frames", "3") == 0
    root = store.open_store(out)
    assert root.attrs["settings"]["fps"] == 10.0
    clip = store.read_clip(root, "scene-tiny-0000")
    assert clip["attrs"]["fps"] == 10.0 and np.diff(clip["timestamps"]).tolist() == [99_997, 99_997]


def test_an_fps_the_log_does_not_run_at_is_refused_naming_the_rate_and_scene(tiny_logs, tmp_path, capsys):
    retime(tiny_logs, 99_997)
    out = tmp_path / "store"
    assert _ingest_tiny(tiny_logs, out, "--frames", "3", "--fps", "12") == 2
    error = capsys.readouterr().err
    assert "--fps 12: CAM_FRONT of scene-tiny runs at 10 Hz" in error and error.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("fps", ["5", "10.3"])
def test_an_fps_near_the_log_rate_or_a_whole_fraction_of_it_resamples(tiny_logs, tmp_path, fps):
    retime(tiny_logs, 99_997)
    out = tmp_path / "store"
    assert _ingest_tiny(tiny_logs, out, "--frames", "2", "--fps", fps, "--min-travel", "0") == 0
    clip = store.read_clip(store.open_store(out), "scene-tiny-0000")
    assert clip["attrs"]["fps"] == float(fps)
    assert np.diff(clip["timestamps"]).tolist() == ([199_994] if fps == "5" else [99_997])


def test_one_store_holds_one_rate_and_an_fps_must_fit_every_scene(monkeypatch):
    from drivesim.data import nuscenes as logs
    from drivesim.data.ingest import clip_fps
    from drivesim.errors import ConfigError

    rates = {"scene-a": 12.0, "scene-b": 12.0, "scene-c": 10.0, "scene-d": None}  # d: one frame, no rate
    monkeypatch.setattr(logs, "scene_rate", lambda nusc, scene, cameras: rates[scene])
    with pytest.raises(ConfigError, match=r"CAM_FRONT runs at 12 Hz in most scenes but at 10 Hz in scene-c "
                                          r"\(1 scene\(s\) differ\) .*: pass --fps"):
        clip_fps(None, list(rates), ["CAM_FRONT"], None)
    assert clip_fps(None, list(rates), ["CAM_FRONT"], 2) == 2.0  # every 6th and every 5th frame
    for fps, scene, rate in ((12, "scene-c", 10), (5, "scene-a", 12)):  # 12 Hz / 5 is no whole step
        with pytest.raises(ConfigError, match=f"--fps {fps}: CAM_FRONT of {scene} runs at {rate} Hz"):
            clip_fps(None, list(rates), ["CAM_FRONT"], fps)


def test_single_key_frames_are_kept_as_one_frame_clips(tiny_logs, tmp_path, capsys):
    out = tmp_path / "store"
    assert _ingest_tiny(tiny_logs, out, "--frames", "1", "--fps", "2") == 0
    root = store.open_store(out)
    assert sorted(root.attrs["clips"]) == ["scene-tiny-0000", "scene-tiny-0001"]  # the two key frames
    clip = store.read_clip(root, "scene-tiny-0001")
    assert clip["frames"].shape == (1, 1, 90, 160, 3)
    assert clip["attrs"]["caption"] == "night, rain; 1 car, 1 pedestrian"
    assert main(["store", "verify", str(out), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_ingest_that_keeps_nothing_says_why_on_stderr(tiny_logs, tmp_path, capsys):
    # the tiny ego drives 2 m in 0.5 s: a 5 m --min-travel drops the clip as static
    assert _ingest_tiny(tiny_logs, tmp_path / "a", "--frames", "3", "--min-travel", "5") == 0
    error = capsys.readouterr().err
    assert "kept 0 clips: all 1 window(s) of 1 scene(s) were dropped (static ego 1)" in error
    assert "--min-travel" in error and error.count("\n") == 1
    assert _ingest_tiny(tiny_logs, tmp_path / "b", "--frames", "4") == 0
    assert "kept 0 clips: none of the 1 scene(s) holds 4 frames at 4 fps (--frames, --fps)" in \
        capsys.readouterr().err


def _run_and_kill(dataroot: Path, out: Path, ready) -> None:
    """Start ingest in a child process and SIGKILL it as soon as `ready(out)` holds."""
    child = subprocess.Popen([sys.executable, "-m", "drivesim.cli", "ingest", "--dataroot", str(dataroot),
                              "--out", str(out), *OPTIONS], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not ready(out) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()


def _killed_unfinished(dataroot: Path, folder: Path, ready) -> Path:
    """A store whose ingest was killed part-way. On a loaded machine the child can finish between the
    check and the signal, so try again with a fresh store."""
    for attempt in range(4):
        out = folder / f"store-{attempt}"
        _run_and_kill(dataroot, out, ready)
        if store.verify(out)[1]:
            return out
    raise AssertionError("ingest finished every time before the kill landed")


def _writing_a_clip(out: Path) -> bool:
    partial = out / store.PARTIAL
    return partial.is_dir() and any(partial.iterdir())


def _one_scene_done(out: Path) -> bool:
    return (out / SCENES).is_dir() and any((out / SCENES).iterdir())


@pytest.mark.parametrize("ready", [_writing_a_clip, _one_scene_done], ids=["mid-clip", "after-a-scene"])
def test_killed_ingest_resumes_to_the_same_store(ready, synthetic_logs, reference_store, tmp_path):
    out = _killed_unfinished(synthetic_logs, tmp_path, ready)
    assert _ingest(synthetic_logs, out) == 0
    assert not (out / store.PARTIAL).exists() or not any((out / store.PARTIAL).iterdir())
    assert store_contents(out) == store_contents(reference_store)


def test_two_local_workers_write_the_same_store(synthetic_logs, reference_store, tmp_path):
    out = tmp_path / "store"
    assert _ingest(synthetic_logs, out, "--workers", "2") == 0
    assert store_contents(out) == store_contents(reference_store)


def test_ray_engine_writes_the_same_store(synthetic_logs, reference_store, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional engine: pip install 'drivesim[ray]'")
    out = tmp_path / "store"
    assert _ingest(synthetic_logs, out, "--engine", "ray", "--workers", "2") == 0
    assert store_contents(out) == store_contents(reference_store)


def test_rerunning_a_finished_ingest_changes_nothing(reference_store, synthetic_logs, capsys):
    before = store_contents(reference_store)
    assert _ingest(synthetic_logs, reference_store) == 0
    assert store_contents(reference_store) == before


@pytest.mark.parametrize("damage, named", [
    (lambda root: (root / "v1.0-mini" / "sample.json").unlink(), "sample.json: table missing"),
    (lambda root: (root / "v1.0-mini" / "scene.json").write_text('[{"token": "a"'), "scene.json: not valid JSON"),
])
def test_a_broken_log_is_named_and_the_store_keeps_its_clips(damage, named, tiny_logs, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS]) == 0
    before = store_contents(out)
    damage(tiny_logs)
    assert main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS]) == 2
    assert named in capsys.readouterr().err
    assert store_contents(out) == before


def test_a_version_that_does_not_exist_is_named(tiny_logs, tmp_path, capsys):
    code = main(["ingest", "--dataroot", str(tiny_logs), "--version", "v1.0-trainval", "--out",
                 str(tmp_path / "store"), *TINY_OPTIONS])
    assert code == 2
    assert "--version v1.0-trainval" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def _break_sweep(tiny_logs: Path, how: str) -> Path:
    image = next((tiny_logs / "sweeps" / "CAM_FRONT").iterdir())
    if how == "missing":
        image.unlink()
    else:
        image.write_bytes(image.read_bytes()[:200])
    return image


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_bad_image_with_skip_drops_the_clip_and_counts_it(how, tiny_logs, tmp_path, capsys):
    _break_sweep(tiny_logs, how)
    out = tmp_path / "store"
    assert main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS]) == 0
    summary = json.loads((out / SUMMARY).read_text())["curation"]
    assert summary["dropped"] == {f"{how} image": 1} and summary["kept"] == 0
    assert f"dropped: {how} image" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["missing", "corrupt"])
def test_a_bad_image_with_fail_names_it_and_keeps_the_store(how, tiny_logs, synthetic_logs, tmp_path, capsys):
    out = tmp_path / "store"
    image = _break_sweep(tiny_logs, how)
    code = main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS, "--on-error", "fail"])
    assert code == 2
    assert str(image) in capsys.readouterr().err
    assert store.stored_clip_ids(out) == []


def test_a_store_made_with_other_settings_is_refused_untouched(reference_store, synthetic_logs, capsys):
    before = store_contents(reference_store)
    assert main(["ingest", "--dataroot", str(synthetic_logs), "--out", str(reference_store), "--frames", "5",
                 "--stride", "6", "--size", "96x56", "--quiet"]) == 2
    assert "frames: store has 9, this run 5" in capsys.readouterr().err
    assert store_contents(reference_store) == before


def test_verify_of_a_folder_that_is_not_a_store_exits_2(tmp_path, capsys):
    assert main(["store", "verify", str(tmp_path)]) == 2
    assert "not a clip store" in capsys.readouterr().err


def test_verify_exits_1_and_names_a_damaged_clip(tiny_logs, tmp_path, capsys):
    out = tmp_path / "store"
    assert main(["ingest", "--dataroot", str(tiny_logs), "--out", str(out), *TINY_OPTIONS]) == 0
    pose = out / "clips" / "scene-tiny-0000" / "world_from_ego"
    chunk = next(p for p in pose.rglob("*") if p.is_file() and p.name != "zarr.json")
    chunk.write_bytes(chunk.read_bytes()[:-3] + b"\0\0\0")  # the checksum no longer matches
    assert main(["store", "verify", str(out), "--quiet"]) == 1
    assert "clips/scene-tiny-0000/world_from_ego: unreadable" in capsys.readouterr().out


OPTION_VALUES = {
    "--frames": st.one_of(st.integers(-5, 0).map(str), st.sampled_from(["x", "1.5", ""])),
    "--stride": st.one_of(st.integers(-5, 0).map(str), st.sampled_from(["two", "0.5"])),
    "--fps": st.one_of(st.floats(-10, 0).map(str), st.sampled_from(["nan", "inf", "fast", "1e9"])),
    "--size": st.text(st.sampled_from("0123456789x-. "), max_size=9).filter(
        lambda s: not _valid_size(s)),
    "--workers": st.one_of(st.integers(-3, 0).map(str), st.just("many")),
    "--cameras": st.sampled_from(["CAM_NOSE", ",", "CAM_FRONT,CAM_TAIL"]),
    "--val-fraction": st.sampled_from(["-0.1", "1.5", "half", "nan"]),
    "--min-travel": st.sampled_from(["-1", "inf", "nan", "far"]),
}


def _valid_size(text: str) -> bool:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
        return width > 0 and height > 0
    except ValueError:
        return False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(OPTION_VALUES)).flatmap(lambda o: st.tuples(st.just(o), OPTION_VALUES[o])))
def test_bad_options_are_named_and_write_nothing(tiny_logs, tmp_path_factory, capsys, option_value):
    option, value = option_value
    out = tmp_path_factory.mktemp("fuzz") / "store"
    defaults = {"--cameras": "CAM_FRONT", "--fps": "4", "--frames": "3"}
    defaults[option] = value
    argv = ["ingest", "--dataroot", str(tiny_logs), "--out", str(out), "--quiet",
            *[f"{name}={text}" for name, text in defaults.items()]]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse rejects what is not a number at all
        code = exit.code
    assert code == 2
    assert option in capsys.readouterr().err
    assert not out.exists()


def test_stored_boxes_project_where_the_devkit_projects_them(reference_store, synthetic_logs):
    """The clip's poses, calibration and boxes, chained from the world frame, land on the same pixels
    as the devkit's own projection of the log (scaled to the stored size)."""
    from nuscenes.nuscenes import NuScenes

    from drivesim.data.clip_sheet import cam_from_world
    from drivesim.geometry import box_corners
    from drivesim.geometry import project, transform_points

    nusc = NuScenes("v1.0-mini", dataroot=str(synthetic_logs), verbose=False)
    root = store.open_store(reference_store)
    clip = store.read_clip(root, "scene-0001-0000")
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    cameras = clip["attrs"]["cameras"]
    compared = 0
    for v, camera in enumerate(cameras):
        path, devkit_boxes, devkit_k = nusc.get_sample_data(sample["data"][camera])
        record = nusc.get("sample_data", sample["data"][camera])
        scale = np.array([96 / record["width"], 56 / record["height"]])
        expected = {round(float(b.wlh[0]), 3): b.center for b in devkit_boxes}  # camera-frame centres
        rows = slice(clip["box_offsets"][0], clip["box_offsets"][1])
        for box in clip["boxes"][rows].astype(np.float64):
            centre = transform_points(cam_from_world(clip, 0, v), box[None, :3])[0]
            match = expected.get(round(float(box[3]), 3))
            if match is None or centre[2] < 1.0 or np.linalg.norm(centre - match) > 0.05:
                continue
            pixel = project(clip["intrinsics"][v].astype(np.float64), centre[None])[0][0]
            reference = (np.asarray(devkit_k) @ match)[:2] / match[2]
            np.testing.assert_allclose(pixel, (reference + 0.5) * scale - 0.5, atol=0.05)
            compared += 1
    assert compared >= 3
    assert box_corners(clip["boxes"][:1].astype(np.float64)).shape == (1, 8, 3)


def test_clip_sheet_draws_a_clip(reference_store, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "sheet.png"
    assert main(["store", "sheet", str(reference_store), "--out", str(out), "--clip", "scene-0002-0006"]) == 0
    with Image.open(out) as image:
        assert image.size == (6 * 96, 3 * 56 + 22)
    assert main(["store", "sheet", str(reference_store), "--out", str(out), "--clip", "scene-9999-0000"]) == 2
    assert "--clip scene-9999-0000: not in store" in capsys.readouterr().err
