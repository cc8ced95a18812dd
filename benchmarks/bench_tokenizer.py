"""drivesim's causal video tokenizer (the `small` preset, 4x8x8, 16 latent channels) against diffusers'
AutoencoderKLCosmos at a matched size, side by side in one run: encode+decode throughput and peak memory
on the same video, then PSNR and SSIM on the same val clips after the same training on the same batches,
and (with --heldout) PSNR, SSIM and blockiness on every camera of a held-out store at 256x128.

    .venv/bin/python benchmarks/bench_tokenizer.py [--store out/tok-store] [--steps 300] [--batch 2]
        [--frames 9] [--crop 128] [--eval-clips 4] [--threads 2] [--repeats 5] [--record] [--quick]
        [--heldout out/heldout9-store] [--tokenizer weights/drivesim-small/tokenizer]

Needs diffusers without torchvision or another torch:
`pip install --no-deps diffusers && pip install huggingface-hub regex importlib-metadata`.

Throughput: one video, the front camera of the first val clip, whole stored frame (448x256 on a store
from `drivesim ingest`), its first 1 + 4k frames up to 17; `model(video)` under torch.no_grad (encode,
then decode the latents: the peer's posterior mode), a warm-up then the median of --repeats. Each model
runs in its own subprocess of this script (--child): "peak MB" is that process's peak RSS (VmHWM, imports
included), "+MB in run" the peak RSS during the passes (VmHWM, reset through /proc/self/clear_refs just
before them) less the RSS after imports, model and input. Both use fresh seeded weights: the compute
does not depend on them.

Training parity: both start from scratch (seed 0) and take --steps AdamW steps on identical batches; ours
first fits its linear path to 32 training windows, as its training command does (the time is printed).
With --tokenizer FOLDER ours is instead that trained tokenizer, loaded, not trained here (throughput then
times it too), and only the peer trains: the output says which model was trained and which loaded, and
the PSNR goal, which needs equal training, is not judged.

Held-out quality (--heldout STORE, a store no training used, e.g. synthetic logs of an unused seed): both
models reconstruct every camera of every clip at 256x128 (the world model's size; resized as training
does), all frames that fit (9 with --quick, on one clip), scored by `drivesim tokenizer eval`'s code:
PSNR, SSIM, and blockiness (drivesim.tokenizer.metrics) against the ground truth's, whose rule is that
the reconstruction's be at most 10% higher.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from drivesim.data.dataset import ClipDataset
from drivesim.errors import DrivesimError
from drivesim.tokenizer.evaluate import evaluate, load_tokenizer
from drivesim.tokenizer.metrics import BLOCKINESS_MARGIN
from drivesim.tokenizer.model import CausalVideoTokenizer, flatten_views, small
from drivesim.tokenizer.task import CroppedViews, TokenizerData, TokenizerTask
from drivesim.train.config import OptimConfig
from drivesim.train.distributed import flush_denormals
from drivesim.train.trainer import warmup_cosine
from results import heading, record, table  # benchmarks/results.py: run as a script, this folder is on sys.path

PACKAGES = ("torch", "diffusers")
OURS, PEER = "drivesim tokenizer small", "diffusers AutoencoderKLCosmos (peer)"
# The peer at drivesim small's shape: the same 2-level Haar patching (patch_size 4), then 64 channels at
# 1/4 and 128 at 1/8 resolution, one resnet per encoder stage (diffusers' decoder adds one per stage),
# no attention outside the bottleneck (its mid block keeps spatial + causal temporal attention, drivesim's
# spatial only). 3,224,960 parameters against drivesim small's 3,129,216 at 4x8x8: +3.1%.
PEER_KWARGS = dict(latent_channels=16, encoder_block_out_channels=(64, 64, 128),
                   decode_block_out_channels=(64, 64, 128), attention_resolutions=(), num_layers=1,
                   patch_size=4, patch_type="haar", spatial_compression_ratio=8, temporal_compression_ratio=4)
LR, WARMUP, SEED = 1e-3, 50, 0
HELDOUT_SIZE = (256, 128)  # (width, height): the world model's frames

HEADING = "## bench_tokenizer: drivesim tokenizer against diffusers' AutoencoderKLCosmos"
SIDES = f"""\
- drivesim: `CausalVideoTokenizer(small())`, 4x8x8, 16 continuous latent channels (factorized causal
  convolutions without normalisation, spatial attention in the bottleneck, parameter-free shortcuts, and
  the linear block path fitted to 32 training windows before step 0, as `drivesim train tokenizer` does).
- peer: diffusers `AutoencoderKLCosmos({", ".join(f"{k}={v!r}" for k, v in PEER_KWARGS.items())})`:
  the same compression, latent channels and stage widths, parameters within 4%.
  Reconstruction = `decode(encode(x).latent_dist.mode())`; its posterior is an `IdentityDistribution`
  (Cosmos' continuous tokenizer is a plain autoencoder), so there is no KL term to add: both train with
  the identical loss, drivesim's tokenizer task's L1 + 0.5 gradient + 0.2 (1 - SSIM).
- both: videos [N, 3, 1 + 4k, H, W] in [-1, 1], first frame encoded alone; AdamW lr 1e-3 (betas, weight
  decay and min-lr ratio from drivesim's OptimConfig), 50 warm-up steps then cosine, gradients clipped at
  1.0, no EMA; PSNR and SSIM from drivesim.tokenizer.metrics on the reconstruction clamped to [-1, 1].
"""


class Peer(torch.nn.Module):
    """AutoencoderKLCosmos behind the drivesim tokenizer's forward: video -> (reconstruction, latents, {})."""

    def __init__(self):
        super().__init__()
        from diffusers import AutoencoderKLCosmos

        self.vae = AutoencoderKLCosmos(**PEER_KWARGS)
        # What `drivesim tokenizer eval`'s code reads of a tokenizer.
        self.config = SimpleNamespace(temporal_compression=PEER_KWARGS["temporal_compression_ratio"],
                                      spatial_compression=PEER_KWARGS["spatial_compression_ratio"])

    def forward(self, video: torch.Tensor):
        latents = self.vae.encode(video).latent_dist.mode()  # the latents themselves: deterministic
        return self.vae.decode(latents).sample, latents, {}


def build(name: str, tokenizer: Path | None = None) -> torch.nn.Module:
    """Fresh seeded weights, or (ours, with --tokenizer) the trained tokenizer in that folder."""
    torch.manual_seed(SEED)
    if name == "ours":
        return load_tokenizer(tokenizer) if tokenizer is not None else CausalVideoTokenizer(small())
    return Peer()


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def status_mb(field: str) -> float:
    """VmRSS or VmHWM of this process in MB, from /proc/self/status."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def child(args) -> None:
    """--child ours|peer: time model(video) on the saved input; the last stdout line is JSON."""
    torch.set_num_threads(args.threads)
    flush_denormals()  # as `drivesim train` does, for both models
    video = torch.load(args.child_input, weights_only=True)
    model = build(args.child, args.tokenizer if args.child == "ours" else None).eval()
    # VmHWM, not ru_maxrss: a child started by subprocess can report its parent's peak as its own.
    setup_peak = status_mb("VmHWM")  # imports, model and input
    try:  # restart the high-water mark, so VmHWM below is the passes' peak (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        before = status_mb("VmRSS")
    except OSError:  # no reset: the rise of the process's high-water mark, a lower bound
        before = setup_peak
    times = []
    with torch.no_grad():
        for _ in range(args.repeats + 1):  # the first pass is the warm-up
            start = time.perf_counter()
            model(video)
            times.append(time.perf_counter() - start)
    run_peak = status_mb("VmHWM")
    print(json.dumps({"ms": 1000 * statistics.median(times[1:]), "peak_mb": max(setup_peak, run_peak),
                      "run_mb": run_peak - before,
                      "parameters": parameters(model)}))


def measure(name: str, path: str, threads: int, repeats: int, tokenizer: Path | None) -> dict:
    command = [sys.executable, __file__, "--child", name, "--child-input", path, "--threads", str(threads),
               "--repeats", str(repeats)] + (["--tokenizer", str(tokenizer)] if tokenizer is not None else [])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"bench_tokenizer: the {name} throughput child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def seeded(dataset, index: int, seed: int) -> torch.Tensor:
    """Item `index` with its random view (and crop) drawn from `seed`: the same for both models."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return dataset[index]["video"]


def train(name: str, batch, eval_batches: list, steps: int, warmup: int, train_set,
          tokenizer: Path | None = None) -> dict:
    """Train `name` from scratch, or (ours, given a trained tokenizer folder) load it; score it on the val
    batches. Returns the scores, seconds per step (None when loaded), the model, and how it was obtained."""
    task = TokenizerTask()
    if name == "ours" and tokenizer is not None:
        model = build(name, tokenizer).eval()
        with torch.no_grad():
            scores = task.validate(model, eval_batches)
        return {"psnr": scores["psnr"], "ssim": scores["ssim"], "s_per_step": None, "model": model,
                "how": f"loaded from {tokenizer}, not trained here"}
    model, optim = build(name).train(), OptimConfig()
    fit_start = time.perf_counter()
    for line in task.initialize(model, train_set, SEED) if name == "ours" else ():  # what `drivesim train` does
        print(f"  {name}: {line} in {time.perf_counter() - fit_start:.1f} s", flush=True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=LR, betas=optim.betas, weight_decay=optim.weight_decay)
    factor = functools.partial(warmup_cosine, warmup=warmup, total=steps, min_ratio=optim.min_lr_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    seconds, every = 0.0, max(1, steps // 10)
    for step in range(steps):
        video = batch(step)  # read outside the clock
        start = time.perf_counter()
        loss, values = task.loss(model, {"video": video})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, optim.grad_clip)
        optimizer.step()
        scheduler.step()
        seconds += time.perf_counter() - start
        if (step + 1) % every == 0 or step + 1 == steps:
            print(f"  {name} step {step + 1}/{steps}: loss {float(loss.detach()):.4f}, "
                  f"train PSNR {values['psnr']:.2f} dB, "
                  f"{seconds / (step + 1):.2f} s/step", flush=True)
    with torch.no_grad():
        scores = task.validate(model.eval(), eval_batches)
    return {"psnr": scores["psnr"], "ssim": scores["ssim"], "s_per_step": seconds / max(1, steps), "model": model,
            "how": f"trained here, {steps} steps from scratch"}


def heldout_quality(models: dict, store: Path, quick: bool) -> dict:
    """`drivesim tokenizer eval`'s scores of each model on every camera of the held-out store at 256x128."""
    clips, frames = (1, 9) if quick else (None, None)
    return {name: evaluate(model.eval(), store, split="all", clips=clips, size=HELDOUT_SIZE, frames=frames,
                           progress=False) for name, model in models.items()}


def heldout_report(heldout: dict, how: dict, store: Path) -> tuple[str, str, str]:
    """(plain table, markdown table, setup line) of the held-out scores."""
    rows = [("model", "obtained", "PSNR dB", "SSIM", "blockiness", "truth's", "ratio", "blockiness rule")]
    for name, label in (("ours", OURS), ("peer", PEER)):
        r = heldout[name]
        rows.append((label, how[name], f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['blockiness']:.3f}",
                     f"{r['blockiness_truth']:.3f}", f"{r['blockiness_ratio']:.3f}",
                     "met" if r["blockiness_ratio"] <= BLOCKINESS_MARGIN else "NOT met"))
    plain, markdown = table(rows)
    r = heldout["ours"]
    cameras = len({row["camera"] for row in r["rows"]})
    clips = len({row["clip"] for row in r["rows"]})
    width, height = r["size"]
    setup = (f"held-out quality: store {store}, {clips} clip(s) x {cameras} cameras, {r['frames']} frames at "
             f"{width}x{height}, every camera scored alone, then averaged; blockiness = mean gradient energy "
             f"across the 8-pixel grid over that elsewhere, the rule: the reconstruction's at most "
             f"{BLOCKINESS_MARGIN - 1:.0%} above the ground truth's")
    return plain, markdown, setup


def load_data(args):
    """The training windows, the val windows, their crop, and the throughput input (its camera and clip)."""
    q = args.quick
    try:
        data = functools.partial(TokenizerData, store=str(args.store), frames=args.frames)
        train_set = CroppedViews(data(crop=[args.crop] * 2), "train", random_crop=True)
        width, height = train_set.width, train_set.height
        eval_crop = [args.crop] * 2 if q else [width, height]
        val_set = CroppedViews(data(crop=eval_crop), "val", random_crop=False)
        clip_frames = val_set.clips.settings["frames"]
        bench_frames = 5 if q else 1 + 4 * ((min(17, clip_frames) - 1) // 4)
        cameras = val_set.clips.cameras
        view = "CAM_FRONT" if "CAM_FRONT" in cameras else cameras[0]
        bench = ClipDataset(args.store, "val", frames=bench_frames, views=[view], random_crop=False)[0]
    except DrivesimError as error:
        raise SystemExit(f"bench_tokenizer: {error}") from None
    video = flatten_views(bench["video"][None])  # [1, 3, T, H, W]
    if q:  # a centred 128x128 (or smaller) window
        h, w = min(128, height) // 8 * 8, min(128, width) // 8 * 8
        top, left = (height - h) // 2, (width - w) // 2
        video = video[..., top:top + h, left:left + w].contiguous()
    return train_set, val_set, eval_crop, video, view, bench["clip_id"]


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--store", type=Path, help="a clip store from `drivesim ingest` (default: out/tok-store)")
    parser.add_argument("--steps", type=int, help="training steps for both models (default 300, 3 with --quick)")
    parser.add_argument("--batch", type=int, help="training batch size (default 2, 1 with --quick)")
    parser.add_argument("--frames", type=int,
                        help="frames per training and eval window, 1 + 4k (default 9, 5 with --quick)")
    parser.add_argument("--crop", type=int, help="training crop, square (default 128, 64 with --quick)")
    parser.add_argument("--eval-clips", type=int, help="val clips scored, whole frame (default 4, 1 with --quick)")
    parser.add_argument("--repeats", type=int, help="timed encode+decode passes (default 5, 1 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, for every part of the run")
    parser.add_argument("--heldout", type=Path, help="a held-out clip store: both models' PSNR, SSIM and "
                                                     "blockiness on all its clips and cameras at 256x128")
    parser.add_argument("--tokenizer", type=Path, help="a trained drivesim tokenizer folder: ours is that model, "
                                                       "loaded and not trained (only the peer trains)")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="smoke test: 3 steps, tiny windows and throughput input")
    parser.add_argument("--child", choices=("ours", "peer"), help=argparse.SUPPRESS)
    parser.add_argument("--child-input", help=argparse.SUPPRESS)
    args = parser.parse_args()
    q = args.quick
    for name, full, quick in (("steps", 300, 3), ("batch", 2, 1), ("frames", 9, 5), ("crop", 128, 64),
                              ("eval_clips", 4, 1), ("repeats", 5, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if q else full)
    torch.set_num_threads(args.threads)
    flush_denormals()  # as `drivesim train` does, for both models
    if args.child:
        return child(args)
    args.store = args.store or Path(__file__).resolve().parents[1] / "out" / "tok-store"
    if (args.frames - 1) % 4 or args.frames < 1:
        raise SystemExit(f"bench_tokenizer: --frames {args.frames}: both models take 1 + 4k frames (e.g. 9 or 17)")
    if not args.store.exists():
        raise SystemExit(f"bench_tokenizer: no clip store at {args.store}; make one with `drivesim ingest "
                         f"--dataroot LOGS --out {args.store}`, or run `make demo-data` and pass "
                         "--store out/demo-store")
    try:
        import diffusers  # noqa: F401  (fail here, not in a child)
    except ImportError:
        raise SystemExit("bench_tokenizer: needs diffusers: .venv/bin/pip install --no-deps diffusers && "
                         ".venv/bin/pip install huggingface-hub regex importlib-metadata") from None

    train_set, val_set, eval_crop, video, view, bench_clip = load_data(args)
    bench_shape = f"{video.shape[2]} frames x {video.shape[3]}x{video.shape[4]} (HxW)"
    started, load = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()), os.getloadavg()[0]

    print(f"throughput: 1 video, {bench_shape}, {view} of val clip {bench_clip}, {args.threads} threads, "
          f"median of {args.repeats} after a warm-up, each model in a subprocess ...", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "video.pt")
        torch.save(video, path)
        speed = {name: measure(name, path, args.threads, args.repeats, args.tokenizer) for name in ("ours", "peer")}
    for name, value in speed.items():
        print(f"  {name}: {value['ms']:.0f} ms, peak {value['peak_mb']:.0f} MB (+{value['run_mb']:.0f} in run)",
              flush=True)

    eval_count = min(args.eval_clips, len(val_set))
    eval_batches = [{"video": seeded(val_set, i, SEED + i)[None]} for i in range(eval_count)]

    def batch(step: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(SEED * 1_000_003 + step)
        indices = torch.randint(len(train_set), (args.batch,), generator=generator).tolist()
        return torch.stack([seeded(train_set, index, SEED * 1_000_003 + step * 64 + k)
                            for k, index in enumerate(indices)])

    warmup = min(WARMUP, max(1, args.steps // 2))
    print(f"training {'the peer' if args.tokenizer else 'both'} for {args.steps} steps (batch {args.batch}, "
          f"{args.frames} frames x {args.crop}x{args.crop} crops of {len(train_set)} train clips)"
          + (f", ours loaded from {args.tokenizer}" if args.tokenizer else "")
          + f", then scoring {eval_count} val clip(s) at {args.frames} frames x {eval_crop[1]}x{eval_crop[0]} ...",
          flush=True)
    quality = {name: train(name, batch, eval_batches, args.steps, warmup, train_set,
                           args.tokenizer if name == "ours" else None) for name in ("ours", "peer")}
    for name, result in quality.items():
        print(f"  {name}: {result['how']}", flush=True)
    heldout = None
    if args.heldout is not None:
        print(f"held-out quality on {args.heldout} at {HELDOUT_SIZE[0]}x{HELDOUT_SIZE[1]} ...", flush=True)
        heldout = heldout_quality({name: result["model"] for name, result in quality.items()}, args.heldout, q)
    context = dict(started=started, load=load, bench_shape=bench_shape, view=view, clip=bench_clip,
                   train_clips=len(train_set), warmup=warmup, eval_count=eval_count, eval_crop=eval_crop)
    report(args, speed, quality, heldout, context)


def report(args, speed: dict, quality: dict, heldout: dict | None, context: dict) -> None:
    """Print the comparison and its goals; with --record, append them to benchmarks/RESULTS.md."""
    c = context
    rows = [("model", "obtained", "parameters", "encode+decode ms", "videos/s", "peak MB", "+MB in run",
             "train s/step", "val PSNR dB", "val SSIM")]
    for name, label in (("ours", OURS), ("peer", PEER)):
        s, r = speed[name], quality[name]
        per_step = "-" if r["s_per_step"] is None else f"{r['s_per_step']:.2f}"
        rows.append((label, r["how"], f"{s['parameters']:,}", f"{s['ms']:.0f}", f"{1000 / s['ms']:.3f}",
                     f"{s['peak_mb']:.0f}", f"{s['run_mb']:.0f}", per_step, f"{r['psnr']:.2f}", f"{r['ssim']:.4f}"))
    plain, markdown = table(rows)
    speedup = speed["peer"]["ms"] / speed["ours"]["ms"]
    gap = quality["ours"]["psnr"] - quality["peer"]["psnr"]
    fast, sharp = speedup >= 1.5, gap >= 0
    goals = f"goal throughput (>= 1.5x the peer's videos/s): {'met' if fast else 'NOT met'}, {speedup:.2f}x\n"
    if args.tokenizer is None:
        goals += (f"goal PSNR (no lower than the peer's after {args.steps} steps): {'met' if sharp else 'NOT met'}, "
                  f"{quality['ours']['psnr']:.2f} vs {quality['peer']['psnr']:.2f} dB ({gap:+.2f})")
    else:
        goals += (f"goal PSNR: not judged, the two did not train alike (ours loaded from {args.tokenizer}, the peer "
                  f"trained {args.steps} steps here); val PSNR {quality['ours']['psnr']:.2f} vs "
                  f"{quality['peer']['psnr']:.2f} dB")
    setup = (f"throughput input: 1 video, {c['bench_shape']}, {c['view']} of val clip {c['clip']}, torch.no_grad, "
             f"{args.threads} threads, median of {args.repeats} after a warm-up, each model in its own process "
             f"(peak MB: its peak RSS, VmHWM; +MB in run: its peak RSS during the passes less its RSS before them). "
             f"Training: {args.steps} steps, "
             f"batch {args.batch}, {args.frames} frames x {args.crop}x{args.crop} random crops of one random camera "
             f"of {c['train_clips']} train clips, identical batches for both, {c['warmup']} warm-up step(s); "
             f"scores on {c['eval_count']} val clip(s), {args.frames} frames x {c['eval_crop'][1]}x"
             f"{c['eval_crop'][0]}, one camera each")
    held_plain = held_markdown = held_setup = ""
    if heldout is not None:
        held_plain, held_markdown, held_setup = heldout_report(heldout, {n: r["how"] for n, r in quality.items()},
                                                               args.heldout)
        goals += "\n" + "\n".join(
            f"blockiness rule, {name} (held out: at most {BLOCKINESS_MARGIN - 1:.0%} above the ground truth's): "
            f"{'met' if r['blockiness_ratio'] <= BLOCKINESS_MARGIN else 'NOT met'}, {r['blockiness_ratio']:.3f}x"
            for name, r in heldout.items())
    print(f"\n{plain}\n{setup}\n" + (f"\n{held_plain}\n{held_setup}\n" if heldout else "") + goals)
    if args.record:
        trained = ("after the same training" if args.tokenizer is None
                   else f"with ours loaded from {args.tokenizer} and the peer trained {args.steps} steps")
        reading = (f"drivesim's tokenizer encodes and decodes {speedup:.2f}x as fast as the matched Cosmos VAE "
                   f"({'meeting' if fast else 'missing'} the 1.5x goal); {trained}, its val PSNR is {gap:+.2f} dB "
                   f"against the peer's.")
        command = shlex.join([".venv/bin/python", *sys.argv])
        held = f"{held_markdown}\n\n{held_setup}.\n\n" if heldout else ""
        entry = (f"{heading(c['started'], PACKAGES, c['load'], command)} (store {args.store})\n\n{markdown}\n\n"
                 f"{setup}.\n\n{held}" + goals.replace("\n", ".\n") + f".\n\n{reading}\n")
        print(f"appended to {record(HEADING, SIDES, entry)}")


if __name__ == "__main__":
    main()
