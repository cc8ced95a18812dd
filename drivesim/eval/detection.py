"""Controllability as the field measures it: a camera 3D detector (drivesim/perception) run on the generated
frames, scored by nuscenes-devkit's detection algorithm against the boxes the scenario asked for, beside the
same detector on the real frames of the clips the scenarios come from. The ratio of the two (generated over
real, NDS and mAP) is the figure MagicDrive and Panacea report (Panacea: NDS 32.1 against 46.9, 68%).

The two sides are scored on the same frames: frame i of a rollout against frame start_frames.frame + i of
its clip, over the frames both have, every frame_step-th, less the frames the model was given (the start
frame, which is real) unless include_given. Rollouts without a real clip are scored on their own (the
`generated` score) but left out of the ratio, which compares like with like."""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from drivesim.errors import ConfigError, DrivesimError
from drivesim.perception.score import DetectionScore

__all__ = ["Controllability", "SHIPPED_DETECTOR", "controllability", "resolve_detector"]

SHIPPED_DETECTOR = Path(__file__).resolve().parent.parent.parent / "weights" / "detector-small"


@dataclass
class Controllability:
    """The detector's scores on generated and on real frames, and their ratios (NaN where not measured)."""

    detector: str                            # the weights' folder
    generated: DetectionScore | None         # every scored rollout frame
    paired: DetectionScore | None            # the generated frames that have a real counterpart
    real: DetectionScore | None              # those counterparts
    nds_ratio: float = math.nan              # paired NDS / real NDS
    map_ratio: float = math.nan
    rollouts: int = 0                        # rollouts detected on
    paired_rollouts: int = 0                 # of them, with a real clip
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """The result in a few lines of text (the summary table's foot, the HTML report's section)."""
        if self.generated is None:
            return [f"detection: {note}" for note in self.notes] or ["detection: not measured"]
        out = [f"detection ({self.detector}), generated frames of {self.rollouts} rollout(s): "
               f"{_scores(self.generated)}"]
        if self.real is not None:
            out.append(f"detection, real frames of the {self.paired_rollouts} clip(s) they start from: "
                       f"{_scores(self.real)}; generated on the same frames: {_scores(self.paired)}")
            out.append(f"controllability (generated / real): NDS {_shown(self.nds_ratio)}, "
                       f"mAP {_shown(self.map_ratio)}")
        return out + [f"detection: {note}" for note in self.notes]


def resolve_detector(value):
    """(a TrainedDetector or None, where it came from or why there is none) for `--detector`: a run or packed
    folder, "auto" (the shipped weights when present), "none", or an already loaded TrainedDetector."""
    from drivesim.perception.pretrained import TrainedDetector, load_detector

    if value is None or (isinstance(value, str) and value.lower() == "none"):
        return None, "detection not measured (--detector none)"
    if isinstance(value, TrainedDetector) or (hasattr(value, "detect") and hasattr(value, "size")):
        return value, type(value).__name__  # loaded already (or anything with TrainedDetector's interface)
    if isinstance(value, str) and value == "auto":
        if not (SHIPPED_DETECTOR / "config.yaml").is_file():
            return None, f"detection not measured: the shipped detector ({SHIPPED_DETECTOR}) is missing"
        value = SHIPPED_DETECTOR
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"--detector must be a folder, 'auto' or 'none', got {value!r}")
    return load_detector(value), str(value)


def _rollout_frames(entry, frame_step: int, include_given: bool) -> tuple[list[int], list[int] | None, str | None]:
    """(rollout frame indices to score, the real clip's matching indices or None, why there are none). With a real
    clip these are the frames PSNR/SSIM scored (reference.py chose them: both have them, less the given ones)."""
    from drivesim.eval.reference import scored_frames

    quality = entry.quality
    reference = quality.reference if quality else None
    if reference is not None:
        indices = list(quality.frame_indices)
    else:
        given = quality.given_frames if quality else 0
        indices = scored_frames(entry.frames, entry.frames, frame_step, given, include_given)[0].tolist()
    if not indices:
        return [], None, f"{entry.name}: no frame to detect on"
    real = None if reference is None else [i + reference.frame for i in indices]
    return [int(i) for i in indices], real, None


def _detect(detector, store, clip: str, frames: list[int], tag: str, progress: bool) -> list:
    """The detector's Frames (perception/score.py) on `frames` of one clip, tokens made unique by `tag`."""
    from drivesim.perception.frames import StoreFrames
    from drivesim.perception.score import detect_frames

    dataset = StoreFrames(store, None, detector.size, targets=False, boxes=True, frames=frames, clips=[clip])
    found = detect_frames(detector, dataset, progress=progress, desc=f"detect {tag}")
    return [dataclasses.replace(frame, token=f"{tag}:{frame.token}") for frame in found]


def controllability(rollouts: list, detector, source: str, frame_step: int = 1, include_given: bool = False,
                    progress: bool = False) -> Controllability:
    """Detection mAP/NDS on the rollouts' generated frames and on their clips' real frames (module docstring).
    rollouts: report.ClipEntry of each scored rollout (its store, clip, frames and reference)."""
    from drivesim.perception.score import evaluate

    generated, paired, real, notes = [], [], [], []
    detected = with_real = 0
    for r, entry in enumerate(rollouts):
        try:
            indices, real_indices, why = _rollout_frames(entry, frame_step, include_given)
            if why:
                notes.append(why)
                continue
            found = _detect(detector, entry.store, entry.clip_id, indices, f"rollout{r}", progress)
            truth = None
            if real_indices is not None:
                reference = entry.quality.reference
                truth = _detect(detector, reference.store, reference.clip, real_indices, f"real{r}", progress)
        except DrivesimError as error:  # a frame size the detector cannot take, a damaged clip: say so, go on
            notes.append(f"{entry.name}: detection not measured: {error}")
            continue
        generated += found
        detected += 1
        if truth is not None:
            paired += found
            real += truth
            with_real += 1
    result = Controllability(source, evaluate(generated) if generated else None, None, None,
                             rollouts=detected, paired_rollouts=with_real, notes=notes)
    if real:
        result.paired = result.generated if len(paired) == len(generated) else evaluate(paired)
        result.real = evaluate(real)
        result.nds_ratio = _ratio(result.paired.nds, result.real.nds)
        result.map_ratio = _ratio(result.paired.mean_ap, result.real.mean_ap)
    elif generated:
        notes.append("no rollout starts from a real clip (start_frames): no real frames to compare with, no ratio")
    return result


def _ratio(generated: float, real: float) -> float:
    return generated / real if real > 0 and not math.isnan(generated) else math.nan


def _shown(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _scores(score: DetectionScore) -> str:
    nan = math.isnan
    return (f"mAP {'n/a' if nan(score.mean_ap) else f'{score.mean_ap:.3f}'}, "
            f"NDS {'n/a' if nan(score.nds) else f'{score.nds:.3f}'} ({score.frames} frames, "
            f"{score.ground_truth} boxes)")
