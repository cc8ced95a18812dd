"""Text2World's painted starts: a scenario's dense scene maps painted with the palette beside the weights,
noised to --paint-strength and finished by the model; chosen by auto when the weights have a palette."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from rollout_helpers import CAMERAS, make_scenario

from drivesim.errors import ConfigError
from drivesim.paint_baseline import Palette, paint
from drivesim.render import TIMES_OF_DAY
from drivesim.scene_maps import CLASSES, render_scene
from drivesim.simulate import RolloutConfig, rollout
from drivesim.wfm.pipeline import WorldModelPipeline

WIDTH, HEIGHT, FRAMES = 64, 32, 5


def _palette() -> Palette:
    rng = np.random.default_rng(0)
    shape = (len(TIMES_OF_DAY), len(CLASSES))
    return Palette(rng.uniform(20, 235, (*shape, 3)), np.zeros((*shape, 3)), np.ones(shape, np.int64))


@pytest.fixture(scope="module")
def pipelines(tiny_wfm_run):
    plain = WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")
    return plain, dataclasses.replace(plain, palette=_palette())


def test_a_painted_start_keeps_the_painted_maps_as_the_strength_goes_to_zero(pipelines):
    from drivesim.tokenizer.model import flatten_views, unflatten_views

    _, painted = pipelines
    scenario = make_scenario()
    rig = scenario.rig.resized(WIDTH, HEIGHT)
    times = np.minimum(np.arange(FRAMES) / scenario.fps, (scenario.num_frames - 1) / scenario.fps)
    pixels = paint(render_scene(rig, scenario.layout_frames(times)), painted.palette)  # [V, F, H, W, 3]
    video = torch.from_numpy(pixels).permute(0, 1, 4, 2, 3).float()[None] / 127.5 - 1
    with torch.no_grad():
        through = unflatten_views(painted.tokenizer.decode(painted.tokenizer.encode(flatten_views(video))),
                                  len(CAMERAS))
    expected = ((through[0].clamp(-1, 1) + 1) * 127.5).permute(1, 0, 3, 4, 2).numpy()  # [F, V, H, W, 3]

    def distance(result) -> float:
        frames = min(len(result.video), FRAMES)
        return float(np.abs(result.video[:frames].astype(float) - expected[:frames]).mean())

    near = rollout(scenario, painted, RolloutConfig(steps=1, init="painted", paint_strength=0.01), progress=False)
    far = rollout(scenario, painted, RolloutConfig(steps=1, init="painted", paint_strength=0.9), progress=False)
    assert distance(near) < 3 and distance(far) > 3 * distance(near)


def test_auto_paints_only_with_a_palette(pipelines):
    plain, painted = pipelines
    scenario = make_scenario()
    config = RolloutConfig(steps=1)
    assert config.starting_from(scenario, palette=True) == "painted"
    assert config.starting_from(scenario, palette=False) == "noise"
    auto = rollout(scenario, painted, config, progress=False).video
    chosen = rollout(scenario, painted, dataclasses.replace(config, init="painted"), progress=False).video
    np.testing.assert_array_equal(auto, chosen)
    noise = rollout(scenario, plain, config, progress=False).video
    assert not np.array_equal(auto, noise)
    with pytest.raises(ConfigError, match="palette"):
        rollout(scenario, plain, dataclasses.replace(config, init="painted"), progress=False)
    with pytest.raises(ConfigError, match="^paint_strength must be a flow time"):
        rollout(scenario, painted, RolloutConfig(steps=1, init="painted", paint_strength=0), progress=False)


def test_pack_weights_keeps_a_palette_beside_the_weights(tiny_wfm_run, tmp_path):
    from drivesim.cli import main

    palette = tmp_path / "palette.json"
    _palette().save(palette)
    out = tmp_path / "packed"
    assert main(["pack-weights", "--checkpoint", str(tiny_wfm_run), "--out", str(out), "--palette", str(palette)]) == 0
    loaded = WorldModelPipeline.from_pretrained(out, "cpu")
    np.testing.assert_allclose(loaded.palette.base, _palette().base, atol=1e-3)
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main(["pack-weights", "--checkpoint", str(tiny_wfm_run), "--out", str(tmp_path / "other"),
                 "--palette", str(bad)]) == 2


def test_fit_palette_command_writes_a_palette_and_names_bad_input(synthetic_store, tmp_path, capsys):
    from drivesim.cli import main

    out = tmp_path / "palette.json"
    assert main(["fit-palette", "--store", str(synthetic_store), "--size", "96x64", "--every", "3",
                 "--out", str(out)]) == 0
    assert Palette.load(out).pixels.sum() > 0
    assert main(["fit-palette", "--store", str(synthetic_store), "--out", str(tmp_path / "p.txt")]) == 2
    assert "--out must name a .json file" in capsys.readouterr().err
