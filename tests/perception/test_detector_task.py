"""The `detector` training task through `drivesim train`: the loss falls on a tiny store, the run loads as a
detector, and bad config values are one-line errors naming them."""

from pathlib import Path

import pytest
import torch

from drivesim.cli import main
from drivesim.errors import ConfigError, DrivesimError
from drivesim.perception.frames import StoreFrames
from drivesim.perception.pretrained import load_detector
from drivesim.perception.task import DetectorTask, focal_loss
from drivesim.train.task import task_by_name

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "detector-tiny.yaml"


@pytest.fixture(scope="module")
def trained_run(painted_store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detector") / "run"
    assert main(["train", "detector", "--config", str(CONFIG), f"data.store={painted_store}", f"out={out}",
                 "--quiet"]) == 0
    return out


def _mean_loss(model, store) -> float:
    task = DetectorTask()
    frames = StoreFrames(store, "train", (64, 32))
    batch = torch.utils.data.default_collate([frames[i] for i in range(len(frames))])
    with torch.no_grad():
        return float(task.loss(model, batch)[0])


def test_training_lowers_the_loss_and_the_run_loads_as_a_detector(trained_run, painted_store):
    task = task_by_name("detector")
    torch.manual_seed(0)  # the trainer's seed: the weights the run started from
    initial = _mean_loss(task.build_model(dict(yaml_model())).eval(), painted_store)
    detector = load_detector(trained_run)
    assert detector.size == (64, 32)
    assert _mean_loss(detector.model, painted_store) < 0.6 * initial
    assert any((trained_run / "tensorboard").iterdir())  # scalars and the boxes picture


def yaml_model() -> dict:
    import yaml

    return yaml.safe_load(CONFIG.read_text())["model"]


def test_detector_appears_among_the_tasks_train_names(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "detector" in capsys.readouterr().out


@pytest.mark.parametrize("override, named", [
    ("model.chanels=[8,16,16,32]", "model.chanels"),
    ("model.channels=[8,16,16]", "model.channels"),
    ("model.neck=12", "model.neck"),
    ("data.size=[100,32]", "data.size"),
    ("data.sise=[64,32]", "data.sise"),
    ("loss.heatmap=-1", "loss.heatmap"),
    ("loss.depht=1", "loss.depht"),
])
def test_a_bad_config_value_is_one_line_naming_it(painted_store, tmp_path, capsys, override, named):
    code = main(["train", "detector", "--config", str(CONFIG), f"data.store={painted_store}",
                 f"out={tmp_path / 'run'}", "--quiet", override])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and named in error


def test_a_missing_store_is_one_line_naming_it(tmp_path, capsys):
    code = main(["train", "detector", "--config", str(CONFIG), f"data.store={tmp_path / 'nowhere'}",
                 f"out={tmp_path / 'run'}", "--quiet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1 and "nowhere" in error


def test_the_focal_loss_is_small_for_right_and_large_for_wrong_heat_maps():
    target = torch.zeros(1, 1, 1, 8, 8)
    target[..., 3, 3] = 1.0
    right = torch.where(target == 1, 8.0, -8.0)
    assert focal_loss(right, target) < 1e-3 < 1 < focal_loss(-right, target)


def test_config_error_is_a_drivesim_error():
    with pytest.raises(ConfigError, match="data.store is required"):
        DetectorTask().datasets({})


def test_pack_weights_packs_a_detector_run_that_loads_alone_and_detects_the_same(trained_run, painted_store,
                                                                                  tmp_path, capsys):
    import json

    out = tmp_path / "detector-small"
    assert main(["pack-weights", "--checkpoint", str(trained_run), "--out", str(out)]) == 0
    assert f"{out}: step 40" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "ema.safetensors", "manifest.json"]
    assert json.loads((out / "manifest.json").read_text())["step"] == 40
    packed, run = load_detector(out), load_detector(trained_run)
    frames = StoreFrames(painted_store, "val", (64, 32), targets=False)
    batch = torch.utils.data.default_collate([frames[0]])
    with torch.no_grad():
        for name, value in run.model(batch["image"], batch["intrinsics"], batch["ego_from_cam"]).items():
            assert torch.equal(value, packed.model(batch["image"], batch["intrinsics"], batch["ego_from_cam"])[name])
    (out / "ema.safetensors").write_bytes(b"damaged")
    with pytest.raises(ConfigError, match="ema.safetensors does not match its checksum"):
        load_detector(out)


def test_extra_train_stores_add_every_clip_of_theirs_to_the_training_frames(painted_store):
    task = DetectorTask()
    alone, _ = task.datasets({"store": str(painted_store), "size": [64, 32]})
    mixed, val = task.datasets({"store": str(painted_store), "size": [64, 32],
                                "extra_train_stores": [str(painted_store)]})
    assert len(mixed) == len(alone) + 2 * len(alone)  # the train clip, then both clips of the extra store
    assert val is not None and len(val) == len(alone)
    with pytest.raises(DrivesimError, match="/nope"):  # a missing store is a one-line error naming it
        task.datasets({"store": str(painted_store), "size": [64, 32], "extra_train_stores": ["/nope"]})
