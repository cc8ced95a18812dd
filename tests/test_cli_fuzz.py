"""Random bad values for every option of the commands that take user paths and numbers, in-process through
drivesim.cli.main: each is refused with exit 2, one line on stderr and no traceback, before any real work
(which the `guard` fixture makes fail the test if it is ever reached)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivesim.cli import main
from drivesim.data.nuscenes_tables import VERSION
from drivesim.scenario import MAX_SEED

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Names as a shell passes them: no NUL (argv cannot hold one), no surrogates.
NAMES = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=30)
NEGATIVE = st.integers(max_value=0)
NON_FINITE = st.sampled_from(["nan", "inf", "-inf"])


def bad_floats(low: float, high: float, low_open: bool = False) -> st.SearchStrategy[str]:
    """Text of floats outside [low, high] ((low, high] with low_open), and the non-finite ones."""
    below = st.floats(max_value=low, exclude_max=not low_open, allow_nan=False, allow_infinity=False)
    above = st.floats(min_value=high, exclude_min=True, allow_nan=False, allow_infinity=False)
    return st.one_of(NON_FINITE, below.map(repr), above.map(repr))


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """A file where a folder is wanted, and a folder that never exists."""
    file = tmp_path / "a-file"
    file.write_text("not a folder")
    return {"file": file, "missing": tmp_path / "missing"}


def missing_path(places) -> st.SearchStrategy[str]:
    return NAMES.map(lambda name: str(places["missing"] / name.replace("/", "_").lstrip(".") / "x"))


def file_path(places) -> st.SearchStrategy[str]:
    return st.sampled_from([str(places["file"]), str(places["file"] / "below"), "/proc/nope", "/proc/self/x/y"])


@pytest.fixture
def guard(monkeypatch):
    """The first step of each command's real work: reaching it means a bad value was taken."""
    import subprocess

    import drivesim.data.synth.logs
    import drivesim.simulate
    import drivesim.wfm.pipeline
    import drivesim.tokenizer.evaluate
    import drivesim.train.distributed

    def reached(*args, **kwargs):
        pytest.fail("a bad value was taken and the real work started")

    # from_pretrained refuses a bad checkpoint itself: its work starts once the checkpoint is resolved
    for module, name in ((drivesim.data.synth.logs, "_render_all"), (drivesim.wfm.pipeline, "_resolve_tokenizer"),
                         (drivesim.simulate, "rollout"), (drivesim.tokenizer.evaluate, "evaluate"),
                         (drivesim.train.distributed, "setup"), (subprocess, "call")):
        monkeypatch.setattr(module, name, reached)


def refused(capsys, argv: list[str]) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, (argv, err)
    assert err.count("\n") == 1 and err.startswith(f"drivesim {argv[0]}"), (argv, err)
    assert "Traceback" not in err, (argv, err)


@st.composite
def synth_options(draw, places):
    size = st.one_of(NAMES.filter(lambda t: "x" not in t.lower()),
                     st.tuples(st.integers(-5, 15), st.integers(-5, 5000)).map(lambda s: f"{s[0]}x{s[1]}"),
                     st.tuples(st.integers(16, 64), st.integers(4097, 10**6)).map(lambda s: f"{s[0]}x{s[1]}"))
    options = {
        "--scenes": NEGATIVE.map(str),
        "--seconds": bad_floats(0, 600, low_open=True),
        "--size": size,
        "--fps": st.one_of(NEGATIVE, st.integers(61, 10**9), st.integers(0, 30).map(lambda n: 2 * n + 1)).map(str),
        "--seed": st.integers(max_value=-1).map(str),
        "--rig": st.one_of(NAMES.filter(lambda t: t not in ("nuscenes", "front3")), missing_path(places)),
        "--version": NAMES.filter(lambda t: not VERSION.fullmatch(t)),
        "--workers": st.integers(max_value=-1).map(str),
        "--out": file_path(places),
        "--contact-sheet": st.one_of(NAMES.filter(lambda t: not t.lower().endswith(".png")),
                                     st.just(str(places["file"] / "s.png"))),
    }
    option = draw(st.sampled_from(sorted(options)))
    return option, draw(options[option])


@FUZZ
@given(data=st.data())
def test_synth_refuses_every_bad_value(data, places, guard, capsys):
    option, value = data.draw(synth_options(places))
    out = [] if option == "--out" else ["--out", str(places["missing"] / "logs")]
    refused(capsys, ["synth", *out, "--scenes", "1", "--seconds", "0.5", f"{option}={value}"])
    assert not places["missing"].exists()


@st.composite
def train_overrides(draw, places):
    positive = ["steps", "batch_size", "grad_accum", "log_every", "val_every", "val_batches", "sample_every",
                "checkpoint_every", "keep_last", "max_bad_steps"]
    floats = ["optim.lr", "optim.weight_decay", "optim.min_lr_ratio", "optim.grad_clip", "ema_decay"]
    text = NAMES.map(lambda t: "a" + t.replace("\n", " "))  # YAML reads it as a string, never a number
    choices = st.one_of(
        st.tuples(st.sampled_from(positive), st.one_of(NEGATIVE.map(str), text, st.just("!!int abc"))),
        st.tuples(st.sampled_from(floats), st.one_of(st.sampled_from([".nan", ".inf", "-.inf", "-1.0", "!!float x"]),
                                                     text)),
        st.tuples(st.sampled_from(["device", "precision", "parallel"]), text),
        st.tuples(st.sampled_from(["optim.betas"]), st.sampled_from(["[.nan, 0.9]", "[1.5, 0.9]", "[0.9]", "x"])),
        st.tuples(st.sampled_from(["out"]), file_path(places)),
        st.tuples(text.map(lambda t: "no_such_key_" + "".join(c for c in t if c.isalnum())), st.just("1")),
    )
    key, value = draw(choices)
    return f"{key}={value}"


@FUZZ
@given(data=st.data())
def test_train_refuses_every_bad_value(data, places, guard, capsys):
    override = data.draw(train_overrides(places))
    refused(capsys, ["train", "tokenizer", override])


@FUZZ
@given(data=st.data())
def test_train_refuses_a_bad_config_file(data, tmp_path, places, guard, capsys):
    binary = st.binary(max_size=200).map(lambda b: b + b"\xff")  # never UTF-8
    broken = st.sampled_from([b"steps: !!int abc\n", b"steps: [\n", b"- a\n", b"optim: 3\n",
                              b"optim: {grad_clip: .nan}\n", b"steps: !!timestamp x\n"])
    content = data.draw(st.one_of(binary, broken))
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    refused(capsys, ["train", "tokenizer", "--config", str(config)])


@FUZZ
@given(data=st.data())
def test_pack_weights_refuses_every_bad_value(data, places, guard, capsys):
    checkpoint = data.draw(st.one_of(missing_path(places), st.just(str(places["file"]))))
    out = data.draw(st.one_of(file_path(places), missing_path(places)))
    refused(capsys, ["pack-weights", "--checkpoint", checkpoint, "--out", out])


@FUZZ
@given(data=st.data())
def test_ui_refuses_every_bad_value(data, places, guard, capsys):
    options = {"--port": st.one_of(NEGATIVE, st.integers(min_value=65536)).map(str),
               "--workspace": file_path(places).filter(lambda p: not p.startswith("/proc")),
               "--scenarios": missing_path(places), "--data-root": missing_path(places)}
    option = data.draw(st.sampled_from(sorted(options)))
    refused(capsys, ["ui", "--workspace", str(places["missing"] / "ws"), f"{option}={data.draw(options[option])}"])


@FUZZ
@given(data=st.data())
def test_tokenizer_eval_refuses_every_bad_value(data, places, guard, capsys):
    options = {"--clips": NEGATIVE.map(str), "--videos": st.integers(max_value=-1).map(str),
               "--out": st.just(str(places["file"])), "--checkpoint": missing_path(places)}
    option = data.draw(st.sampled_from(sorted(options)))
    base = ["--checkpoint", str(places["missing"] / "run"), "--store", str(places["missing"] / "store")]
    refused(capsys, ["tokenizer", "eval", *base, f"{option}={data.draw(options[option])}"])


def scenario_file(tmp_path: Path, document) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


GOOD = {"prompt": "a road", "rig": "front3", "fps": 12, "duration": 0.25,
        "ego": {"waypoints": [{"t": 0, "x": 0, "y": 0}, {"t": 0.25, "x": 3, "y": 0}]}}


@st.composite
def bad_scenarios(draw):
    numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), NAMES, st.none())
    fields = {
        "fps": numbers.filter(lambda v: not (isinstance(v, (int, float)) and 0 < v <= 120 and math.isfinite(v))),
        "duration": numbers.filter(lambda v: not isinstance(v, (int, float)) or not 0 < v <= 0.25),
        "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED), NAMES, st.floats()),
        "rig": st.one_of(NAMES.filter(lambda t: t not in ("front3", "nuscenes")), st.integers(), st.lists(NAMES),
                         st.dictionaries(NAMES, NAMES, max_size=3)),
        "prompt": st.one_of(st.just(""), st.just("  "), st.integers(), st.lists(NAMES, min_size=1)),
        "ego": st.one_of(NAMES, st.integers(), st.just({}), st.just({"waypoints": []})),
        "start_frames": st.one_of(NAMES, st.integers(), st.just({"store": "x"}), st.just({"clip": "c"})),
        "agents": st.one_of(NAMES, st.integers(min_value=1), st.lists(st.integers(), min_size=1)),
        "unknown": st.integers(),
    }
    name = draw(st.sampled_from(sorted(fields)))
    return {**GOOD, name: draw(fields[name])}


@FUZZ
@given(document=bad_scenarios())
def test_scenario_validate_refuses_every_bad_field(document, tmp_path, guard, capsys):
    refused(capsys, ["scenario", "validate", str(scenario_file(tmp_path, document))])


@FUZZ
@given(content=st.binary(max_size=300), rig=st.booleans())
def test_scenario_validate_refuses_random_files_and_rigs(content, rig, tmp_path, places, guard, capsys):
    file = tmp_path / "random.yaml"
    file.write_bytes(content)
    rig_file = tmp_path / "random-rig.yaml"
    rig_file.write_bytes(content)
    target = scenario_file(tmp_path, GOOD) if rig else file
    refused(capsys, ["scenario", "validate", str(target), *(["--rig", str(rig_file)] if rig else [])])


@st.composite
def generate_options(draw, places):
    options = {
        "--steps": NEGATIVE.map(str),
        "--guidance": st.one_of(NON_FINITE, st.floats(max_value=0, exclude_max=True, allow_infinity=False).map(repr)),
        "--seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=MAX_SEED)).map(str),
        "--temperature": bad_floats(0, 2),
        "--strength": bad_floats(0, 1, low_open=True),
        "--out": st.just(str(places["file"])),
        "--scenario": missing_path(places),
        "--rig": st.one_of(NAMES.filter(lambda t: t not in ("nuscenes", "front3")), missing_path(places)),
        "--checkpoint": st.one_of(missing_path(places), st.just(str(places["file"]))),
    }
    option = draw(st.sampled_from(sorted(options)))
    return option, draw(options[option])


@FUZZ
@given(data=st.data())
def test_generate_refuses_every_bad_value(data, tmp_path, places, guard, capsys):
    option, value = data.draw(generate_options(places))
    base = {"--scenario": str(scenario_file(tmp_path, GOOD)), "--checkpoint": str(places["missing"] / "run"),
            "--out": str(places["missing"] / "out")}
    argv = [item for key, given_value in base.items() if key != option for item in (key, given_value)]
    refused(capsys, ["generate", *argv, f"{option}={value}"])
    assert not places["missing"].exists()
