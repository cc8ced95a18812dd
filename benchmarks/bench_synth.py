"""Six-camera frames per second of the synthetic-log renderer (drivesim/data/synth/raycast.py) against
open3d's own rasteriser (Filament) on the same scene and cameras, plus `drivesim synth` end to end.

    .venv/bin/python benchmarks/bench_synth.py [--sizes 448x256,1600x900] [--frames 5]

Prints a markdown table and appends it, dated, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import open3d as o3d
import torch

from drivesim.data.synth.meshes import Mesh, agents_mesh
from drivesim.data.synth.logs import SceneWorld, SynthConfig, generate, plan_scene
from drivesim.rigs import parse_size
from results import machine, record  # benchmarks/results.py: run as a script, this folder is on sys.path

HEADING = "## bench_synth: camera rendering of the synthetic-log generator"
RENDERERS = """\
- drivesim: `raycast.Renderer`, open3d `RaycastingScene` on the CPU + numpy shading: the frame
  `drivesim synth` writes, with sun shadows (a second ray per pixel), procedural textures, sky,
  reflections, fog, tone curve and sensor noise, plus per-pixel instance ids and depth.
- peer: open3d `OffscreenRenderer` (Filament over Vulkan; without a GPU that is Mesa's lavapipe
  on the CPU) drawing the same town and agent triangles with flat per-triangle colours
  (`defaultUnlit`, vertices duplicated per triangle), town uploaded once, agents every frame,
  one RGB readback per camera: no shadows, textures, sky or fog, no instance ids; depth only
  through another pass (taken once, untimed, to check that both draw the same geometry).
  On lavapipe some frames stall for a minute or more, the same frames in every run: a driver
  slow path set off by what is in view. A frame that does not finish within the time limit
  counts as infinitely slow; "stalled" means the median frame did not finish.
"""
PEER_MARK = "PEER_FRAME "
SCENE = 0  # scene-0001: day, clear, so drivesim casts its shadow rays


def scene_config(width: int, height: int, frames: int, out: Path) -> SynthConfig:
    return SynthConfig(out=out, scenes=1, seconds=max(2.0, (frames + 1) / 2), width=width, height=height)


def timed_frames(frames: int) -> list[int]:
    """Frame 0 warms up; then one frame every half second (the key-frame cadence at 12 fps)."""
    return [6 * (i + 1) for i in range(frames)]


def bench_drivesim(width: int, height: int, frames: int, out: Path):
    config = scene_config(width, height, frames, out)
    world = SceneWorld(config, plan_scene(config, SCENE))
    world.render(0)
    times = []
    for frame in timed_frames(frames):
        start = time.perf_counter()
        rendered, _ = world.render(frame)
        times.append(time.perf_counter() - start)
    return times, rendered.depth, world.plan.look.describe()


def peer_mesh(mesh: Mesh, min_vertices: int = 0) -> o3d.geometry.TriangleMesh:
    """Vertices duplicated per triangle so that vertex colours are per-triangle albedo; degenerate
    triangles appended up to `min_vertices`."""
    corners = mesh.vertices[mesh.triangles].reshape(-1, 3).astype(np.float64)
    colours = np.repeat(np.clip(mesh.albedo, 0, 1) ** (1 / 2.2), 3, axis=0).astype(np.float64)  # ~sRGB
    extra = -(-max(0, min_vertices - len(corners)) // 3) * 3
    result = o3d.geometry.TriangleMesh()
    result.vertices = o3d.utility.Vector3dVector(np.concatenate([corners, np.zeros((extra, 3))]))
    result.triangles = o3d.utility.Vector3iVector(np.arange(len(corners) + extra, dtype=np.int32).reshape(-1, 3))
    result.vertex_colors = o3d.utility.Vector3dVector(np.concatenate([colours, np.zeros((extra, 3))]))
    return result


def peer_child(width: int, height: int, frames: int, depth_out: Path) -> None:
    """Runs in its own process: a Vulkan failure or a driver stall cannot take drivesim's numbers down."""
    import open3d.visualization.rendering as rendering

    torch.set_num_threads(2)
    o3d.utility.set_verbosity_level(o3d.utility.VerbosityLevel.Error)
    config = scene_config(width, height, frames, depth_out.parent)
    world = SceneWorld(config, plan_scene(config, SCENE))
    renderer = rendering.OffscreenRenderer(width, height)
    material = rendering.MaterialRecord()
    material.shader = "defaultUnlit"
    renderer.scene.add_geometry("town", peer_mesh(world.renderer.static), material)
    cache: dict = {}

    def render(frame: int) -> np.ndarray:
        if renderer.scene.has_geometry("agents"):
            renderer.scene.remove_geometry("agents")
        # Padded past 65,536 vertices like the town: unpadded, Filament on lavapipe stalled 20-370 s on
        # some cameras in every trial here; padded (or merged into the town) it stalls less often.
        agents = peer_mesh(agents_mesh(world.traffic.agents, frame, cache), min_vertices=65_538)
        renderer.scene.add_geometry("agents", agents, material)
        world_from_cams = world.world_from_ego(frame) @ world.rig.ego_from_cam
        for v in range(len(world_from_cams)):
            renderer.setup_camera(world.rig.intrinsics[v], np.linalg.inv(world_from_cams[v]), width, height)
            np.asarray(renderer.render_to_image())
        return world_from_cams

    render(0)
    for frame in timed_frames(frames):
        start = time.perf_counter()
        world_from_cams = render(frame)
        print(f"{PEER_MARK}{time.perf_counter() - start}", flush=True)  # streamed: a stall keeps what came before
    depth = []
    for v in range(len(world_from_cams)):
        renderer.setup_camera(world.rig.intrinsics[v], np.linalg.inv(world_from_cams[v]), width, height)
        depth.append(np.asarray(renderer.render_to_depth_image(z_in_view_space=True)))
    np.save(depth_out, np.stack(depth))


def bench_peer(width: int, height: int, frames: int, depth_out: Path) -> tuple[list[float] | None, str, str]:
    """(seconds per frame or None, the device, a note: frames short of `frames`, or why it is unavailable)."""
    limit = 60 + 40 * (frames + 1)
    command = [sys.executable, __file__, "--peer-child", f"{width}x{height}", "--frames", str(frames),
               "--depth-out", str(depth_out)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=limit)
        stdout, stderr, late = done.stdout, done.stderr, ""
    except subprocess.TimeoutExpired as stalled:
        stdout, stderr, late = stalled.stdout or b"", stalled.stderr or b"", f"{{}} of {frames} frames in {limit} s"
    stdout, stderr = stdout.decode(errors="replace"), stderr.decode(errors="replace")
    times = [float(line[len(PEER_MARK):]) for line in stdout.splitlines() if line.startswith(PEER_MARK)]
    device = re.search(r"Vulkan device driver: (.*)", stdout + stderr)
    device = device.group(1).strip() if device else "none"
    if times:  # a frame that never came counts as infinitely slow
        return times + [np.inf] * (frames - len(times)), device, late.format(len(times))
    if late:
        return None, device, f"stalled: no frame within {limit} s"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return None, device, "unavailable: " + (lines[-1] if lines else f"exit status {done.returncode}")


def bench_generate(out: Path) -> tuple[int, float]:
    """Frames and seconds of `generate()`: 1 scene, 2 s, 12 fps, 448x256 (JPEG, lidar, annotation, tables)."""
    config = SynthConfig(out=out, scenes=1, seconds=2.0, fps=12, width=448, height=256)
    start = time.perf_counter()
    generate(config, progress=False)
    return config.frames, time.perf_counter() - start


def bench_cli(out: Path, frames_per_second: float) -> tuple[float, str]:
    """Seconds of `drivesim synth --scenes 2 --seconds 4 --size 448x256`, measured if under 3 minutes."""
    frames = 2 * SynthConfig(out=out, scenes=2, seconds=4.0).frames
    estimate = frames / frames_per_second
    if estimate >= 180:
        return estimate, f"extrapolated from {frames} frames at {frames_per_second:.2f} frames/s"
    script = Path(sys.executable).with_name("drivesim")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "drivesim.cli"]
    start = time.perf_counter()
    subprocess.run(command + ["synth", "--scenes", "2", "--seconds", "4", "--size", "448x256", "--out", str(out),
                              "--quiet"], check=True, capture_output=True)
    return time.perf_counter() - start, f"measured, {frames} frames"


def table(rows: list[tuple], look: str) -> str:
    lines = ["| size | renderer | ms per six-camera frame (median) | min-max ms | frames/s | speed vs peer |",
             "|---|---|---|---|---|---|"]
    for size, name, times, peer_times, note in rows:
        if times is None:
            lines.append(f"| {size} | {name} | {note} | - | - | - |")
            continue
        median, peer, done = float(np.median(times)), np.median(peer_times or [np.nan]), np.isfinite(times)
        relative = f"{peer / median:.2f}x" if np.isfinite(peer) else "n/a: peer stalled" if peer_times else "n/a"
        spread = f"{min(np.compress(done, times)) * 1e3:.0f}-{max(np.compress(done, times)) * 1e3:.0f}"
        spread += f" ({note})" if note else ""
        ms = f"{median * 1e3:.0f}" if np.isfinite(median) else "stalled"
        lines.append(f"| {size} | {name} | {ms} | {spread} | {1 / median:.2f} | {relative} |")
    return "\n".join(lines) + f"\n\nScene {SCENE + 1:04d} ({look}), torch threads 2.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--sizes", default="448x256,1600x900", help="comma-separated WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per size, after one warm-up")
    parser.add_argument("--peer-child", help=argparse.SUPPRESS)
    parser.add_argument("--depth-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.peer_child:
        peer_child(*parse_size(args.peer_child), args.frames, args.depth_out)
        return
    started = subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip()
    # other work on the machine skews every number
    machine_line, load = machine(("torch", "open3d-cpu", "numpy")), os.getloadavg()[0]
    rows, checks, device, look = [], [], "none", ""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for text in args.sizes.split(","):
            width, height = parse_size(text.strip())
            size = f"{width}x{height}"
            print(f"{size}: drivesim ...", flush=True)
            times, depth, look = bench_drivesim(width, height, args.frames, tmp / "scene")
            print(f"{size}: peer ...", flush=True)
            peer_times, peer_device, note = bench_peer(width, height, args.frames, tmp / f"peer-{size}.npy")
            device = peer_device if peer_device != "none" else device
            rows += [(size, "drivesim (ray casting)", times, peer_times, ""),
                     (size, "peer: open3d Filament", peer_times, peer_times, note)]
            if (tmp / f"peer-{size}.npy").exists():
                peer_depth = np.load(tmp / f"peer-{size}.npy")
                both = np.isfinite(peer_depth) & np.isfinite(depth)
                agree = np.mean(np.isfinite(peer_depth) == np.isfinite(depth))
                error = np.median(np.abs(peer_depth[both] - depth[both]) / depth[both])
                checks.append(f"{size}: the peer draws geometry where drivesim does for {agree:.1%} of pixels, "
                              f"median depth difference {error:.2%}")
        print("end to end: generate() ...", flush=True)
        frames, seconds = bench_generate(tmp / "e2e")
        print("end to end: drivesim synth ...", flush=True)
        cli_seconds, cli_how = bench_cli(tmp / "cli", frames / seconds)
    result = table(rows, look)
    if checks:
        result += "Same geometry: " + "; ".join(checks) + ".\n"
    result += (f"\nEnd to end, `generate()` of 1 scene, 2 s at 12 fps, 448x256 (JPEG, lidar, annotation, tables): "
               f"{frames} frames in {seconds:.1f} s, {frames / seconds:.2f} frames/s.\n"
               f"`drivesim synth --scenes 2 --seconds 4 --size 448x256`: {cli_seconds:.0f} s ({cli_how}).\n")
    print("\n" + result)
    entry = (f"### {started}\n\n{machine_line}; peer device: {device}; load average {load:.1f} at the start, "
             f"{os.getloadavg()[0]:.1f} at the end.\n\n{result}")
    print(f"appended to {record(HEADING, RENDERERS, entry)}")


if __name__ == "__main__":
    main()
