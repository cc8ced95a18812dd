"""The augmentation experiment (issue 21): the camera detector trained on real clips alone against real clips
plus clips drivesim generated, scored on held-out logs, in one run.

    .venv/bin/python benchmarks/augment.py [--real-store out/det-store] [--heldout out/heldout9-store]
        [--detector weights/detector-small] [--scenarios 16] [--steps 1000] [--out out/augment]
        [--threads 2] [--record]

"Real" here is the synthetic logs (the real store's train split, made by `drivesim synth` and `drivesim
ingest`); held-out is a store from a seed no training used. The generated clips are variants of training
scenarios rendered by the shipped world model, as a user would make them:

1. every k-th train clip of the real store becomes a scenario (`drivesim scenario from-clip
   --with-start-frame`), and each scenario one variant (`drivesim scenario vary`: with a start frame, its
   speeds and prompt change);
2. `drivesim generate --scenarios` renders them (the demo's settings: reprojected starts, 2 steps, strength
   0.3, temperature 0), `drivesim export` writes them as a nuScenes data set with their labels, and `drivesim
   ingest` makes a store of them;
3. the detector's controllability on them (`drivesim eval --detector`: NDS on generated frames over NDS on the
   same frames of the real clips) says how faithfully they show their labels.

Three detector runs of configs/detector.yaml, with the same seed, schedule shape and batch, then scored on the
held-out store by nuscenes-devkit's algorithm (raw weights: EMA would lag differently for runs of different
lengths):

- real, equal epochs: the real clips for S * R / (R + G) steps: as many passes over its data as the mixed arm
  makes over its own (R, G: real and generated training frames); the comparison most papers make;
- real, equal steps: the real clips for S steps: as many optimizer steps and samples as the mixed arm, the
  fair baseline Dream4Drive asks for;
- real + generated: both for S steps (data.extra_train_stores).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import heading, record, table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> str:
    """Run a drivesim command in this interpreter's environment; stop with its message if it fails."""
    command = [sys.executable, "-m", "drivesim.cli", *args]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        sys.exit(f"drivesim {shlex.join(args[:2])} failed ({done.returncode}):\n{done.stderr.strip()[-2000:]}")
    return done.stdout


def _train_clips(store: Path) -> list[str]:
    from drivesim.data.store import open_store

    index = dict(open_store(store).attrs.get("clips", {}))
    return sorted(clip for clip, entry in index.items() if entry.get("split") == "train")


def variants(real_store: Path, count: int, out: Path) -> Path:
    """`count` variants of evenly spread train clips: a from-clip scenario each, then one `scenario vary`."""
    folder = out / "variants"  # variants/<clip>/<clip>_v001.yaml: vary's paths to start frames stay right
    if folder.is_dir() and len(list(folder.glob("*/*.yaml"))) >= count:
        return folder
    clips = _train_clips(real_store)
    chosen = [clips[round(i * (len(clips) - 1) / max(count - 1, 1))] for i in range(min(count, len(clips)))]
    scenarios = out / "scenarios"
    scenarios.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    for i, clip in enumerate(chosen):
        scenario = scenarios / f"{clip}.yaml"
        if not scenario.is_file():
            _cli("scenario", "from-clip", "--store", str(real_store), "--clip", clip, "--out", str(scenario),
                 "--with-start-frame")
        if not (folder / clip).is_dir():
            _cli("scenario", "vary", str(scenario), "--count", "1", "--seed", str(i), "--out", str(folder / clip))
    return folder


def generated_store(folder: Path, checkpoint: str | None, out: Path) -> tuple[Path, Path, float]:
    """(the rollouts folder, the store of the exported and ingested rollouts, seconds spent generating)."""
    rollouts, logs, store = out / "rollouts", out / "generated-logs", out / "generated-store"
    started = time.perf_counter()
    options = ["--checkpoint", checkpoint] if checkpoint else []
    print(f"generate: {len(list(folder.glob('*/*.yaml')))} scenarios -> {rollouts} ...", flush=True)
    _cli("generate", "--scenarios", str(folder / "*" / "*.yaml"), "--out", str(rollouts), "--steps", "2",
         "--temperature", "0", "--strength", "0.3", "--quiet", *options)
    seconds = time.perf_counter() - started
    if not store.is_dir():
        _cli("export", "--rollouts", str(rollouts), "--out", str(logs), "--overwrite")
        # A 17-frame rollout at 12 fps has key frames (2 Hz) at 0, 0.5 and 1 s: ingest's timeline of a scene
        # ends at its last key frame, so each exported rollout gives one 13-frame clip.
        _cli("ingest", "--dataroot", str(logs), "--out", str(store), "--size", "256x128", "--frames", "13",
             "--stride", "13", "--quiet")
    return rollouts, store, seconds


def frames_in(store: Path, split: str | None) -> int:
    from drivesim.perception.frames import StoreFrames

    return len(StoreFrames(store, split, (256, 128), targets=False))


def train_arm(name: str, steps: int, real_store: Path, extra: Path | None, out: Path) -> Path:
    """One detector run of configs/detector.yaml (resumed when a run of it is there already)."""
    run = out / "runs" / re.sub(r"[^a-z0-9]+", "_", name.replace("+", "plus"))  # "real_equal_steps"
    overrides = [f"out={run}", f"steps={steps}", f"data.store={real_store}", f"val_every={steps}",
                 f"checkpoint_every={max(steps // 4, 1)}", f"sample_every={steps}", "val_batches=8",
                 f"optim.warmup_steps={min(100, steps // 10)}"]
    if extra is not None:
        overrides.append(f"data.extra_train_stores=[{extra}]")
    resume = ["--resume"] if (run / "checkpoints").is_dir() else []
    print(f"train {name}: {steps} steps -> {run} ...", flush=True)
    _cli("train", "detector", "--config", "configs/detector.yaml", *overrides, *resume, "--quiet")
    return run


def score(run: Path, heldout: Path):
    from drivesim.perception.pretrained import load_detector
    from drivesim.perception.score import score_store

    return score_store(load_detector(run, ema=False), heldout, split=None)


def controllability(rollouts: Path, real_store: Path, detector: str, out: Path):
    from drivesim.eval.report import evaluate, write_report

    report = evaluate(rollouts, reference=real_store, frame_step=2, progress=False, detector=detector)
    write_report(report, out / "eval")
    return report.controllability


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-store", type=Path, default=Path("out/det-store"))
    parser.add_argument("--heldout", type=Path, default=Path("out/heldout9-store"))
    parser.add_argument("--detector", default="auto", help="the detector controllability is measured with")
    parser.add_argument("--checkpoint", default=None, help="the world model (default: the shipped weights)")
    parser.add_argument("--scenarios", type=int, default=16, help="generated clips (variants of train clips)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps of the equal-steps arms")
    parser.add_argument("--out", type=Path, default=Path("out/augment"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    started, load = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)

    folder = variants(args.real_store, args.scenarios, args.out)
    rollouts, generated, seconds = generated_store(folder, args.checkpoint, args.out)
    control = controllability(rollouts, args.real_store, args.detector, args.out)
    real_frames, generated_frames = frames_in(args.real_store, "train"), frames_in(generated, None)
    equal_epochs = round(args.steps * real_frames / (real_frames + generated_frames))
    arms = [("real, equal epochs", equal_epochs, None), ("real, equal steps", args.steps, None),
            ("real + generated", args.steps, generated)]
    rows = [("arm", "steps", "real frames", "generated frames", "held-out mAP", "NDS", "ATE m", "ASE", "AOE rad")]
    scores = {}
    for name, steps, extra in arms:
        run = train_arm(name, steps, args.real_store, extra, args.out)
        result = scores[name] = score(run, args.heldout)
        errors = result.tp_errors
        rows.append((name, steps, real_frames, generated_frames if extra else 0, f"{result.mean_ap:.4f}",
                     f"{result.nds:.4f}", f"{errors.get('ATE', float('nan')):.2f}",
                     f"{errors.get('ASE', float('nan')):.2f}", f"{errors.get('AOE', float('nan')):.2f}"))
    plain, markdown = table(rows)
    lines = control.lines() if control else ["detection: not measured"]
    print(plain)
    print("\n".join(lines))
    print(f"generating {len(list(folder.glob('*/*.yaml')))} clips took {seconds:.0f} s")
    (args.out / "augment.json").write_text(json.dumps(
        {"rows": rows, "controllability": lines, "generate_seconds": seconds}, indent=1))
    if args.record:
        command = "python benchmarks/augment.py " + shlex.join(sys.argv[1:])
        entry = (heading(started, ("torch", "nuscenes-devkit"), load, command) + "\n\n" + markdown + "\n\n"
                 + "\n".join(f"- {line}" for line in lines)
                 + f"\n- held-out: {args.heldout} (seed 9000 logs), {scores[arms[0][0]].frames} frames, "
                 f"{scores[arms[0][0]].ground_truth} boxes; generating the clips took {seconds:.0f} s\n")
        record("## augment: the detector trained with generated clips",
               "benchmarks/augment.py: real-only arms (equal epochs, equal steps) against real + generated, "
               "scored on held-out logs by nuscenes-devkit's detection algorithm.\n", entry)


if __name__ == "__main__":
    main()
