"""`drivesim ui`: the Streamlit command it runs binds 127.0.0.1 and caps uploads; bad options exit 2."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from drivesim.cli import main
from drivesim.cli.tools import ui_command


def options(**changes) -> argparse.Namespace:
    values = dict(port=8501, address="127.0.0.1", workspace=Path("ws"), scenarios=None, checkpoints=[Path("runs")])
    return argparse.Namespace(**{**values, **changes})


def test_the_editor_binds_localhost_headless_with_a_10_mb_upload_cap():
    command = ui_command(options())
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4].endswith("ui/app.py")
    settings = dict(zip(command[5::2], command[6::2]))
    assert settings["--server.address"] == "127.0.0.1" and settings["--server.port"] == "8501"
    assert settings["--server.headless"] == "true" and settings["--server.maxUploadSize"] == "10"
    assert Path(command[4]).is_file()


@pytest.mark.parametrize("argv, message", [
    (["ui", "--port", "0"], "--port must be from 1 to 65535"),
    (["ui", "--port", "70000"], "--port must be from 1 to 65535"),
    (["ui", "--scenarios", "/nonexistent/library"], "--scenarios /nonexistent/library: no such folder"),
])
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.fixture
def started(monkeypatch):
    """`drivesim ui` up to the Streamlit process, which is not started: its command and environment."""
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "call", lambda command, env: calls.append((command, env)) or 0)
    return calls


@pytest.mark.parametrize("address", ["0.0.0.0", "192.168.1.20", "::", "example.org", ""])
def test_an_address_off_this_machine_warns_that_the_editor_has_no_log_in(address, started, tmp_path, capsys):
    assert main(["ui", "--address", address, "--workspace", str(tmp_path / "ws")]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"drivesim ui: warning: --address {address} serves the editor to the network")
    assert "no log-in" in err and err.count("\n") == 1
    assert dict(zip(started[0][0][5::2], started[0][0][6::2]))["--server.address"] == address


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_address_starts_without_a_warning(address, started, tmp_path, capsys):
    assert main(["ui", "--address", address, "--workspace", str(tmp_path / "ws")]) == 0
    assert capsys.readouterr().err == ""


def test_the_default_binds_localhost_and_reads_the_named_data_roots(started, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert main(["ui", "--workspace", str(tmp_path / "ws"), "--data-root", str(tmp_path / "a"),
                 "--data-root", str(tmp_path / "b")]) == 0
    command, environment = started[0]
    assert dict(zip(command[5::2], command[6::2]))["--server.address"] == "127.0.0.1"
    assert environment["DRIVESIM_UI_DATA_ROOTS"].split(os.pathsep) == [str(tmp_path / "a"), str(tmp_path / "b")]
    assert capsys.readouterr().err == ""


def test_a_workspace_that_is_a_file_or_a_missing_data_root_is_one_line(started, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv, message in ((["--workspace", str(blocker)], f"--workspace {blocker} is a file, not a folder"),
                          (["--workspace", str(blocker / "ws")], f"--workspace {blocker / 'ws'} cannot be created"),
                          (["--data-root", str(tmp_path / "none")], f"--data-root {tmp_path / 'none'}: no such")):
        assert main(["ui", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not started and blocker.read_text() == "x"
