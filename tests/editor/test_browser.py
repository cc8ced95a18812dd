"""The scenario editor in a real browser: `drivesim ui` serves it on 127.0.0.1, headless Chromium (the system's,
never a downloaded one) opens a library scenario, edits a waypoint in the table, sees the preview change,
renders with a tiny model and plays the video. Screenshots go to test-artifacts/editor/ (and docs/editor.png
with DRIVESIM_UPDATE_DOCS=1).

The waypoint table is a glide-data-grid canvas with no cells in the DOM: cells are found from the canvas's
box (35 px header, 35 px rows) and edited with the keyboard, and the edit is read back from the bird's-eye
view's Plotly data (the hover text of the ego's waypoints)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from editor_helpers import short_document

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "editor"
ROW = 35  # glide-data-grid's header and row height in Streamlit, px

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} does not exist (no browsers are downloaded for this test)", allow_module_level=True)
expect = sync_api.expect
expect.set_options(timeout=30_000)  # a busy machine: Streamlit reruns can take seconds


@pytest.fixture
def library(tmp_path) -> Path:
    """Two short scenarios: straight_cruise (the page opens it first) and short_b."""
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "straight_cruise.yaml").write_text(yaml.safe_dump(short_document("straight_cruise")))
    (folder / "short_b.yaml").write_text(yaml.safe_dump(short_document("short_b")))
    return folder


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def command_line(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def outside_address() -> str | None:
    """This machine's address on its default route (no packet is sent), None if it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.255.255.255", 1))
            address = sock.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def server(library, tiny_wfm_run, tmp_path):
    """`drivesim ui` on a free port; yields (url, the streamlit process id). Stopped with its process group."""
    port = free_port()
    log = (tmp_path / "ui.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "drivesim.cli", "ui", "--port", str(port),
                                "--workspace", str(tmp_path / "workspace"), "--scenarios", str(library),
                                "--checkpoints", str(tiny_wfm_run)],
                               cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"drivesim ui exited with {process.returncode}: {(tmp_path / 'ui.log').read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"drivesim ui did not answer in 60 s: {(tmp_path / 'ui.log').read_text()}")
            time.sleep(0.2)
        (streamlit,) = children(process.pid)
        yield url, streamlit
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        log.close()


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


# ---------------------------------------------------------------- page helpers


def settle(page, timeout: float = 30_000) -> None:
    """Wait until Streamlit's rerun is over: the "Running..." status widget is gone."""
    page.wait_for_timeout(150)  # a click's rerun takes a moment to show the widget
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=timeout)


def preview(page):
    """The <img> of the cameras' layout maps (the st.image whose caption starts "layout maps")."""
    caption = page.get_by_test_id("stImageCaption").filter(has_text="layout maps")
    return page.get_by_test_id("stImage").filter(has=caption).locator("img")


def ego_waypoint_labels(page) -> list[str]:
    """The hover texts of the ego's waypoints in the bird's-eye view ("... x = 6.00 m, y = 0.00 m")."""
    return page.evaluate("""() => {
        const plot = document.querySelector('[data-testid="stPlotlyChart"] .js-plotly-plot');
        const trace = plot && plot.data && plot.data.find(t => t.meta && t.meta.kind === 'ego_waypoints');
        return trace ? Array.from(trace.hovertext) : [];
    }""")


def edit_cell(page, row: int, columns_from_right: int, text: str) -> None:
    """Type into a cell of the waypoint table (a canvas): click the last column of `row`, step left with the
    arrow keys (the last column always ends at the grid's right edge), and fill in the cell's editor."""
    canvas = page.get_by_test_id("stDataFrame").get_by_test_id("data-grid-canvas")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    # the grid's scroller lies over the canvas and takes the events: click the page at the cell
    page.mouse.click(box["x"] + box["width"] - 30, box["y"] + ROW + row * ROW + ROW / 2)
    for _ in range(columns_from_right):
        page.keyboard.press("ArrowLeft")
    # Enter opens the cell's editor (typing at once loses keys while the editor mounts); Enter again commits
    page.keyboard.press("Enter")
    editor = page.locator(".gdg-clip-region input")
    editor.fill(text)
    editor.press("Enter")
    expect(editor).to_have_count(0)


def button(scope, label: str):
    """A visible Streamlit button by its label (not the selectboxes' "Open" dropdown buttons; a button with a
    help tooltip, like Undo after an edit, also has a hidden twin in the DOM)."""
    return (scope.get_by_test_id("stButton").locator("button")
            .filter(has_text=re.compile(rf"^\W*{re.escape(label)}$"), visible=True))


def shot(page, name: str) -> Path:
    """A screenshot of the whole page into test-artifacts/editor/. Streamlit scrolls its main area inside
    the window, so full_page alone sees one window's height: the window grows to the content's height for
    the shot, and shrinks back."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    viewport = page.viewport_size
    height = page.evaluate("() => document.querySelector('[data-testid=\"stMain\"]')?.scrollHeight ?? 0")
    try:
        if height > viewport["height"]:
            page.set_viewport_size({"width": viewport["width"], "height": height})
            # two animation frames: the resize observers have run and the charts are drawn again
            page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(viewport)
    return path


# ---------------------------------------------------------------- the test


def test_open_edit_a_waypoint_preview_and_render_in_a_browser(server, page, tmp_path):
    url, streamlit = server
    # it serves on 127.0.0.1 only
    arguments = command_line(streamlit)
    assert arguments[arguments.index("--server.address") + 1] == "127.0.0.1"
    address = outside_address()
    if address is not None:
        with pytest.raises(OSError):
            socket.create_connection((address, int(url.rsplit(":", 1)[1].strip("/"))), timeout=2).close()

    started = time.monotonic()
    page.goto(url)
    title = page.locator("h1")
    expect(title).to_have_text("straight_cruise", timeout=60_000)
    expect(preview(page)).to_have_count(1, timeout=60_000)
    settle(page)
    shot(page, "01-open.png")

    # open the other library scenario from the sidebar
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stSelectbox").filter(has_text="scenario").click()
    page.get_by_role("option", name="short_b").click()
    settle(page)
    button(sidebar, "Open").click()
    expect(title).to_have_text("short_b")
    settle(page)

    # change the last waypoint's y (row 1, column "y (m)": one left of "yaw (°)") and apply the table
    before = preview(page).get_attribute("src")
    assert ego_waypoint_labels(page)[1].endswith("y = 0.00 m")
    edit_cell(page, row=1, columns_from_right=1, text="1.5")
    settle(page)  # the data editor's change reruns the script
    button(page, "Apply waypoints").click()
    expect(preview(page)).not_to_have_attribute("src", before)
    settle(page)
    labels = ego_waypoint_labels(page)
    assert labels[1].endswith("x = 6.00 m, y = 1.50 m"), labels
    assert labels[0].endswith("x = 0.00 m, y = 0.00 m"), labels
    expect(button(sidebar, "Undo")).to_be_enabled()
    shot(page, "02-edited.png")

    # render with the tiny model: one denoising step
    page.get_by_role("tab", name="Render").click()
    steps = page.get_by_test_id("stNumberInput").filter(has_text="steps").locator("input")
    steps.fill("1")
    steps.press("Enter")
    settle(page)
    expect(steps).to_have_value("1")
    button(page, "Render").click()
    video = page.locator("video")
    expect(video).to_have_count(1, timeout=120_000)
    src = video.get_attribute("src")
    assert src, "the rendered grid's <video> has a source"
    # and the browser decodes it: 10 frames at 12 fps of three 64x32 cameras side by side
    page.wait_for_function("""() => { const v = document.querySelector('video');
        return v && !v.error && v.readyState >= 2 && v.videoWidth > 0 && v.duration > 0; }""", timeout=30_000)
    width, duration = page.evaluate("() => [document.querySelector('video').videoWidth, "
                                    "document.querySelector('video').duration]")
    assert width == 3 * 64 and duration == pytest.approx(10 / 12, abs=0.05)
    video.scroll_into_view_if_needed()
    expect(page.get_by_text(re.compile(r"^rendered \S*short_b"))).to_be_visible()
    rendered = shot(page, "03-rendered.png")
    if os.environ.get("DRIVESIM_UPDATE_DOCS") == "1":
        (REPO / "docs" / "editor.png").write_bytes(rendered.read_bytes())

    # open a scenario by upload: the file lands in this session's workspace and opens
    upload = tmp_path / "uploaded_cruise.yaml"
    upload.write_text(yaml.safe_dump(short_document("uploaded_cruise")))
    sidebar.get_by_text("Upload", exact=True).click()
    settle(page)
    sidebar.locator("input[type=file]").set_input_files(str(upload))
    settle(page)
    button(sidebar, "Open upload").click()
    expect(title).to_have_text("uploaded_cruise")
    assert [p.name for p in (tmp_path / "workspace").glob("*/uploads/*")] == ["uploaded_cruise.yaml"]
    print(f"browser steps took {time.monotonic() - started:.1f} s")
