"""A rollout's files are written side by side: each is the file written alone, and a writer that fails still
leaves the folder as it was, with no staging folder, once the other writers have stopped."""

from __future__ import annotations

import time

import numpy as np
import pytest
from rollout_helpers import make_scenario

import drivesim.rollout as rollout_module
from drivesim.data.store import open_clip, open_store
from drivesim.rigs import load_rig
from drivesim.rollout import ROLLOUT_STORE, Rollout


def small_rollout() -> Rollout:
    scenario = make_scenario(duration=1.0)
    rig = load_rig("front3", (48, 32))
    video = np.random.default_rng(0).integers(0, 256, (scenario.num_frames, 3, 32, 48, 3), dtype=np.uint8)
    return Rollout.labelled(scenario, rig, video)


def test_files_written_side_by_side_are_those_written_one_at_a_time(tmp_path, monkeypatch):
    result = small_rollout()
    monkeypatch.setattr(rollout_module, "SAVE_THREADS", 1)
    alone = result.save(tmp_path / "alone")
    monkeypatch.setattr(rollout_module, "SAVE_THREADS", 8)
    together = result.save(tmp_path / "together")
    assert list(alone) == list(together) == [*result.cameras, "grid", "contact_sheet", "scenario", "store"]
    for key, path in alone.items():
        if key != "store":
            assert path.read_bytes() == together[key].read_bytes(), key
    clips = [open_clip(open_store(written["store"]), result.clip_id()) for written in (alone, together)]
    for name in ("frames", "boxes", "box_offsets", "timestamps", "world_from_ego"):
        assert np.array_equal(clips[0][name][...], clips[1][name][...]), name


def test_a_failing_writer_leaves_out_as_it_was_once_the_others_stopped(tmp_path, monkeypatch):
    result = small_rollout()
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the run before")
    write_mp4 = rollout_module.write_mp4

    def slow_mp4(path, frames, fps):
        time.sleep(0.2)  # still writing when the sheet fails
        return write_mp4(path, frames, fps)

    def failing_sheet(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rollout_module, "write_mp4", slow_mp4)
    monkeypatch.setattr(rollout_module, "contact_sheet", failing_sheet)
    with pytest.raises(OSError, match="disk full"):
        result.save(out, overwrite=True)
    time.sleep(0.5)  # a writer left running would recreate the staging folder by now
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    monkeypatch.undo()
    assert result.save(out, overwrite=True)["store"] == out / ROLLOUT_STORE
