"""How long `make demo` takes on a fresh clone, set-up included, against the 10-minute budget.

    .venv/bin/python benchmarks/bench_demo.py [--repo .] [--keep] [--record]

Clones the repository's HEAD into a temporary folder (so nothing of this checkout's .venv or out/ is
reused), runs `make setup` and then `make demo` there, and times each: set-up is what a fresh machine
pays once, the rollout what every later `make demo` pays. Debian packages already installed on this
machine are not installed again, and pip may answer from its cache: the figure is for a machine that has
run pip before, as CI's is. The peer is the budget the project promises: 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import heading, record, table  # noqa: E402

BUDGET_S = 600.0


def timed(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, text=True, capture_output=True)
    if done.returncode:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--keep", action="store_true", help="keep the clone (its out/demo-rollout) afterwards")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    args = parser.parse_args()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    folder = Path(tempfile.mkdtemp(prefix="drivesim-demo-"))
    clone = folder / "drivesim"
    try:
        subprocess.run(["git", "clone", "-q", str(args.repo), str(clone)], check=True)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, text=True,
                                capture_output=True, check=True).stdout.strip()
        print(f"fresh clone of {commit} in {clone}", flush=True)
        setup = timed(["make", "setup"], clone)
        print(f"make setup: {setup:.0f} s", flush=True)
        demo = timed(["make", "demo"], clone)
        print(f"make demo (set-up done): {demo:.0f} s", flush=True)
        sheet = clone / "out" / "demo-rollout" / "contact_sheet.png"
        grid = clone / "out" / "demo-rollout" / "grid.mp4"
        if not (sheet.is_file() and grid.is_file()):
            sys.exit(f"make demo wrote no {sheet.name} or {grid.name} under {sheet.parent}")
        total = setup + demo
        rows = [("step", "seconds", "budget"), ("make setup (fresh clone)", f"{setup:.0f}", ""),
                ("make demo (generate)", f"{demo:.0f}", ""),
                ("total", f"{total:.0f}", f"{BUDGET_S:.0f}")]
        plain, markdown = table(rows)
        verdict = (f"{'met' if total <= BUDGET_S else 'NOT met'}: a fresh clone's `make demo` took {total / 60:.1f} "
                   f"min against the {BUDGET_S / 60:.0f}-minute budget")
        print(plain)
        print(verdict)
        if args.record:
            record("## bench_demo: `make demo` on a fresh clone",
                   "A fresh `git clone`, then `make setup` and `make demo` timed apart; the budget is 10 minutes "
                   "on 2 cores.\n",
                   f"{heading(started, ('torch',), load, 'python benchmarks/bench_demo.py --record')}\n\n"
                   f"Commit {commit}.\n\n{markdown}\n\n{verdict}\n")
            print("recorded in benchmarks/RESULTS.md")
        if args.keep:
            print(f"kept: {clone}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
