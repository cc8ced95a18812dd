"""`drivesim scenario vary`: seeded variants, every one valid (a property over seeds), start frames kept true,
invalid draws redrawn and then reported."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scenario_helpers import SCENARIOS, _document, _write

import drivesim.scenario.vary as vary
from drivesim.cli import main
from drivesim.errors import ScenarioError
from drivesim.scenario import from_dict, load
from drivesim.scenario.vary import contacts, variant, vary_prompt

NAMES = sorted(path.stem for path in SCENARIOS.glob("*.yaml"))
STARTED = "town_left_turn"  # the library scenario with start frames


@functools.cache
def library(name: str):
    return load(SCENARIOS / f"{name}.yaml")


def _vary(tmp_path, folder: str, *extra: str, scenario=SCENARIOS / "cut_in.yaml") -> int:
    return main(["scenario", "vary", str(scenario), "--out", str(tmp_path / folder), *extra])


def _files(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_the_same_seed_writes_the_same_files_and_another_seed_others(tmp_path, capsys):
    assert _vary(tmp_path, "one", "--count", "4", "--seed", "5") == 0
    assert _vary(tmp_path, "two", "--count", "4", "--seed", "5") == 0
    assert _vary(tmp_path, "other", "--count", "4", "--seed", "6") == 0
    one = _files(tmp_path / "one")
    assert list(one) == [f"cut_in_v00{i}.yaml" for i in range(1, 5)]
    assert one == _files(tmp_path / "two")
    assert one != _files(tmp_path / "other")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"{tmp_path / 'one' / 'cut_in_v001.yaml'}: ")


def test_a_larger_count_adds_variants_and_keeps_the_first(tmp_path):
    assert _vary(tmp_path, "few", "--count", "2") == 0
    assert _vary(tmp_path, "more", "--count", "3") == 0
    few, more = _files(tmp_path / "few"), _files(tmp_path / "more")
    assert len(more) == 3 and all(more[name] == few[name] for name in few)


def test_every_written_variant_passes_scenario_validate(tmp_path, capsys):
    assert _vary(tmp_path, "v", "--count", "6", scenario=SCENARIOS / "unprotected_left_turn.yaml") == 0
    files = sorted((tmp_path / "v").iterdir())
    assert main(["scenario", "validate", *map(str, files)]) == 0
    names = {load(path).name for path in files}
    assert names == {path.stem for path in files}
    seeds = {load(path).seed for path in files}
    assert len(seeds) == len(files)  # every variant also samples with its own seed


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**62 - 1), index=st.integers(1, 9999),
       drop=st.booleans())
def test_every_variant_is_valid_and_adds_no_contact(name, seed, index, drop):
    scenario = library(name)
    result = variant(scenario, index, seed, drop_start_frames=drop)
    written = from_dict(result.scenario.to_dict(), "variant", scenario.base_dir)  # the strict reader and validator
    assert 1 <= len(result.edits) <= 3 and 1 <= result.draws <= vary.MAX_DRAWS
    assert set(contacts(written)) <= set(contacts(scenario))
    if scenario.start_frames is not None and not drop:
        assert written.start_frames == scenario.start_frames and "mirrored" not in result.edits
    assert variant(scenario, index, seed, drop_start_frames=drop).scenario.to_dict() == result.scenario.to_dict()


def test_start_frames_are_kept_with_the_first_frame_they_show(tmp_path):
    scenario = library(STARTED)
    first = scenario.layout_frames([0.0])[0]
    for index in range(1, 9):
        result = variant(scenario, index, 0)
        assert result.scenario.start_frames == scenario.start_frames
        assert all(edit.startswith("prompt") or " speed x" in edit for edit in result.edits), result.edits
        kept = result.scenario.layout_frames([0.0])[0]
        np.testing.assert_allclose(kept.boxes, first.boxes, atol=1e-5)  # the picture's agents, where it shows them
        np.testing.assert_allclose(kept.world_from_ego, first.world_from_ego, atol=1e-5)
    # written elsewhere, the file still names the same start store
    assert _vary(tmp_path, "v", "--count", "1", scenario=SCENARIOS / f"{STARTED}.yaml") == 0
    written = load(tmp_path / "v" / f"{STARTED}_v001.yaml")
    assert written.start_store().resolve() == scenario.start_store().resolve()


def test_dropping_start_frames_opens_every_edit(tmp_path):
    scenario = library(STARTED)
    edits = [edit for index in range(1, 9) for edit in variant(scenario, index, 0, drop_start_frames=True).edits]
    assert "mirrored" in edits and any(edit.startswith(("added", "removed")) for edit in edits)
    assert variant(scenario, 1, 0, drop_start_frames=True).scenario.start_frames is None


def test_an_added_agent_drives_on_a_lane_clear_of_everyone(monkeypatch):
    scenario = library("straight_cruise")
    monkeypatch.setattr(vary, "EDITS", {"add agent": vary._add_agent})
    for index in range(1, 6):
        result = variant(scenario, index, 0)
        agent = result.scenario.agents[-1]
        assert agent.id.startswith("added") and len(result.scenario.agents) == len(scenario.agents) + 1
        position = agent.trajectory.position([0.0])[0]
        assert min(abs(position[1] - lane[0, 1]) for lane in scenario.road.lanes) < 1e-6  # the lanes run along x
        assert not [pair for pair in contacts(result.scenario) if f"agent {agent.id}" in pair]


def test_an_invalid_draw_is_redrawn_and_a_variant_with_none_valid_is_reported(tmp_path, capsys, monkeypatch):
    real, failures = vary._draw, iter(range(3))

    def failing_three_times(scenario, rng):
        if next(failures, None) is not None:
            raise ScenarioError("drawn badly")
        return real(scenario, rng)

    monkeypatch.setattr(vary, "_draw", failing_three_times)
    assert variant(library("cut_in"), 1, 0).draws == 4

    def never(scenario, rng):
        raise ScenarioError(f"{scenario.source}: agents[0] (lead): is physically impossible")

    monkeypatch.setattr(vary, "_draw", never)
    with pytest.raises(ScenarioError, match="variant 2: no valid draw in 50 tries; the last: .*impossible"):
        variant(library("cut_in"), 2, 0)
    assert _vary(tmp_path, "v", "--count", "2") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("no valid draw" in line for line in err)
    assert not any((tmp_path / "v").iterdir())


def test_existing_variant_files_are_kept_unless_overwrite(tmp_path, capsys):
    folder = tmp_path / "v"
    folder.mkdir()
    (folder / "cut_in_v002.yaml").write_text("mine")
    assert _vary(tmp_path, "v", "--count", "3") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cut_in_v002.yaml exists" in err and "--overwrite" in err
    assert [p.name for p in folder.iterdir()] == ["cut_in_v002.yaml"]
    assert _vary(tmp_path, "v", "--count", "3", "--overwrite") == 0
    assert load(folder / "cut_in_v002.yaml").name == "cut_in_v002"


@pytest.mark.parametrize("flag, value", [("--count", "0"), ("--seed", "-1")])
def test_bad_counts_and_seeds_are_one_line(tmp_path, capsys, flag, value):
    arguments = {"--count": "2", "--seed": "0", flag: value}
    assert _vary(tmp_path, "v", *[x for pair in arguments.items() for x in pair]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and not (tmp_path / "v").exists()


def test_a_bad_scenario_is_one_line_naming_it(tmp_path, capsys):
    document = _document()
    document["fps"] = -1
    path = _write(tmp_path, document, "bad.yaml")
    assert _vary(tmp_path, "v", "--count", "2", scenario=path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml: fps" in err


def test_the_prompt_takes_the_drawn_time_and_weather_in_place_of_its_own():
    assert vary_prompt("A two-lane highway on an overcast day; a truck", "dusk", "fog") == \
        "dusk, fog; A two-lane highway on a foggy dusk; a truck"
    assert vary_prompt("Night, heavy rain on a city road", "day", "clear") == "day; Day, clear weather on a city road"
    assert vary_prompt("night, rain; turning left at 6 m/s; 4 cars", "day", "rain") == \
        "day, rain; turning left at 6 m/s; 4 cars"
    assert vary_prompt("A road", "night", "clear") == "night; A road"


def test_contacts_find_road_users_that_touch_and_when():
    document = _document()
    document["agents"] = [document["agents"][1],  # the cone, beside the ego's path
                          {"id": "stopped", "category": "vehicle.car", "size": [1.8, 4.5, 1.5],
                           "parked": {"x": 40, "y": 0, "yaw": 0}}]
    found = contacts(from_dict(document, "touching"))
    assert set(found) == {frozenset(("ego", "agent stopped"))}
    assert 3.0 < found[frozenset(("ego", "agent stopped"))] < 4.0  # the ego reaches it near the end
