"""`make gpu-check`: on a machine with a CUDA GPU, within 8 minutes, one table of what the world model does there:
a bf16 training step of the base preset and its MFU against a measured matmul peak, flash-attn against SDPA
against math attention, an FSDP2 step (two processes over NCCL where two GPUs exist, else one), and six-view
rollouts of 17 frames at 448x256 and 848x480 (latency and peak memory).

    .venv/bin/python benchmarks/gpu_check.py [--record] [--results PATH]

Each part runs in its own process under its own time budget (benchmarks/gpu_parts.py measures); a part that
fails, runs out of memory or over its budget gets a row saying why and the others still run. Without a CUDA
GPU it says so and exits 0, measuring and recording nothing. --device cpu --tiny is a dry run of the same
code on the CPU (the tiny preset, tiny sizes, float32) that the tests run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

import gpu_parts  # benchmarks/: run as a script, this folder is on sys.path
from gpu_parts import FULL, TINY, Sizes, one_line
from results import RESULTS, heading, record, table

TOTAL_S = 470.0    # the parts together: the 8 minutes, less the start-up and the table
MIN_PART_S = 15.0  # a part is not started with less than this left
RESULT = "gpu_check result: "  # a part's last stdout line: this, then JSON
PACKAGES = ("torch", "flash-attn")
COLUMNS = ("part", "what", "shape", "time", "TFLOP/s", "MFU", "peak memory", "note")

HEADING = "## gpu_check: the world model on a CUDA GPU"
PREAMBLE = """\
`make gpu-check` (`benchmarks/gpu_check.py --record`): one table, each part in its own process under its own
time budget, 8 minutes in all; a part that fails or runs over gets a row saying why.
- matmul peak: a bf16 8192x8192 @ 8192x8192 `torch.matmul`, the FLOP/s every MFU below is measured against.
- training step: `WorldModel` at the base preset (bench_wfm's model: views=neighbours, wordllama text) on
  bench_wfm's input at 448x256 (6 views x 3 latent frames of 32x56 latents), zero_grad + forward and flow loss
  under bf16 autocast + backward + AdamW step, median of 10 after a warm-up. FLOPs are the matrix products
  counted from the shapes (bench_wfm.model_flops, 3x the forward); MFU = FLOPs / time / the matmul peak.
- attention: one joint attention over every view's tokens of that step, forward and backward, through
  `attend()`'s flash-attn (the optional `gpu` extra, used when installed), sdpa and math backends.
- FSDP2: the same step with the model wrapped by `drivesim.train.distributed.wrap(parallel="fsdp")`, one
  process per GPU over NCCL where two GPUs exist, else one process (the model unsharded, as training runs it).
- rollouts: `simulate.rollout` of scenarios/straight_cruise.yaml cut to 17 frames, six nuScenes cameras, one
  17-frame chunk from noise, 20 Euler steps, layout maps rendered, bf16 autocast, timed after a one-step
  warm-up at the same size. Fresh seeded weights at the base preset with the shipped model's config and the
  shipped tokenizer: the shipped drivesim-small is the small preset, trained at 256x128.
- peak memory: `torch.cuda.max_memory_allocated` during the timed runs (per rank for FSDP2).
"""


@dataclass(frozen=True)
class Part:
    """One process of the run: which measurement (--part), its row title and its time budget."""

    name: str
    title: str
    budget_s: float
    size: tuple[int, int] | None = None  # a rollout's (width, height)


def plan(sizes: Sizes) -> list[Part]:
    """The parts in the order they run; their budgets leave half a minute of the whole for start-up."""
    first, second = sizes.rollout_sizes
    return [Part("matmul", "matmul peak", 30), Part("train", "training step", 75),
            Part("attention", "attention", 60), Part("fsdp", "FSDP2 step", 120),
            Part("rollout", f"rollout {first[0]}x{first[1]}", 60, first),
            Part("rollout", f"rollout {second[0]}x{second[1]}", 105, second)]


def part_limit(budget_s: float, left_s: float, minimum_s: float = MIN_PART_S) -> float | None:
    """Seconds a part may run: its budget, cut to what is left of the whole; None when too little is left."""
    limit = min(budget_s, left_s)
    return limit if limit >= minimum_s else None


# ---------------------------------------------------------------- one part, in a child process

def measure(name: str, device: torch.device, sizes: Sizes, processes: int, size) -> list[dict]:
    if name == "fsdp":
        return gpu_parts.fsdp(device, sizes, processes)
    if name == "rollout":
        return gpu_parts.rollout(device, sizes, size)
    return {"matmul": gpu_parts.matmul, "train": gpu_parts.train, "attention": gpu_parts.attention}[name](device,
                                                                                                          sizes)


def child(args) -> int:
    """--part NAME: measure it and print its rows (or why it failed) as the last stdout line."""
    try:
        rows = measure(args.part, torch.device(args.device), TINY if args.tiny else FULL, args.processes, args.size)
        print(RESULT + json.dumps({"rows": rows}), flush=True)
    except Exception as error:  # the parent's row says why; the traceback goes to stderr
        traceback.print_exc()
        print(RESULT + json.dumps({"error": one_line(error)}), flush=True)
    return 0


def child_outcome(returncode: int, stdout: str, stderr: str) -> tuple[list[dict] | None, str | None]:
    """(rows, None) from a part's output, or (None, why it gave none)."""
    results = [line for line in stdout.splitlines() if line.startswith(RESULT)]
    if results:
        value = json.loads(results[-1][len(RESULT):])
        return (None, f"failed: {value['error']}") if "error" in value else (value["rows"], None)
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exit status {returncode}"
    return None, f"failed ({how}): {lines[-1][:300] if lines else 'no output'}"


def run_part(part: Part, args, limit_s: float) -> tuple[list[dict] | None, str | None]:
    command = [sys.executable, __file__, "--part", part.name, "--device", args.device, "--processes",
               str(args.processes), *(["--tiny"] if args.tiny else []),
               *(["--size", f"{part.size[0]}x{part.size[1]}"] if part.size else [])]
    # Its own session, so a part over its budget goes with every process it started (FSDP2's ranks).
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=limit_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, f"stopped: over its {limit_s:.0f} s budget"
    return child_outcome(process.returncode, stdout, stderr)


# ---------------------------------------------------------------- the table

def mfu(flops: float, seconds: float, peak: float) -> float:
    """Model FLOPs utilisation: the FLOP/s a step reaches over the measured peak."""
    return flops / seconds / peak


def show_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.2f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms" if seconds < 10 else \
        f"{seconds:.1f} s"


def show_bytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2 ** 30:.2f} GiB"


def matmul_peak(outcomes: list[tuple[Part, list[dict] | None, str | None]]) -> float | None:
    """FLOP/s of the matmul part, or None when it gave none."""
    for part, rows, _ in outcomes:
        if part.name == "matmul" and rows:
            return rows[0]["flops"] / rows[0]["seconds"]
    return None


def table_rows(outcomes: list[tuple[Part, list[dict] | None, str | None]]) -> list[tuple]:
    """The header and one row per measurement, a failed or skipped part one row saying why."""
    peak = matmul_peak(outcomes)
    rows = [COLUMNS]
    for part, measured, problem in outcomes:
        if measured is None:
            rows.append((part.title, "-", "-", "-", "-", "-", "-", problem))
            continue
        for value in measured:
            flops, seconds = value["flops"], value["seconds"]
            rate = flops / seconds if flops and seconds else None
            share = "-" if rate is None or part.name == "matmul" else \
                "no peak" if peak is None else f"{100 * mfu(flops, seconds, peak):.0f}%"
            rows.append((part.title, value["what"], value["shape"], show_seconds(seconds),
                         "-" if rate is None else f"{rate / 1e12:.3g}", share, show_bytes(value["peak_bytes"]),
                         value["note"]))
    return rows


# ---------------------------------------------------------------- the run

def no_gpu_line() -> str:
    build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a build without CUDA"
    return (f"gpu_check: no CUDA GPU found (torch {torch.__version__}, {build}; torch.cuda.is_available() is "
            f"False): nothing was measured or recorded")


def device_line(device: str, processes: int) -> str:
    if device != "cuda":
        return "A dry run on the CPU (--device cpu): tiny sizes in float32, not a measurement of any GPU."
    properties = torch.cuda.get_device_properties(0)
    return (f"{torch.cuda.device_count()} x {properties.name} ({properties.total_memory / 2 ** 30:.0f} GiB), CUDA "
            f"{torch.version.cuda}; FSDP2 in {processes} process{'es' if processes > 1 else ''}.")


def run(args) -> list[tuple[Part, list[dict] | None, str | None]]:
    started, outcomes = time.monotonic(), []
    for part in plan(TINY if args.tiny else FULL):
        limit = part_limit(part.budget_s, args.budget - (time.monotonic() - started))
        if limit is None:
            outcomes.append((part, None, f"skipped: the run's {args.budget:.0f} s budget ran out"))
            print(f"gpu_check: {part.title}: skipped, the budget ran out", flush=True)
            continue
        print(f"gpu_check: {part.title} (up to {limit:.0f} s) ...", flush=True)
        part_started = time.monotonic()
        rows, problem = run_part(part, args, limit)
        outcomes.append((part, rows, problem))
        print(f"  {problem or 'done'} ({time.monotonic() - part_started:.0f} s)", flush=True)
    return outcomes


def size_arg(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def parse(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--record", action="store_true", help="append the table to the results file")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results file (benchmarks/RESULTS.md)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=size_arg, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=TOTAL_S, help=argparse.SUPPRESS)  # seconds for all parts
    args = parser.parse_args(argv)
    if args.record and args.device != "cuda" and args.results.resolve() == RESULTS.resolve():
        parser.error(f"a --device {args.device} dry run is not recorded in {RESULTS.name}: pass --results PATH")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.part:
        return child(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(no_gpu_line())
        return 0
    if args.processes is None:
        args.processes = 2 if args.device == "cuda" and torch.cuda.device_count() >= 2 else 1
    began, load = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()), os.getloadavg()[0]
    clock = time.monotonic()
    outcomes = run(args)
    rows = table_rows(outcomes)
    took = f"Took {time.monotonic() - clock:.0f} s of the {args.budget:.0f} s budget."
    print(f"\n{device_line(args.device, args.processes)}\n{table(rows)[0]}\n{took}")
    if args.record:
        command = shlex.join([".venv/bin/python", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
        entry = f"{heading(began, PACKAGES, load, command)}\n\n{device_line(args.device, args.processes)}\n\n" \
                f"{table(rows)[1]}\n\n{took}\n"
        print(f"appended to {record(HEADING, PREAMBLE, entry, args.results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
