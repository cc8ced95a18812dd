"""The shipped world model on held-out synthetic scenarios, side by side with two baselines and the
ground-truth clips, in one run, with the metrics of `drivesim eval`.

    .venv/bin/python benchmarks/eval_model.py [--checkpoint weights/drivesim-small] [--heldout STORE]
        [--out out/eval-model] [--steps N] [--temperature T] [--init reprojected] [--strength S]
        [--frame-step 2] [--threads 2] [--record]

Held-out data: --heldout names a clip store; without it, `drivesim synth --seed 9000` (a seed no training
run uses: they use 0) renders 3 scenes of 4 s at the model's size and `drivesim ingest` cuts one 41-frame
clip from each. Every clip becomes a scenario (`drivesim.scenario.from_clip`: its rig, ego path, tracks,
road and its first frame as the start frame) and is rendered four ways. --steps, --temperature and --strength
default to drivesim generate's, RolloutConfig's (drivesim/simulate.py): the best measured, as `make demo` uses.

- model: `drivesim generate` with the layout maps (the shipped model as users run it: by default each chunk
  starts from the start frame redrawn at its ego poses, --init reprojected, noised to --strength);
- no layout: the same model and seed with the layout maps withheld (the redrawing then has the flat ground
  alone for depth: the boxes, lanes and road edges are the layout);
- reprojection only: the start frame redrawn with the layout's depth and no model at all
  (simulate.reproject_start_frame): what the model adds must show against it;
- hold start frame: the start frame repeated for every frame (simulate.hold_start_frame).

All rollouts are scored in one drivesim.eval.report.evaluate against the held-out store (report in
out/eval-model/eval/report.html): cross-view (CSE) and
temporal (TSE) Sampson error in pixels, the ego trajectory recovered from the front camera against the
scenario's (ATE, RPE), PSNR/SSIM against the real frames, and layout agreement: PSNR inside the scenario's
projected boxes (and outside them). The ground-truth clips' own CSE and TSE come from the same evaluate.
Controllability as the field measures it: the shipped detector (weights/detector-small) on each variant's
frames, NDS and its ratio to the same detector on the same real frames (drivesim/eval/detection.py).
The checks the issue asks for are printed under the table: layout PSNR in boxes above both baselines,
CSE and TSE within 2x of the ground truth's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from drivesim.simulate import RolloutConfig

DEFAULT = RolloutConfig()  # the sampling settings every entry point defaults to
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import heading, record, table  # noqa: E402

HELDOUT_SEED = 9000
VARIANTS = ("model", "no layout", "reprojection only", "hold start frame")
COLUMNS = (("cse_px", "CSE px", ".2f"), ("tse_px", "TSE px", ".2f"), ("ate_m", "ATE m", ".2f"),
           ("rpe_m", "RPE m", ".2f"), ("psnr", "PSNR dB", ".2f"), ("ssim", "SSIM", ".3f"),
           ("layout_psnr_in", "PSNR in boxes", ".2f"), ("layout_psnr_out", "PSNR outside", ".2f"),
           ("det_nds", "detector NDS", ".3f"), ("det_ratio", "NDS / real", ".0%"))


def _cli(*args: str) -> None:
    """Run a drivesim command in this interpreter's environment; stop with its message if it fails."""
    command = [sys.executable, "-m", "drivesim.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{shlex.join(args[:2])} failed ({done.returncode}):\n{done.stderr.strip()}")


def heldout_store(out: Path, size: tuple[int, int]) -> Path:
    """3 scenes x 4 s rendered with the held-out seed, one 41-frame clip each."""
    store = out / "heldout-store"
    if store.is_dir():
        return store
    logs = out / "heldout-logs"
    print(f"held-out data: drivesim synth --seed {HELDOUT_SEED} (3 scenes x 4 s at {size[0]}x{size[1]}) ...",
          flush=True)
    _cli("synth", "--scenes", "3", "--seconds", "4", "--size", f"{size[0]}x{size[1]}", "--seed", str(HELDOUT_SEED),
         "--workers", "2", "--out", str(logs), "--overwrite", "--quiet")
    _cli("ingest", "--dataroot", str(logs), "--out", str(store), "--frames", "41", "--stride", "40")
    return store


def _slug(variant: str) -> str:
    return variant.replace(" ", "_")


def render_variants(checkpoint: Path, store: Path, out: Path, steps: int = DEFAULT.steps,
                    temperature: float = DEFAULT.temperature, init: str = "reprojected",
                    strength: float = DEFAULT.strength) -> dict[str, list[float]]:
    """Every held-out clip as a scenario, rendered the four ways into out/rollouts/<variant>--<clip>;
    seconds per rollout for each variant."""
    from drivesim.data.store import stored_clip_ids
    from drivesim.scenario import from_clip
    from drivesim.simulate import hold_start_frame, reproject_start_frame, rollout
    from drivesim.wfm.pipeline import WorldModelPipeline

    pipeline = WorldModelPipeline.from_pretrained(checkpoint, "cpu")
    size = pipeline.trained_size()
    seconds: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for clip_id in stored_clip_ids(store):
        scenario = from_clip(store, clip_id)
        for variant in VARIANTS:
            folder = out / "rollouts" / f"{_slug(variant)}--{clip_id}"
            started = time.perf_counter()
            if variant == "hold start frame":
                result = hold_start_frame(scenario, size)
            elif variant == "reprojection only":
                result = reproject_start_frame(scenario, size)
            else:
                config = RolloutConfig(steps=steps, seed=0, use_layout=variant == "model", temperature=temperature,
                                       init=init, strength=strength)
                result = rollout(scenario, pipeline, config, progress=False)
            seconds[variant].append(time.perf_counter() - started)
            result.save(folder, overwrite=True)
            print(f"  {variant:>16}  {clip_id}: {result.num_frames} frames in {seconds[variant][-1]:.0f} s",
                  flush=True)
    return seconds


def score(out: Path, store: Path, frame_step: int) -> dict:
    """One `drivesim eval` over every rollout (the ground-truth clips measured once), then the mean of
    each variant's rows (NaN where no rollout measured a column), and the ground truth's."""
    from drivesim.eval.report import evaluate, mean_row, write_report

    results = evaluate(out / "rollouts", reference=store, frame_step=frame_step, progress=True)
    write_report(results, out / "eval")
    summary = results.summary
    scores = {variant: dataclasses.asdict(mean_row([row for row in summary.rows
                                                    if row.name.startswith(f"{_slug(variant)}--")], variant))
              for variant in VARIANTS}
    scores["ground truth"] = {key: (math.nan if value is None else value)
                              for key, value in dataclasses.asdict(summary.reference_mean).items() if key != "name"}
    _detection(results, scores, frame_step)
    return scores


def _detection(results, scores: dict, frame_step: int) -> None:
    """Per variant, the shipped detector's NDS on its frames over NDS on the same real frames (eval/detection.py):
    the controllability figure; NaN when the detector is not shipped."""
    from drivesim.eval.detection import controllability, resolve_detector

    detector, source = resolve_detector("auto")
    for variant in VARIANTS:
        entries = [entry for entry in results.rollouts if entry.name.startswith(f"{_slug(variant)}--")]
        control = controllability(entries, detector, source, frame_step) if detector is not None else None
        scores[variant]["det_nds"] = control.paired.nds if control and control.paired else math.nan
        scores[variant]["det_ratio"] = control.nds_ratio if control else math.nan
        if control and control.real:
            scores["ground truth"]["det_nds"] = control.real.nds  # the same real frames for every variant
    scores["ground truth"]["det_ratio"] = 1.0 if detector is not None else math.nan


def _cell(value, spec: str) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def checks(scores: dict) -> list[tuple[str, bool]]:
    model, truth = scores["model"], scores["ground truth"]
    layout = model["layout_psnr_in"]
    found = [(f"layout PSNR in boxes above '{name}' ({_cell(layout, '.2f')} vs "
              f"{_cell(scores[name]['layout_psnr_in'], '.2f')} dB)", layout > scores[name]["layout_psnr_in"])
             for name in ("hold start frame", "no layout")]
    # Not asked by the issue, but the honest question once the model starts from a redrawn frame.
    found.append((f"layout PSNR in boxes above 'reprojection only' ({_cell(layout, '.2f')} vs "
                  f"{_cell(scores['reprojection only']['layout_psnr_in'], '.2f')} dB)",
                  layout > scores["reprojection only"]["layout_psnr_in"]))
    for key, label in (("cse_px", "CSE"), ("tse_px", "TSE")):
        ratio = model[key] / truth[key] if truth[key] else math.inf
        found.append((f"{label} within 2x of the ground truth's ({_cell(model[key], '.2f')} vs "
                      f"{_cell(truth[key], '.2f')} px, {ratio:.2f}x)", ratio <= 2.0))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a wfm run or checkpoint (default: the shipped weights)")
    parser.add_argument("--heldout", type=Path, help="a clip store of held-out clips (default: synthesized)")
    parser.add_argument("--out", type=Path, default=Path("out/eval-model"))
    parser.add_argument("--steps", type=int, default=DEFAULT.steps,
                        help=f"sampling steps per chunk (default {DEFAULT.steps}, as generate)")
    parser.add_argument("--temperature", type=float, default=DEFAULT.temperature,
                        help=f"starting-noise scale (default {DEFAULT.temperature:g}, as generate)")
    parser.add_argument("--init", choices=("noise", "reprojected"), default="reprojected",
                        help="what each chunk starts from (as generate; default reprojected)")
    parser.add_argument("--strength", type=float, default=DEFAULT.strength,
                        help=f"with reprojected: the starting flow time (default {DEFAULT.strength:g}, as generate)")
    parser.add_argument("--frame-step", type=int, default=2, help="score every N-th frame (as drivesim eval)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from drivesim.wfm.pipeline import WorldModelPipeline
    from drivesim.weights import shipped_checkpoint

    checkpoint = args.checkpoint or shipped_checkpoint()
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    size = WorldModelPipeline.from_pretrained(checkpoint, "cpu").trained_size()
    store = args.heldout or heldout_store(args.out, size)
    print(f"checkpoint {checkpoint}, held-out store {store}, {args.steps} sampling steps, temperature "
          f"{args.temperature:g}, init {args.init} (strength {args.strength:g}), {args.threads} threads", flush=True)
    seconds = render_variants(checkpoint, store, args.out, args.steps, args.temperature, args.init, args.strength)
    scores = score(args.out, store, args.frame_step)
    rows = [("", *(label for _, label, _ in COLUMNS), "s per rollout")]
    for name in (*VARIANTS, "ground truth"):
        spent = seconds.get(name)
        rows.append((name, *(_cell(scores[name][key], spec) for key, _, spec in COLUMNS),
                     f"{sum(spent) / len(spent):.0f}" if spent else "-"))
    plain, markdown = table(rows)
    print(plain)
    verdicts = checks(scores)
    for text, ok in verdicts:
        print(f"{'met' if ok else 'NOT met'}: {text}")
    (args.out / "scores.json").write_text(json.dumps({"scores": scores, "seconds": seconds,
                                                      "checks": verdicts}, indent=1, default=str))
    if args.record:
        command = "python benchmarks/eval_model.py " + shlex.join(sys.argv[1:])
        sampling = (f"Sampling: {args.steps} steps, temperature {args.temperature:g}, init {args.init}, strength "
                    f"{args.strength:g}.")
        lines = "\n".join(f"- {'met' if ok else 'NOT met'}: {text}" for text, ok in verdicts)
        record("## eval_model: the shipped world model on held-out scenarios",
               "Rollouts of held-out synthetic clips (synth seed 9000) scored by `drivesim eval` against "
               "the real frames, beside two baselines and the clips' own values. Lower is better for CSE, "
               "TSE, ATE, RPE; higher for PSNR, SSIM.\n",
               f"{heading(started, ('torch',), load, command)}\n\n{sampling}\n\n{markdown}\n\n{lines}\n")
        print("recorded in benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
