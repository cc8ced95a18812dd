"""The sampling settings live in one place, RolloutConfig's defaults (drivesim/simulate.py): `drivesim
generate`, --scenarios batches and the editor's Render default to them, and they are the settings
MODEL_CARD.md found best."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from drivesim.cli import build_parser, main
from drivesim.cli import scenarios as cli_scenarios
from drivesim.errors import ConfigError
from drivesim.simulate import RolloutConfig

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "cut_in.yaml"
SAMPLING = ("steps", "guidance", "seed", "temperature", "init", "strength")


class Captured(Exception):
    """Raised by a stand-in for the rollout: carries what it was given, and stops there."""


def test_the_defaults_are_the_settings_the_model_card_names():
    # MODEL_CARD.md ("The sampler settings favour the likely picture", and the held-out evaluation) names
    # these as the best measured. A new measurement changes them here and there together.
    config = RolloutConfig()
    assert config.steps == 2
    assert config.temperature == 0.0
    assert config.strength == 0.3
    assert config.guidance == 1.0
    assert config.init == "auto"
    assert config.use_layout is True and config.seed is None
    config.validate()


def generate_args(*extra: str):
    return build_parser().parse_args(["generate", "--scenario", "s.yaml", "--out", "o", *extra])


def test_generate_flags_default_to_the_rollout_config_and_help_shows_them(capsys):
    args, config = generate_args(), RolloutConfig()
    assert {name: getattr(args, name) for name in SAMPLING} == {name: getattr(config, name) for name in SAMPLING}
    assert args.no_layout is not config.use_layout
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    shown = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    for name in ("steps", "temperature", "strength", "guidance", "init"):
        value = getattr(config, name)
        value = value if isinstance(value, str) else f"{value:g}"
        assert re.search(rf"default {re.escape(value)}(?![\d.])", shown), f"--{name}'s help: default {value}"


def test_the_parser_reads_the_dataclass_source_without_importing_torch():
    defaults = cli_scenarios.rollout_defaults()
    assert defaults == {field.name: field.default for field in dataclasses.fields(RolloutConfig)
                        if field.default is not dataclasses.MISSING}
    code = ("import sys; from drivesim.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, 'building the parser imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_changed_dataclass_default_changes_the_flags(tmp_path, monkeypatch):
    import importlib.util

    source = Path(importlib.util.find_spec("drivesim.simulate").origin).read_text()
    assert source.count("    steps: int = 2 ") == 1 and source.count("    strength: float = 0.3\n") == 1
    changed = tmp_path / "simulate.py"
    changed.write_text(source.replace("    steps: int = 2 ", "    steps: int = 7 ")
                       .replace("    strength: float = 0.3\n", "    strength: float = 0.45\n"))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: SimpleNamespace(origin=str(changed))
                        if name == "drivesim.simulate" else find_spec(name, *rest))
    args = generate_args()
    assert (args.steps, args.strength, args.temperature) == (7, 0.45, RolloutConfig().temperature)


def test_a_default_that_is_no_literal_is_read_from_the_class(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None)  # no source at hand
    assert {name: getattr(generate_args(), name) for name in SAMPLING} == \
        {name: getattr(RolloutConfig(), name) for name in SAMPLING}


def test_generate_without_sampling_flags_rolls_out_with_the_rollout_config(tmp_path, monkeypatch):
    def stand_in(args, scenario, config):
        raise Captured(config)

    monkeypatch.setattr(cli_scenarios, "_generate", stand_in)
    with pytest.raises(Captured) as caught:
        main(["generate", "--scenario", str(SCENARIO), "--out", str(tmp_path / "one"), "--quiet"])
    assert caught.value.args[0] == RolloutConfig()


def test_a_batch_defaults_to_the_rollout_config(tmp_path, monkeypatch):
    import drivesim.simulate_many as simulate_many

    batch = simulate_many.BatchConfig(scenarios=str(tmp_path), out=tmp_path / "out", checkpoint=tmp_path)
    assert batch.rollout == RolloutConfig()

    def stand_in(batch, progress=True):
        raise Captured(batch)

    monkeypatch.setattr(simulate_many, "generate_many", stand_in)
    with pytest.raises(Captured) as caught:
        main(["generate", "--scenarios", str(SCENARIO.parent), "--out", str(tmp_path / "many"),
              "--checkpoint", str(tmp_path), "--quiet"])
    assert caught.value.args[0].rollout == RolloutConfig()


def test_the_editors_render_defaults_to_the_rollout_config(tmp_path, monkeypatch):
    import drivesim.simulate
    from drivesim.editor import jobs
    from drivesim.scenario import load

    config = RolloutConfig()
    assert (jobs.RenderJob.steps, jobs.RenderJob.guidance) == (config.steps, config.guidance)

    def stand_in(scenario, pipeline, config, **kwargs):
        raise ConfigError(f"captured {config!r}")

    monkeypatch.setattr(jobs, "cached_pipeline", lambda checkpoint, device: None)
    monkeypatch.setattr(drivesim.simulate, "rollout", stand_in)
    job = jobs.RenderJob(load(SCENARIO), tmp_path, tmp_path / "render", seed=5).start().wait(60)
    assert job.state == "failed" and job.error == f"captured {dataclasses.replace(config, seed=5)!r}"
