"""drivesim's world model against diffusers' CosmosTransformer3DModel, side by side in one run: (a) a training
step at matched width, depth and heads on the same tokens; (b) time and FLOPs of a block with neighbour
cross-view attention, all-view cross-view attention and joint all-view attention as the tokens per view grow
(table and benchmarks/wfm_cross_view.png); (c) peak memory of a training step per preset; on a CUDA machine
only, bf16 step time, MFU against the measured matmul peak, and flash-attn against SDPA against math.

    .venv/bin/python benchmarks/bench_wfm.py [--threads 2] [--repeats 5] [--record] [--quick]

Needs diffusers (`pip install -e ".[bench]"`; it imports without torchvision) and matplotlib.

(a) One sample of 6 nuScenes cameras x 3 latent frames (9 video frames) of 16x28 latents (224x128 pixels, the
nuScenes aspect), the first latent frame clean. drivesim: the whole `small` WorldModel in views=neighbours
mode, its ray, trajectory and caption encoders included. Peer: the Cosmos transformer at the same width,
depth, heads, MLP ratio, AdaLN-LoRA rank, patch and condition width, the views folded into its batch. Both:
one flow-matching loss on the same latents, noise and times; zero_grad, forward, backward (no optimizer);
rounds alternate which model goes first, the median of --repeats after a warm-up round.
(b) One DiTBlock of the `small` preset per views mode, forward and backward, latent grids from 4x8 to 32x56 at
T = 3; FLOPs are the matrix products counted from the shapes, a training pass 3x the forward.
(c) Each preset in a subprocess of this script (--child): two AdamW steps on the (a) input.
Every part runs in float32 on --threads CPU threads; the printed setup lines say the rest.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from einops import rearrange, repeat

from drivesim.rigs import load_rig
from drivesim.train.distributed import flush_denormals
from drivesim.wfm import flow
from drivesim.wfm.attention import attend, backend_problem
from drivesim.wfm.dit import PRESETS, BlockInputs, DiTBlock, DiTConfig, TimeEmbedder, azimuth_neighbours
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.model import WorldModel, model_config
from drivesim.wfm.rope import Rope3D
from results import heading, record, table  # benchmarks/results.py: run as a script, this folder is on sys.path

PACKAGES = ("torch", "diffusers", "matplotlib")
VIEWS, LATENT_FRAMES, CHANNELS = 6, 3, 16
VIDEO_FRAMES = 1 + 4 * (LATENT_FRAMES - 1)  # the tokenizer's 4x causal time compression
CAPTION = "a sunny street with parked cars and a cyclist crossing"
SEED = 0
MODES = ("neighbours", "all", "joint", "none")  # (b): none is the block without any cross-view term
ATTENTION_BACKENDS = ("flash-attn", "sdpa", "math")
ROOT = Path(__file__).resolve().parents[1]
PLOT = ROOT / "benchmarks" / "wfm_cross_view.png"
QUICK_PLOT = ROOT / "out" / "wfm_cross_view-quick.png"  # a smoke test never overwrites the recorded plot
GOAL = 1.2

HEADING = "## bench_wfm: drivesim world model against diffusers' CosmosTransformer3DModel"
SIDES = """\
- drivesim: `WorldModel(model_config({"preset": ..., "views": "neighbours", "text": "wordllama"}))`, the
  whole model in a step: Plücker ray maps per view and frame through the ray encoder, trajectory tokens,
  wordllama caption tokens, then the DiT (self-attention within each view with 3D RoPE, cross-view attention
  to the 2 nearest cameras by azimuth at the same latent time, cross-attention to the condition tokens, MLP,
  AdaLN-LoRA).
- peer: diffusers `CosmosTransformer3DModel` (Cosmos-Predict2.5 layout: in_channels 16 + 1 condition-mask
  channel, no learnable positional table, RoPE only) at the same width, depth, heads, MLP ratio, AdaLN-LoRA
  rank, patch and condition width; `concat_padding_mask=False` (its padding-mask resize needs torchvision)
  and no cross-attention input projection (its text tokens arrive at the condition width, random, as many as
  drivesim's condition tokens). The views are folded into its batch: no view sees another and it gets no
  camera geometry.
- both: the same latents, noise, flow times and flow-matching loss (`drivesim.wfm.flow.flow_loss`), float32
  on the CPU threads named in the entry, fresh seeded weights (the compute does not depend on them).
"""


# ---------------------------------------------------------------- the two models and their inputs

def world_model(preset: str) -> WorldModel:
    torch.manual_seed(SEED)
    return WorldModel(model_config({"preset": preset, "views": "neighbours", "text": "wordllama"}))


def peer_kwargs(config: DiTConfig) -> dict:
    """CosmosTransformer3DModel's arguments at drivesim `config`'s shape."""
    return dict(in_channels=config.latent_channels + 1, out_channels=config.latent_channels,
                num_attention_heads=config.heads, attention_head_dim=config.dim // config.heads,
                num_layers=config.depth, mlp_ratio=config.mlp_ratio, text_embed_dim=config.condition_dim,
                adaln_lora_dim=config.adaln_lora_rank, patch_size=tuple(config.patch), rope_scale=(1.0, 3.0, 3.0),
                concat_padding_mask=False, extra_pos_embed_type=None)


def peer_model(config: DiTConfig) -> torch.nn.Module:
    from diffusers import CosmosTransformer3DModel

    torch.manual_seed(SEED)
    return CosmosTransformer3DModel(**peer_kwargs(config))


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def case(latent_size: tuple[int, int], device="cpu") -> dict:
    """One sample: 6 nuScenes cameras, LATENT_FRAMES latent frames of latent_size (rows, columns), the ego
    driving forward and turning gently, the first latent frame clean."""
    rows, columns = latent_size
    video_frames = VIDEO_FRAMES
    rig = load_rig("nuscenes").resized(columns * 8, rows * 8)
    steps = torch.arange(video_frames, dtype=torch.float32)
    poses = torch.eye(4).repeat(1, video_frames, 1, 1)
    yaw = 0.02 * steps
    poses[0, :, 0, 0], poses[0, :, 0, 1] = yaw.cos(), -yaw.sin()
    poses[0, :, 1, 0], poses[0, :, 1, 1] = yaw.sin(), yaw.cos()
    poses[0, :, 0, 3] = 0.5 * steps  # metres per video frame
    generator = torch.Generator().manual_seed(SEED)
    shape = (1, VIEWS, LATENT_FRAMES, CHANNELS, rows, columns)
    clean = torch.zeros(1, LATENT_FRAMES, dtype=torch.bool)
    clean[:, 0] = True
    values = {"x0": torch.randn(shape, generator=generator), "noise": torch.randn(shape, generator=generator),
              "t": torch.rand(1, generator=generator), "clean": clean, "ego0_from_ego": poses,
              "intrinsics": torch.tensor(rig.intrinsics[:VIEWS], dtype=torch.float32)[None],
              "ego_from_cam": torch.tensor(rig.ego_from_cam[:VIEWS], dtype=torch.float32)[None]}
    return {name: value.to(device) for name, value in values.items()} | {"captions": [CAPTION]}


def condition_tokens(model: WorldModel, inputs: dict) -> int:
    """How many tokens drivesim's cross-attention reads: null token, one per video frame, the caption's."""
    conditions = our_conditions(inputs)
    with torch.no_grad():
        prepared = model.prepare(conditions, tuple(inputs["x0"].shape))
        context, _ = model._context(conditions.ego0_from_ego, prepared.text, conditions.kept(inputs["x0"].device), 1,
                                    inputs["x0"].device, torch.float32)
    return context.shape[1]


def our_conditions(inputs: dict) -> Conditions:
    return Conditions(inputs["intrinsics"], inputs["ego_from_cam"], inputs["ego0_from_ego"], inputs["captions"],
                      clean=inputs["clean"])


def our_loss(model: WorldModel, inputs: dict) -> torch.Tensor:
    conditions = our_conditions(inputs)
    return flow.flow_loss(lambda x, t: model(x, t, conditions), inputs["x0"], inputs["t"], inputs["noise"],
                          inputs["clean"])


def peer_loss(peer: torch.nn.Module, inputs: dict, text: torch.Tensor) -> torch.Tensor:
    """The same loss through the peer, every view its own sample. text: [B * V, N, condition_dim]."""
    def velocity(x, t):
        batch, views, frames, _, rows, columns = x.shape
        mask = repeat(inputs["clean"].to(x.dtype), "b t -> (b v) 1 t h w", v=views, h=rows, w=columns)
        out = peer(rearrange(x, "b v t c h w -> (b v) c t h w"), t.repeat_interleave(views), text,
                   condition_mask=mask).sample
        return rearrange(out, "(b v) c t h w -> b v t c h w", v=views)

    return flow.flow_loss(velocity, inputs["x0"], inputs["t"], inputs["noise"], inputs["clean"])


def peer_text(tokens: int, config: DiTConfig, device="cpu") -> torch.Tensor:
    """Random text tokens [V, tokens, condition_dim] for the peer: one sample per view."""
    generator = torch.Generator().manual_seed(SEED)
    return torch.randn(VIEWS, tokens, config.condition_dim, generator=generator).to(device)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(step, device="cpu") -> float:
    """Milliseconds of one call of step()."""
    sync(device)
    start = time.perf_counter()
    step()
    sync(device)
    return 1000 * (time.perf_counter() - start)


def training_pass(model: torch.nn.Module, loss_fn):
    def step():
        model.zero_grad(set_to_none=True)
        loss_fn().backward()
    return step


def side_by_side(steps: dict, repeats: int, device="cpu") -> dict[str, float]:
    """Median ms per step of each named step, rounds alternating which goes first, after a warm-up round."""
    times = {name: [] for name in steps}
    names = list(steps)
    for round_ in range(repeats + 1):
        for name in names if round_ % 2 == 0 else names[::-1]:
            ms = timed(steps[name], device)
            if round_:
                times[name].append(ms)
    return {name: statistics.median(values) for name, values in times.items()}


# ---------------------------------------------------------------- FLOPs from the shapes

def block_flops(config: DiTConfig, mode: str, grid: tuple[int, int, int], context: int, views: int = VIEWS,
                batch: int = 1) -> dict[str, int]:
    """Forward FLOPs (2 per multiply-add) of one DiTBlock's matrix products in views `mode` on a (T, h, w)
    token grid per view: {"attention": scores and values of every attention, "total": everything counted}."""
    d, hidden, c = config.dim, int(config.dim * config.mlp_ratio), config.condition_dim
    frames, rows, columns = grid
    per_frame = rows * columns               # tokens of one view at one latent time
    per_view = frames * per_frame            # tokens of one view
    tokens = batch * views * per_view
    projections = 8 * tokens * d * d         # self (or joint) attention: q, k, v, out
    if mode == "joint":
        attention = 4 * batch * (views * per_view) ** 2 * d
    else:
        attention = 4 * batch * views * per_view ** 2 * d
    if mode in ("neighbours", "all"):
        k = min(config.neighbours, views - 1) if mode == "neighbours" else views - 1
        # Keys and values are projected per query view from its gathered neighbours: K copies of each token.
        projections += 4 * tokens * d * d + 4 * tokens * k * d * d
        attention += 4 * tokens * k * per_frame * d
    # Cross-attention to the condition tokens; they are repeated per view, and so is their projection.
    projections += 4 * tokens * d * d + 4 * batch * views * context * c * d
    attention += 4 * tokens * context * d
    mlp = 4 * tokens * d * hidden
    return {"attention": attention, "total": projections + attention + mlp}


def model_flops(config: DiTConfig, mode: str, grid: tuple[int, int, int], context: int, rays: bool) -> int:
    """Forward FLOPs of a whole model: its blocks, the patch embedding (latents and the clean-frame mask in),
    the final projection and, with `rays`, drivesim's ray encoder (6 -> dim -> dim per token). Checked against
    torch's FlopCounterMode (drivesim on the math attention backend): each block mode within 0.02%, both whole
    models within 0.3% (the trajectory encoder and the modulations are left out)."""
    tokens = VIEWS * grid[0] * grid[1] * grid[2]
    patch, d = config.patch[0] * config.patch[1] * config.patch[2], config.dim
    ends = 2 * tokens * d * ((config.latent_channels + 1) * patch + config.latent_channels * patch)
    ray_encoder = 2 * tokens * (6 * d + d * d) if rays else 0
    return config.depth * block_flops(config, mode, grid, context)["total"] + ends + ray_encoder


# ---------------------------------------------------------------- (a) a training step against the peer

def training_step(preset: str, latent_size: tuple[int, int], repeats: int, compiled: bool = False) -> dict:
    inputs = case(latent_size)
    ours = world_model(preset).train()
    config = ours.config
    peer = peer_model(config).train()
    context = condition_tokens(ours, inputs)
    text = peer_text(context, config)
    steps = {"ours": training_pass(ours, lambda: our_loss(ours, inputs)),
             "peer": training_pass(peer, lambda: peer_loss(peer, inputs, text))}
    if compiled:
        # Each in its fastest documented mode too: drivesim's `compile: true` (its blocks compiled, as the
        # trainer does) and torch.compile of the whole diffusers model (diffusers' own advice).
        from drivesim.train.init_from import compile_blocks
        from drivesim.wfm.dit import DiTBlock

        fast_ours = world_model(preset).train()
        compile_blocks(fast_ours, (DiTBlock,))
        fast_peer = torch.compile(peer_model(config).train())
        steps["ours compiled"] = training_pass(fast_ours, lambda: our_loss(fast_ours, inputs))
        steps["peer compiled"] = training_pass(fast_peer, lambda: peer_loss(fast_peer, inputs, text))
        for step in (steps["ours compiled"], steps["peer compiled"]):
            step()  # compilation happens here, outside the timed rounds
    ms = side_by_side(steps, repeats)
    rows, columns = latent_size
    grid = (LATENT_FRAMES, rows // config.patch[1], columns // config.patch[2])
    return {"ms": ms, "parameters": {"ours": parameters(ours), "peer": parameters(peer)}, "config": config,
            "tokens": VIEWS * grid[0] * grid[1] * grid[2], "context": context,
            "flops": {"ours": 3 * model_flops(config, "neighbours", grid, context, rays=True),
                      "peer": 3 * model_flops(config, "none", grid, context, rays=False)}}


# ---------------------------------------------------------------- (b) cross-view attention as tokens grow

def block_inputs(config: DiTConfig, mode: str, grid: tuple[int, int, int], context: int):
    generator = torch.Generator().manual_seed(SEED)
    tokens = torch.randn(1, VIEWS, grid[0] * grid[1] * grid[2], config.dim, generator=generator).requires_grad_()
    with torch.no_grad():
        embedding, shared = TimeEmbedder(config.dim)(torch.rand(1, generator=generator))
    rig = load_rig("nuscenes")
    ego_from_cam = torch.tensor(rig.ego_from_cam[:VIEWS], dtype=torch.float32)[None]
    count = {"neighbours": config.neighbours, "all": VIEWS - 1}.get(mode)
    neighbours = azimuth_neighbours(ego_from_cam, count) if count else None
    condition = torch.randn(1, context, config.condition_dim, generator=generator)
    mask = torch.ones(1, context, dtype=torch.bool)
    rotation = Rope3D(config.dim // config.heads).rotation(grid, tokens.device, tokens.dtype)
    return tokens, ((embedding, shared), BlockInputs(grid, rotation, neighbours, condition, mask))


def block_pass(config: DiTConfig, mode: str, grid: tuple[int, int, int], context: int):
    torch.manual_seed(SEED)
    block = DiTBlock(dataclasses.replace(config, views=mode)).train()
    tokens, rest = block_inputs(config, mode, grid, context)
    gradient = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(SEED + 1))

    def step():
        block.zero_grad(set_to_none=True)
        tokens.grad = None
        block(tokens, *rest).backward(gradient)
    return step


def cross_view_sweep(preset: str, latent_sizes: list[tuple[int, int]], repeats: int, context: int) -> list[dict]:
    config = PRESETS[preset]()
    rows_out = []
    for rows, columns in latent_sizes:
        grid = (LATENT_FRAMES, rows // 2, columns // 2)
        ms = side_by_side({mode: block_pass(config, mode, grid, context) for mode in MODES}, repeats)
        flops = {mode: {k: 3 * v for k, v in block_flops(config, mode, grid, context).items()} for mode in MODES}
        rows_out.append({"latents": f"{rows}x{columns}", "per_view": grid[0] * grid[1] * grid[2], "ms": ms,
                         "flops": flops})
        print(f"  {rows}x{columns} latents, {grid[0] * grid[1] * grid[2]} tokens per view: "
              + ", ".join(f"{mode} {ms[mode]:.0f} ms" for mode in MODES), flush=True)
    return rows_out


def plot(sweep: list[dict], preset: str, threads: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    per_view = [row["per_view"] for row in sweep]
    for mode in MODES:
        label = {"neighbours": "neighbours (K=2)", "all": "all views (K=5)", "joint": "joint (one attention)",
                 "none": "no cross-view (reference)"}[mode]
        style = "--" if mode == "none" else "-"
        left.plot(per_view, [row["ms"][mode] for row in sweep], style, marker="o", label=label)
        right.plot(per_view, [row["flops"][mode]["total"] / 1e9 for row in sweep], style, marker="o", label=label)
    for axis, title in ((left, f"measured, {threads} CPU threads"), (right, "counted from the shapes")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(per_view, [f"{n:,}" for n in per_view])
        axis.minorticks_off()
        axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_xlabel("tokens per view (T=3, 6 views)")
        axis.grid(True, which="both", alpha=0.3)
        axis.set_title(title)
    left.set_ylabel("block forward+backward, ms")
    right.set_ylabel("block forward+backward, GFLOP")
    left.legend()
    figure.suptitle(f"One DiT block ({preset} preset) by cross-view mode")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---------------------------------------------------------------- (c) peak memory per preset

def status_mb(field: str) -> float:
    """VmRSS or VmHWM of this process in MB. Not ru_maxrss: a child started by subprocess inherits the
    parent's high-water mark through exec (Linux), so it would read at least the parent's peak."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def memory_child(args) -> None:
    """--child PRESET or peer-PRESET: two AdamW training steps on the (a) input; the last stdout line is JSON."""
    inputs = case(tuple(args.latents))
    if args.child.startswith("peer-"):  # built alone: drivesim's model (and its text encoder) stay out of its RSS
        config = model_config({"preset": args.child.removeprefix("peer-")})
        model, text = peer_model(config).train(), peer_text(args.context, config)
        loss_fn = lambda: peer_loss(model, inputs, text)  # noqa: E731
    else:
        model = world_model(args.child).train()
        loss_fn = lambda: our_loss(model, inputs)  # noqa: E731
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    setup_peak = status_mb("VmHWM")  # imports, model and input
    try:  # restart the high-water mark, so VmHWM below is the steps' peak (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # no reset: the steps' rise above the set-up peak, a lower bound
        pass
    before = status_mb("VmRSS")
    times = []
    for _ in range(2):  # the second step is the steady state: optimizer moments exist while activations do
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    steps_peak = status_mb("VmHWM")
    print(json.dumps({"peak_mb": max(setup_peak, steps_peak), "step_mb": steps_peak - before,
                      "parameters": parameters(model), "seconds": times[-1]}))


def measure_memory(name: str, args, context: int) -> dict:
    command = [sys.executable, __file__, "--child", name, "--threads", str(args.threads),
               "--latents", *map(str, args.latents), "--context", str(context)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_wfm: the memory child for {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def meta_parameters(preset: str) -> int:
    """Parameters of a preset built without memory (on the meta device)."""
    with torch.device("meta"):
        return parameters(world_model(preset))


# ---------------------------------------------------------------- on a CUDA machine only

def accelerator(args, device: str = "cuda") -> tuple[list[tuple], str]:
    """bf16 training steps of base against its peer, MFU against a measured bf16 matmul peak, and one joint
    attention through each backend. Rows for a table and a line saying what was measured."""
    size = 1024 if args.quick else 8192
    matmul_ms, peak = matmul_peak(size, args.repeats, device)
    rows = [("bf16 matmul peak", f"{size}x{size}x{size}", f"{matmul_ms:.2f}", f"{peak / 1e12:.1f} TFLOP/s", "")]
    config, grid, step_rows = bf16_steps(args, device, peak)
    rows += step_rows + attention_backends(args, device, peak, config, grid)
    name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else device
    return rows, (f"on {name}: forward+backward under bf16 autocast, median of {args.repeats}; MFU = FLOPs counted "
                  f"from the shapes / time / the measured bf16 matmul peak")


def bf16_steps(args, device: str, peak: float):
    """The (a) comparison at base's shape and 32x56 latents (nuScenes 448x256) under bf16 autocast."""
    preset = "tiny" if args.quick else "base"
    latent_size = (8, 16) if args.quick else (32, 56)
    inputs = case(latent_size, device)
    ours = world_model(preset).to(device).train()
    config = ours.config
    peer = peer_model(config).to(device).train()
    context = condition_tokens(ours, inputs)
    text = peer_text(context, config, device)

    def bf16(model, loss_fn):
        def step():
            model.zero_grad(set_to_none=True)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                loss = loss_fn()
            loss.backward()
        return step

    ms = side_by_side({"ours": bf16(ours, lambda: our_loss(ours, inputs)),
                       "peer": bf16(peer, lambda: peer_loss(peer, inputs, text))}, args.repeats, device)
    grid = (LATENT_FRAMES, latent_size[0] // 2, latent_size[1] // 2)
    rows = []
    for name, label, mode in (("ours", f"drivesim {preset} step (neighbours)", "neighbours"),
                              ("peer", f"CosmosTransformer3DModel at {preset}'s shape step", "none")):
        flops = 3 * model_flops(config, mode, grid, context, rays=name == "ours")
        achieved = flops / (ms[name] / 1000)
        rows.append((label, f"{VIEWS}x{latent_size[0]}x{latent_size[1]} latents", f"{ms[name]:.1f}",
                     f"{achieved / 1e12:.2f} TFLOP/s", f"{100 * achieved / peak:.0f}%"))
    return config, grid, rows


def attention_backends(args, device: str, peak: float, config: DiTConfig, grid) -> list[tuple]:
    """Joint attention over all views' tokens, the largest attention the model runs, through each backend."""
    (q, k, v), flops = joint_attention(config, grid, device)
    shape, rows = f"[1, {config.heads}, {q.shape[2]}, {q.shape[3]}] bf16", []
    for backend in ATTENTION_BACKENDS:
        problem = backend_problem(backend, q)
        if problem:
            rows.append((f"attend backend={backend}", shape, "-", f"skipped: {problem}", ""))
            continue
        ms = backend_ms(backend, (q, k, v), args.repeats, device)
        achieved = flops / (ms / 1000)
        rows.append((f"attend backend={backend}", shape, f"{ms:.2f}", f"{achieved / 1e12:.2f} TFLOP/s",
                     f"{100 * achieved / peak:.0f}%"))
    return rows


def matmul_peak(size: int, repeats: int, device="cuda") -> tuple[float, float]:
    """The peak MFU is measured against: ms of one bf16 [size, size] @ [size, size] (median of `repeats` runs of
    10 back to back, after a warm-up run) and the FLOP/s that is."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    chain = lambda: [a @ a for _ in range(10)]  # noqa: E731  (ten, so a sync's latency does not count much)
    timed(chain, device)
    matmul_ms = statistics.median(timed(chain, device) for _ in range(repeats)) / 10
    return matmul_ms, 2 * size ** 3 / (matmul_ms / 1000)


def joint_attention(config: DiTConfig, grid, device, dtype=torch.bfloat16):
    """q, k, v [1, heads, length, head_dim] for one joint attention over all views' tokens of a (T, h, w) grid
    per view, and the FLOPs of its forward and backward (3x the forward's scores and values)."""
    generator = torch.Generator().manual_seed(SEED)
    length, head_dim = VIEWS * grid[0] * grid[1] * grid[2], config.dim // config.heads
    q, k, v = (torch.randn(1, config.heads, length, head_dim, generator=generator).to(device, dtype)
               .requires_grad_() for _ in range(3))
    return (q, k, v), 3 * 4 * config.heads * length ** 2 * head_dim


def backend_ms(backend: str, qkv, repeats: int, device) -> float:
    """Median ms of attend() forward and backward through `backend`, after a warm-up."""
    q, k, v = qkv
    step = lambda: attend(q, k, v, backend=backend).backward(torch.ones_like(q))  # noqa: E731
    timed(step, device)
    return statistics.median(timed(step, device) for _ in range(repeats))


# ---------------------------------------------------------------- the run

def shape_of(latents) -> str:
    rows, columns = latents
    return (f"1 sample x {VIEWS} views x {LATENT_FRAMES} latent frames of {rows}x{columns} latents, {CHANNELS} "
            f"channels ({columns * 8}x{rows * 8} pixels)")


def part_a(args, preset: str) -> dict:
    print(f"(a) training step, {preset} preset against its Cosmos match: {shape_of(args.latents)}, {args.threads} "
          f"threads, median of {args.repeats} alternating rounds after a warm-up ...", flush=True)
    step = training_step(preset, tuple(args.latents), args.repeats, compiled=not args.no_compile)
    config, ms = step["config"], step["ms"]
    rows = [("model", "parameters", "tokens", "computes", "GFLOP/step", "fwd+bwd ms", "steps/s")]
    for name, label, computes in (
            ("ours", f"drivesim WorldModel {preset} (views=neighbours)",
             "per-view self-attn + cross-view (K=2) + rays, trajectory, text"),
            ("peer", f"diffusers CosmosTransformer3DModel at {preset}'s shape (peer)",
             "per-view self-attn only, views folded into batch")):
        for variant, suffix in ((name, ""), (f"{name} compiled", ", compiled")):
            if variant in ms:
                rows.append((label + suffix, f"{step['parameters'][name]:,}", f"{step['tokens']:,}", computes,
                             f"{step['flops'][name] / 1e9:.1f}", f"{ms[variant]:.0f}", f"{1000 / ms[variant]:.2f}"))
    fastest = {name: min(value for key, value in ms.items() if key.startswith(name)) for name in ("ours", "peer")}
    setup = (f"(a) {shape_of(args.latents)}, first latent frame clean; {preset} preset: dim {config.dim}, depth "
             f"{config.depth}, heads {config.heads}, MLP x{config.mlp_ratio:g}, AdaLN-LoRA rank "
             f"{config.adaln_lora_rank}, condition width {config.condition_dim}, for both; drivesim reads "
             f"{step['context']} condition tokens (null, {VIDEO_FRAMES} trajectory, "
             f"{step['context'] - 1 - VIDEO_FRAMES} caption), the peer as "
             f"many random text tokens; zero_grad + forward + flow loss + backward, float32, {args.threads} threads, "
             f"median of {args.repeats} rounds alternating the order, after a warm-up; GFLOP/step: matrix products "
             f"counted from the shapes, 3x the forward")
    if len(ms) > 2:
        setup += ("; compiled: drivesim's blocks through torch.compile (`compile: true`), the peer's whole model "
                  "through torch.compile, compilation outside the timed rounds; the goal compares each model's "
                  "fastest row")
    return step | {"rows": rows, "setup": setup, "speedup": fastest["peer"] / fastest["ours"]}


def part_b(args, preset: str, context: int) -> dict:
    sizes = [(4, 8), (8, 14)] if args.quick else [(4, 8), (8, 14), (16, 28), (24, 42), (32, 56)]
    print(f"(b) one {preset} DiT block per views mode, {VIEWS} views, T={LATENT_FRAMES}, forward+backward, "
          f"latents {sizes[0][0]}x{sizes[0][1]} to {sizes[-1][0]}x{sizes[-1][1]} ...", flush=True)
    sweep = cross_view_sweep(preset, sizes, args.repeats, context)
    path = QUICK_PLOT if args.quick else PLOT
    path.parent.mkdir(parents=True, exist_ok=True)
    plot(sweep, preset, args.threads, path)
    rows = [("latents", "tokens/view", *(f"{m} ms" for m in MODES), *(f"{m} GFLOP" for m in MODES),
             "attn share n/a/j")]
    for row in sweep:
        share = "/".join(f"{100 * row['flops'][m]['attention'] / row['flops'][m]['total']:.0f}%" for m in MODES[:3])
        rows.append((row["latents"], f"{row['per_view']:,}", *(f"{row['ms'][m]:.0f}" for m in MODES),
                     *(f"{row['flops'][m]['total'] / 1e9:.2f}" for m in MODES), share))
    setup = (f"(b) one DiTBlock of the {preset} preset per views mode on [1, {VIEWS}, T*h*w, {PRESETS[preset]().dim}] "
             f"tokens (T={LATENT_FRAMES}, h x w = the latent grid in 2x2 patches), forward and backward into the input "
             f"tokens, {context} condition tokens, median of {args.repeats} rounds alternating the order; neighbours: "
             f"cross-view attention to the 2 nearest cameras at the same latent time, all: to the other 5, joint: "
             f"one attention over every view's tokens in place of the per-view self-attention, none: per-view "
             f"self-attention only (the reference); GFLOP: 3x the forward matrix products; attn share: attention "
             f"scores and values over all counted FLOPs (neighbours/all/joint); plot: {path.relative_to(ROOT)}")
    return {"rows": rows, "setup": setup, "sweep": sweep, "plot": path}


def part_c(args, preset: str, context: int) -> dict:
    presets = ["tiny"] if args.quick else ["tiny", "small", "base"]
    print(f"(c) peak memory of a training step (AdamW included) per preset, each in a subprocess: "
          f"{', '.join(presets)} and the peer at {preset}'s shape ...", flush=True)
    rows = [("model", "parameters", "peak MB", "+MB in steps", "s/step (AdamW)")]
    for name in [*presets, f"peer-{preset}"]:
        value = measure_memory(name, args, context)
        peer = name.startswith("peer-")
        label = f"CosmosTransformer3DModel at {preset}'s shape (peer)" if peer else f"drivesim {name}"
        rows.append((label, f"{value['parameters']:,}", f"{value['peak_mb']:.0f}", f"{value['step_mb']:.0f}",
                     f"{value['seconds']:.2f}"))
        print(f"  {label}: peak {value['peak_mb']:.0f} MB, {value['seconds']:.2f} s/step", flush=True)
    unmeasured = [name for name in PRESETS if name not in presets]
    for name in unmeasured:
        count = meta_parameters(name)
        rows.append((f"drivesim {name}", f"{count:,}", f"not run (>= {16 * count / 2 ** 20:,.0f})", "-", "-"))
    setup = (f"(c) {shape_of(args.latents)}, 2 AdamW steps in a fresh process per row; peak MB: the process's peak "
             f"RSS (VmHWM: imports, model and input included); +MB in steps: peak RSS during the steps less the RSS "
             f"before them; s/step: the second step")
    if args.quick:
        setup += f"; {', '.join(unmeasured)}: parameters only (built on the meta device), not run with --quick"
    elif unmeasured:
        setup += (f"; {', '.join(unmeasured)}: parameters only (built on the meta device): weights, gradients and "
                  f"two AdamW moments alone take 16 bytes a parameter in float32 (the lower bound in brackets), "
                  f"more than this machine's memory, and a step would take many minutes on {args.threads} threads")
    return {"rows": rows, "setup": setup}


def part_gpu(args) -> dict:
    if not torch.cuda.is_available():
        print("GPU part skipped: no CUDA device", flush=True)
        return {"rows": None, "setup": (f"GPU part skipped: torch.cuda.is_available() is False (torch "
                                        f"{torch.__version__}, no CUDA device on this machine), so this run has no "
                                        f"bf16 step time, MFU or flash-attn/SDPA/math comparison")}
    print("GPU: bf16 training steps, MFU, attention backends ...", flush=True)
    rows, setup = accelerator(args)
    return {"rows": [("what", "shape", "ms", "throughput", "MFU"), *rows], "setup": setup}


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, for every part of the run")
    parser.add_argument("--repeats", type=int, help="timed rounds after the warm-up (default 5, 1 with --quick)")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="smoke test: the tiny preset, small latents, seconds")
    parser.add_argument("--no-compile", action="store_true", help="(a): eager only, no torch.compile rows")
    parser.add_argument("--parts", default="abc", help="which CPU parts to run, e.g. a (default abc)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--latents", type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flush_denormals()  # as `drivesim train` does, for both models
    if args.child:
        return memory_child(args)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.latents = [8, 16] if args.quick else [16, 28]
    preset = "tiny" if args.quick else "small"
    try:
        import diffusers  # noqa: F401  (fail here, not in a child)
    except ImportError:
        raise SystemExit('bench_wfm: needs diffusers: .venv/bin/pip install -e ".[bench]"') from None
    started, load = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()), os.getloadavg()[0]

    a = part_a(args, preset)
    skipped = {"rows": [], "setup": "not run (--parts)", "plot": "not drawn (--parts)"}
    b = part_b(args, preset, a["context"]) if "b" in args.parts else skipped
    c = part_c(args, preset, a["context"]) if "c" in args.parts else skipped
    gpu = part_gpu(args)

    met = a["speedup"] >= GOAL
    goal = (f"goal training step (>= {GOAL}x the peer's speed at {preset}'s shape): {'met' if met else 'NOT met'}, "
            f"{a['speedup']:.2f}x")
    parts = [("(a) training step", a), ("(b) cross-view attention", b), ("(c) memory", c), ("GPU", gpu)]
    print("".join(f"\n{title}\n{table(part['rows'])[0]}\n{part['setup']}\n" if part["rows"] else
                  f"\n{part['setup']}\n" for title, part in parts) + f"\n{goal}\nplot: {b['plot']}")

    if args.record:
        flops_ratio = a["flops"]["ours"] / a["flops"]["peer"]
        reading = (f"At {preset}'s shape drivesim's training step runs {a['speedup']:.2f}x as fast as the matched "
                   f"Cosmos transformer ({'meeting' if met else 'missing'} the {GOAL}x goal) while doing "
                   f"{flops_ratio:.2f}x its counted FLOPs: the cross-view attention and the ray encoder on top of "
                   f"the same blocks.")
        if "sweep" in b:
            big = b["sweep"][-1]
            reading += (f" At {big['per_view']:,} tokens per view a neighbours block takes "
                        f"{big['ms']['neighbours']:.0f} ms against {big['ms']['joint']:.0f} ms for joint attention "
                        f"({big['flops']['neighbours']['total'] / 1e9:.1f} against "
                        f"{big['flops']['joint']['total'] / 1e9:.1f} GFLOP).")
        command = shlex.join([".venv/bin/python", *sys.argv])
        body = "".join(f"{table(part['rows'])[1]}\n\n{part['setup']}.\n\n" if part["rows"] else
                       f"{part['setup']}.\n\n" for _, part in parts)
        entry = f"{heading(started, PACKAGES, load, command)}\n\n{body}{goal}.\n\n{reading}\n"
        print(f"appended to {record(HEADING, SIDES, entry)}")


if __name__ == "__main__":
    main()
