"""Text2World and Image2World on held-out synthetic logs: a world model on the dense scene maps beside the
model shipped before them, the model-free baselines and the ground truth, in one run (issue 23's table).

    .venv/bin/python benchmarks/eval_dense.py --new runs/wfm-dense --heldout out/heldout9-dense-store \
        out/heldout91-dense-store [--shipped out/shipped-before-23] [--palette-store out/dense-store] \
        [--out out/eval-dense] [--frame-step 2] [--threads 2] [--record]

Every clip of every held-out store (synth seeds no training run used) becomes a scenario (scenario.from_clip:
its rig, ego path, tracks, road, look and its first frame as start frame), rendered at the model's size:

- Text2World (no start frame: the scenario's start_frames withheld while sampling; each chunk starts as
  generate starts it, from the painted maps where the weights have a palette, else from noise): the new
  model; the shipped model; paint, the dense maps painted by numbers with each class's mean
  training colour shaded by depth (drivesim/paint_baseline.py, fitted on --palette-store's training clips).
- Image2World (the start frame given, every chunk started from it redrawn at its ego poses, as generate does):
  the new model; the shipped model; reprojection only (the start frame redrawn, no model).

Each rollout keeps the scenario with its start_frames so `drivesim eval` finds the real clip; the first frame
is left out of every score (it is the given one in Image2World). Scores: the shipped detector's mAP and NDS on
the generated frames over the same on the real frames (drivesim/eval/detection.py), PSNR and SSIM, PSNR inside
the boxes, CSE and TSE (Sampson errors, px), ATE (m) of the path recovered from the front camera.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_model import _cell  # noqa: E402  (a table cell: n/a for NaN)
from results import heading, record, table  # noqa: E402

from drivesim.simulate import RolloutConfig  # noqa: E402

DEFAULT = RolloutConfig()
VARIANTS = ("T2W new", "T2W shipped", "T2W paint", "I2W new", "I2W shipped", "I2W reprojection only")
COLUMNS = (("det_map_ratio", "mAP / real", ".0%"), ("det_ratio", "NDS / real", ".0%"), ("psnr", "PSNR dB", ".2f"),
           ("ssim", "SSIM", ".3f"), ("layout_psnr_in", "PSNR in boxes", ".2f"), ("cse_px", "CSE px", ".2f"),
           ("tse_px", "TSE px", ".2f"), ("ate_m", "ATE m", ".2f"))


def _slug(variant: str) -> str:
    return variant.lower().replace(" ", "_")


def render(stores: list[Path], out: Path, pipelines: dict, palette, steps: int, temperature: float,
           strength: float, clips: int | None = None) -> dict[str, list[float]]:
    """Every held-out clip rendered every way into out/<store>/rollouts/<variant>--<clip>; seconds each."""
    from drivesim.data.store import stored_clip_ids
    from drivesim.paint_baseline import paint_rollout
    from drivesim.scenario import from_clip
    from drivesim.simulate import reproject_start_frame, rollout

    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    size = pipelines["new"].trained_size()
    for store in stores:
        for clip_id in stored_clip_ids(store)[:clips]:
            scenario = from_clip(store, clip_id)
            alone = dataclasses.replace(scenario, start_frames=None)  # Text2World: the scenario alone
            for variant in VARIANTS:
                mode, which = variant.split(" ", 1)
                started = time.perf_counter()
                if which == "paint":
                    result = paint_rollout(alone, palette, size)
                elif which == "reprojection only":
                    result = reproject_start_frame(scenario, size)
                else:
                    # as generate does: Text2World painted where the weights have a palette, else from noise
                    init = "auto" if mode == "T2W" else "reprojected"
                    config = RolloutConfig(steps=steps, seed=0, temperature=temperature, init=init, strength=strength)
                    result = rollout(alone if mode == "T2W" else scenario, pipelines[which], config, progress=False)
                seconds[variant].append(time.perf_counter() - started)
                result.scenario = scenario  # with its start_frames: the real clip to score against
                result.save(out / store.name / "rollouts" / f"{_slug(variant)}--{clip_id}", overwrite=True)
                print(f"  {variant:>22}  {store.name}/{clip_id}: {result.num_frames} frames in "
                      f"{seconds[variant][-1]:.0f} s", flush=True)
    return seconds


def score(stores: list[Path], out: Path, frame_step: int) -> dict:
    """`drivesim eval` per store, then per variant the mean over every rollout of both stores, the ground
    truth's mean, and the detector's ratios over all of a variant's rollouts."""
    from drivesim.eval.detection import controllability, resolve_detector
    from drivesim.eval.report import evaluate, mean_row, write_report

    results = []
    for store in stores:
        found = evaluate(out / store.name / "rollouts", reference=store, frame_step=frame_step, progress=True)
        write_report(found, out / store.name / "eval")
        results.append(found)
    rows = [row for found in results for row in found.summary.rows]
    scores = {variant: dataclasses.asdict(mean_row([row for row in rows if row.name.startswith(f"{_slug(variant)}--")],
                                                   variant)) for variant in VARIANTS}
    truths = [dataclasses.asdict(found.summary.reference_mean) for found in results]
    scores["ground truth"] = {key: float(sum(_number(t[key]) for t in truths) / len(truths))
                              for key in truths[0] if key != "name"}
    detector, source = resolve_detector("auto")
    entries = [entry for found in results for entry in found.rollouts]
    for variant in VARIANTS:
        mine = [entry for entry in entries if entry.name.startswith(f"{_slug(variant)}--")]
        control = controllability(mine, detector, source, frame_step) if detector is not None else None
        scores[variant]["det_ratio"] = control.nds_ratio if control else math.nan
        scores[variant]["det_map_ratio"] = control.map_ratio if control else math.nan
        scores[variant]["det_nds"] = control.paired.nds if control and control.paired else math.nan
        if control and control.real:
            scores["ground truth"]["det_nds"] = control.real.nds
            scores["ground truth"]["det_map"] = control.real.mean_ap
    scores["ground truth"]["det_ratio"] = scores["ground truth"]["det_map_ratio"] = 1.0 if detector else math.nan
    return scores


def _number(value) -> float:
    return math.nan if value is None else float(value)


def checks(scores: dict) -> list[tuple[str, bool]]:
    """The issue's goals, each with the figures it compares."""
    t2w, paint = scores["T2W new"], scores["T2W paint"]
    i2w, reprojection = scores["I2W new"], scores["I2W reprojection only"]
    found = [(f"Text2World detection at least 50% of real (NDS {_cell(t2w['det_ratio'], '.0%')}, mAP "
              f"{_cell(t2w['det_map_ratio'], '.0%')})", t2w["det_ratio"] >= 0.5 and t2w["det_map_ratio"] >= 0.5)]
    for key, label, spec in (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f")):
        found.append((f"Text2World {label} above paint ({_cell(t2w[key], spec)} vs {_cell(paint[key], spec)})",
                      t2w[key] > paint[key]))
    for key, label, spec in (("psnr", "PSNR", ".2f"), ("ssim", "SSIM", ".3f"),
                             ("layout_psnr_in", "in-box PSNR", ".2f")):
        found.append((f"Image2World {label} above reprojection only ({_cell(i2w[key], spec)} vs "
                      f"{_cell(reprojection[key], spec)})", i2w[key] > reprojection[key]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", type=Path, required=True,
                        help="the world model on dense maps (run, checkpoint or folder)")
    parser.add_argument("--shipped", type=Path, default=Path("out/shipped-before-23"),
                        help="the model to compare with (default: a copy of the weights shipped before issue 23)")
    parser.add_argument("--heldout", type=Path, nargs="+", required=True, help="held-out clip stores")
    parser.add_argument("--palette-store", type=Path, default=Path("out/dense-store"),
                        help="the training store the paint baseline's colours are fitted on")
    parser.add_argument("--out", type=Path, default=Path("out/eval-dense"))
    parser.add_argument("--steps", type=int, default=DEFAULT.steps)
    parser.add_argument("--temperature", type=float, default=DEFAULT.temperature)
    parser.add_argument("--strength", type=float, default=DEFAULT.strength)
    parser.add_argument("--frame-step", type=int, default=2, help="score every N-th frame (as drivesim eval)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clips", type=int, help="at most this many clips per store (a quick look; not recorded)")
    parser.add_argument("--palette-every", type=int, default=2, help="fit the palette on every N-th training clip")
    parser.add_argument("--score-only", action="store_true",
                        help="score the rollouts an earlier run left in --out (their seconds from its seconds.json)")
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from drivesim.paint_baseline import fit_palette
    from drivesim.train.distributed import flush_denormals
    from drivesim.wfm.pipeline import WorldModelPipeline

    flush_denormals()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    pipelines = {"new": WorldModelPipeline.from_pretrained(args.new, "cpu"),
                 "shipped": WorldModelPipeline.from_pretrained(args.shipped, "cpu")}
    size = pipelines["new"].trained_size()
    if args.record and args.clips:
        parser.error("--record takes every clip: leave out --clips")
    # The palette packed beside the new weights (drivesim fit-palette on the training store) when it has one.
    palette = pipelines["new"].palette
    if palette is None and not args.score_only:
        palette = fit_palette(args.palette_store, size, every=args.palette_every)
    if palette is not None:
        palette.save(args.out / "palette.json")
    print(f"new {args.new}, shipped {args.shipped}, held out {', '.join(map(str, args.heldout))}; {args.steps} steps, "
          f"temperature {args.temperature:g}, strength {args.strength:g}", flush=True)
    if args.score_only:
        seconds = json.loads((args.out / "seconds.json").read_text())
    else:
        seconds = render(args.heldout, args.out, pipelines, palette, args.steps, args.temperature, args.strength,
                         args.clips)
        (args.out / "seconds.json").write_text(json.dumps(seconds))
    scores = score(args.heldout, args.out, args.frame_step)
    rows = [("", *(label for _, label, _ in COLUMNS), "s per rollout")]
    for name in (*VARIANTS, "ground truth"):
        spent = seconds.get(name)
        rows.append((name, *(_cell(scores[name].get(key), spec) for key, _, spec in COLUMNS),
                     f"{sum(spent) / len(spent):.0f}" if spent else "-"))
    plain, markdown = table(rows)
    print(plain)
    verdicts = checks(scores)
    for text, ok in verdicts:
        print(f"{'met' if ok else 'NOT met'}: {text}")
    (args.out / "scores.json").write_text(json.dumps({"scores": scores, "seconds": seconds, "checks": verdicts},
                                                     indent=1, default=str))
    if args.record:
        command = "python benchmarks/eval_dense.py " + shlex.join(sys.argv[1:])
        lines = "\n".join(f"- {'met' if ok else 'NOT met'}: {text}" for text, ok in verdicts)
        real = scores["ground truth"]
        record("## eval_dense: Text2World and Image2World on held-out logs (issue 23)",
               "Held-out synthetic clips (two synth seeds no training used) as scenarios, scored by `drivesim eval` "
               "against the real frames with the first frame left out. Ratios: the shipped detector on the generated "
               "frames over the same detector on the real frames. Lower is better for CSE, TSE, ATE.\n",
               f"{heading(started, ('torch',), load, command)}\n\nSampling: {args.steps} steps, temperature "
               f"{args.temperature:g}; Image2World strength {args.strength:g}. Real frames: detector NDS "
               f"{_cell(real.get('det_nds'), '.3f')}, mAP {_cell(real.get('det_map'), '.3f')}.\n\n{markdown}\n\n"
               f"{lines}\n")
        print("recorded in benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
