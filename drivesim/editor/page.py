"""The scenario editor's page (Streamlit): open, edit, preview and render a scenario.

ui/app.py runs `main()`. Everything the page changes lives in st.session_state, so two browser
sessions never see each other's edits, and everything it writes goes through the session's Workspace.
Edits run in button callbacks through History.apply: a bad value leaves the scenario as it was and
its message appears beside the field that caused it.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from drivesim import scenario as sc
from drivesim.editor import presets
from drivesim.editor.history import History
from drivesim.editor.jobs import RenderJob, find_checkpoints
from drivesim.editor.roots import check_readable, check_scenario, data_roots, readable_roots
from drivesim.editor.workspace import Workspace, new_session_id, safe_name
from drivesim.errors import DrivesimError

REPO = Path(__file__).resolve().parents[2]
DEVICES = ("auto", "cpu", "cuda")


def settings() -> dict:
    """Where the page reads and writes; `drivesim ui` sets these from its options. "readable": the folders
    it may open anything under (drivesim/editor/roots.py)."""
    config = {"workspace": Path(os.environ.get("DRIVESIM_UI_WORKSPACE", "out/ui-workspace")),
              "scenarios": Path(os.environ.get("DRIVESIM_UI_SCENARIOS", REPO / "scenarios")),
              "checkpoints": [Path(p) for p in os.environ.get("DRIVESIM_UI_CHECKPOINTS", default_checkpoints())
                              .split(os.pathsep) if p],
              "data_roots": data_roots()}
    config["readable"] = readable_roots(config)
    return config


def default_checkpoints() -> str:
    """The shipped weights, then the runs under runs/ (os.pathsep-separated, as DRIVESIM_UI_CHECKPOINTS)."""
    from drivesim.weights import SHIPPED

    return os.pathsep.join([str(SHIPPED), "runs"])


def library(folder: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


# ---------------------------------------------------------------- session state


def state():
    return st.session_state


def history() -> History:
    return state()["history"]


def workspace() -> Workspace:
    return state()["workspace"]


def init_session() -> None:
    s = state()
    if "history" in s:
        return
    config = settings()
    s["settings"] = config
    s["sid"] = new_session_id()
    s["workspace"] = Workspace(config["workspace"], s["sid"])
    s["errors"] = {}
    s["version"] = 0  # bumped by every change of the scenario: tables keyed by it show the new one
    s["job"] = None
    s["previews"] = {}
    scenarios = library(config["scenarios"])
    first = scenarios.get("straight_cruise") or next(iter(scenarios.values()), None)
    if first is None:
        st.error(f"no scenario files in {config['scenarios']}: open one by upload")
        st.stop()
    s["history"] = History(sc.load(first))
    s["save_name"] = s["history"].current.name or "scenario"


def edit(field: str, name: str, function) -> None:
    """Apply an edit when its button was pressed, then draw the page again: the bird's-eye view and the
    preview above the button must show the new scenario. A failed edit's message waits in the field's slot."""
    error = history().apply(name, function)
    state()["errors"][field] = error
    if error is None:
        state()["version"] += 1
    st.rerun()


def pressed(label: str, key: str, where=None, **options) -> bool:
    """A button; pressed in this run. (Not on_click callbacks: their arguments are the widget values of the
    run before, which a user who types a number and clicks at once would find one edit behind.)"""
    return (where or st).button(label, key=key, **options)


def show_error(field: str) -> None:
    message = state()["errors"].get(field)
    if message:
        st.error(message, icon="⚠️")


def value(key: str):
    return state().get(key)


# ---------------------------------------------------------------- opening and saving


def readable() -> list[Path]:
    return state()["settings"]["readable"]


def open_scenario(field: str, loader) -> None:
    try:
        scenario = loader()
        check_scenario(scenario, readable())  # its start frames: a path an upload may name
    except DrivesimError as error:
        state()["errors"][field] = str(error)
        return
    except OSError as error:  # a folder the user typed that cannot be read
        state()["errors"][field] = f"{error.filename or ''}: {error.strerror or error}"
        return
    history().reset(scenario)
    state()["errors"] = {}
    state()["version"] += 1
    state()["time"] = 0.0
    state()["save_name"] = scenario.name or "scenario"  # the Save field is drawn after Open: allowed here
    st.rerun()


def sidebar() -> None:
    config = state()["settings"]
    with st.sidebar:
        st.header("Open")
        source = st.radio("from", ("Library", "Clip store", "Upload"), horizontal=True, key="open_source")
        if source == "Library":
            scenarios = library(config["scenarios"])
            name = st.selectbox("scenario", list(scenarios), key="open_library_name")
            if pressed("Open", "open_library", disabled=name is None):
                open_scenario("open", lambda: sc.load(scenarios[name]))
        elif source == "Clip store":
            store = st.text_input("clip store folder", key="open_store_path", placeholder="out/demo-store")
            clips, refusal = _store_clips(store)
            if refusal:
                st.error(refusal, icon="⚠️")
            # keyed by the folder: a choice made while another folder was typed must not linger
            clip = st.selectbox("clip", clips, key=f"open_store_clip:{store}", disabled=not clips)
            if pressed("Open clip", "open_clip", disabled=not clip):
                open_scenario("open", lambda: sc.from_clip(check_readable(store.strip(), readable(), "clip store"),
                                                           clip))
        else:
            upload = st.file_uploader("scenario YAML (10 MB at most)", type=["yaml", "yml"], key="open_upload",
                                      max_upload_size=sc.MAX_BYTES // 2**20)
            if pressed("Open upload", "open_uploaded", disabled=upload is None):
                open_scenario("open", lambda: workspace().save_upload(upload.name, upload.getvalue()))
        show_error("open")

        st.header("Edit")
        left, right = st.columns(2)
        undo = history().undo_stack[-1][0] if history().can_undo else None
        redo = history().redo_stack[-1][0] if history().can_redo else None
        if pressed("↶ Undo", "undo", where=left, disabled=undo is None, help=f"undo: {undo}" if undo else None,
                   width="stretch"):
            _step(history().undo)
        if pressed("↷ Redo", "redo", where=right, disabled=redo is None, help=f"redo: {redo}" if redo else None,
                   width="stretch"):
            _step(history().redo)

        st.header("Save")
        current = history().current
        st.download_button("Download scenario YAML", data=_yaml(current), key="download_scenario",
                           file_name=f"{safe_name(current.name)}.yaml", mime="application/x-yaml")
        st.text_input("name in the workspace", key="save_name")
        if pressed("Save to workspace", "save"):
            _save()
        show_error("save")
        st.caption(f"workspace: {workspace().folder}")


def _store_clips(store: str) -> tuple[list[str], str | None]:
    """(the clips of the typed store, why it is refused when it lies outside the readable folders)."""
    if not store or not store.strip():
        return [], None
    from drivesim.data.store import stored_clip_ids

    try:
        path = check_readable(store.strip(), readable(), "clip store")
    except DrivesimError as error:
        return [], str(error)
    try:
        return stored_clip_ids(path), None
    except (DrivesimError, OSError, ValueError):
        return [], None


def _step(action) -> None:
    if action() is not None:
        state()["version"] += 1
        state()["errors"] = {}
        st.rerun()


def _yaml(scenario) -> str:
    import yaml

    return yaml.safe_dump(scenario.to_dict(), sort_keys=False, default_flow_style=None, width=120)


def _save() -> None:
    try:
        path = workspace().save_scenario(history().current, value("save_name"))
    except DrivesimError as error:
        state()["errors"]["save"] = str(error)
        return
    state()["errors"]["save"] = None
    st.toast(f"saved {path.name}")


# ---------------------------------------------------------------- the view: bird's eye and cameras


def views() -> float:
    from drivesim.editor.bev import bev_figure

    scenario = history().current
    step = round(1.0 / scenario.fps, 6)
    time = min(float(value("time") or 0.0), scenario.duration)
    state()["time"] = round(round(time / step) * step, 6)
    time = st.slider("time (s)", 0.0, float(scenario.duration), step=step, key="time", format="%.2f")
    left, right = st.columns([5, 6])
    with left:
        selected = value("agent_selected")
        st.plotly_chart(bev_figure(scenario, time, selected=selected), key="bev", width="stretch")
    with right:
        st.image(preview(scenario, time), caption=f"layout maps at t = {time:.2f} s, every camera", width="stretch",
                 output_format="PNG")
    return time


def preview(scenario, time: float) -> bytes:
    """The cameras' layout maps as a PNG, cached per scenario version and time (renders take ~0.5 s)."""
    from drivesim.editor.preview import preview_png

    cache = state()["previews"]
    key = (state()["version"], round(time, 4))
    if key not in cache:
        if len(cache) > 32:
            cache.clear()
        cache[key] = preview_png(scenario, time, width=256)
    return cache[key]


# ---------------------------------------------------------------- editing tabs


def ego_tab() -> None:
    scenario = history().current
    st.subheader("Waypoints")
    st.caption("Times in seconds, positions in metres (x forward, y left of the start); yaw in degrees on every "
               "row, or blank on every row to let the heading follow the path.")
    table = st.data_editor(presets.waypoint_rows(scenario.ego), num_rows="dynamic", hide_index=False,
                           key=f"ego_table_{state()['version']}",
                           column_config={"t": st.column_config.NumberColumn("t (s)", format="%.2f"),
                                          "x": st.column_config.NumberColumn("x (m)", format="%.2f"),
                                          "y": st.column_config.NumberColumn("y (m)", format="%.2f"),
                                          "yaw_deg": st.column_config.NumberColumn("yaw (°)", format="%.1f")})
    rows = table.to_dict("records") if hasattr(table, "to_dict") else list(table)
    if pressed("Apply waypoints", "apply_waypoints"):
        edit("waypoints", "edit waypoints", lambda s: presets.with_ego_waypoints(s, rows))
    show_error("waypoints")

    st.subheader("Presets")
    columns = st.columns(5)
    preset = columns[0].selectbox("manoeuvre", presets.PRESETS, key="preset")
    top = sc.limits_for(None).speed
    speed = columns[1].number_input("speed (m/s)", 0.0, top, value=min(round(presets.ego_speed(scenario), 1), top),
                                    step=0.5, key=f"preset_speed_{state()['version']}")
    start = columns[2].number_input("starts at (s)", 0.0, 3600.0, value=1.0, step=0.5,
                                    key="preset_start")
    span = columns[3].number_input("lasts (s)", 0.5, 30.0, value=4.0, step=0.5, key="preset_span")
    radius = columns[4].number_input("turn radius (m)", 3.0, 200.0, value=15.0, step=1.0, key="preset_radius")
    if pressed("Apply preset", "apply_preset"):
        edit("preset", f"ego: {preset}",
             lambda s: presets.apply_preset(s, preset, speed=speed, start=start, span=span, radius=radius))
    show_error("preset")

    columns = st.columns(3)
    factor = columns[0].number_input("speed scale", 0.1, 5.0, value=1.0, step=0.1, key="ego_scale")
    left = columns[1].number_input("shift left (m)", -20.0, 20.0, value=3.5, step=0.5, key="ego_left")
    columns[2].write("")
    if pressed("Scale ego speed", "scale_ego", where=columns[0]):
        edit("ego_scale", f"ego speed x{factor:g}", lambda s: sc.scale_speed(s, factor))
    if pressed("Shift ego sideways", "shift_ego", where=columns[1]):
        edit("ego_scale", f"ego {left:+g} m left", lambda s: sc.move_ego(s, left=left))
    show_error("ego_scale")


def agents_tab() -> None:
    scenario = history().current
    ids = [agent.id for agent in scenario.agents]
    if ids:
        labels = {agent.id: f"{agent.id} ({agent.category}{', parked' if agent.parked else ''})"
                  for agent in scenario.agents}
        if value("agent_selected") not in ids:
            state()["agent_selected"] = ids[0]
        chosen = st.selectbox("agent", ids, key="agent_selected", format_func=labels.get)
        columns = st.columns(4)
        dx = columns[0].number_input("move x (m)", -100.0, 100.0, value=0.0, step=0.5, key="agent_dx")
        dy = columns[1].number_input("move y (m)", -100.0, 100.0, value=0.0, step=0.5, key="agent_dy")
        shift = columns[2].number_input("later by (s)", -30.0, 30.0, value=0.0, step=0.25, key="agent_shift")
        factor = columns[3].number_input("speed scale", 0.1, 5.0, value=1.0, step=0.1, key="agent_scale")
        buttons = st.columns(4)
        if pressed("Move", "agent_move", where=buttons[0]):
            edit("agent", f"move {chosen}", lambda s: sc.move_agent(s, chosen, dx, dy))
        if pressed("Re-time", "agent_retime", where=buttons[1]):
            edit("agent", f"re-time {chosen}", lambda s: sc.shift_time(s, shift, chosen))
        if pressed("Scale speed", "agent_speed", where=buttons[2]):
            edit("agent", f"{chosen} speed x{factor:g}", lambda s: sc.scale_speed(s, factor, chosen))
        if pressed("Remove", "agent_remove", where=buttons[3]):
            edit("agent", f"remove {chosen}", lambda s: sc.remove_agent(s, chosen))
        show_error("agent")
    else:
        st.info("no agents yet: add one below")

    st.subheader("Add an agent")
    columns = st.columns(3)
    new_id = columns[0].text_input("id", value=f"agent{len(ids) + 1}", key=f"new_id_{state()['version']}")
    category = columns[1].selectbox("category", sc.CATEGORIES, index=sc.CATEGORIES.index("vehicle.car"),
                                    key="new_category")
    speed = columns[2].number_input("speed (m/s, 0: parked)", 0.0, 60.0, value=0.0, step=0.5, key="new_speed")
    columns = st.columns(3)
    x = columns[0].number_input("x (m)", -500.0, 500.0, value=20.0, step=1.0, key="new_x")
    y = columns[1].number_input("y (m)", -500.0, 500.0, value=3.5, step=0.5, key="new_y")
    yaw = columns[2].number_input("heading (°)", -180.0, 180.0, value=0.0, step=5.0, key="new_yaw")
    if pressed("Add agent", "agent_add"):
        edit("new_agent", f"add {new_id}", lambda s: presets.new_agent(s, new_id, category, x, y, yaw, speed))
    show_error("new_agent")


def scene_tab() -> None:
    scenario = history().current
    version = state()["version"]
    prompt = st.text_area("prompt", value=scenario.prompt, key=f"prompt_{version}", height=80)
    columns = st.columns(3)
    name = columns[0].text_input("name", value=scenario.name, key=f"name_{version}")
    seed = columns[1].number_input("seed", 0, 2**31 - 1, value=int(scenario.seed), key=f"seed_{version}")
    duration = columns[2].number_input("duration (s)", 0.0, 3600.0, value=float(scenario.duration), step=0.5,
                                       key=f"duration_{version}")
    if pressed("Apply", "scene_apply"):
        edit("scene", "scene settings", lambda s: _with_scene(s, prompt, name, seed, duration))
    if pressed("Mirror left and right", "mirror"):
        edit("scene", "mirror", sc.mirror)
    show_error("scene")
    st.caption(scenario.summary())


def _with_scene(scenario, prompt: str, name: str, seed: int, duration: float):
    document = scenario.to_dict()
    document.update(prompt=prompt, name=name, seed=int(seed), duration=float(duration))
    return sc.from_dict(document, scenario.source, scenario.base_dir)


# ---------------------------------------------------------------- rendering


def render_tab() -> None:
    config = state()["settings"]
    # the shipped weights first by default: find_checkpoints keeps the roots' order
    options = [str(run) for run in find_checkpoints(*config["checkpoints"])]
    columns = st.columns([3, 1, 1, 1, 1])
    checkpoint = columns[0].selectbox("checkpoint (shipped weights or a `drivesim train wfm` run)", options,
                                      key="render_checkpoint",
                                      accept_new_options=True,
                                      placeholder="no runs found: type a run folder")
    steps = columns[1].number_input("steps", 1, 200, value=RenderJob.steps, key="render_steps")
    guidance = columns[2].number_input("guidance", 0.0, 20.0, value=float(RenderJob.guidance), step=0.5,
                                       key="render_guidance")
    seed = columns[3].number_input("seed", 0, 2**31 - 1, value=int(history().current.seed), key="render_seed")
    device = columns[4].selectbox("device", DEVICES, key="render_device")
    job = state()["job"]
    if pressed("Render", "render", type="primary", disabled=bool(job and job.running) or not checkpoint):
        _start_render(checkpoint, steps, guidance, seed, device)
    show_error("render")
    render_status()
    renders = [folder for folder in workspace().renders() if job is None or folder != job.out.resolve()]
    if renders:
        with st.expander(f"earlier renders in this session ({len(renders)})"):
            for folder in renders:
                st.caption(folder.name)
                st.video(str(folder / "grid.mp4"))


def _start_render(checkpoint, steps, guidance, seed, device) -> None:
    path = Path(str(checkpoint or "").strip())
    scenario = history().current
    try:  # a typed checkpoint, and the start frames, only under the folders named at start
        if str(checkpoint or "").strip():
            path = check_readable(path, readable(), "checkpoint")
        check_scenario(scenario, readable())
    except DrivesimError as error:
        state()["errors"]["render"] = str(error)
        return
    if not str(checkpoint or "").strip() or not path.is_dir():
        state()["errors"]["render"] = f"checkpoint {checkpoint!r}: no such run folder"
        return
    out = workspace().new_render_folder(scenario.name or "render")
    state()["errors"]["render"] = None
    state()["job"] = RenderJob(scenario, path, out, steps=int(steps), guidance=float(guidance), seed=int(seed),
                               device=device).start()
    st.rerun()


@st.fragment(run_every=1.0)
def render_status() -> None:
    """Polls the render once a second without rerunning the rest of the page."""
    job: RenderJob | None = state()["job"]
    if job is None:
        return
    if job.running:
        st.progress(job.progress, text=f"{job.state}: {job.message}")
        st.button("Stop", key="render_stop", on_click=job.cancel)
        return
    if state().get("job_shown") is not job:  # just finished: redraw the whole page (the Render button too)
        state()["job_shown"] = job
        st.rerun(scope="app")
    if job.state == "failed":
        st.error(f"render failed: {job.message}", icon="⚠️")
        if job.error and job.error != job.message:
            with st.expander("details"):
                st.code(job.error)
        return
    if job.state == "cancelled":
        st.warning("render stopped")
        return
    st.success(f"rendered {job.out.name}: {job.message}")
    grid = job.outputs["grid"]
    st.video(str(grid), loop=True, autoplay=True, muted=True)
    columns = st.columns(3)
    columns[0].download_button("Download grid MP4", data=grid.read_bytes(), file_name=f"{job.out.name}.mp4",
                               mime="video/mp4", key="download_grid")
    columns[1].download_button("Download scenario YAML", data=job.outputs["scenario"].read_bytes(),
                               file_name=f"{job.out.name}.yaml", mime="application/x-yaml",
                               key="download_render_scenario")
    columns[2].caption(f"written to {job.out}")
    if st.button("Export for perception", key="export_render",
                 help="write this render as a nuScenes v1.0 data set (images, boxes, tracks, poses, calibration)"):
        _export(job.out)
    show_error("export")


def _export(render: Path) -> None:
    """The render as a nuScenes data set in the workspace's exports/ folder (drivesim export)."""
    from drivesim.export import ExportConfig, export

    target = workspace().path("exports", render.name)
    target.parent.mkdir(exist_ok=True)
    try:
        result = export(ExportConfig(rollouts=render, out=target, overwrite=True))
    except DrivesimError as error:
        state()["errors"]["export"] = str(error)
        return
    state()["errors"]["export"] = None
    st.success(f"exported for perception: {result.summary()}")


# ---------------------------------------------------------------- the page


def main() -> None:
    st.set_page_config(page_title="drivesim scenario editor", page_icon="🚗", layout="wide")
    init_session()
    sidebar()
    scenario = history().current
    st.title(scenario.name or "scenario")
    st.caption(f"{scenario.prompt}  ·  {scenario.summary()}")
    views()
    ego, agents, scene, render = st.tabs(["Ego", "Agents", "Scene", "Render"])
    with ego:
        ego_tab()
    with agents:
        agents_tab()
    with scene:
        scene_tab()
    with render:
        render_tab()
