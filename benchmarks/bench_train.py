"""Training throughput of the shipped world-model config (configs/wfm.yaml): this tree against a baseline commit.

    .venv/bin/python benchmarks/bench_train.py [--store out/det-store] [--baseline 79fe609] [--steps 8] [--record]

Each side runs its own configs/wfm.yaml through its own Trainer (a git worktree of the baseline, imported
with PYTHONPATH), in a process of its own, on the same store and tokenizer, with 2 torch threads: it times
`Trainer.train_step` (data, tokenizer, forward, backward, clipping, AdamW, EMA) step by step after a warm-up
(on the first steps torch.compile compiles, when the config asks for it). Then it runs the same steps again:
the same windows, which a config with data.cache_gb finds in its window cache (warm). A run meets both
kinds: the table gives the expected mix over the config's own steps, from how many distinct windows the
train split holds (a window drawn uniformly at random: the expected share drawn before).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import heading, record, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PREAMBLE = ("`benchmarks/bench_train.py`: seconds per optimizer step of `drivesim train wfm --config configs/wfm.yaml` "
            "(each commit's own config and code, same store and tokenizer, 2 threads), timed inside the Trainer "
            "after a warm-up; cold: windows met for the first time, warm: the same windows again (a window cache "
            "answers them); run mix: the expected share of each over the config's steps.\n")


def child(args) -> None:
    """In the tree on PYTHONPATH: build the Trainer from that tree's config and time its steps."""
    import torch

    torch.set_num_threads(2)
    import yaml

    from drivesim.train.config import TrainConfig, apply_overrides, from_dict
    from drivesim.train.task import task_by_name
    from drivesim.train.trainer import Trainer

    document = yaml.safe_load(Path(args.config).read_text())
    out = tempfile.mkdtemp(prefix="bench-train-")
    overrides = [f"data.store={args.store}", f"data.tokenizer={args.tokenizer}", f"out={out}/run",
                 "val_every=100000", "sample_every=100000", "checkpoint_every=100000"]
    config = from_dict(TrainConfig, apply_overrides(document, overrides))
    trainer = Trainer(config, task_by_name(config.task), progress=False)
    total = args.warmup + args.steps

    def timed_pass() -> list[float]:
        batches = iter(trainer._loader(trainer.train_set, 0, total, config.batch_size, config.grad_accum,
                                       config.seed))
        times = []
        for _ in range(total):
            started = time.perf_counter()
            trainer.train_step(batches)
            times.append(time.perf_counter() - started)
        return times

    cold = timed_pass()
    warm = timed_pass()
    train_set = trainer.train_set
    starts = train_set._clip_frames - train_set.frames + 1 if train_set.random_crop else 1
    print(json.dumps({"warmup_s": sum(cold[:args.warmup]), "cold": cold[args.warmup:], "warm": warm[args.warmup:],
                      "windows": len(train_set) * starts, "steps": config.steps,
                      "samples_per_step": config.batch_size * config.grad_accum,
                      "cached": hasattr(train_set, "hits")}))


def run_side(tree: Path, args) -> dict:
    command = [sys.executable, __file__, "--child", "--config", str(tree / "configs" / "wfm.yaml"),
               "--store", str(args.store), "--tokenizer", str(args.tokenizer), "--steps", str(args.steps),
               "--warmup", str(args.warmup)]
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, env=environment, text=True, capture_output=True, cwd=tree)
    if done.returncode:
        sys.exit(f"{tree}: the timing run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def expected_cold_share(windows: int, steps: int, cached: bool) -> float:
    """The expected share of a run's steps that meet a window for the first time (1 without a cache)."""
    if not cached:
        return 1.0
    distinct = windows * (1 - (1 - 1 / windows) ** steps)
    return distinct / steps


def row(name: str, found: dict, reference: float | None) -> tuple:
    cold, warm = statistics.median(found["cold"]), statistics.median(found["warm"])
    share = expected_cold_share(found["windows"], found["steps"], found["cached"])
    mix = share * cold + (1 - share) * warm
    rate = found["samples_per_step"] / mix
    return (name, f"{found['warmup_s']:.0f}", f"{cold:.2f}", f"{warm:.2f}", f"{share:.0%}", f"{mix:.2f}",
            f"{rate:.3f}", "1.00x" if reference is None else f"{rate / reference:.2f}x"), rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=ROOT / "out" / "det-store")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "weights" / "drivesim-small" / "tokenizer")
    parser.add_argument("--baseline", default="79fe609", help="the commit to compare against")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per pass")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    args.store, args.tokenizer = args.store.resolve(), args.tokenizer.resolve()
    if not (args.store / "zarr.json").is_file():
        sys.exit(f"--store {args.store}: not a clip store (make one with drivesim synth and drivesim ingest)")
    started, load = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), os.getloadavg()[0]
    worktree = Path(tempfile.mkdtemp(prefix="bench-train-base-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(worktree), args.baseline], cwd=ROOT, check=True)
    try:
        base = run_side(worktree, args)
        print(f"baseline {args.baseline}: done", flush=True)
        current = run_side(ROOT, args)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True).stdout
    base_row, base_rate = row(f"baseline {args.baseline}", base, None)
    current_row, _ = row(f"this tree ({head.strip()})", current, base_rate)
    rows = [("config", "warm-up s", "cold s/step", "warm s/step", "run: cold share", "run s/step", "samples/s",
             "vs baseline"), base_row, current_row]
    plain, markdown = table(rows)
    print(plain)
    windows = current["windows"]
    note = (f"{args.steps} timed steps per pass after {args.warmup} warm-up steps, medians; store {args.store.name} "
            f"({windows} distinct training windows), the run mix over each config's {current['steps']} steps.")
    print(note)
    if args.record:
        command = "python benchmarks/bench_train.py " + " ".join(sys.argv[1:])
        entry = "\n\n".join([heading(started, ("torch",), load, command), markdown, note])
        record("## bench_train: the world model's training throughput", PREAMBLE, entry)
    return 0 if math.isfinite(base_rate) else 1


if __name__ == "__main__":
    sys.exit(main())
