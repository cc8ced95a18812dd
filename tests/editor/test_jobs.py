"""Renders beside the page: a RenderJob reports progress, writes into its folder, can be stopped, and
turns a bad checkpoint into a message."""

from __future__ import annotations

from pathlib import Path

import yaml

from drivesim.editor.jobs import RenderJob, find_checkpoints
from drivesim.scenario import from_dict


def short_scenario(duration: float = 0.75):
    return from_dict({
        "name": "short", "prompt": "a car ahead", "rig": "front3", "fps": 12, "duration": duration, "seed": 2,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 8 * duration, "y": 0}]},
        "agents": [{"id": "lead", "category": "vehicle.car", "size": [1.8, 4.5, 1.5],
                    "parked": {"x": 15, "y": 0, "yaw": 0}}],
        "road": {"lanes": [[[-10, 0], [100, 0]]], "road_edges": [[[-10, -2], [100, -2]]]}}, "short")


def test_a_render_reports_progress_and_writes_its_folder(tiny_wfm_run, tmp_path):
    seen = []
    job = RenderJob(short_scenario(), tiny_wfm_run, tmp_path / "render", steps=1, device="cpu")
    original = job._chunk_done

    def spy(done, total):
        original(done, total)
        seen.append((done, total, job.progress))

    job._chunk_done = spy
    job.start().wait(300)
    assert job.state == "done", job.message
    assert job.progress == 1.0 and "10 frames x 3 cameras" in job.message
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]  # 5-frame chunks overlapping by one
    assert all(a[2] < b[2] for a, b in zip(seen, seen[1:]))
    assert job.outputs["grid"].is_file() and (tmp_path / "render" / "rollout.zarr").is_dir()


def test_a_stopped_render_says_so(tiny_wfm_run, tmp_path):
    job = RenderJob(short_scenario(), tiny_wfm_run, tmp_path / "render", steps=1, device="cpu")
    job.cancel()
    job.start().wait(300)
    assert job.state == "cancelled" and not job.running


def test_a_bad_checkpoint_fails_with_a_message(tmp_path):
    job = RenderJob(short_scenario(), tmp_path / "nowhere", tmp_path / "render", steps=1, device="cpu")
    job.start().wait(60)
    assert job.state == "failed" and "nowhere" in job.message


def test_world_model_runs_are_found_and_others_are_not(tiny_wfm_run, tmp_path):
    other = tmp_path / "tokenizer-run"
    (other / "checkpoints").mkdir(parents=True)
    (other / "config.yaml").write_text(yaml.safe_dump({"task": "tokenizer"}))
    broken = tmp_path / "broken"
    (broken / "checkpoints").mkdir(parents=True)
    (broken / "config.yaml").write_text(": not yaml: [")
    assert find_checkpoints(tmp_path, tiny_wfm_run.parent) == [tiny_wfm_run]
    assert find_checkpoints(tiny_wfm_run) == [tiny_wfm_run]
    assert find_checkpoints(Path("/nonexistent")) == []
