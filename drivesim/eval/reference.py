"""PSNR, SSIM and layout agreement of a rollout against the ground-truth clip it starts from.

A scenario made from a stored clip (`drivesim scenario from-clip`) names it in `start_frames`:
generated frame i is compared with frame start_frames.frame + i of that clip, camera by camera (the
cameras both have), the reference resized to the generated size with PIL bilinear when the sizes
differ. Layout agreement splits the error by the scenario's boxes as the layout renderer draws them:
PSNR inside the boxes (are the cars where the scenario put them?) against PSNR outside (the rest of
the scene). Without a reference clip the values are NaN and "note" says why; these metrics never
raise for a missing reference.

Frames the model was given rather than generated (`given_frames`: the start frame) are left out by
default: they match the reference by construction, and counting them flatters a short rollout most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DrivesimError
from drivesim.eval.quality import finite_mean, masked_psnr, psnr, ssim
from drivesim.rollout import store_folder

__all__ = ["LayoutAgreement", "ReferenceClip", "ReferenceQuality", "given_frames", "reference_clip",
           "rollout_quality", "scored_frames"]


@dataclass(frozen=True)
class ReferenceClip:
    """A clip of a store, from one of its frames on: what a rollout is compared with."""

    store: Path
    clip: str
    frame: int


@dataclass(frozen=True)
class LayoutAgreement:
    """PSNR inside the scenario's boxes (are the cars where it put them?) and outside (the rest of the
    scene), and the share of pixels inside."""

    psnr_in_boxes: float
    psnr_outside_boxes: float
    box_fraction: float


_NOT_MEASURED = LayoutAgreement(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class ReferenceQuality:
    """PSNR and SSIM against the reference clip: the means and, from the same scores, their series per
    scored frame (mean over cameras) and per camera; NaN, with `note` saying why, when there is none."""

    psnr: float
    ssim: float
    layout: LayoutAgreement
    note: str | None
    reference: ReferenceClip | None = None
    cameras: list[str] = field(default_factory=list)
    frames: int = 0                  # scored
    given_frames: int = 0
    scored: str | None = None        # which frames were scored, in words
    size: list[int] | None = None    # [W, H] of the rollout
    reference_size: list[int] | None = None
    frame_indices: list[int] = field(default_factory=list)
    psnr_per_frame: list[float] = field(default_factory=list)
    ssim_per_frame: list[float] = field(default_factory=list)
    psnr_per_camera: dict[str, float] = field(default_factory=dict)
    ssim_per_camera: dict[str, float] = field(default_factory=dict)


def reference_clip(scenario, rollout_folder: Path,
                   reference: str | os.PathLike | None) -> tuple[ReferenceClip | None, str | None]:
    """(the clip the rollout should reproduce, None) or (None, why there is none).

    The clip is the scenario's start_frames.clip: in `reference` when given, else in the store that
    start_frames names (as written, or relative to the rollout folder).
    """
    from drivesim.data.store import stored_clip_ids

    start = getattr(scenario, "start_frames", None)
    if start is None:
        return None, "the scenario has no start_frames: no ground-truth clip to compare with"
    if reference is not None:
        store = store_folder(Path(reference))
    else:
        candidates = [Path(start.store), Path(rollout_folder) / start.store]
        found = [c for c in candidates if (store_folder(c) / "zarr.json").is_file()]
        if not found:
            return None, (f"the scenario's start_frames store {start.store} is not there and no --reference "
                          "STORE was given")
        store = store_folder(found[0])
    if start.clip not in stored_clip_ids(store):
        return None, f"reference store {store} has no clip {start.clip!r} (the scenario's start_frames.clip)"
    return ReferenceClip(store, start.clip, int(start.frame)), None


def _resize(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 [N, h, w, 3] -> [N, height, width, 3] with PIL bilinear (unchanged when the size matches)."""
    from PIL import Image

    if frames.shape[1:3] == (height, width):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)) for f in frames])


def _box_masks(scenario, intrinsics: np.ndarray, ego_from_cam: np.ndarray, names: Sequence[str],
               times: np.ndarray, width: int, height: int) -> np.ndarray:
    """bool [F, V, H, W]: where the scenario's boxes are drawn at `times` (layout box colour > 0),
    for a rig with the rollout's own calibration at the generated size."""
    from drivesim.rigs import Camera, Rig
    from drivesim.render import render_layout

    rig = Rig("rollout", int(width), int(height),
              tuple(Camera(name, intrinsics[v], ego_from_cam[v]) for v, name in enumerate(names)))
    maps = render_layout(rig, scenario.layout_frames(times))  # [V, F, C, H, W]
    return np.transpose(maps[:, :, 0:3].max(axis=2) > 0, (1, 0, 2, 3))


def given_frames(scenario) -> int:
    """How many of a rollout's first frames the model was given instead of generating: 1 when the
    scenario names start_frames, else 0.

    `drivesim.simulate.rollout` gives the start frame as the first clean latent frame of the first
    chunk, and the tokenizer is causal (its first latent frame encodes frame 0 alone), so pixel frame 0
    is the given one; later chunks start from generated frames, which are fair to score. The baselines
    hold_start_frame and reproject_start_frame show the start frame as frame 0 as well.
    """
    return 1 if getattr(scenario, "start_frames", None) is not None else 0


def _span(indices: np.ndarray) -> str:
    """The frames as the report names them: frame 3, frames 1-6, frames 2-6 (step 2)."""
    if len(indices) == 1:
        return f"frame {indices[0]}"
    step = int(indices[1] - indices[0])
    return f"frames {indices[0]}-{indices[-1]}" + ("" if step == 1 else f" (step {step})")


def scored_frames(total: int, compared: int, frame_step: int, given: int,
                  include_given: bool = False) -> tuple[np.ndarray, str]:
    """(indices of the rollout frames to score, the sentence the report shows about them).

    Of the `total` frames the first `compared` have a reference frame; every `frame_step`-th of them
    is scored, less the first `given` (the frames the model was given) unless include_given.
    """
    indices = np.arange(0, max(compared, 0), frame_step)
    if not include_given:
        indices = indices[indices >= given]
    parts = [f"{_span(indices)} of {total}" if len(indices) else f"no frame of {total}"]
    if given:
        were = "frame 0 was" if given == 1 else f"frames 0-{given - 1} were"
        parts.append(f"{were} given to the model" + (" and is scored too" if include_given else ""))
    if 0 <= compared < total:
        parts.append(f"the reference clip has no frame for frames {compared}-{total - 1}")
    return indices, "; ".join(parts)


def _not_measured(note: str, **known) -> ReferenceQuality:
    return ReferenceQuality(math.nan, math.nan, _NOT_MEASURED, note, **known)


def _scores(generated: np.ndarray, truth: np.ndarray, masks: np.ndarray, cameras: list[str]) -> dict:
    """PSNR and SSIM means, per frame and per camera, and PSNR inside / outside the box masks."""
    psnr_values, ssim_values = psnr(generated, truth), ssim(generated, truth)   # [F, V]
    return {"psnr": finite_mean(psnr_values), "ssim": finite_mean(ssim_values),
            "psnr_per_frame": [finite_mean(row) for row in psnr_values],
            "ssim_per_frame": [finite_mean(row) for row in ssim_values],
            "psnr_per_camera": {c: finite_mean(psnr_values[:, v]) for v, c in enumerate(cameras)},
            "ssim_per_camera": {c: finite_mean(ssim_values[:, v]) for v, c in enumerate(cameras)},
            "layout": LayoutAgreement(masked_psnr(generated, truth, masks), masked_psnr(generated, truth, ~masks),
                                      float(masks.mean()))}


def rollout_quality(rollout_folder: str | os.PathLike, reference: str | os.PathLike | None = None,
                    frame_step: int = 1, include_given: bool = False) -> ReferenceQuality:
    """PSNR, SSIM and layout agreement of a rollout folder against its ground-truth clip (see `reference_clip`).

    Every `frame_step`-th generated frame i is compared with reference frame start_frames.frame + i, over
    the frames both have and the cameras both have, less the frames the model was given (`given_frames`)
    unless include_given. PSNR and SSIM are scored once per frame and camera; the means, the per-frame
    and per-camera series and the layout agreement all come from those scores. A missing or unusable
    reference gives NaN and a note (`ReferenceQuality.note`), never an error.
    """
    from drivesim.data.store import open_clip, open_store, read_clip, stored_clip_ids
    from drivesim.scenario import load

    if isinstance(frame_step, bool) or not isinstance(frame_step, (int, np.integer)) or frame_step < 1:
        raise ConfigError(f"frame_step must be an integer >= 1, got {frame_step!r}")
    folder = Path(rollout_folder)
    try:
        scenario = load(folder / "scenario.yaml")
        found, why = reference_clip(scenario, folder, reference)
    except DrivesimError as error:
        return _not_measured(f"no reference: {error}")
    if found is None:
        return _not_measured(f"no reference: {why}")
    store = store_folder(folder)
    root = open_store(store)
    clip = read_clip(root, stored_clip_ids(store)[0], ("frames", "intrinsics", "ego_from_cam", "timestamps"))
    generated_cameras = list(clip["attrs"].get("cameras") or root.attrs["settings"]["cameras"])
    reference_root = open_store(found.store)
    group = open_clip(reference_root, found.clip)
    reference_cameras = list(dict(group.attrs).get("cameras") or reference_root.attrs["settings"]["cameras"])
    cameras = [c for c in generated_cameras if c in reference_cameras]
    if not cameras:
        return _not_measured(f"no reference: clip {found.clip!r} of {found.store} has none of the rollout's cameras "
                             f"({', '.join(generated_cameras)})", reference=found)
    count = min(len(clip["frames"]), group["frames"].shape[0] - found.frame)
    given = given_frames(scenario)
    indices, scored = scored_frames(len(clip["frames"]), count, frame_step, given, include_given)
    if count <= 0:
        return _not_measured(f"no reference: clip {found.clip!r} has no frames from frame {found.frame} on",
                             reference=found)
    if len(indices) == 0:
        return _not_measured(f"nothing to score: {scored}", reference=found, given_frames=given, scored=scored)
    views = [generated_cameras.index(c) for c in cameras]
    generated = clip["frames"][indices][:, views]                            # [F, V, H, W, 3]
    height, width = generated.shape[2:4]
    stored = group["frames"][found.frame:found.frame + count][indices]         # [F, V', h, w, 3]
    truth = np.stack([_resize(stored[:, reference_cameras.index(c)], width, height) for c in cameras], axis=1)
    times = clip["timestamps"][indices].astype(np.float64) / 1e6
    masks = _box_masks(scenario, clip["intrinsics"][views].astype(np.float64),
                       clip["ego_from_cam"][views].astype(np.float64), cameras, times, width, height)
    notes = [] if masks.any() else ["no box of the scenario is in view: layout PSNR in boxes is NaN"]
    rates = float(clip["attrs"].get("fps") or 0), float(dict(group.attrs).get("fps") or 0)
    if all(rates) and abs(rates[0] - rates[1]) > 1e-6:
        notes.append(f"the rollout runs at {rates[0]:g} fps, the reference clip at {rates[1]:g} fps: "
                     "frames are still compared one to one")
    return ReferenceQuality(**_scores(generated, truth, masks, cameras), note="; ".join(notes) or None,
                            reference=found, cameras=cameras, frames=int(len(indices)), given_frames=given,
                            scored=scored, size=[int(width), int(height)],
                            reference_size=[int(stored.shape[3]), int(stored.shape[2])],
                            frame_indices=indices.tolist())
