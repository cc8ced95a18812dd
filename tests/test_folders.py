"""One writer per store and per rollout folder: a second ingest or generate is refused while another
process writes there, the lock goes with its holder even on kill -9, and ingest workers die with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivesim.cli import main
from drivesim.data.ingest import IngestConfig, ingest
from drivesim.folders import lock_path, writer_lock
from drivesim.errors import DataError

HOLD = ("import sys; from drivesim.folders import writer_lock\n"
        "with writer_lock(sys.argv[1], 'test'):\n"
        "    print('held', flush=True); sys.stdin.read()\n")


@pytest.fixture
def held(tmp_path):
    """A folder whose writer lock another process holds until the test ends (or kills it)."""
    folder = tmp_path / "target"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    yield folder, holder
    if holder.poll() is None:
        holder.communicate("")


def test_a_second_ingest_into_the_same_store_is_refused_and_writes_nothing(held, synthetic_logs):
    folder, holder = held
    with pytest.raises(DataError, match=f"--out {folder}: another drivesim run \\(pid {holder.pid}\\) is writing"):
        ingest(IngestConfig(dataroot=synthetic_logs, out=folder, width=96, height=64, frames=9), progress=False)
    assert not folder.exists()


def test_a_second_generate_into_the_same_out_is_refused(held, tiny_wfm_run, capsys):
    folder, holder = held
    scenario = Path(__file__).parents[1] / "scenarios" / "cut_in.yaml"
    code = main(["generate", "--scenario", str(scenario), "--checkpoint", str(tiny_wfm_run), "--out", str(folder),
                 "--steps", "1", "--device", "cpu", "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"pid {holder.pid}" in err and err.count("\n") == 1
    assert not folder.exists()


def test_the_lock_goes_with_a_killed_holder_and_with_a_finished_one(held):
    folder, holder = held
    holder.kill()
    holder.wait()
    with writer_lock(folder, "--out"):
        assert lock_path(folder).read_text().strip() == str(os.getpid())
        with writer_lock(folder, "--out"):  # the same process re-enters
            pass
    assert not lock_path(folder).exists()


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text() if (task / "children").exists() else ""
        found |= {int(child) for child in text.split()}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has exited: it only waits for its (new) parent to reap it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="workers die with their parent through Linux prctl")
def test_ingest_workers_die_when_ingest_is_killed(synthetic_logs, tmp_path):
    command = [sys.executable, "-m", "drivesim.cli", "ingest", "--dataroot", str(synthetic_logs), "--out",
               str(tmp_path / "store"), "--size", "96x64", "--frames", "9", "--workers", "2", "--quiet"]
    parent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
        workers = {pid for pid in _children(parent.pid) if "spawn_main" in _cmdline(pid)}
        time.sleep(0.05)
    if parent.poll() is not None:
        pytest.fail("ingest finished before its workers could be seen: make the logs longer")
    assert len(workers) == 2
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""
