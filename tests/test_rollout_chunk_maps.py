"""A rollout draws each frame's layout maps once: the frames a chunk shares with the one before keep the
maps drawn for it, and every chunk still gets exactly the maps of its own frames."""

from __future__ import annotations

import numpy as np
from rollout_helpers import make_scenario

from drivesim.render import render_layout
from drivesim.simulate import RolloutConfig, _layout_maps, rollout
from drivesim.wfm.pipeline import WorldModelPipeline


def test_maps_drawn_before_are_kept_and_the_rest_drawn():
    scenario = make_scenario(duration=1.0)
    rig = scenario.rig.resized(64, 32)
    layout_frames = scenario.layout_frames(scenario.frame_times()[3:8])
    full = render_layout(rig, layout_frames)
    assert np.array_equal(_layout_maps(rig, layout_frames), full)
    for kept in (1, 2, 5):
        assert np.array_equal(_layout_maps(rig, layout_frames, full[:, :kept].copy()), full)


def test_every_chunk_gets_the_maps_of_its_frames_each_drawn_once(tiny_wfm_run, monkeypatch):
    import drivesim.render
    import drivesim.scene_maps
    import drivesim.simulate as simulate

    pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run)
    scenario = make_scenario(duration=1.0)  # 13 frames: chunks of 5 from frames 0, 4 and 8
    given, drawn = [], []
    chunk_conditions, draw = simulate._chunk_conditions, drivesim.render.render_layout

    def spy_conditions(scenario, rig, times, maps, device):
        given.append((times, maps.copy()))
        return chunk_conditions(scenario, rig, times, maps, device)

    def spy_draw(rig, layout_frames, *args, **kwargs):
        drawn.append(len(layout_frames))
        return draw(rig, layout_frames, *args, **kwargs)

    monkeypatch.setattr(simulate, "_chunk_conditions", spy_conditions)
    monkeypatch.setattr(drivesim.scene_maps, "render_layout", spy_draw)  # sparse maps: what render_maps draws
    rollout(scenario, pipeline, RolloutConfig(steps=1), progress=False)
    monkeypatch.undo()
    rig = scenario.rig.resized(*pipeline.trained_size())
    assert drawn == [5, 4, 4]  # 13 frames, each once
    assert [round(float(times[0]) * scenario.fps) for times, _ in given] == [0, 4, 8]
    for times, maps in given:
        assert np.array_equal(maps, render_layout(rig, scenario.layout_frames(times)))
