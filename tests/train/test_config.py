"""Training configs: every bad value, in a file or a key=value override, is a ConfigError naming the key,
refused before a run starts; floats are finite; out= is a folder."""

from __future__ import annotations

import pytest

from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.train.config import OptimConfig, TrainConfig, apply_overrides, from_dict, load_document


def config_from(*overrides: str) -> TrainConfig:
    config = from_dict(TrainConfig, apply_overrides({"task": "tokenizer"}, list(overrides)))
    config.validate()
    return config


@pytest.mark.parametrize("override, message", [
    ("optim.grad_clip=.nan", "optim.grad_clip must be a finite number"),
    ("optim.grad_clip=.inf", "optim.grad_clip must be a finite number"),
    ("optim.lr=.nan", "optim.lr must be a finite number"),
    ("optim.betas=[.nan, 0.9]", r"optim.betas\[0\] must be a finite number"),
    ("ema_decay=-.inf", "ema_decay must be a finite number"),
    ("optim.weight_decay=-1", "optim.weight_decay must be >= 0"),
    ("optim.weight_decay=1e999999999999999999999", "optim.weight_decay must be"),
    ("steps=!!int abc", "override 'steps=!!int abc': value is not valid YAML"),
    ("steps=!!int", "value is not valid YAML"),
    ("steps=!!timestamp x", "value is not valid YAML"),
    ("steps=[", "value is not valid YAML"),
])
def test_a_bad_override_is_refused_naming_it(override, message):
    with pytest.raises(ConfigError, match=message):
        config_from(override)


def test_nan_in_a_config_built_in_python_is_refused_too():
    config = TrainConfig(task="tokenizer", optim=OptimConfig(grad_clip=float("nan")))
    with pytest.raises(ConfigError, match="optim.grad_clip must be a finite number, got nan"):
        config.validate()


@pytest.mark.parametrize("content, message", [
    (b"steps: !!int abc\n", "not valid YAML \\(invalid literal"),
    (b"\x7fELF\x02\x01\x01\x00\xff\xfe binary", "not a YAML file"),
    (b"steps: [1, 2\n", "not valid YAML .*at line 2"),
    (b"- 1\n- 2\n", "the top level must be a mapping"),
])
def test_a_bad_config_file_is_refused_in_one_line(tmp_path, content, message):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_document(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_out_that_cannot_be_a_folder_is_refused_before_the_run(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        config_from(f"out={blocker}")
    with pytest.raises(ConfigError, match=f"cannot be created: {blocker} is a file"):
        config_from(f"out={blocker / 'run'}")
    assert config_from(f"out={tmp_path / 'new' / 'run'}").out.endswith("run")
    assert blocker.read_text() == "x"


@pytest.mark.parametrize("argv, named", [
    (["optim.grad_clip=.nan"], "optim.grad_clip"), (["optim.weight_decay=-1"], "optim.weight_decay"),
    (["steps=!!int abc"], "steps=!!int abc"), (["out=FILE"], "out=FILE is a file"), (["--config", "FILE"], "FILE"),
])
def test_train_prints_one_line_naming_the_value_and_exits_2(tmp_path, capsys, argv, named):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"\xff\xfe\x00binary")
    argv = [a.replace("FILE", str(blocker)) for a in argv]
    assert main(["train", "tokenizer", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("drivesim train: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert named.replace("FILE", str(blocker)) in err
