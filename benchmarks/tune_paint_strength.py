"""Choose the default --paint-strength on validation clips (never on the held-out logs the model card reports).

    .venv/bin/python benchmarks/tune_paint_strength.py --checkpoint weights/drivesim-small --store out/dense-store \
        [--clips 8] [--strengths 0.5 0.7 0.9 1.0]

Each of the first --clips clips of the store's val split becomes a scenario with its start frame withheld
(Text2World) and is rendered with every strength (init painted; 1.0 is pure noise); printed: mean PSNR and
SSIM against the clip's real frames, beside the painted maps alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import table  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="weights with a palette (pack-weights --palette)")
    parser.add_argument("--store", type=Path, required=True, help="a store whose val split no training step saw")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.5, 0.7, 0.9, 1.0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from drivesim.data.dataset import ClipDataset
    from drivesim.paint_baseline import paint_rollout
    from drivesim.scenario import from_clip
    from drivesim.simulate import RolloutConfig, rollout
    from drivesim.tokenizer.metrics import psnr, ssim
    from drivesim.train.distributed import flush_denormals
    from drivesim.wfm.pipeline import WorldModelPipeline

    flush_denormals()
    pipeline = WorldModelPipeline.from_pretrained(args.checkpoint, "cpu")
    if pipeline.palette is None:
        sys.exit(f"{args.checkpoint} has no palette.json: pack it with --palette")
    size = pipeline.trained_size()
    clips = ClipDataset(args.store, split="val", size=size, random_crop=False)
    scores: dict[str, list[tuple[float, float]]] = {}
    for clip_id in clips.clip_ids[:args.clips]:
        scenario = from_clip(args.store, clip_id)
        alone = dataclasses.replace(scenario, start_frames=None)
        real = clips.read_window(clip_id, 0, list(range(len(scenario.rig.cameras))))["video"]  # [V, F, 3, H, W]
        variants = {"paint only": paint_rollout(alone, pipeline.palette, size)}
        for strength in args.strengths:
            config = RolloutConfig(init="painted", paint_strength=strength, seed=0)
            variants[f"paint_strength {strength:g}"] = rollout(alone, pipeline, config, progress=False)
        for name, result in variants.items():
            video = torch.from_numpy(result.video).permute(1, 0, 4, 2, 3).float() / 127.5 - 1  # [V, F, 3, H, W]
            frames = min(video.shape[1], real.shape[1])
            generated, truth = video[:, 1:frames].flatten(0, 1), real[:, 1:frames].flatten(0, 1)
            scores.setdefault(name, []).append((float(psnr(generated, truth).mean()),
                                                float(ssim(generated[:, :, None], truth[:, :, None]).mean())))
        print(f"{clip_id}: " + ", ".join(f"{name} {scores[name][-1][0]:.2f}" for name in variants), flush=True)
    rows = [("", "PSNR dB", "SSIM")]
    for name, values in scores.items():
        mean = np.mean(values, axis=0)
        rows.append((name, f"{mean[0]:.2f}", f"{mean[1]:.3f}"))
    print(table(rows)[0])
    return 0


if __name__ == "__main__":
    sys.exit(main())
