"""Tasks by name (tests/train/test_task.py would clash with tests/tokenizer/test_task.py: test files
share one module namespace here, as tests/wfm/test_wfm_task.py already reflects)."""

from __future__ import annotations

import pytest

from drivesim.errors import ConfigError
from drivesim.train.task import task_by_name


def test_the_built_in_tasks_are_found_by_name():
    assert [task_by_name(name).name for name in ("tokenizer", "wfm", "detector")] == ["tokenizer", "wfm", "detector"]


def test_an_unknown_task_is_a_config_error_listing_the_tasks():
    with pytest.raises(ConfigError, match=r"unknown task 'toy' \(tasks: tokenizer, wfm, detector\)"):
        task_by_name("toy")
