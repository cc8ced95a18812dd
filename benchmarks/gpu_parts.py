"""The parts `benchmarks/gpu_check.py` measures, each run in its own process: the matmul peak, a training step,
the attention backends, an FSDP2 step and a six-view rollout. Every part takes a device and a Sizes, so the same
code runs as a tiny float32 dry run on the CPU; each returns rows of raw numbers (what, shape, seconds, FLOPs,
peak memory, note) that gpu_check.py turns into the table."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from bench_wfm import (ATTENTION_BACKENDS, LATENT_FRAMES, SEED, VIEWS, backend_ms, case, condition_tokens,
                       joint_attention, matmul_peak, model_flops, our_loss, parameters, status_mb, timed,
                       world_model)
from drivesim.train import distributed
from drivesim.wfm.attention import backend_problem
from drivesim.wfm.dit import DiTBlock
from drivesim.wfm.model import model_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "weights" / "drivesim-small"  # its tokenizer decodes the rollouts; its model section is the shape
SCENARIO = ROOT / "scenarios" / "straight_cruise.yaml"  # six nuScenes cameras, no start frames: from noise


@dataclass(frozen=True)
class Sizes:
    """What a run measures: the real one on a GPU, or the tiny dry run that checks the same code on a CPU."""

    preset: str
    latents: tuple[int, int]               # (rows, columns) of the training step's latents
    matmul: int                            # side of the square matmul the peak is measured on
    repeats: int                           # timed runs after a warm-up
    rollout_sizes: tuple[tuple[int, int], ...]  # (width, height) of each rollout
    rollout_frames: int
    rollout_steps: int


FULL = Sizes("base", (32, 56), 8192, 10, ((448, 256), (848, 480)), 17, 20)
TINY = Sizes("tiny", (4, 8), 256, 1, ((32, 16), (64, 32)), 9, 2)


def row(what: str, shape: str, seconds: float | None = None, flops: float | None = None,
        peak_bytes: int | None = None, note: str = "") -> dict:
    return {"what": what, "shape": shape, "seconds": seconds, "flops": flops, "peak_bytes": peak_bytes, "note": note}


# ---------------------------------------------------------------- shared by the parts

def autocast(device: torch.device):
    """bf16 autocast on CUDA, as `drivesim train` and rollouts run there; float32 on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_bytes(device: torch.device) -> int:
    """CUDA: the most memory torch held allocated since reset_peak; CPU: the process's peak RSS (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return int(status_mb("VmHWM") * 2 ** 20)


def median_seconds(step, device: torch.device, repeats: int) -> float:
    """Median seconds of step() over `repeats` runs after a warm-up run."""
    timed(step, device)
    return sorted(timed(step, device) for _ in range(repeats))[repeats // 2] / 1000


def training_step(model, optimizer, loss_fn, device: torch.device):
    """One optimizer step as the trainer takes it: zero_grad, forward under autocast, backward, AdamW."""
    def step():
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            loss = loss_fn()
        loss.backward()
        optimizer.step()
    return step


def step_shape(sizes: Sizes, config) -> tuple[tuple[int, int, int], str]:
    """The training step's token grid per view (T, h, w) and how it reads in the table."""
    rows, columns = sizes.latents
    grid = (LATENT_FRAMES, rows // config.patch[1], columns // config.patch[2])
    tokens = VIEWS * grid[0] * grid[1] * grid[2]
    return grid, (f"{VIEWS} views x {LATENT_FRAMES} latent frames x {rows}x{columns} latents "
                  f"({columns * 8}x{rows * 8} px), {tokens:,} tokens")


def auto_attention(device: torch.device) -> str:
    """Which kernel attend()'s auto picks for the model's bf16 queries here."""
    q = torch.zeros(1, 1, 1, 64, device=device, dtype=torch.bfloat16)
    return "flash-attn" if backend_problem("flash-attn", q) is None else "sdpa"


# ---------------------------------------------------------------- the parts

def matmul(device: torch.device, sizes: Sizes) -> list[dict]:
    n = sizes.matmul
    ms, _ = matmul_peak(n, sizes.repeats, device)
    return [row("bf16 torch.matmul (the peak)", f"{n}x{n} @ {n}x{n}", ms / 1000, 2 * n ** 3)]


def train(device: torch.device, sizes: Sizes) -> list[dict]:
    """The base preset's bf16 training step on one device, with the FLOPs counted from the shapes."""
    inputs = case(sizes.latents, device)
    model = world_model(sizes.preset).to(device).train()
    config = model.config
    context = condition_tokens(model, inputs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    reset_peak(device)
    seconds = median_seconds(training_step(model, optimizer, lambda: our_loss(model, inputs), device), device,
                             sizes.repeats)
    grid, shape = step_shape(sizes, config)
    note = (f"{parameters(model) / 1e6:.0f}M parameters, fwd+bwd+AdamW, attention {auto_attention(device)}; "
            f"FLOPs: 3x the forward's matrix products")
    return [row(f"{sizes.preset} training step", shape, seconds,
                3 * model_flops(config, "neighbours", grid, context, rays=True), peak_bytes(device), note)]


def attention(device: torch.device, sizes: Sizes) -> list[dict]:
    """One joint attention over every view's tokens of the training step, forward and backward, per backend;
    a backend that cannot run or fails gets its row with the reason, and the others still run."""
    config = model_config({"preset": sizes.preset})
    grid, _ = step_shape(sizes, config)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    qkv, flops = joint_attention(config, grid, device, dtype)
    q = qkv[0]
    shape = f"[1, {q.shape[1]}, {q.shape[2]:,}, {q.shape[3]}] {str(dtype).removeprefix('torch.')}"
    rows = []
    for backend in ATTENTION_BACKENDS:
        problem = backend_problem(backend, q)
        if problem:
            rows.append(row(f"attention {backend}", shape, note=f"skipped: {problem}"))
            continue
        reset_peak(device)
        try:
            seconds = backend_ms(backend, qkv, sizes.repeats, device) / 1000
        except Exception as error:  # an OOM in math must not lose the rows of the kernels that ran
            rows.append(row(f"attention {backend}", shape, note=f"failed: {one_line(error)}"))
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        rows.append(row(f"attention {backend}", shape, seconds, flops, peak_bytes(device), "fwd+bwd"))
    return rows


def one_line(error: BaseException) -> str:
    """An error in one line for a table cell; a rank's error (a traceback in the message) by its last line."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1][:300]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


# ---------------------------------------------------------------- FSDP2

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fsdp(device: torch.device, sizes: Sizes, processes: int) -> list[dict]:
    """The training step with the model under FSDP2 (drivesim.train.distributed.wrap, each DiTBlock sharded),
    one process per GPU over NCCL (gloo on the CPU); with one process the model stays whole, as in training."""
    if processes == 1:
        return [fsdp_worker(0, 1, free_port(), device.type, sizes, None)]
    import torch.multiprocessing as mp

    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(fsdp_worker, args=(processes, free_port(), device.type, sizes, queue), nprocs=processes, join=True)
    return [queue.get()]


def fsdp_worker(rank: int, size: int, port: int, device_type: str, sizes: Sizes, queue) -> dict:
    """One rank: join the group as torchrun would have it, wrap, time the step; rank 0 reports."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    world = distributed.setup(device_type)
    try:
        inputs = case(sizes.latents, world.device)
        model = world_model(sizes.preset).to(world.device).train()  # seeded: the same weights on every rank
        config = model.config
        context = condition_tokens(model, inputs)  # before wrapping: it reads the model outside forward
        model = distributed.wrap(model, world, "fsdp", (DiTBlock,))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        reset_peak(world.device)
        seconds = median_seconds(training_step(model, optimizer, lambda: our_loss(model, inputs), world.device),
                                 world.device, sizes.repeats)
        grid, shape = step_shape(sizes, config)
        backend = "NCCL" if world.device.type == "cuda" else "gloo"
        how = (f"{size} processes over {backend}, 1 sample each" if size > 1 else
               f"1 process (one {'GPU' if world.device.type == 'cuda' else 'CPU'}): no group, the model unsharded")
        result = row(f"{sizes.preset} step, FSDP2 x{size}" if size > 1 else f"{sizes.preset} step, 1 process",
                     shape, seconds, 3 * model_flops(config, "neighbours", grid, context, rays=True),
                     peak_bytes(world.device), f"{how}; time, FLOPs, memory per rank (rank 0)")
        if queue is not None and world.main:
            queue.put(result)
        return result
    finally:
        distributed.teardown(world)


# ---------------------------------------------------------------- the rollout

def rollout(device: torch.device, sizes: Sizes, size: tuple[int, int]) -> list[dict]:
    """A six-camera rollout of sizes.rollout_frames frames at `size` (width, height) through the pipeline and
    simulate.rollout, timed after a one-step warm-up at the same size."""
    from drivesim.simulate import RolloutConfig
    from drivesim.simulate import rollout as run_rollout

    pipeline = fresh_pipeline(sizes, size, device)
    scenario = six_view_scenario(sizes.rollout_frames)
    config = RolloutConfig(steps=sizes.rollout_steps, size=size, seed=SEED)
    with torch.no_grad():
        run_rollout(scenario, pipeline, dataclasses.replace(config, steps=1), progress=False)
        reset_peak(device)
        started = time.perf_counter()
        video = run_rollout(scenario, pipeline, config, progress=False).video
        seconds = time.perf_counter() - started
    width, height = size
    note = (f"{sizes.rollout_steps} steps, {video.shape[0] / seconds:.1f} frames/s; fresh seeded "
            f"{sizes.preset} weights, shipped tokenizer")
    return [row(f"rollout {width}x{height}", f"{video.shape[1]} views x {video.shape[0]} frames x {width}x{height}",
                seconds, None, peak_bytes(device), note)]


def fresh_pipeline(sizes: Sizes, size: tuple[int, int], device: torch.device):
    """The shipped model's config (layout, text, prediction) at sizes.preset with fresh seeded weights, and the
    shipped tokenizer: the shipped weights are the small preset, trained at 256x128."""
    from drivesim.wfm.model import WorldModel, with_tokenizer
    from drivesim.wfm.pipeline import WorldModelPipeline, load_tokenizer

    tokenizer = load_tokenizer(SHIPPED / "tokenizer")
    section = yaml.safe_load((SHIPPED / "config.yaml").read_text())["model"] | {"preset": sizes.preset}
    torch.manual_seed(SEED)
    model = WorldModel(model_config(with_tokenizer(section, tokenizer.config)))
    return WorldModelPipeline(model.eval(), tokenizer.eval(), sizes.rollout_frames, size).to(device)


def six_view_scenario(frames: int):
    """straight_cruise (six nuScenes cameras, no start frames) cut to `frames` frames."""
    from drivesim.scenario import from_dict

    document = yaml.safe_load(SCENARIO.read_text())
    document["duration"] = (frames - 1) / document["fps"]
    return from_dict(document, source=str(SCENARIO))
