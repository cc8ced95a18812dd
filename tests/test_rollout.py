"""A rollout's folder: written whole or not at all, a killed save leaving the folder as it was and a rerun
clearing what it left."""

from __future__ import annotations

import numpy as np
import pytest
from rollout_helpers import make_scenario

from drivesim.rollout import ROLLOUT_STORE, Rollout


def small_rollout():
    """A Rollout of noise with the scenario's labels: what save writes, without a model."""
    from drivesim.rigs import load_rig

    scenario = make_scenario()
    rig = load_rig("front3", (32, 16))
    video = np.random.default_rng(0).integers(0, 256, (scenario.num_frames, 3, 16, 32, 3), dtype=np.uint8)
    return Rollout.labelled(scenario, rig, video)


def test_a_save_killed_while_writing_leaves_out_as_it_was(tmp_path, monkeypatch):
    result = small_rollout()
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the run before")

    def killed(self, path):
        (path / "zarr.json").parent.mkdir(parents=True, exist_ok=True)
        (path / "zarr.json").write_text("{")  # half a store, then the signal
        raise KeyboardInterrupt

    monkeypatch.setattr(Rollout, "write_store", killed)
    with pytest.raises(KeyboardInterrupt):
        result.save(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left either
    monkeypatch.undo()
    written = result.save(out, overwrite=True)
    assert not (out / "old.txt").exists() and written["store"] == out / ROLLOUT_STORE
    assert all(path.exists() and path.is_relative_to(out) for path in written.values())


def test_a_rerun_clears_the_staging_folder_a_killed_run_left(tmp_path):
    import subprocess
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
    stale = tmp_path / f".out.partial-{finished.stdout.strip()}"  # its process is gone: never complete
    (stale / "rollout.zarr").mkdir(parents=True)
    written = small_rollout().save(tmp_path / "out")
    assert not stale.exists() and (tmp_path / "out" / "grid.mp4") == written["grid"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_labels_hold_each_frames_boxes_velocities_and_tracks_as_the_scenario_has_them():
    rollout = small_rollout()
    scenario, labels = rollout.scenario, rollout.labels
    times = scenario.frame_times()
    layout = scenario.layout_frames(times)
    lead = scenario.agents[0].trajectory.velocity(times)[:, :2]
    for f in range(rollout.num_frames):
        np.testing.assert_array_equal(rollout.boxes(f), layout[f].boxes)
        assert rollout.track_ids(f) == ["lead", "parked"]
        rows = labels.boxes[labels.frame(f)]
        np.testing.assert_allclose(rows[0, 7:9], lead[f], atol=1e-5)  # the lead car drives at 14 m/s
        assert rows[0, 7] == pytest.approx(14, abs=0.01) and (rows[1, 7:9] == 0).all()  # parked: still
    np.testing.assert_array_equal(rollout.boxes(-1), rollout.boxes(rollout.num_frames - 1))
    with pytest.raises(IndexError):
        labels.frame(rollout.num_frames)
    cut = labels.first(2)
    assert len(cut.offsets) == 3 and len(cut.boxes) == len(cut.track) == int(labels.offsets[2])


def test_the_rollout_store_keeps_the_labels_as_they_are(tmp_path):
    from drivesim.data import store
    from drivesim.data.nuscenes import CATEGORIES

    rollout = small_rollout()
    path = rollout.write_store(tmp_path / ROLLOUT_STORE)
    clip = store.read_clip(store.open_store(path), rollout.clip_id())
    labels = rollout.labels
    np.testing.assert_array_equal(clip["boxes"], labels.boxes)
    np.testing.assert_array_equal(clip["box_offsets"], labels.offsets)
    np.testing.assert_array_equal(clip["box_track"], labels.track)
    assert [CATEGORIES[c] for c in clip["box_category"][:2]] == ["vehicle.car", "vehicle.truck"]
    assert store.open_clip(store.open_store(path), rollout.clip_id()).attrs["tracks"] == ["lead", "parked"]
