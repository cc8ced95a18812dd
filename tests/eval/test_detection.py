"""Controllability in `drivesim eval` (drivesim/eval/detection.py): the detector runs on the same frames of
the generated and the real clip, so a rollout whose frames ARE the real ones scores exactly as they do (ratio
1), spoilt frames score otherwise, the given start frame is left out, and --detector is checked before any
work and can be switched off."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from drivesim.cli import main
from drivesim.eval.report import evaluate
from drivesim.perception.categories import CLASSES
from drivesim.perception.decode import Detections


class SpreadDetector:
    """A stand-in whose output depends on the pixels: per frame, one car 12 m ahead of the ego (where the
    drive's lead car is), moved sideways by the front camera's pixel spread and scored by it."""

    size = (64, 32)

    def __init__(self):
        self.frames_seen = 0

    def detect(self, images, intrinsics, ego_from_cam):
        found = []
        for frame in images:  # [V, 3, H, W]
            self.frames_seen += 1
            spread = float(frame[1].std())  # CAM_FRONT
            box = np.array([[12.0, spread, 0.775, 1.85, 4.5, 1.55, 0.0, 14.0, 0.0]])
            found.append(Detections(box, np.array([min(0.99, 0.2 + spread)]), np.array([CLASSES.index("car")])))
        return found


@pytest.fixture(scope="module")
def detected(rollouts):
    detector = SpreadDetector()
    report = evaluate(rollouts["generated"], reference=rollouts["reference"], progress=False, detector=detector)
    return report, detector


def test_rollouts_of_the_real_frames_detect_exactly_as_the_real_frames(rollouts):
    for name in ("perfect", "later"):  # the same pixels; the same from frame 2 of the clip
        control = evaluate(rollouts["generated"] / name, reference=rollouts["reference"], progress=False,
                           detector=SpreadDetector()).controllability
        assert control.real.mean_ap > 0 and control.real.nds > 0, name  # the stand-in finds the lead car
        assert control.paired.nds == pytest.approx(control.real.nds, abs=1e-6), name
        assert control.paired.mean_ap == pytest.approx(control.real.mean_ap, abs=1e-6), name
        assert control.nds_ratio == pytest.approx(1.0, abs=1e-6) and control.map_ratio == pytest.approx(1.0), name


def test_spoilt_frames_change_the_generated_score_and_not_the_real_one(rollouts):
    perfect = evaluate(rollouts["generated"] / "perfect", reference=rollouts["reference"], progress=False,
                       detector=SpreadDetector()).controllability
    spoilt = evaluate(rollouts["generated"] / "noisy", reference=rollouts["reference"], progress=False,
                      detector=SpreadDetector()).controllability
    assert spoilt.real.nds == perfect.real.nds
    assert spoilt.paired.nds < perfect.paired.nds and spoilt.nds_ratio < 1  # noise moved the detections off


def test_all_rollouts_pool_into_one_score_and_the_given_frame_is_left_out(detected):
    report, detector = detected
    control = report.controllability
    assert control.rollouts == control.paired_rollouts == 4
    # 6 + 4 + 6 + 6 generated frames (7 or 5 less the given start frame), and as many real ones
    assert control.generated.frames == control.real.frames == 22 and detector.frames_seen == 44
    small = [name for name in ("small",) if name in {entry.name for entry in report.rollouts}]
    assert small  # a half-size rollout is detected after resizing to the detector's size, not refused
    assert control.generated is control.paired
    lines = control.lines()
    assert any(line.startswith("controllability (generated / real): NDS") for line in lines)


def test_without_a_real_clip_the_generated_frames_are_scored_and_the_ratio_is_not(rollouts):
    control = evaluate(rollouts["plain"], progress=False, detector=SpreadDetector()).controllability
    assert control.generated.frames == 7 and control.real is None and math.isnan(control.nds_ratio)
    assert any("no real frames" in note for note in control.notes)


def test_eval_takes_a_detector_folder_and_writes_controllability(rollouts, tmp_path, capsys):
    from drivesim.perception.model import CameraDetector, DetectorConfig
    from drivesim.perception.pretrained import TrainedDetector, save_detector

    config = DetectorConfig(channels=(8, 16, 16, 32), blocks=(1, 1, 1, 1), neck=16, head=16)
    folder = save_detector(TrainedDetector(CameraDetector(config).eval(), (64, 32)), tmp_path / "detector")
    code = main(["eval", "--rollouts", str(rollouts["generated"]), "--reference", str(rollouts["reference"]),
                 "--detector", str(folder), "--out", str(tmp_path / "eval"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert f"detection ({folder})" in out
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["controllability"]["detector"] == str(folder)
    assert report["controllability"]["real"]["frames"] == 22
    assert "Controllability" in (tmp_path / "eval" / "report.html").read_text()


def test_a_bad_detector_is_refused_before_any_work_and_none_skips_it(rollouts, tmp_path, capsys):
    code = main(["eval", "--rollouts", str(rollouts["plain"]), "--detector", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "eval"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "--detector" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "eval").exists()
    assert main(["eval", "--rollouts", str(rollouts["plain"]), "--detector", "none",
                 "--out", str(tmp_path / "eval"), "--quiet"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["controllability"]["generated"] is None
    assert "detection not measured (--detector none)" in capsys.readouterr().out
