"""`drivesim generate --scenarios`: which files and folders, resume, a failing scenario among good ones, the summary,
local processes and Ray, on the tiny world model of tests/conftest.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from rollout_helpers import make_scenario, scenario_document

import drivesim.simulate
from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.rollout import ROLLOUT_STORE
from drivesim.scenario import save
from drivesim.simulate_many import RAY_MISSING, find_scenarios, folder_names


def _scenarios(folder: Path, names=("a", "b", "c")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(names):
        save(make_scenario(seed=seed), folder / f"{name}.yaml")
    return folder


def _generate(checkpoint, scenarios, out, *extra) -> int:
    return main(["generate", "--scenarios", str(scenarios), "--out", str(out), "--checkpoint", str(checkpoint),
                 "--steps", "1", "--device", "cpu", "--quiet", *extra])


def _summary(out: Path) -> dict:
    document = json.loads((out / "summary.json").read_text())
    return {Path(row["scenario"]).stem: row for row in document["scenarios"]} | {"counts": document}


@pytest.fixture
def counted(monkeypatch):
    """drivesim.simulate.rollout, counting the scenarios it is called for (in this process)."""
    calls = []
    real = drivesim.simulate.rollout

    def rollout(scenario, *args, **kwargs):
        calls.append(scenario.seed)
        return real(scenario, *args, **kwargs)

    monkeypatch.setattr(drivesim.simulate, "rollout", rollout)
    return calls


# ---------------------------------------------------------------- which scenarios, which folders


def test_a_folder_gives_its_yaml_files_and_a_glob_its_matches_sorted(tmp_path):
    folder = _scenarios(tmp_path / "s", ("b", "a"))
    (folder / "notes.txt").write_text("not a scenario")
    (folder / "c.yml").write_text("")
    assert [p.name for p in find_scenarios(folder)] == ["a.yaml", "b.yaml", "c.yml"]
    assert [p.name for p in find_scenarios(f"{folder}/*.yaml")] == ["a.yaml", "b.yaml"]
    assert [p.name for p in find_scenarios(f"{tmp_path}/**/b.yaml")] == ["b.yaml"]
    assert find_scenarios(folder / "a.yaml") == [folder / "a.yaml"]


@pytest.mark.parametrize("case", ["empty folder", "no match", "missing"])
def test_no_scenario_files_is_one_line_naming_the_input(tmp_path, capsys, case):
    given = {"empty folder": tmp_path / "empty", "no match": tmp_path / "*.yaml", "missing": tmp_path / "gone"}[case]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="--scenarios"):
        find_scenarios(given)
    code = _generate(tmp_path / "no-checkpoint", given, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and str(given) in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


def test_folder_names_are_safe_stems_and_colliding_stems_get_their_path_hash(tmp_path):
    files = [tmp_path / "x" / "cut_in.yaml", tmp_path / "y" / "cut_in.yaml", tmp_path / "a b.yaml",
             tmp_path / "...yaml", tmp_path / "z" / "lone.yaml"]
    names = folder_names(files)
    assert names[2:] == ["a_b", "scenario", "lone"]
    assert names[0] != names[1] and all(name.startswith("cut_in-") for name in names[:2])
    # the same names whatever the order, and whichever other files are in the batch
    assert folder_names(files[::-1]) == names[::-1]
    assert folder_names(files[:2]) == names[:2] and folder_names([files[4]]) == ["lone"]


# ---------------------------------------------------------------- a batch, resumed


def test_a_batch_renders_every_scenario_and_a_rerun_skips_the_finished(tiny_wfm_run, tmp_path, capsys, counted):
    scenarios, out = _scenarios(tmp_path / "s"), tmp_path / "out"
    assert _generate(tiny_wfm_run, scenarios, out) == 0
    assert len(counted) == 3
    for name in "abc":
        assert (out / name / ROLLOUT_STORE).is_dir() and (out / name / "grid.mp4").is_file()
    summary = _summary(out)
    assert summary["counts"]["done"] == 3 and all(summary[name]["seconds"] > 0 for name in "abc")
    printed = capsys.readouterr().out
    assert "done" in printed and "3 done, 0 skipped, 0 failed" in printed

    save(make_scenario(seed=7), scenarios / "d.yaml")  # the set grew: only the new one is rendered
    assert _generate(tiny_wfm_run, scenarios, out) == 0
    assert len(counted) == 4
    summary = _summary(out)
    assert [summary[name]["status"] for name in "abcd"] == ["skipped"] * 3 + ["done"]
    assert summary["a"]["seconds"] > 0  # kept from the run that rendered it


def test_the_model_is_loaded_once_per_worker_not_per_scenario(tiny_wfm_run, tmp_path, monkeypatch):
    import drivesim.simulate_many
    from drivesim.wfm.pipeline import WorldModelPipeline

    loads = []
    real = WorldModelPipeline.from_pretrained.__func__
    monkeypatch.setattr(drivesim.simulate_many, "_LOADED", {})
    monkeypatch.setattr(WorldModelPipeline, "from_pretrained",
                        classmethod(lambda cls, *args: loads.append(args) or real(cls, *args)))
    assert _generate(tiny_wfm_run, _scenarios(tmp_path / "s"), tmp_path / "out") == 0
    assert len(loads) == 1


def test_a_killed_batch_resumes_where_it_stopped(tiny_wfm_run, tmp_path, capsys, monkeypatch):
    scenarios, out = _scenarios(tmp_path / "s"), tmp_path / "out"
    real, calls = drivesim.simulate.rollout, []

    def killed_at_the_second(scenario, *args, **kwargs):
        calls.append(scenario.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(scenario, *args, **kwargs)

    monkeypatch.setattr(drivesim.simulate, "rollout", killed_at_the_second)
    assert _generate(tiny_wfm_run, scenarios, out) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert (out / "a" / ROLLOUT_STORE).is_dir() and not (out / "b").exists()
    assert [_summary(out)[name]["status"] for name in "abc"] == ["done", "pending", "pending"]
    stale = out / ".c.partial-999999999"  # a staging folder a kill -9 left: never whole, cleared on the rerun
    stale.mkdir()

    calls.clear()
    monkeypatch.setattr(drivesim.simulate, "rollout", lambda scenario, *a, **k: calls.append(scenario.seed)
                        or real(scenario, *a, **k))
    assert _generate(tiny_wfm_run, scenarios, out) == 0
    assert calls == [1, 2]  # b and c; a was finished
    summary = _summary(out)
    assert [summary[name]["status"] for name in "abc"] == ["skipped", "done", "done"]
    assert summary["counts"]["pending"] == 0 and summary["a"]["seconds"] > 0  # timed by the killed run
    assert not stale.exists()


def test_a_failing_scenario_is_reported_and_the_others_finish(tiny_wfm_run, tmp_path, capsys, counted):
    scenarios, out = _scenarios(tmp_path / "s"), tmp_path / "out"
    document = scenario_document()
    document["fps"] = "fast"
    (scenarios / "bad.yaml").write_text(yaml.safe_dump(document))
    (out / "c").mkdir(parents=True)
    (out / "c" / "mine.txt").write_text("keep me")  # not a rollout: reported, left as it is
    assert _generate(tiny_wfm_run, scenarios, out) == 1
    summary = _summary(out)
    assert summary["counts"]["done"] == 2 and summary["counts"]["failed"] == 2
    assert summary["bad"]["status"] == "failed" and "bad.yaml: fps" in summary["bad"]["reason"]
    assert "holds files" in summary["c"]["reason"] and (out / "c" / "mine.txt").read_text() == "keep me"
    assert "\n" not in summary["bad"]["reason"]
    printed = capsys.readouterr().out
    assert "bad.yaml: fps" in printed and "2 done, 0 skipped, 2 failed" in printed
    assert len(counted) == 2

    (scenarios / "bad.yaml").unlink()  # fixed: the rerun renders only what is missing
    (out / "c" / "mine.txt").unlink()
    assert _generate(tiny_wfm_run, scenarios, out) == 0
    assert len(counted) == 3 and _summary(out)["c"]["status"] == "done"


def test_an_exception_inside_one_rollout_fails_only_that_scenario(tiny_wfm_run, tmp_path, monkeypatch):
    scenarios, out = _scenarios(tmp_path / "s"), tmp_path / "out"
    real = drivesim.simulate.rollout

    def broken_for_seed_1(scenario, *args, **kwargs):
        if scenario.seed == 1:
            raise RuntimeError("CUDA out of memory\nTried to allocate 2 GiB")
        return real(scenario, *args, **kwargs)

    monkeypatch.setattr(drivesim.simulate, "rollout", broken_for_seed_1)
    assert _generate(tiny_wfm_run, scenarios, out) == 1
    summary = _summary(out)
    assert summary["b"]["reason"] == "RuntimeError: CUDA out of memory"
    assert [summary[name]["status"] for name in "ac"] == ["done", "done"]


# ---------------------------------------------------------------- what stops a batch before it starts


def test_a_checkpoint_that_cannot_load_stops_the_batch_in_one_line(tmp_path, capsys):
    scenarios = _scenarios(tmp_path / "s")
    code = _generate(tmp_path / "nope", scenarios, tmp_path / "out")
    err = capsys.readouterr().err
    assert code == 2 and "nope" in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, named", [
    (["--overwrite"], "--overwrite"), (["--workers", "0"], "--workers"),
    (["--rig", "no-such-rig"], "--rig no-such-rig"), (["--steps", "0"], "--steps")])
def test_bad_batch_flags_are_one_line(tiny_wfm_run, tmp_path, capsys, flags, named):
    code = _generate(tiny_wfm_run, _scenarios(tmp_path / "s"), tmp_path / "out", *flags)
    err = capsys.readouterr().err
    assert code == 2 and named in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_workers_and_engine_are_for_many_scenarios(tiny_wfm_run, tmp_path, capsys):
    scenario = save(make_scenario(), tmp_path / "s.yaml")
    code = main(["generate", "--scenario", str(scenario), "--out", str(tmp_path / "out"), "--workers", "2"])
    assert code == 2 and "--workers is for many scenarios" in capsys.readouterr().err


def test_engine_ray_is_refused_in_one_line_when_ray_is_absent(tiny_wfm_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    code = _generate(tiny_wfm_run, _scenarios(tmp_path / "s"), tmp_path / "out", "--engine", "ray")
    err = capsys.readouterr().err
    assert code == 2 and err == f"drivesim generate: error: {RAY_MISSING}\n"
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- engines


@pytest.mark.slow
def test_local_worker_processes_render_the_batch(tiny_wfm_run, tmp_path):
    scenarios, out = _scenarios(tmp_path / "s"), tmp_path / "out"
    assert _generate(tiny_wfm_run, scenarios, out, "--workers", "2") == 0
    assert all((out / name / ROLLOUT_STORE).is_dir() for name in "abc")
    assert _summary(out)["counts"]["done"] == 3


@pytest.mark.slow
def test_ray_engine_renders_the_batch(tiny_wfm_run, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional engine: pip install 'drivesim[ray]'")
    scenarios, out = _scenarios(tmp_path / "s", ("a", "b")), tmp_path / "out"
    document = scenario_document()
    document["fps"] = "fast"
    (scenarios / "bad.yaml").write_text(yaml.safe_dump(document))
    assert _generate(tiny_wfm_run, scenarios, out, "--engine", "ray", "--workers", "2") == 1
    summary = _summary(out)
    assert [summary[name]["status"] for name in ("a", "b", "bad")] == ["done", "done", "failed"]
    assert "bad.yaml: fps" in summary["bad"]["reason"]
