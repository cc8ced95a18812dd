"""Tests for drivesim.tokenizer.pretrained: a checkpoint folder rebuilds the same model; bad folders say why."""

import pytest
import torch
import yaml
from tokenizer_helpers import random_video, tiny_model

from drivesim.errors import ConfigError
from drivesim.tokenizer.pretrained import load_pretrained, save_pretrained


@pytest.mark.parametrize("discrete", [False, True], ids=["continuous", "discrete"])
def test_saved_tokenizer_loads_with_the_same_config_and_outputs(tmp_path, discrete):
    model = tiny_model(temporal=8, spatial=16, discrete=discrete, seed=3)
    folder = save_pretrained(model, tmp_path / "tokenizer")
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "model.safetensors"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["temporal_compression"] == 8

    loaded = load_pretrained(folder)
    assert loaded.config == model.config and not loaded.training
    video = random_video(9, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(video), model.encode(video), rtol=0, atol=0)
        latents = model.encode(video)
        torch.testing.assert_close(loaded.decode(latents), model.decode(latents), rtol=0, atol=0)


def test_missing_checkpoint_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="model.safetensors is missing"):
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(tiny_model().config.to_dict()))
        load_pretrained(tmp_path)


def test_config_that_does_not_fit_the_weights_is_reported(tmp_path):
    save_pretrained(tiny_model(), tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["channels"] = 16
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="model.safetensors does not fit its config.yaml"):
        load_pretrained(tmp_path)


def test_bad_config_value_names_the_file_and_field(tmp_path):
    save_pretrained(tiny_model(), tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["spatial_compression"] = 12
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=r"config\.yaml: TokenizerConfig\.spatial_compression=12"):
        load_pretrained(tmp_path)
