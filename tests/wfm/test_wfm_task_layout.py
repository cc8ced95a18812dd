"""data.layout in the wfm task: parsed from the config, and the model must take that many channels."""

from __future__ import annotations

import pytest

from drivesim.scene_maps import SCENE_CHANNELS

from drivesim.errors import ConfigError
from drivesim.render import LAYOUT_CHANNELS
from drivesim.train.config import from_dict
from drivesim.wfm.task import WfmData, WfmTask


def test_data_layout_is_a_bool_defaulting_to_off():
    assert from_dict(WfmData, {}, "data").layout is False
    assert from_dict(WfmData, {"layout": True}, "data").layout is True
    with pytest.raises(ConfigError, match="data.layout"):
        from_dict(WfmData, {"layout": "maybe"}, "data")


def test_layout_data_needs_a_model_with_as_many_layout_channels():
    task = WfmTask()
    task.layout = "sparse"  # as datasets() sets it from data.layout
    with pytest.raises(ConfigError, match=r"data\.layout.*model\.layout_channels=0"):
        task.build_model({"preset": "tiny", "text": "none"})
    model = task.build_model({"preset": "tiny", "text": "none", "layout_channels": len(LAYOUT_CHANNELS)})
    assert model.config.layout_channels == len(LAYOUT_CHANNELS)
    task.layout = "dense"  # the dense scene maps: their channel count and the model's kind of maps
    with pytest.raises(ConfigError, match=r"model\.layout_maps=dense"):
        task.build_model({"preset": "tiny", "text": "none", "layout_channels": len(SCENE_CHANNELS)})
    model = task.build_model({"preset": "tiny", "text": "none", "layout_channels": len(SCENE_CHANNELS),
                              "layout_maps": "dense"})
    assert model.config.layout_maps == "dense"


def test_without_layout_data_any_layout_channels_are_allowed():
    assert WfmTask().build_model({"preset": "tiny", "text": "none", "layout_channels": 3}).config.layout_channels == 3
