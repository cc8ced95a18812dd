"""Rollouts on a tiny random world model and tiny tokenizer saved as a fake `drivesim train wfm` run:
files and shapes, determinism under the seed, chunking, start frames, and the CLI's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from rollout_helpers import CAMERAS, make_scenario, scenario_document

from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.rollout import ROLLOUT_STORE
from drivesim.scenario import from_dict, save
from drivesim.simulate import RolloutConfig, hold_start_frame, reproject_start_frame, rollout
from drivesim.wfm.pipeline import WorldModelPipeline

WIDTH, HEIGHT, FRAMES = 64, 32, 5  # per camera; 1 + 4 video frames (2 latent frames) per chunk


@pytest.fixture(scope="module")
def checkpoint(tiny_wfm_run) -> Path:
    return tiny_wfm_run


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return WorldModelPipeline.from_pretrained(checkpoint, "cpu")


def read_mp4(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def test_a_rollout_writes_videos_sheet_and_a_store_the_dataset_reads(loaded, tmp_path):
    from drivesim.data.dataset import ClipDataset
    from drivesim.data.store import open_store, read_clip, verify

    pipeline = loaded
    scenario = make_scenario()  # 0.25 s at 12 fps: 4 frames, one chunk
    result = rollout(scenario, pipeline, RolloutConfig(steps=2), progress=False)
    assert result.video.shape == (4, 3, HEIGHT, WIDTH, 3) and result.video.dtype == np.uint8
    assert result.cameras == CAMERAS
    assert result.world_from_ego.shape == (4, 4, 4) and result.timestamps.tolist() == [0, 83333, 166667, 250000]
    assert [result.track_ids(f) for f in range(4)] == [["lead", "parked"]] * 4
    assert result.intrinsics.shape == (3, 3, 3) and result.intrinsics[0, 0, 2] < WIDTH

    written = result.save(tmp_path / "out")
    for camera in CAMERAS:
        frames = read_mp4(written[camera])
        assert frames.shape == (4, HEIGHT, WIDTH, 3)
    assert read_mp4(written["grid"]).shape == (4, HEIGHT, 3 * WIDTH, 3)  # front3: one row
    assert written["contact_sheet"].stat().st_size > 0

    store_path = tmp_path / "out" / ROLLOUT_STORE
    checked, problems = verify(store_path)
    assert checked == 1 and not problems, problems
    clip = ClipDataset(store_path, split=None, random_crop=False)
    item = clip[0]
    assert item["video"].shape == (3, 4, 3, HEIGHT, WIDTH) and item["caption"] == scenario.prompt
    expected = torch.from_numpy(result.video).permute(1, 0, 4, 2, 3).float() / 127.5 - 1
    assert torch.allclose(item["video"], expected, atol=1e-5)
    arrays = read_clip(open_store(store_path), clip.clip_ids[0])
    assert arrays["box_offsets"].tolist() == [0, 2, 4, 6, 8]
    root = open_store(store_path)
    names = [root.attrs["categories"][c] for c in arrays["box_category"][:2]]
    assert names == ["vehicle.car", "vehicle.truck"] and arrays["box_track"][:2].tolist() == [0, 1]
    np.testing.assert_allclose(arrays["boxes"][0, :3], [20, 0, 1.55 / 2], atol=1e-4)
    assert arrays["boxes"][0, 7] == pytest.approx(14, abs=0.5)  # the lead's speed along x

    with pytest.raises(ConfigError, match="not empty"):
        result.save(tmp_path / "out")
    result.save(tmp_path / "out", overwrite=True)


def test_the_same_seed_gives_the_same_video_and_another_seed_another(loaded):
    pipeline = loaded
    scenario = make_scenario()
    noisy = dict(steps=2, temperature=1.0)  # the seed draws the starting noise: at temperature 0 there is none
    first = rollout(scenario, pipeline, RolloutConfig(**noisy), progress=False)
    again = rollout(scenario, pipeline, RolloutConfig(**noisy, seed=scenario.seed), progress=False)
    other = rollout(scenario, pipeline, RolloutConfig(**noisy, seed=scenario.seed + 1), progress=False)
    assert np.array_equal(first.video, again.video)
    assert not np.array_equal(first.video, other.video)


def test_a_long_scenario_is_generated_in_chunks(loaded, monkeypatch):
    import drivesim.wfm.pipeline as pipeline_module

    pipeline = loaded
    calls = []
    original = pipeline_module.sample_latents

    def spy(model, conditions, shape, config, clean_latents=None, progress=False, init=None):
        calls.append((config.clean_frames, conditions.ego0_from_ego.shape, conditions.layout.shape,
                      None if clean_latents is None else clean_latents[:, :, :config.clean_frames].clone()))
        assert init is None and config.start == 1  # no start frames: every chunk from noise
        return original(model, conditions, shape, config, clean_latents, progress, init)

    monkeypatch.setattr(pipeline_module, "sample_latents", spy)
    scenario = make_scenario(duration=1.0)  # 13 frames: windows of 5 starting at 0, 4, 8
    result = rollout(scenario, pipeline, RolloutConfig(steps=1), progress=False)
    assert result.video.shape[0] == 13 and len(result.labels.offsets) == 13 + 1
    assert [c[0] for c in calls] == [0, 1, 1]
    assert all(c[1] == (1, FRAMES, 4, 4) and c[2] == (1, 3, FRAMES, 7, HEIGHT, WIDTH) for c in calls)
    # the second chunk starts from the first's last frame, re-encoded
    last = torch.from_numpy(result.video[4]).permute(0, 3, 1, 2).float() / 127.5 - 1  # [V, 3, H, W]
    with torch.no_grad():
        encoded = pipeline.encode_views(last[None, :, None])
    assert torch.allclose(calls[1][3], encoded, atol=0.05)


def test_start_frames_from_a_store_are_the_first_frame(loaded, tmp_path):
    pipeline = loaded
    source = rollout(make_scenario(), pipeline, RolloutConfig(steps=1), progress=False)
    source.save(tmp_path / "source")
    document = scenario_document()
    document["start_frames"] = {"store": str(tmp_path / "source" / ROLLOUT_STORE), "clip": "tiny_cruise", "frame": 2}
    result = rollout(from_dict(document, source="with start"), pipeline, RolloutConfig(steps=1), progress=False)
    with torch.no_grad():  # the first frame is the stored frame through the tokenizer
        frame = torch.from_numpy(source.video[2]).permute(0, 3, 1, 2).float() / 127.5 - 1
        through = pipeline.decode_views(pipeline.encode_views(frame[None, :, None]))
    expected = ((through[0, :, 0].clamp(-1, 1) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(result.video[0].astype(float) - expected).max() <= 1

    document["start_frames"]["clip"] = "nope"
    with pytest.raises(ConfigError, match="no clip 'nope'"):
        rollout(from_dict(document, source="with start"), pipeline, RolloutConfig(steps=1), progress=False)


def test_load_errors_name_the_checkpoint(checkpoint, tmp_path):
    with pytest.raises(ConfigError, match="no such folder"):
        WorldModelPipeline.from_pretrained(tmp_path / "missing")
    import shutil

    step = next((checkpoint / "checkpoints").iterdir())
    copy = tmp_path / "copy"
    shutil.copytree(step, copy)
    document = yaml.safe_load((copy / "config.yaml").read_text())
    document["task"] = "tokenizer"
    (copy / "config.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="does not match its checksum"):
        WorldModelPipeline.from_pretrained(copy)
    from drivesim.train.checkpoint import write_checkpoint

    def fake(config, name):
        return write_checkpoint(tmp_path / name, 1, config, {}, None, {}, [{}], keep_last=1)

    with pytest.raises(ConfigError, match="'tokenizer' checkpoint, not a 'wfm' one"):
        WorldModelPipeline.from_pretrained(fake({"task": "tokenizer"}, "a"))
    with pytest.raises(ConfigError, match="tokenizer folder .*missing"):
        WorldModelPipeline.from_pretrained(fake({"task": "wfm", "data": {"tokenizer": str(tmp_path / "gone")}}, "b"))


def test_generate_command(checkpoint, tmp_path, capsys):
    scenario_file = save(make_scenario(), tmp_path / "s.yaml")
    out = tmp_path / "out"
    code = main(["generate", "--scenario", str(scenario_file), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--steps", "1", "--device", "cpu", "--quiet"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.mp4" for c in CAMERAS] + ["grid.mp4", "contact_sheet.png", "scenario.yaml", ROLLOUT_STORE])
    capsys.readouterr()
    # a non-empty --out is refused
    code = main(["generate", "--scenario", str(scenario_file), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--steps", "1", "--quiet"])
    assert code == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing checkpoint", "bad scenario", "missing scenario", "bad steps"])
def test_generate_errors_exit_2_naming_the_input(checkpoint, tmp_path, capsys, case):
    scenario_file = save(make_scenario(), tmp_path / "s.yaml")
    args = {"--scenario": str(scenario_file), "--checkpoint": str(checkpoint), "--out": str(tmp_path / "out"),
            "--steps": "1"}
    if case == "missing checkpoint":
        args["--checkpoint"] = str(tmp_path / "nope")
        named = "nope"
    elif case == "bad scenario":
        bad = tmp_path / "bad.yaml"
        document = scenario_document()
        document["fps"] = "fast"
        bad.write_text(yaml.safe_dump(document))
        args["--scenario"] = str(bad)
        named = "bad.yaml"
    elif case == "missing scenario":
        args["--scenario"] = str(tmp_path / "none.yaml")
        named = "none.yaml"
    else:
        args["--steps"] = "0"
        named = "--steps"
    code = main(["generate", *[x for pair in args.items() for x in pair], "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_temperature_zero_starts_from_the_mean_whatever_the_seed(loaded, tmp_path, capsys):
    pipeline = loaded
    scenario = make_scenario()
    cold = [rollout(scenario, pipeline, RolloutConfig(steps=2, seed=seed, temperature=0.0), progress=False).video
            for seed in (1, 2)]
    assert np.array_equal(*cold)
    warm = [rollout(scenario, pipeline, RolloutConfig(steps=2, seed=seed, temperature=t), progress=False).video
            for seed, t in ((1, 1.0), (1, 0.5))]
    assert not np.array_equal(warm[0], warm[1]) and not np.array_equal(warm[1], cold[0])
    with pytest.raises(ConfigError, match="temperature"):
        rollout(scenario, pipeline, RolloutConfig(steps=1, temperature=-0.1), progress=False)
    scenario_file = save(scenario, tmp_path / "s.yaml")
    code = main(["generate", "--scenario", str(scenario_file), "--out", str(tmp_path / "o"), "--temperature", "3",
                 "--checkpoint", str(tmp_path), "--quiet"])
    assert code == 2 and "--temperature" in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def started(loaded, tmp_path_factory):
    """The tiny scenario with a start frame: frame 0 of a rollout of it, stored."""
    pipeline = loaded
    folder = tmp_path_factory.mktemp("start")
    rollout(make_scenario(), pipeline, RolloutConfig(steps=1), progress=False).save(folder / "source")
    document = scenario_document()
    document["start_frames"] = {"store": str(folder / "source" / ROLLOUT_STORE), "clip": "tiny_cruise", "frame": 0}
    return from_dict(document, source="started")


def test_the_reprojection_baseline_moves_from_the_start_frame_with_the_ego(started):
    held = hold_start_frame(started, (WIDTH, HEIGHT))
    redrawn = reproject_start_frame(started, (WIDTH, HEIGHT))
    assert redrawn.video.shape == held.video.shape and redrawn.boxes(-1).shape == held.boxes(-1).shape
    assert np.abs(redrawn.video[0].astype(int) - held.video[0].astype(int)).mean() < 1  # no motion yet
    moved = np.abs(redrawn.video[-1].astype(int) - held.video[-1].astype(int)).mean()
    assert moved > 2  # the ego drove 3.5 m: the picture is not the start frame any more
    ground_only = reproject_start_frame(started, (WIDTH, HEIGHT), use_layout=False)
    assert not np.array_equal(ground_only.video[-1], redrawn.video[-1])  # the boxes and kerb walls count
    with pytest.raises(ConfigError, match="no start_frames"):
        reproject_start_frame(make_scenario(), (WIDTH, HEIGHT))


def test_a_reprojected_start_keeps_the_redrawn_frames_as_the_strength_goes_to_zero(loaded, started):
    from drivesim.tokenizer.model import flatten_views, unflatten_views

    pipeline = loaded
    redrawn = reproject_start_frame(started, (WIDTH, HEIGHT)).video
    redrawn = redrawn[np.minimum(np.arange(FRAMES), len(redrawn) - 1)]  # one chunk: its times end at the last frame
    video = torch.from_numpy(redrawn).permute(1, 0, 4, 2, 3).float()[None] / 127.5 - 1
    with torch.no_grad():
        through = unflatten_views(pipeline.tokenizer.decode(pipeline.tokenizer.encode(flatten_views(video))),
                                  len(CAMERAS))
    expected = ((through[0].clamp(-1, 1) + 1) * 127.5).permute(1, 0, 3, 4, 2).numpy()  # [F, V, H, W, 3]

    def distance(result) -> float:  # frames after the given first one
        frames = len(result.video)
        return float(np.abs(result.video[1:].astype(float) - expected[1:frames]).mean())

    near = rollout(started, pipeline, RolloutConfig(steps=1, temperature=0.0, init="reprojected", strength=0.01),
                   progress=False)
    far = rollout(started, pipeline, RolloutConfig(steps=1, temperature=0.0, init="reprojected", strength=0.5),
                  progress=False)
    assert distance(near) < 2 and distance(far) > 4 * distance(near)
    with pytest.raises(ConfigError, match="^strength must be a flow time"):
        rollout(started, pipeline, RolloutConfig(steps=1, init="reprojected", strength=0), progress=False)
    with pytest.raises(ConfigError, match="start_frames"):
        rollout(make_scenario(), pipeline, RolloutConfig(steps=1, init="reprojected"), progress=False)
    with pytest.raises(ConfigError, match="^init must be one of"):
        rollout(started, pipeline, RolloutConfig(steps=1, init="warp"), progress=False)


def test_generate_refuses_a_bad_strength_and_a_reprojection_without_start_frames(checkpoint, tmp_path, capsys):
    scenario_file = save(make_scenario(), tmp_path / "s.yaml")
    base = ["generate", "--scenario", str(scenario_file), "--checkpoint", str(checkpoint), "--quiet", "--steps", "1"]
    assert main([*base, "--out", str(tmp_path / "a"), "--strength", "0"]) == 2
    assert "--strength" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main([*base, "--out", str(tmp_path / "b"), "--init", "reprojected"]) == 2
    assert "start_frames" in capsys.readouterr().err


def test_the_rollout_names_its_seed_parameter_not_a_flag():
    from drivesim.scenario import MAX_SEED

    for seed in (-1, MAX_SEED):
        with pytest.raises(ConfigError, match=r"^seed must be an integer from 0 to 2\*\*62-1"):
            rollout(make_scenario(), None, RolloutConfig(seed=seed), progress=False)
