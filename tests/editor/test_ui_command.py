"""`drivesim ui`: the Streamlit command it runs binds 127.0.0.1 and caps uploads; bad options exit 2."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from drivesim.cli import main, ui_command


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
