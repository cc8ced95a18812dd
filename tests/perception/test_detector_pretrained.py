"""A trained detector saved as a folder and read back, scored on a store; folders that are not one are named."""

import math

import pytest
import torch

from drivesim.errors import ConfigError
from drivesim.perception.model import CameraDetector, DetectorConfig
from drivesim.perception.pretrained import TrainedDetector, load_detector, save_detector
from drivesim.perception.score import DetectionScore, score_store

TINY = DetectorConfig(channels=(8, 16, 16, 32), blocks=(1, 1, 1, 1), neck=16, head=16)


def test_a_saved_detector_loads_back_with_its_weights_and_size(tmp_path):
    torch.manual_seed(0)
    detector = TrainedDetector(CameraDetector(TINY).eval(), (64, 32))
    folder = save_detector(detector, tmp_path / "packed")
    loaded = load_detector(folder)
    assert loaded.size == (64, 32) and loaded.model.config == TINY
    for name, tensor in detector.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)


def test_scoring_a_store_runs_the_detector_over_its_frames(painted_store):
    torch.manual_seed(0)
    detector = TrainedDetector(CameraDetector(TINY).eval(), (64, 32))
    score = score_store(detector, painted_store, split="val", frames=2)
    assert isinstance(score, DetectionScore) and score.frames == 2 and score.ground_truth > 0
    assert 0 <= score.mean_ap <= 1 and 0 <= score.nds <= 1 and math.isnan(score.aae)


def test_a_detector_at_another_size_is_refused(painted_store):
    detector = TrainedDetector(CameraDetector(TINY).eval(), (64, 32))
    with pytest.raises(ConfigError, match="64x32"):
        detector.detect(torch.zeros(1, 1, 3, 64, 128), torch.eye(3)[None, None], torch.eye(4)[None, None])


@pytest.mark.parametrize("make, message", [
    (lambda path: None, "no such folder"),
    (lambda path: path.mkdir(), "not a detector folder"),
    (lambda path: (path.mkdir(), (path / "config.yaml").write_text("task: wfm\n")), "not a detector's"),
    (lambda path: (path.mkdir(), (path / "config.yaml").write_text("task: [\n")), "not valid YAML"),
])
def test_a_folder_that_is_not_a_detector_is_one_line_naming_it(tmp_path, make, message):
    path = tmp_path / "folder"
    make(path)
    with pytest.raises(ConfigError, match=message) as error:
        load_detector(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
