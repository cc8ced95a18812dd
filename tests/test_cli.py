"""The `drivesim` command: bad input gives one clear line naming the option, exit 2, and
nothing already written is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.cli import main
from drivesim.geometry import parse_size
from drivesim.errors import ConfigError


def _synth(capsys, *args: str) -> tuple[int, str]:
    code = main(["synth", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("args, option", [
    (["--size", "0x256"], "--size"),
    (["--size=-448x256"], "--size"),
    (["--size", "448by256"], "--size"),
    (["--scenes", "0"], "--scenes"),
    (["--scenes", "-3"], "--scenes"),
    (["--seconds", "0"], "--seconds"),
    (["--seconds", "-1"], "--seconds"),
    (["--fps", "5"], "--fps"),
    (["--fps", "0"], "--fps"),
    (["--workers", "-1"], "--workers"),
    (["--contact-sheet", "sheet.jpg"], "--contact-sheet"),
])
def test_bad_option_names_the_option_and_exits_2(tmp_path, capsys, args, option):
    code, err = _synth(capsys, "--out", str(tmp_path / "new"), *args)
    assert code == 2
    assert option in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()


def test_existing_non_empty_output_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "logs"
    out.mkdir()
    (out / "mine.txt").write_text("precious")
    code, err = _synth(capsys, "--out", str(out), "--scenes", "1", "--seconds", "0.5")
    assert code == 2 and "--out" in err and "--overwrite" in err
    assert [p.name for p in out.iterdir()] == ["mine.txt"] and (out / "mine.txt").read_text() == "precious"


def test_output_under_a_file_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _synth(capsys, "--out", str(blocker / "logs"))
    assert code == 2 and "--out" in err and blocker.read_text() == "x"


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code, err = _synth(capsys, "--out", str(target))
    assert code == 2 and "--out" in err and target.read_text() == "x"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_any_size_text_parses_to_positive_sizes_or_names_size(text):
    try:
        width, height = parse_size(text)
    except ConfigError as error:
        assert "--size" in str(error)
    else:
        assert width > 0 and height > 0


def test_installed_command_reports_errors_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "drivesim.cli", "synth", "--out", str(tmp_path / "o"),
                             "--scenes", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "drivesim synth: error: --scenes must be at least 1, got 0"


def test_synth_command_writes_a_data_set_and_contact_sheet(tmp_path):
    out, sheet = tmp_path / "logs", tmp_path / "sheet.png"
    code = main(["synth", "--out", str(out), "--scenes", "1", "--seconds", "0.5", "--size", "160x90", "--fps", "2",
                 "--contact-sheet", str(sheet), "--quiet"])
    assert code == 0
    assert (out / "v1.0-mini" / "sample_data.json").exists() and sheet.stat().st_size > 10_000
    assert Path(out / "drivesim" / "scenes.json").exists()
