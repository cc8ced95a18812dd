"""Scenario files: every bad input gets a ScenarioError naming the file and the field (fuzzed), files too
large or self-referencing are refused, saved durations keep their frames, and a scenario opens no file
but its start store."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scenario_helpers import FILES, SCENARIOS, _document, _write

from drivesim import scenario as sc
from drivesim.cli import main
from drivesim.errors import ConfigError, ScenarioError


def _set(document, path, value):
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize("path, value, message", [
    (("ego", "waypoints", 1, "t"), 5.0, r"ego\.waypoints\[2\]\.t: times must increase"),
    (("ego", "waypoints", 1, "t"), 0.0, r"ego\.waypoints\[1\]\.t: times must increase"),
    (("agents", 0, "waypoints", 1, "t"), 0.0, r"agents\[0\] \(lead\)\.waypoints\[1\]\.t: times must increase"),
    (("ego", "waypoints", 1, "x"), math.nan, r"ego\.waypoints\[1\]\.x: must be a finite number"),
    (("agents", 0, "size", 1), math.inf, r"agents\[0\]\.size: must be a finite number"),
    (("fps",), math.nan, r"fps: must be a finite number"),
    (("rig",), "no_such_rig", r"rig: no such rig .no_such_rig. in"),
    (("agents", 0, "category"), "vehicle.spaceship", r"agents\[0\]\.category: unknown category 'vehicle.spaceship'"),
    (("agents", 0, "waypoints", 0, "x"), 1.5, r"agents\[0\] \(lead\): overlaps the ego at the start"),
    (("wheather",), "rain", r"unknown key\(s\) wheather"),
    (("agents", 0, "colour"), "red", r"agents\[0\]: has unknown key\(s\) colour"),
    (("ego", "waypoints", 1, "x"), 200.0, r"ego: is physically impossible: (speed|acceleration)"),
    (("ego", "waypoints", 1, "y"), 30.0, r"ego: is physically impossible"),
    (("agents", 0, "waypoints", 1, "x"), 2000.0, r"agents\[0\] \(lead\): is physically impossible: speed"),
    (("ego", "waypoints", 2, "t"), 3.0, r"ego\.waypoints: must cover the whole scenario"),
    (("prompt",), "", r"prompt: must be a non-empty text"),
    (("agents", 1, "size"), [0.4, -1, 0.7], r"agents\[1\] \(cone\)\.size"),
])
def test_invalid_scenarios_get_an_error_naming_the_file_and_the_field(tmp_path, path, value, message):
    file = _write(tmp_path, _set(_document(), path, value))
    with pytest.raises(ScenarioError, match=message) as caught:
        sc.load(file)
    assert str(caught.value).startswith(str(file)) and isinstance(caught.value, ConfigError)


def test_spinning_in_place_is_physically_impossible(tmp_path):
    document = _document()
    # Steps under pi: yaws are unwrapped, so a jump of more than half a turn reads as the short way round.
    document["ego"]["waypoints"] = [{"t": t, "x": 0, "y": 0, "yaw": 3.0 * t} for t in range(5)]
    document["agents"] = []
    with pytest.raises(ScenarioError, match="yaw rate"):
        sc.load(_write(tmp_path, document))


def test_a_file_over_10_mb_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.yaml"
    with path.open("w") as handle:
        handle.write("# padding\n" * (sc.MAX_BYTES // 10 + 1))
    with pytest.raises(ScenarioError, match="limited to 10 MB"):
        sc.load(path)


def test_alias_bombs_are_refused_quickly(tmp_path):
    lines = ["a: &a [[0, 0], [1, 1]]"]
    for level in range(1, 8):
        lines.append(f"{chr(97 + level)}: &{chr(97 + level)} [{', '.join(['*' + chr(96 + level)] * 10)}]")
    document = yaml.safe_load("\n".join(lines))
    base = _document()
    base["road"]["lanes"] = document["h"]
    with pytest.raises(ScenarioError):
        sc.from_dict(base, "bomb")


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("[1, 2", "not a readable YAML"), ("- 1\n- 2\n", "must be a mapping"),
    ("!!python/object:os.system {}", "not a readable YAML"), ("prompt: [", "not a readable YAML"),
])
def test_unreadable_files_get_a_scenario_error(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        sc.load(path)


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        sc.load(tmp_path / "none.yaml")


_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True),
                  st.text(max_size=8), st.sampled_from(["vehicle.car", "front3", "nuscenes", "t", "x"]))
_value = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                     st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                      max_leaves=12)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, (*prefix, index))


_PATHS = list(_paths(_document()))[1:]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _value), max_size=3))
def test_fuzzed_documents_load_or_raise_only_scenario_errors(tmp_path, mutations):
    document = _document()
    for path, value in mutations:
        try:
            _set(document, path, copy.deepcopy(value))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation replaced the parent
    file = tmp_path / "fuzz.yaml"
    try:
        file.write_text(yaml.safe_dump(document))
    except yaml.YAMLError:
        return
    try:
        sc.load(file)
    except ScenarioError as error:
        assert str(error).startswith(str(file))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 st.sampled_from(FILES).map(lambda p: p.read_bytes()[:400])))
def test_fuzzed_bytes_load_or_raise_only_scenario_errors(tmp_path, data):
    file = tmp_path / "fuzz.yaml"
    file.write_bytes(data)
    try:
        sc.load(file)
    except ScenarioError:
        pass


def test_cli_validate_prints_one_line_per_file_and_exits_2_on_a_bad_one(tmp_path, capsys):
    assert main(["scenario", "validate", *map(str, FILES[:2])]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and all("frames" in line for line in out)
    bad = _write(tmp_path, _set(_document(), ("fps",), "fast"), "bad.yaml")
    assert main(["scenario", "validate", str(FILES[0]), str(bad)]) == 2
    captured = capsys.readouterr()
    assert len(captured.out.strip().splitlines()) == 1
    assert captured.err.count("\n") == 1 and "bad.yaml: fps" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("fps", [10, 12, 12.5, 24, 30])
@given(frames=st.integers(2, 400))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_saved_duration_keeps_its_frame_count(tmp_path, fps, frames):
    """Durations are written to 6 decimals; reading them back must not lose the last frame (41 frames at
    12 fps are 3.333333 s, 40/12 before rounding)."""
    duration = (frames - 1) / fps
    document = {**_document(), "fps": fps, "duration": duration, "agents": [],
                "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": duration, "x": 10 * duration, "y": 0}]}}
    scenario = sc.from_dict(document, "t")
    assert scenario.num_frames == frames
    assert sc.load(sc.save(scenario, tmp_path / "s.yaml")).num_frames == frames


@pytest.mark.parametrize("rig", ["/etc/passwd", "../../../../etc/passwd", "secret.yaml", "views/front3.yaml"])
def test_a_scenario_names_a_views_rig_and_never_opens_a_file(tmp_path, rig):
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    file = _write(tmp_path, {**_document(), "rig": rig})
    with pytest.raises(ScenarioError, match=r"rig: no such rig .* in .*--rig FILE") as caught:
        sc.load(file)
    message = str(caught.value)
    assert "root:" not in message and "hunter2" not in message and "\n" not in message


def test_a_rig_file_given_with_rig_is_inlined_and_travels_with_the_scenario(tmp_path, capsys):
    rig_file = tmp_path / "my_rig.yaml"
    rig_file.write_text((SCENARIOS.parent / "views" / "front3.yaml").read_text().replace("front3", "mine"))
    file = _write(tmp_path, {**_document(), "rig": "nuscenes"})
    scenario = sc.load(file, rig=rig_file)
    assert scenario.rig.name == "mine" and len(scenario.rig.cameras) == 3
    assert isinstance(scenario.to_dict()["rig"], dict)  # the saved file holds the rig, not a path
    assert sc.load(sc.save(scenario, tmp_path / "elsewhere.yaml")).rig.name == "mine"
    assert sc.load(file, rig="front3").rig.name == "front3"
    assert main(["scenario", "validate", str(file), "--rig", str(rig_file)]) == 0
    assert "rig mine (3 cameras)" in capsys.readouterr().out


@pytest.mark.parametrize("content", ["root:x:0:0:root:/root:/bin/bash\n", "password: hunter2\n",
                                     "[hunter2, {a: b\n", "\x00\x01hunter2\xff"])
def test_a_bad_rig_file_is_refused_without_quoting_it(tmp_path, capsys, content):
    rig_file = tmp_path / "notes.txt"
    rig_file.write_bytes(content.encode("latin-1"))
    file = _write(tmp_path, _document())
    assert main(["scenario", "validate", str(file), "--rig", str(rig_file)]) == 2
    err = capsys.readouterr().err
    assert str(rig_file) in err and err.count("\n") == 1
    assert "root:x" not in err and "hunter2" not in err and "Traceback" not in err


def test_a_seed_a_rollout_cannot_take_is_refused_by_validation(tmp_path):
    assert sc.from_dict({**_document(), "seed": sc.MAX_SEED - 1}, "t").seed == sc.MAX_SEED - 1
    for seed in (sc.MAX_SEED, 10**26):
        with pytest.raises(ScenarioError, match=r"seed: must be an integer from 0 to 2\*\*62-1"):
            sc.load(_write(tmp_path, {**_document(), "seed": seed}))


def test_a_relative_start_store_is_read_beside_the_file_and_saved_relative_to_the_new_one(tmp_path, monkeypatch):
    first, second = tmp_path / "a", tmp_path / "b" / "deeper"
    first.mkdir()
    second.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "frames.zarr").mkdir()  # one in the working directory too: it must not be the one found
    document = {**_document(), "start_frames": {"store": "frames.zarr", "clip": "c"}}
    scenario = sc.load(_write(first, document))
    assert scenario.start_store() == first / "frames.zarr"
    moved = sc.load(sc.save(scenario, second / "copy.yaml"))
    assert moved.start_frames.store == "../../a/frames.zarr"
    assert moved.start_store().resolve() == (first / "frames.zarr").resolve()
    # a scenario without a file (from_dict, from_clip) reads a relative store from the working directory
    loose = sc.from_dict(document, "t")
    assert loose.start_store() == Path("frames.zarr")
    assert sc.load(sc.save(loose, second / "loose.yaml")).start_store().resolve() == tmp_path / "frames.zarr"
