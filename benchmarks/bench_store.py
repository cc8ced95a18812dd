"""Six-camera clips per second from drivesim's clip store against the same clips decoded from the
log's JPEGs through nuscenes-devkit and PIL, side by side in one run, plus the store's size against
the JPEGs'.

    .venv/bin/python benchmarks/bench_store.py [--dataroot DIR] [--store PATH] [--rounds 3] [--threads 2]
                                               [--record] [--quick]

Both sides turn each clip of the store into what the batch contract asks for: video float32
[V, T, 3, H, W] in [-1, 1] at the store's 448x256 for all 17 frames x 6 cameras, plus intrinsics.
Only that is timed; the log and the store are opened, and the peer's token windows rebuilt with
`scene_timeline`, before the clock starts. Every clip is decoded once untimed first (warm-up and the
check that both sides give the same pixels).

Without --dataroot, one synthetic scene is rendered once (several minutes) into out/bench-store/logs
at 1600x900: the size of real nuScenes camera JPEGs, so the peer decodes what it would on real data.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import zarr
from einops import rearrange
from PIL import Image

from drivesim.data.dataset import ClipDataset
from drivesim.data.ingest import IngestConfig, ingest
from drivesim.data.nuscenes import calibration, open_log, scene_timeline
from drivesim.data.store import open_store
from drivesim.data.synth import SynthConfig, generate
from drivesim.errors import DataError
from results import heading, record  # benchmarks/results.py: run as a script, this folder is on sys.path

PACKAGES = ("torch", "zarr", "pillow", "nuscenes-devkit")

HEADING = "## bench_store: clips from the zarr store against JPEGs through nuscenes-devkit"
SIDES = """\
- drivesim: `ClipDataset(store, split=None, random_crop=False)` items, num_workers=0: uint8 frames
  from one zarr shard per clip (one zstd chunk per image), widened and scaled to [-1, 1] with torch.
- peer: nuscenes-devkit + PIL, as a devkit-based loader does it: per image
  `Image.open(nusc.get_sample_data_path(token)).convert("RGB").resize((448, 256), BILINEAR)`, stacked,
  then the same conversion; intrinsics from the devkit's calibrated_sensor. "draft" adds
  `image.draft("RGB", (448, 256))` (JPEG decoded at a reduced scale: the fastest path PIL offers,
  and what ingest does); "N threads" decodes a clip's images on a thread pool, as the store side
  may use N threads too (torch and zarr are limited to --threads).
"""
SIZE = (448, 256)
OURS, PEER = "drivesim clip store (zarr, zstd)", "nuscenes-devkit + PIL (peer)"
FRAMES, STRIDE, FPS = 17, 4, 12.0


def synth_config(out: Path, quick: bool, version: str) -> SynthConfig:
    if quick:
        return SynthConfig(out=out, scenes=1, seconds=2.0, width=320, height=180, fps=12, seed=0, version=version)
    return SynthConfig(out=out, scenes=1, seconds=2.5, width=1600, height=900, fps=12, seed=0, version=version)


def ensure_logs(config: SynthConfig) -> Path:
    """The synthetic logs at config.out, rendered unless a folder made with this config already loads."""
    out = Path(config.out)
    meta = out / "drivesim" / "scenes.json"
    if meta.is_file():
        saved = json.loads(meta.read_text()).get("config", {})
        wanted = {k: getattr(config, k) for k in ("scenes", "seconds", "width", "height", "fps", "seed", "version")}
        if all(saved.get(k) == v for k, v in wanted.items()):
            try:
                open_log(out, config.version)
                return out
            except DataError:
                pass
    config = dataclasses.replace(config, overwrite=out.exists())  # a folder that does not load
    print(f"rendering synthetic logs {config.width}x{config.height} into {out} (once) ...", flush=True)
    generate(config)
    return out


def ensure_store(dataroot: Path, path: Path, version: str) -> None:
    """Ingest `dataroot` into `path` unless a finished store with these settings is there (resumes a partial one)."""
    wanted = {"dataroot": str(dataroot.resolve()), "version": version, "width": SIZE[0], "height": SIZE[1],
              "frames": FRAMES, "stride": STRIDE, "fps": FPS}
    try:
        if (path / "curation.json").is_file():
            settings = dict(open_store(path).attrs["settings"])
            wrong = [f"{k}: {settings.get(k)!r}, wanted {v!r}" for k, v in wanted.items() if settings.get(k) != v]
            if not wrong:
                return
            raise DataError(f"--store {path} holds other clips ({'; '.join(wrong)}); remove it or pass another --store")
        print(f"ingesting {dataroot} into {path} ...", flush=True)
        ingest(IngestConfig(dataroot=dataroot, out=path, version=version, frames=FRAMES, stride=STRIDE,
                            width=SIZE[0], height=SIZE[1], fps=FPS))
    except DataError as error:
        raise SystemExit(f"bench_store: {error}") from None


def decode(nusc, token: str, draft: bool) -> np.ndarray:
    with Image.open(nusc.get_sample_data_path(token)) as image:
        if draft:
            image.draft("RGB", SIZE)
        return np.asarray(image.convert("RGB").resize(SIZE, Image.BILINEAR))


def peer_item(nusc, window: list[list[str]], draft: bool, pool: ThreadPoolExecutor | None = None) -> dict:
    """The peer's clip: every image decoded from its JPEG, then the same layout and scaling as the store's."""
    tokens = [token for row in window for token in row]
    images = pool.map(lambda t: decode(nusc, t, draft), tokens) if pool else (decode(nusc, t, draft) for t in tokens)
    frames = np.stack(list(images)).reshape(len(window), len(window[0]), SIZE[1], SIZE[0], 3)
    video = rearrange(torch.from_numpy(frames), "t v h w c -> v t c h w").contiguous().float().div_(127.5).sub_(1)
    intrinsics, _ = calibration(nusc, window[0], SIZE)
    return {"video": video, "intrinsics": torch.from_numpy(intrinsics)}


def rate(make, count: int) -> float:
    """Clips per second of one pass over all clips."""
    start = time.perf_counter()
    for i in range(count):
        make(i)
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--dataroot", type=Path, help="a nuScenes-format log (default: synthetic, 1600x900)")
    parser.add_argument("--version", default="v1.0-mini")
    parser.add_argument("--store", type=Path, help="the clip store; ingested from the log when missing "
                        "(default: <out>/store)")
    parser.add_argument("--out", type=Path, help="folder for the default logs and store (default: out/bench-store, "
                        "out/bench-store-quick with --quick)")
    parser.add_argument("--rounds", type=int, help="timed passes over all clips; the median rate is reported "
                        "(default 3, 1 with --quick)")
    parser.add_argument("--threads", type=int, default=2, help="torch and zarr threads, and the threaded peer's")
    parser.add_argument("--record", action="store_true", help="append the result to benchmarks/RESULTS.md")
    parser.add_argument("--quick", action="store_true", help="smoke test: small synthetic logs (320x180), 1 round")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    torch.set_num_threads(args.threads)
    zarr.config.set({"threading.max_workers": args.threads})  # before zarr starts its pool
    repo = Path(__file__).resolve().parents[1]
    out = args.out or repo / "out" / ("bench-store-quick" if args.quick else "bench-store")
    dataroot = args.dataroot or ensure_logs(synth_config(out / "logs", args.quick, args.version))
    store = args.store or out / "store"
    ensure_store(dataroot, store, args.version)

    # Untimed: open both sides and rebuild each clip's token window [T][V] from its scene and start.
    nusc = open_log(dataroot, args.version)
    dataset = ClipDataset(store, split=None, random_crop=False)
    cameras, fps = dataset.settings["cameras"], dataset.settings["fps"]
    clips, root, timelines, windows = len(dataset), open_store(store), {}, []
    for clip_id in dataset.clip_ids:
        attrs = root["clips"][clip_id].attrs
        if attrs["scene"] not in timelines:
            timelines[attrs["scene"]] = scene_timeline(nusc, attrs["scene"], cameras, fps)
        timeline, start = timelines[attrs["scene"]], attrs["start"]
        if not np.array_equal(timeline.timestamps[start:start + FRAMES], root["clips"][clip_id]["timestamps"][...]):
            raise SystemExit(f"bench_store: clip {clip_id} does not match the log's timeline: wrong --dataroot?")
        windows.append(timeline.tokens[start:start + FRAMES])

    pool = ThreadPoolExecutor(args.threads)
    sides = {OURS: dataset.__getitem__, PEER: lambda i: peer_item(nusc, windows[i], draft=False),
             "nuscenes-devkit + PIL draft": lambda i: peer_item(nusc, windows[i], draft=True)}
    if args.threads > 1:
        sides[f"nuscenes-devkit + PIL draft, {args.threads} threads"] = \
            lambda i: peer_item(nusc, windows[i], draft=True, pool=pool)
    started, load = time.strftime("%a %b %d %H:%M:%S UTC %Y", time.gmtime()), os.getloadavg()[0]
    print(f"{clips} clips; checking that the sides agree (untimed, also the warm-up) ...", flush=True)
    errors = {name: [] for name in sides if name != OURS}
    intrinsics_error = 0.0
    for i in range(clips):
        ours = dataset[i]
        for name in errors:
            theirs = sides[name](i)
            errors[name].append(float((ours["video"] - theirs["video"]).abs().mean()))
            intrinsics_error = max(intrinsics_error, float((ours["intrinsics"] - theirs["intrinsics"]).abs().max()))
    rates = {name: [] for name in sides}
    for r in range(rounds):
        for name, make in sides.items():  # interleaved, so drift in machine load hits every side alike
            rates[name].append(rate(make, clips))
        print(f"round {r + 1}/{rounds}: " + ", ".join(f"{v[-1]:.2f}" for v in rates.values()) + " clips/s", flush=True)
    pool.shutdown()
    median = {name: float(np.median(v)) for name, v in rates.items()}
    store_rate = median[OURS]

    title = f"clips/s ({FRAMES} frames x {len(cameras)} cameras, {SIZE[0]}x{SIZE[1]}, {args.threads} threads)"
    rows = [(title, "rounds", "clips/s", "ms/clip", "vs store")]
    for name, value in median.items():
        ratio = store_rate / value
        versus = "1.0x" if name == OURS else f"{ratio:.1f}x slower" if ratio >= 1 else f"{1 / ratio:.1f}x faster"
        rows.append((name, str(rounds), f"{value:.2f}", f"{1000 / value:.0f}", versus))
    widths = [max(len(row[c]) for row in rows) for c in range(5)]
    plain = "\n".join(row[0].ljust(widths[0]) + "".join(f"  {cell:>{w}}" for cell, w in zip(row[1:], widths[1:]))
                      for row in rows)
    markdown = "\n".join(["| " + " | ".join(rows[0]) + " |", "|---|---|---|---|---|"]
                         + ["| " + " | ".join(row) + " |" for row in rows[1:]])

    clip_dirs = [store / "clips" / clip_id for clip_id in dataset.clip_ids]
    store_bytes = sum(f.stat().st_size for d in clip_dirs for f in d.rglob("*") if f.is_file())
    tokens = {token for window in windows for row in window for token in row}
    jpeg_bytes = sum(os.path.getsize(nusc.get_sample_data_path(token)) for token in tokens)
    stored_images = clips * FRAMES * len(cameras)
    with Image.open(nusc.get_sample_data_path(next(iter(tokens)))) as image:
        jpeg_size = f"{image.width}x{image.height}"
    mb = 1e6
    size_line = (f"size: store {store_bytes / mb:.1f} MB for {clips} clips ({store_bytes / mb / clips:.2f} MB/clip, "
                 f"{store_bytes / mb / stored_images:.3f} MB per stored {SIZE[0]}x{SIZE[1]} image) vs JPEGs "
                 f"{jpeg_bytes / mb:.1f} MB for {len(tokens)} {jpeg_size} images referenced "
                 f"({jpeg_bytes / mb / len(tokens):.3f} MB/image); ratio store/JPEGs {store_bytes / jpeg_bytes:.2f} "
                 f"(clips {STRIDE} frames apart overlap: the store holds {stored_images / len(tokens):.1f} copies "
                 f"of each image)")
    agree_line = ("agreement with the store, mean |difference| of the video on [-1, 1] per clip (max over clips): "
                  + "; ".join(f"{name} {max(v):.4f}" for name, v in errors.items())
                  + f"; intrinsics max |difference| {intrinsics_error:.2g}")
    speedup, best = store_rate / median[PEER], store_rate / max(v for k, v in median.items() if k != OURS)
    verdict = (f"goal (the store >= 5x {PEER}): {'met' if speedup >= 5 else 'NOT met'}, {speedup:.1f}x; "
               f"against the fastest peer variant {best:.1f}x")
    print(f"\n{plain}\n{size_line}\n{agree_line}\n{verdict}")
    if args.record:
        reading = (f"The store gives {store_rate:.2f} clips/s, {speedup:.1f}x the devkit + PIL image path, so the "
                   f"5x goal {'holds' if speedup >= 5 else 'does not hold'} here ({best:.1f}x the fastest peer "
                   f"variant); its clips take {store_bytes / jpeg_bytes:.2f}x the bytes of the JPEGs they come from.")
        command = shlex.join([".venv/bin/python", *sys.argv])
        entry = (f"{heading(started, PACKAGES, load, command)} (log {dataroot}, {len(timelines)} scene(s), "
                 f"{clips} clips)\n\n{markdown}\n\n"
                 f"{size_line}.\n\n{agree_line}.\n\n{verdict}.\n\n{reading}\n")
        print(f"appended to {record(HEADING, SIDES, entry)}")


if __name__ == "__main__":
    main()
