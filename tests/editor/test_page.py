"""The editor page through Streamlit's AppTest: open, edit with errors beside the field, undo and redo,
preview, render with a tiny model, and sessions that keep to themselves and to their workspace."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from editor_helpers import short_document

from drivesim.scenario import load
from drivesim.simulate import RolloutConfig

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@pytest.fixture
def library(tmp_path) -> Path:
    """A scenario library: the short scenario first (the page opens it), and a copy of cut_in."""
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "straight_cruise.yaml").write_text(yaml.safe_dump(short_document("straight_cruise")))
    (folder / "cut_in.yaml").write_bytes((SCENARIOS / "cut_in.yaml").read_bytes())
    return folder


@pytest.fixture
def app(library, tiny_wfm_run, tmp_path, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("DRIVESIM_UI_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("DRIVESIM_UI_SCENARIOS", str(library))
    monkeypatch.setenv("DRIVESIM_UI_CHECKPOINTS", str(tiny_wfm_run))
    # the session's fixtures (the synthetic clip store) lie under pytest's base folder: the page may read there
    monkeypatch.setenv("DRIVESIM_UI_DATA_ROOTS", str(tmp_path_factory.getbasetemp()))
    return new_app()


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def elements(at: AppTest, kind: str) -> list:
    """Elements AppTest has no accessor for (plotly charts, images, videos), by proto type."""
    found = []

    def walk(node):
        children = getattr(node, "children", None)
        for child in (children.values() if isinstance(children, dict) else []):
            if getattr(child, "type", None) == kind:
                found.append(child)
            walk(child)
    walk(at._tree)
    return found


def preview_url(at: AppTest) -> str:
    (image,) = elements(at, "image")
    return str(image.proto).split('url: "')[1].split('"')[0]


def ego_box_x(at: AppTest) -> float:
    (chart,) = elements(at, "plotly_chart")
    spec = json.loads(chart.proto.spec)
    (box,) = [trace for trace in spec["data"] if trace.get("meta", {}).get("kind") == "ego_box"]
    xs = box["x"]
    if isinstance(xs, dict):  # plotly sends numpy arrays as base64 typed arrays
        xs = np.frombuffer(base64.b64decode(xs["bdata"]), dtype=np.dtype(xs["dtype"]))
    return float(np.mean(xs[:4]))


def scenario(at: AppTest):
    return at.session_state["history"].current


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_the_page_opens_the_first_scenario_with_its_views(app):
    assert scenario(app).name == "straight_cruise"
    assert [t.value for t in app.title] == ["straight_cruise"]
    assert elements(app, "plotly_chart") and preview_url(app).endswith(".png")
    assert not errors(app)


def test_an_edit_changes_the_scenario_the_bird_eye_view_and_the_preview(app):
    before_url, before_y = preview_url(app), scenario(app).ego.positions[0, 1]
    app.number_input(key="ego_left").set_value(2.0)
    app.button(key="shift_ego").click().run()
    assert not app.exception and not errors(app)
    assert scenario(app).ego.positions[0, 1] == pytest.approx(before_y + 2.0)
    assert preview_url(app) != before_url


def test_the_time_slider_moves_the_ego_in_the_bird_eye_view(app):
    start = ego_box_x(app)
    app.slider(key="time").set_value(0.5).run()
    assert ego_box_x(app) == pytest.approx(start + 8 * 0.5, abs=1e-4)  # times snap to frames (1/12 s)


def test_a_bad_edit_shows_its_error_beside_the_field_and_changes_nothing(app):
    before = scenario(app)
    app.selectbox(key="preset").set_value("turn left")
    app.number_input(key=f"preset_speed_{app.session_state['version']}").set_value(40.0)
    app.number_input(key="preset_radius").set_value(3.0)
    app.number_input(key="preset_start").set_value(0.0)
    app.button(key="apply_preset").click().run()
    assert scenario(app) is before and not app.exception
    (message,) = errors(app)
    assert "physically impossible" in message and "straight_cruise.yaml" in message
    # the message sits in the presets' slot: right after the preset button, before the next form
    labels = [getattr(e, "key", None) or type(e).__name__ for e in app.main]
    assert labels.index("Error") == labels.index("apply_preset") + 1


def test_undo_and_redo(app):
    original = scenario(app)
    app.button(key="mirror").click().run()
    mirrored = scenario(app)
    assert mirrored is not original
    app.button(key="undo").click().run()
    assert scenario(app) is original
    app.button(key="redo").click().run()
    assert scenario(app) is mirrored


def test_open_a_library_scenario_and_a_clip_of_a_store(app, synthetic_store):
    app.selectbox(key="open_library_name").set_value("cut_in")
    app.button(key="open_library").click().run()
    assert scenario(app).name == "cut_in" and not errors(app)
    app.radio(key="open_source").set_value("Clip store").run()
    app.text_input(key="open_store_path").input(str(synthetic_store)).run()
    (clip,) = [box for box in app.sidebar.selectbox if box.label == "clip"]
    assert clip.options
    app.button(key="open_clip").click().run()
    assert not app.exception and not errors(app)
    assert scenario(app).source.startswith(str(synthetic_store)) or clip.value in scenario(app).name


def test_agents_are_added_moved_and_removed(app):
    app.text_input(key=f"new_id_{app.session_state['version']}").input("cyclist")
    app.selectbox(key="new_category").set_value("vehicle.bicycle")
    app.number_input(key="new_x").set_value(25.0)
    app.number_input(key="new_y").set_value(-3.0)
    app.number_input(key="new_speed").set_value(4.0)
    app.button(key="agent_add").click().run()
    assert not errors(app)
    assert scenario(app).agent("cyclist").category == "vehicle.bicycle"
    app.selectbox(key="agent_selected").set_value("lead")
    app.number_input(key="agent_dx").set_value(5.0)
    app.button(key="agent_move").click().run()
    assert scenario(app).agent("lead").trajectory.positions[0, 0] == pytest.approx(20.0)
    app.selectbox(key="agent_selected").set_value("cyclist")
    app.button(key="agent_remove").click().run()
    assert [a.id for a in scenario(app).agents] == ["lead"]
    # on top of the ego: refused, beside the form
    app.number_input(key="new_x").set_value(1.0)
    app.number_input(key="new_y").set_value(0.0)
    app.button(key="agent_add").click().run()
    assert any("overlap" in e for e in errors(app))


def test_render_with_a_tiny_model_plays_the_video_and_keeps_it_in_the_workspace(app, tiny_wfm_run, tmp_path):
    assert app.selectbox(key="render_checkpoint").value == str(tiny_wfm_run)
    defaults = RolloutConfig()  # the page offers the rollout's defaults, the best measured settings
    assert app.number_input(key="render_steps").value == defaults.steps
    assert app.number_input(key="render_guidance").value == defaults.guidance
    app.number_input(key="render_steps").set_value(1)
    app.button(key="render").click().run()
    job = app.session_state["job"]
    deadline = time.monotonic() + 300
    while job.running and time.monotonic() < deadline:
        time.sleep(0.2)
    assert job.state == "done", job.message
    app.run()
    assert elements(app, "video"), "the rendered grid plays in the page"
    assert job.out.is_relative_to(tmp_path / "workspace")
    assert (job.out / "grid.mp4").is_file() and load(job.out / "scenario.yaml").name == "straight_cruise"
    app.button(key="export_render").click().run()
    assert not errors(app) and not app.exception
    exported = tmp_path / "workspace" / app.session_state["sid"] / "exports" / job.out.name
    assert (exported / "v1.0-mini" / "scene.json").is_file() and (exported / "drivesim_manifest.json").is_file()


def test_two_sessions_do_not_see_each_others_edits(app, tmp_path):
    other = new_app()
    app.button(key="mirror").click().run()
    other.run()
    assert scenario(other) is not scenario(app)
    assert scenario(other).ego.positions[-1, 1] == pytest.approx(0.0)
    assert app.session_state["sid"] != other.session_state["sid"]
    folders = {p.name for p in (tmp_path / "workspace").iterdir()}
    assert folders == {app.session_state["sid"], other.session_state["sid"]}


def test_saving_writes_only_inside_the_workspace(app, tmp_path, library):
    before = {p: p.stat().st_mtime_ns for p in library.iterdir()}
    app.text_input(key="save_name").input("../../escape").run()
    app.button(key="save").click().run()
    assert not errors(app)
    saved = list((tmp_path / "workspace").rglob("*.yaml"))
    assert [p.name for p in saved] == ["escape.yaml"]
    assert {p: p.stat().st_mtime_ns for p in library.iterdir()} == before
    assert not (tmp_path / "escape.yaml").exists()


@pytest.mark.parametrize("typed", ["/etc", "BASE/../.."])
def test_a_clip_store_outside_the_data_roots_is_refused_in_one_line(app, tmp_path_factory, typed):
    typed = typed.replace("BASE", str(tmp_path_factory.getbasetemp()))
    app.radio(key="open_source").set_value("Clip store").run()
    app.text_input(key="open_store_path").input(typed).run()
    assert not app.exception
    (message,) = errors(app)
    assert message.startswith(f"clip store {typed}: outside the folders the editor may read (")
    assert str(tmp_path_factory.getbasetemp().resolve()) in message and "\n" not in message
    (clip,) = [box for box in app.sidebar.selectbox if box.label == "clip"]
    assert not clip.options and scenario(app).name == "straight_cruise"
