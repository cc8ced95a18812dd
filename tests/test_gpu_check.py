"""benchmarks/gpu_check.py (`make gpu-check`): without CUDA it says so, exits 0 and records nothing; its measuring
code runs as a tiny dry run on the CPU, part by part and end to end within a budget; the table's arithmetic."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402
from gpu_check import Part, child_outcome, mfu, part_limit, plan, show_seconds, table_rows  # noqa: E402
from gpu_parts import FULL, TINY, one_line, row  # noqa: E402

SCRIPT = BENCHMARKS / "gpu_check.py"


def run_script(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the script as make gpu-check runs it

def test_without_cuda_it_says_so_exits_0_and_writes_no_results(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_bytes((BENCHMARKS / "RESULTS.md").read_bytes())
    before, shipped = digest(results), digest(BENCHMARKS / "RESULTS.md")
    done = run_script("--record", "--results", str(results), env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no CUDA GPU found" in done.stdout
    assert f"torch {torch.__version__}" in done.stdout
    assert "nothing was measured or recorded" in done.stdout
    assert done.stdout.count("\n") == 1  # one line, no table
    assert digest(results) == before
    assert digest(BENCHMARKS / "RESULTS.md") == shipped


def test_a_dry_run_is_not_recorded_in_the_shipped_results():
    with pytest.raises(SystemExit):
        gpu_check.parse(["--device", "cpu", "--tiny", "--record"])


def test_the_dry_run_end_to_end_stays_in_its_budget_and_records_a_row_per_part(tmp_path):
    results = tmp_path / "RESULTS.md"
    started = time.monotonic()
    done = run_script("--device", "cpu", "--tiny", "--record", "--results", str(results), "--budget", "20")
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert took < 20 + 15  # the parent's own start-up and table on a busy machine
    text = results.read_text()
    assert gpu_check.HEADING in text and "A dry run on the CPU" in text
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(table) >= 1 + len(plan(TINY))
    for part in plan(TINY):
        assert any(line.startswith(f"| {part.title} |") for line in table), part.title
    matmul = next(line for line in table if line.startswith("| matmul peak |"))
    assert " ms |" in matmul  # 20 s is plenty for the first part
    assert "skipped: the run's 20 s budget ran out" in table[-1]  # the second rollout never fits


def test_a_part_over_its_limit_is_stopped_with_a_row_saying_so():
    args = gpu_check.parse(["--device", "cpu", "--tiny"])
    args.processes = 1
    rows, problem = gpu_check.run_part(Part("matmul", "matmul peak", 30), args, limit_s=1)
    assert rows is None
    assert problem == "stopped: over its 1 s budget"


# ---------------------------------------------------------------- every part in the dry run, in this process

@pytest.fixture(scope="module")
def dry_run() -> list[tuple]:
    outcomes = []
    for part in plan(TINY):
        measured = gpu_check.measure(part.name, torch.device("cpu"), TINY, 1, part.size)
        outcomes.append((part, measured, None))
    return outcomes


def test_every_part_of_the_dry_run_measures_its_rows(dry_run):
    titles = {part.title: measured for part, measured, _ in dry_run}
    assert [r["what"] for r in titles["attention"]] == ["attention flash-attn", "attention sdpa", "attention math"]
    assert titles["attention"][0]["note"].startswith("skipped: flash-attn runs on CUDA tensors only")
    for part, measured, _ in dry_run:
        for value in measured:
            if value["note"].startswith("skipped"):
                continue
            assert value["seconds"] > 0, (part.title, value)
            assert (value["peak_bytes"] is None) == (part.name == "matmul"), (part.title, value)
            assert (value["flops"] is None) == (part.name == "rollout"), (part.title, value)
    assert titles["FSDP2 step"][0]["note"].startswith("1 process (one CPU)")
    assert titles["rollout 32x16"][0]["shape"] == f"6 views x {TINY.rollout_frames} frames x 32x16"


def test_the_dry_run_table_has_mfu_against_the_matmul_peak(dry_run):
    rows = table_rows(dry_run)
    assert rows[0] == gpu_check.COLUMNS
    train = next(r for r in rows if r[0] == "training step")
    assert train[5].endswith("%")
    assert all(len(r) == len(gpu_check.COLUMNS) for r in rows)


def test_two_fsdp2_processes_over_gloo_take_a_step():
    (value,) = gpu_check.measure("fsdp", torch.device("cpu"), TINY, 2, None)
    assert value["what"] == "tiny step, FSDP2 x2"
    assert value["note"].startswith("2 processes over gloo")
    assert value["seconds"] > 0


# ---------------------------------------------------------------- the arithmetic

def test_the_full_run_measures_what_the_issue_asks_within_8_minutes():
    assert FULL.preset == "base"
    assert FULL.rollout_sizes == ((448, 256), (848, 480)) and FULL.rollout_frames == 17
    assert sum(part.budget_s for part in plan(FULL)) <= gpu_check.TOTAL_S <= 8 * 60


def test_a_part_gets_its_budget_cut_to_what_is_left_and_none_when_too_little_is():
    assert part_limit(60, 400) == 60
    assert part_limit(60, 30) == 30
    assert part_limit(60, 14, minimum_s=15) is None
    assert part_limit(60, -5) is None


def test_mfu_is_flops_per_second_over_the_peak():
    assert mfu(1e12, 0.5, 4e12) == pytest.approx(0.5)
    assert mfu(3e12, 0.01, 6e14) == pytest.approx(0.5)


def test_the_table_takes_mfu_from_the_matmul_row_and_gives_a_failed_part_one_row_saying_why():
    matmul, train, fsdp = Part("matmul", "matmul peak", 30), Part("train", "training step", 75), \
        Part("fsdp", "FSDP2 step", 120)
    peak_row = row("bf16 torch.matmul", "n", seconds=0.01, flops=2e12)  # 200 TFLOP/s
    step = row("base training step", "s", seconds=0.02, flops=1e12, peak_bytes=3 * 2 ** 30)  # 50 TFLOP/s
    rows = table_rows([(matmul, [peak_row], None), (train, [step], None), (fsdp, None, "failed: OutOfMemoryError")])
    assert rows[1][3:6] == ("10.00 ms", "200", "-")
    assert rows[2][3:7] == ("20.00 ms", "50", "25%", "3.00 GiB")
    assert rows[3] == ("FSDP2 step", "-", "-", "-", "-", "-", "-", "failed: OutOfMemoryError")
    without_peak = table_rows([(matmul, None, "stopped: over its 30 s budget"), (train, [step], None)])
    assert without_peak[2][5] == "no peak"


def test_seconds_read_in_the_unit_that_suits_them():
    assert show_seconds(None) == "-"
    assert show_seconds(0.00123) == "1.23 ms"
    assert show_seconds(0.25) == "250 ms"
    assert show_seconds(42.0) == "42.0 s"


def test_a_part_reports_its_rows_or_why_it_gave_none():
    ok = gpu_check.RESULT + '{"rows": [{"what": "x"}]}'
    assert child_outcome(0, f"progress\n{ok}\n", "") == ([{"what": "x"}], None)
    failed = gpu_check.RESULT + '{"error": "OutOfMemoryError: CUDA out of memory"}'
    assert child_outcome(0, failed, "Traceback ...") == (None, "failed: OutOfMemoryError: CUDA out of memory")
    assert child_outcome(-9, "", "") == (None, "failed (killed by signal 9): no output")
    assert child_outcome(1, "", "Traceback\nImportError: no flash_attn\n") == \
        (None, "failed (exit status 1): ImportError: no flash_attn")


def test_a_rank_error_reads_as_its_last_line():
    rank = RuntimeError("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
                        '  File "x.py", line 1\ntorch.OutOfMemoryError: CUDA out of memory.\n')
    assert one_line(rank) == "torch.OutOfMemoryError: CUDA out of memory."
    assert one_line(ValueError("bad\nmore")) == "ValueError: bad"
