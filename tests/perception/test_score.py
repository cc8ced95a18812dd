"""The devkit's detection algorithm on known boxes: perfect predictions score 1, worse ones less."""

import math

import numpy as np
import pytest

from drivesim.perception.categories import CLASSES
from drivesim.perception.decode import Detections
from drivesim.perception.score import Frame, evaluate


def _frames(count: int = 6, seed: int = 0) -> list[Frame]:
    """Frames of boxes of every class around an ego far from the world origin, all seen by some camera."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(count):
        ego = np.array([1000.0 + 10 * index, -500.0, 2.0])
        labels = np.repeat(np.arange(len(CLASSES)), 3)
        boxes = np.zeros((len(labels), 9))
        boxes[:, :2] = ego[:2] + rng.uniform(-25, 25, (len(labels), 2))
        boxes[:, 3:6] = rng.uniform(0.5, 4, (len(labels), 3))
        boxes[:, 6] = rng.uniform(-np.pi, np.pi, len(labels))
        boxes[:, 7:9] = rng.uniform(-5, 5, (len(labels), 2))
        truth = Detections(boxes, np.ones(len(labels)), labels)
        frames.append(Frame(f"frame-{index}", truth, np.ones(len(labels), bool), truth, ego))
    return frames


def _predicted(frames: list[Frame], change) -> list[Frame]:
    return [Frame(f.token, f.ground_truth, f.visible, change(f.ground_truth), f.ego_position) for f in frames]


def test_perfect_predictions_score_map_1_and_nds_1():
    score = evaluate(_frames())
    assert score.mean_ap == pytest.approx(1.0)
    assert set(score.ap) == {"car", "truck", "bus", "bicycle", "pedestrian", "barrier"}
    assert all(error == pytest.approx(0.0, abs=1e-6) for error in score.tp_errors.values())
    assert set(score.tp_errors) == {"ATE", "ASE", "AOE", "AVE"} and math.isnan(score.aae)
    assert score.nds == pytest.approx(1.0)


def test_shifted_predictions_score_lower_the_further_they_are_shifted():
    frames = _frames()

    def shifted(metres):
        def change(truth):
            boxes = truth.boxes.copy()
            boxes[:, 0] += metres
            return Detections(boxes, truth.scores, truth.labels)
        return evaluate(_predicted(frames, change))

    near, far = shifted(0.7), shifted(3.0)
    assert 0 < far.mean_ap < near.mean_ap < 1     # matched at fewer of the 0.5/1/2/4 m thresholds
    assert near.tp_errors["ATE"] == pytest.approx(0.7, abs=1e-6)
    assert far.nds < near.nds < 1


def test_wrong_heading_size_and_speed_raise_their_errors_only():
    def change(truth):
        boxes = truth.boxes.copy()
        boxes[:, 6] += 0.5
        boxes[:, 3:6] *= 1.25
        boxes[:, 7] += 1.0
        return Detections(boxes, truth.scores, truth.labels)

    score = evaluate(_predicted(_frames(), change))
    assert score.mean_ap == pytest.approx(1.0)
    assert score.tp_errors["AOE"] == pytest.approx(0.5, abs=1e-6)
    assert score.tp_errors["ASE"] == pytest.approx(1 - 1 / 1.25 ** 3, abs=1e-6)
    assert score.tp_errors["AVE"] == pytest.approx(1.0, abs=1e-6)  # the barrier's velocity is not scored
    assert score.tp_errors["ATE"] == pytest.approx(0.0, abs=1e-6)


def test_false_positives_and_misses_lower_map():
    frames = _frames()

    def half_missed_with_ghosts(truth):
        boxes = truth.boxes[::2].copy()
        ghosts = truth.boxes[::2].copy()
        ghosts[:, 1] += 12.0
        return Detections(np.concatenate([boxes, ghosts]), np.r_[np.full(len(boxes), 0.9), np.full(len(ghosts), 0.95)],
                          np.r_[truth.labels[::2], truth.labels[::2]])

    assert evaluate(_predicted(frames, half_missed_with_ghosts)).mean_ap < 0.5


def test_boxes_out_of_range_or_unseen_are_not_counted():
    frames = _frames(count=1)
    frame = frames[0]
    far = frame.ground_truth.boxes.copy()
    far[:, :2] = frame.ego_position[:2] + [70.0, 0.0]  # beyond every class's range (50 m at most)
    truth = Detections(np.concatenate([frame.ground_truth.boxes, far]), np.ones(2 * len(far)),
                       np.r_[frame.ground_truth.labels, frame.ground_truth.labels])
    unseen = np.r_[frame.visible, np.ones(len(far), bool)]
    unseen[0] = False  # no camera saw this one: it is not a miss
    score = evaluate([Frame(frame.token, truth, unseen, frame.detections.take(np.arange(1, len(far))),
                            frame.ego_position)])
    assert score.mean_ap == pytest.approx(1.0)
    assert score.ground_truth == len(far) - 1


def test_no_ground_truth_gives_nan_not_an_error():
    frame = _frames(count=1)[0]
    empty = Frame(frame.token, Detections.empty(), np.zeros(0, bool), frame.detections, frame.ego_position)
    score = evaluate([empty])
    assert math.isnan(score.mean_ap) and math.isnan(score.nds)
