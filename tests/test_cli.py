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
from drivesim.rigs import parse_size
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


def _one_line_error(capsys, argv: list[str]) -> str:
    """Run `drivesim argv`: exit 2 with one line on stderr, no traceback; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"drivesim {argv[0]}") and "Traceback" not in err, err
    return err


def test_synth_into_a_place_that_cannot_hold_a_folder_is_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, ["synth", "--out", "/proc/nope", "--scenes", "1", "--seconds", "0.5"])
    assert "--out /proc/nope" in err and not Path("/proc/nope").exists()


def test_synth_refuses_a_version_that_leaves_out(tmp_path, capsys):
    err = _one_line_error(capsys, ["synth", "--out", str(tmp_path / "o"), "--version", "v1.0-/../../x"])
    assert "--version" in err and sorted(tmp_path.iterdir()) == []


def test_tokenizer_eval_refuses_an_out_file_before_evaluating(tmp_path, capsys, monkeypatch):
    import drivesim.tokenizer.task

    target = tmp_path / "videos"
    target.write_text("mine")
    monkeypatch.setattr(drivesim.tokenizer.task, "load_trained", lambda *a, **k: pytest.fail("loaded first"))
    err = _one_line_error(capsys, ["tokenizer", "eval", "--checkpoint", str(tmp_path), "--store", str(tmp_path),
                                   "--out", str(target)])
    assert f"--out {target} is a file" in err and target.read_text() == "mine"
    # the library function refuses it too, before any clip is read
    from drivesim.tokenizer.evaluate import evaluate

    with pytest.raises(ConfigError, match="is a file"):
        evaluate(None, tmp_path / "no-store", out=target)


def test_generate_refuses_the_scenario_seed_limit_by_the_scenario_not_by_a_flag(tmp_path, capsys):
    import yaml

    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"prompt": "a road", "rig": "front3", "fps": 12, "duration": 0.25,
                                        "seed": 10**26, "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0},
                                                                              {"t": 0.25, "x": 3, "y": 0}]}}))
    err = _one_line_error(capsys, ["generate", "--scenario", str(scenario), "--checkpoint", str(tmp_path / "none"),
                                   "--out", str(tmp_path / "out")])
    assert f"{scenario}: seed: must be an integer from 0 to 2**62-1" in err and "--seed" not in err


def test_a_line_break_in_a_value_is_shown_escaped_on_the_one_line(tmp_path, capsys):
    err = _one_line_error(capsys, ["synth", "--out", str(tmp_path / "o"), "--size", "4\n48 by 256"])
    assert "4\\n48 by 256" in err
