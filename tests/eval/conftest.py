"""The rollouts the report and detection tests share (built once: a rollout costs)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from eval_helpers import half_size, noisy, scenario_document

from drivesim.geometry import resize_intrinsics
from drivesim.rollout import ROLLOUT_STORE
from drivesim.scenario import StartFrames, from_dict
from drivesim.simulate import RolloutConfig, rollout
from drivesim.wfm.pipeline import WorldModelPipeline


@pytest.fixture(scope="session")
def rollouts(tiny_wfm_run, tmp_path_factory) -> dict[str, Path]:
    """plain/: one generated rollout (7 frames, 3 cameras, 64x32) whose rollout.zarr is the reference store.
    generated/ holds rollouts whose scenarios start from that clip: perfect/ (its very frames), later/
    (its frames from frame 2, start_frames.frame 2), small/ (its frames at half size), noisy/ (its frames
    with noise). copied-start/: its start frame exactly, then noise. Built from the one rollout: only
    what they hold matters, and a rollout costs."""
    pipeline = WorldModelPipeline.from_pretrained(tiny_wfm_run, "cpu")
    base = tmp_path_factory.mktemp("eval-rollouts")
    scenario = from_dict(scenario_document(0.5), source="test scenario")
    result = rollout(scenario, pipeline, RolloutConfig(steps=1), progress=False)
    result.save(base / "plain")
    reference = base / "plain" / ROLLOUT_STORE

    def starting(frame: int):
        return dataclasses.replace(scenario, start_frames=StartFrames(str(reference), result.clip_id(), frame))

    generated = base / "generated"
    dataclasses.replace(result, scenario=starting(0)).save(generated / "perfect")
    per_frame = {"world_from_ego": result.world_from_ego[:5], "timestamps": result.timestamps[:5],
                 "labels": result.labels.first(5)}
    later = dataclasses.replace(scenario, duration=4 / 12, start_frames=StartFrames(str(reference), "eval_drive", 2))
    dataclasses.replace(result, scenario=later, video=result.video[2:], **per_frame).save(generated / "later")
    dataclasses.replace(result, scenario=starting(0), video=half_size(result.video),
                        intrinsics=resize_intrinsics(result.intrinsics, 0.5, 0.5).astype(np.float32)
                        ).save(generated / "small")
    dataclasses.replace(result, scenario=starting(0), video=noisy(result.video, 25)).save(generated / "noisy")
    copied = noisy(result.video, 25)
    copied[0] = result.video[0]  # the frame the model was given, shown as given
    dataclasses.replace(result, scenario=starting(0), video=copied).save(base / "copied-start")
    return {"plain": base / "plain", "generated": generated, "reference": reference,
            "copied-start": base / "copied-start"}
