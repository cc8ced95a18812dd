"""What the editor may read: paths under the folders named when it started, resolved, so `..` and symlinks
cannot leave them; a refusal is one line naming the path and the folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from editor_helpers import short_document

from drivesim.editor.roots import REPO, check_readable, check_scenario, data_roots, readable_roots
from drivesim.errors import ConfigError
from drivesim.scenario import from_dict, load


@pytest.fixture
def roots(tmp_path) -> list[Path]:
    (tmp_path / "data" / "store").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    return readable_roots({"data_roots": [tmp_path / "data"], "workspace": tmp_path / "ws"})


def test_a_path_under_a_root_is_readable(tmp_path, roots):
    assert check_readable(tmp_path / "data" / "store", roots, "clip store") == (tmp_path / "data" / "store").resolve()
    assert check_readable(tmp_path / "ws" / "x" / "new", roots, "clip store").is_relative_to(tmp_path / "ws")


@pytest.mark.parametrize("path", ["elsewhere", "data/../elsewhere", "data/store/../../elsewhere", "/etc/passwd", "/"])
def test_a_path_outside_every_root_is_refused_in_one_line(tmp_path, roots, path):
    given = tmp_path / path if not path.startswith("/") else Path(path)
    with pytest.raises(ConfigError) as caught:
        check_readable(given, roots, "clip store")
    message = str(caught.value)
    assert message.startswith(f"clip store {given}: outside the folders the editor may read")
    assert str(tmp_path / "data") in message and "--data-root" in message and "\n" not in message


def test_a_symlink_out_of_a_root_is_refused(tmp_path, roots):
    (tmp_path / "data" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside the folders"):
        check_readable(tmp_path / "data" / "link", roots, "clip store")


def test_a_scenario_whose_start_frames_lie_outside_is_refused(tmp_path, roots):
    document = {**short_document(), "start_frames": {"store": "../../../elsewhere", "clip": "c"}}
    upload = tmp_path / "ws" / "uploads" / "s.yaml"
    upload.parent.mkdir(parents=True)
    upload.write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=r"start_frames.store .*outside the folders"):
        check_scenario(load(upload), roots)
    for store in (str(tmp_path / "elsewhere"), "/etc"):
        with pytest.raises(ConfigError, match="outside the folders"):
            check_scenario(from_dict({**document, "start_frames": {"store": store, "clip": "c"}}, "t"), roots)
    check_scenario(from_dict({**document, "start_frames": {"store": str(tmp_path / "data" / "store"), "clip": "c"}},
                             "t"), roots)
    check_scenario(from_dict(short_document(), "t"), roots)  # no start frames: nothing to open


def test_the_data_roots_default_to_the_repository_scenarios_and_out(monkeypatch, tmp_path):
    monkeypatch.delenv("DRIVESIM_UI_DATA_ROOTS", raising=False)
    assert data_roots() == [REPO / "scenarios", REPO / "out"]
    monkeypatch.setenv("DRIVESIM_UI_DATA_ROOTS", os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert data_roots() == [tmp_path / "a", tmp_path / "b"]
