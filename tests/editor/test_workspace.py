"""A session's workspace: names from users never write outside it, uploads are size-limited and kept."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivesim.editor.workspace import Workspace, new_session_id, safe_name
from drivesim.errors import ConfigError, ScenarioError
from drivesim.scenario import MAX_BYTES, load

CUT_IN = Path(__file__).resolve().parents[2] / "scenarios" / "cut_in.yaml"


@given(st.text(max_size=200))
def test_safe_names_are_plain_file_names(name):
    result = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", result)
    assert ".." not in result.split("/") and "/" not in result


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "..", "a/../../b", "C:\\Windows\\x.yaml",
                                  "\x00evil", "....", ".hidden"])
def test_hostile_names_stay_inside_the_workspace(tmp_path, name):
    workspace = Workspace(tmp_path / "ws", new_session_id())
    path = workspace.path("scenarios", name)
    assert path.is_relative_to(workspace.folder) and path.parent == workspace.folder / "scenarios"


def test_a_symlink_planted_in_the_workspace_is_refused(tmp_path):
    workspace = Workspace(tmp_path / "ws", new_session_id())
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, workspace.folder / "renders")
    with pytest.raises(ConfigError, match="outside this session's workspace"):
        workspace.new_render_folder("x")
    assert not any(outside.iterdir())


def test_two_sessions_have_separate_folders(tmp_path):
    a, b = Workspace(tmp_path, new_session_id()), Workspace(tmp_path, new_session_id())
    assert a.folder != b.folder and a.folder.parent == b.folder.parent == tmp_path.resolve()
    with pytest.raises(ConfigError, match="hex"):
        Workspace(tmp_path, "../x")


def test_an_upload_is_kept_and_loaded_and_a_second_one_keeps_the_first(tmp_path):
    workspace = Workspace(tmp_path, new_session_id())
    data = CUT_IN.read_bytes()
    first = workspace.save_upload("../cut in.yaml", data)
    second = workspace.save_upload("../cut in.yaml", data)
    assert first.name == second.name == "cut_in"
    assert sorted(p.name for p in (workspace.folder / "uploads").iterdir()) == ["cut_in-1.yaml", "cut_in.yaml"]


def test_bad_uploads_get_scenario_errors(tmp_path):
    workspace = Workspace(tmp_path, new_session_id())
    with pytest.raises(ScenarioError, match="limited to 10 MB"):
        workspace.save_upload("big.yaml", b"#" * (MAX_BYTES + 1))
    assert not (workspace.folder / "uploads").exists()  # refused before anything was written
    with pytest.raises(ScenarioError, match="bad.yaml"):
        workspace.save_upload("bad.yaml", b"prompt: [unclosed")


def test_renders_get_fresh_folders_and_are_listed_once_finished(tmp_path):
    workspace = Workspace(tmp_path, new_session_id())
    first, second = workspace.new_render_folder("cut in"), workspace.new_render_folder("cut in")
    assert first != second and first.is_dir() and second.is_dir() and not any(first.iterdir())
    assert workspace.renders() == []
    (second / "grid.mp4").write_bytes(b"")
    assert workspace.renders() == [second]


def test_saved_scenarios_load_back(tmp_path):
    workspace = Workspace(tmp_path, new_session_id())
    path = workspace.save_scenario(load(CUT_IN), "my/../cut")
    assert path.parent == workspace.folder / "scenarios" and load(path).name == "cut_in"


def test_an_upload_that_names_a_file_as_its_rig_opens_nothing_and_quotes_nothing(tmp_path):
    secret = tmp_path / "secret.yaml"
    secret.write_text("password: hunter2\n")
    workspace = Workspace(tmp_path / "ws", new_session_id())
    document = CUT_IN.read_text().replace("rig: nuscenes", f"rig: {secret}")
    assert f"rig: {secret}" in document
    for rig in (str(secret), "/etc/passwd", "../../secret.yaml"):
        with pytest.raises(ScenarioError, match="rig: no such rig") as caught:
            workspace.save_upload("cut_in.yaml", document.replace(str(secret), rig).encode())
        assert "hunter2" not in str(caught.value) and "root:" not in str(caught.value)
