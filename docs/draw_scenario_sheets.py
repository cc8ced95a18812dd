"""Draw docs/scenario_sheets.png: every shipped hand-drawn scenario generated from the scenario alone
(Text2World), one row each: the six cameras in the car's layout at one moment, the generated frames on the
left and the dense scene maps the model was given on the right.

    .venv/bin/python docs/draw_scenario_sheets.py [--checkpoint weights/drivesim-small] [--seconds 1.5]
        [--out docs/scenario_sheets.png]

Each scenario is cut to its first --seconds (the picture shows one moment) and rendered with generate's
default sampling settings (RolloutConfig) and the scenario's seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "weights" / "drivesim-small")
    parser.add_argument("--scenarios", type=Path, default=ROOT / "scenarios")
    parser.add_argument("--seconds", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "scenario_sheets.png")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from drivesim import scenario as sc
    from drivesim.media import grid_frames
    from drivesim.scene_maps import picture, render_scene
    from drivesim.simulate import RolloutConfig, rollout
    from drivesim.train.distributed import flush_denormals
    from drivesim.wfm.pipeline import WorldModelPipeline

    flush_denormals()
    pipeline = WorldModelPipeline.from_pretrained(args.checkpoint, "cpu")
    width, height = pipeline.trained_size()
    rows = []
    for path in sorted(args.scenarios.glob("*.yaml")):
        scenario = sc.load(path)
        if scenario.start_frames is not None:
            continue  # Text2World only: a scenario alone
        scenario = dataclasses.replace(scenario, duration=min(scenario.duration, args.seconds))
        started = time.perf_counter()
        result = rollout(scenario, pipeline, RolloutConfig(), progress=False)
        moment = result.num_frames - 1
        cameras = [camera.name for camera in scenario.rig.cameras]
        generated = grid_frames(result.video[moment:moment + 1], cameras)[0]
        frames = scenario.layout_frames([moment / scenario.fps])
        maps = picture(render_scene(scenario.rig, frames, size=(width, height)))
        drawn = grid_frames(maps[:, 0][None], cameras)[0]
        row = Image.fromarray(np.concatenate([generated, drawn], axis=1))
        ImageDraw.Draw(row).text((4, 2), f"{scenario.name}: t = {moment / scenario.fps:.2f} s", fill="white")
        rows.append(np.asarray(row))
        print(f"{scenario.name}: {result.num_frames} frames in {time.perf_counter() - started:.0f} s", flush=True)
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    sheet = sheet.resize((sheet.width // 2, sheet.height // 2), Image.Resampling.LANCZOS)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet = sheet.quantize(colors=128, method=Image.Quantize.MEDIANCUT)  # a README picture: ~3x smaller
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
