"""Rollout latency: `make demo`'s generate, this tree against a baseline commit, and whether the output changed.

    .venv/bin/python benchmarks/bench_rollout.py [--baseline 79fe609] [--head COMMIT] [--runs 3] [--record]

Runs `drivesim generate` of make demo (town_left_turn, 2 steps, temperature 0, strength 0.3, seed 0, CPU,
shipped weights) as a fresh process per run, so start-up and imports count as they do for `make demo`. The
baseline commit is checked out with `git worktree add` in a temporary folder and run with this checkout's
venv, PYTHONPATH pointing at the worktree; so is --head when given, else the working tree as it is
(uncommitted changes included). Runs alternate between the two trees, the order flipped every round, so a
machine that grows busier slows both alike. The table gives the median wall time, and the median CPU time
(user + system of the process and all its threads). The last outputs of the two trees are then compared:
whether each MP4 and the contact sheet are byte-identical, and the largest difference of a decoded pixel.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import heading, record, table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
BASELINE = "79fe609"  # HEAD before the rollout-latency work (issue 22, part 3)
DEMO = ["--scenario", "scenarios/town_left_turn.yaml", "--steps", "2", "--temperature", "0", "--strength", "0.3",
        "--seed", "0", "--device", "cpu", "--quiet"]


def git(*args: str, cwd: Path = REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, text=True, capture_output=True, check=True).stdout.strip()


def checkout(commit: str, parent: Path) -> Path:
    """A detached worktree of `commit` under `parent`."""
    folder = parent / git("rev-parse", "--short", commit)
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(folder), commit], cwd=REPO, check=True)
    return folder


def generate(tree: Path, out: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one `drivesim generate` of the demo with the code of `tree`, into `out`."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, "-m", "drivesim.cli", "generate", *DEMO, "--out", str(out), "--overwrite"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=tree, env=env, text=True, capture_output=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"{tree}: {' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def decoded(path: Path) -> np.ndarray:
    """An MP4's frames [T, H, W, 3] or a PNG's pixels [H, W, 3], uint8."""
    if path.suffix == ".png":
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def compare(base: Path, head: Path) -> list[tuple[str, str, int]]:
    """(file, 'identical' | 'differ' in bytes, largest decoded pixel difference) per MP4 and the contact sheet."""
    rows = []
    for name in [*sorted(path.name for path in base.glob("*.mp4")), "contact_sheet.png"]:
        a, b = base / name, head / name
        if not b.is_file():
            rows.append((name, "missing", -1))
            continue
        same = a.read_bytes() == b.read_bytes()
        x, y = decoded(a), decoded(b)
        difference = int(np.abs(x.astype(np.int16) - y.astype(np.int16)).max()) if x.shape == y.shape else 255
        rows.append((name, "identical" if same else "differ", difference))
    return rows


def describe(tree: Path, commit: str | None) -> str:
    if commit is not None:
        return git("rev-parse", "--short", commit)
    dirty = git("status", "--porcelain", "--untracked-files=no", cwd=tree)
    return git("rev-parse", "--short", "HEAD", cwd=tree) + (" + uncommitted changes" if dirty else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=BASELINE, help=f"the commit to compare with (default {BASELINE})")
    parser.add_argument("--head", default=None, help="a commit to time instead of the working tree")
    parser.add_argument("--runs", type=int, default=3, help="rollouts per tree (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the worktrees and outputs (printed)")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="drivesim-bench-rollout-"))
    worktrees = []
    try:
        worktrees.append(checkout(args.baseline, folder))
        head_tree = REPO if args.head is None else checkout(args.head, folder)
        if args.head is not None:
            worktrees.append(head_tree)
        trees = {"baseline": worktrees[0], "head": head_tree}
        labels = {"baseline": describe(worktrees[0], args.baseline), "head": describe(head_tree, args.head)}
        times: dict[str, list[float]] = {"baseline": [], "head": []}
        cpu: dict[str, list[float]] = {"baseline": [], "head": []}
        for run in range(args.runs):
            for name in (("baseline", "head") if run % 2 == 0 else ("head", "baseline")):
                seconds, cpu_seconds = generate(trees[name], folder / f"out-{name}")
                times[name].append(seconds)
                cpu[name].append(cpu_seconds)
                print(f"run {run + 1}/{args.runs} {name} ({labels[name]}): {seconds:.1f} s, {cpu_seconds:.1f} CPU s",
                      flush=True)
        frames = decoded(folder / "out-head" / "CAM_FRONT.mp4").shape[0]
        median = {name: statistics.median(values) for name, values in times.items()}
        median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
        rows = [("tree", "commit", "s per rollout (median)", "min-max s", "s per generated frame", "speed-up",
                 "CPU s (median)")]
        for name in ("baseline", "head"):
            rows.append((name, labels[name], f"{median[name]:.1f}", f"{min(times[name]):.1f}-{max(times[name]):.1f}",
                         f"{median[name] / frames:.2f}", f"{median['baseline'] / median[name]:.2f}x",
                         f"{median_cpu[name]:.1f}"))
        plain, markdown = table(rows)
        differences = compare(folder / "out-baseline", folder / "out-head")
        changed = [f"{name} ({kind}, max pixel difference {difference})" for name, kind, difference in differences
                   if kind != "identical"]
        worst = max(difference for _, _, difference in differences)
        verdict = ("output: every MP4 and the contact sheet byte-identical to the baseline's" if not changed else
                   f"output: largest decoded pixel difference {worst}; not byte-identical: {', '.join(changed)}")
        print(plain)
        print(f"{args.runs} runs per tree, alternating; {frames} frames x 6 cameras per rollout")
        print(verdict)
        if args.record:
            command = "python benchmarks/bench_rollout.py " + " ".join(sys.argv[1:])
            record("## bench_rollout: `make demo`'s generate against a baseline commit",
                   "`drivesim generate` of make demo (town_left_turn, 41 frames x 6 cameras at 256x128, 2 steps, "
                   "CPU) as a fresh process per run, start-up included; the two trees alternate and the median "
                   "is shown. Output compared between the two trees' last runs.\n",
                   f"{heading(started, ('torch',), load, command.strip())}\n\n{markdown}\n\n"
                   f"{args.runs} runs per tree, alternating. {verdict}.\n")
            print("recorded in benchmarks/RESULTS.md")
        if args.keep:
            print(f"kept: {folder}")
    finally:
        if not args.keep:
            for tree in worktrees:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
