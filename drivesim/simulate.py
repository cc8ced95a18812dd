"""Rollouts: a scenario turned into multi-camera video by a trained world model, chunk by chunk.

A scenario's frames are cut into windows of the length the model was trained on (1 + 4k frames);
the first window starts from noise (or from a stored frame, when the scenario names start frames),
each next one from the last generated frame, re-encoded by the tokenizer and given clean. Every
window has its own conditions: the cameras, the ego's path in the window's first ego frame, the
prompt and the layout maps of its frames. The result is a Rollout (drivesim/rollout.py), the video
with the scenario's labels. The two baselines a model must beat live here too: the start frame held
still, and redrawn at every frame's pose.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from drivesim.errors import ConfigError
from drivesim.geometry import compose, invert
from drivesim.rollout import Rollout
from drivesim.scenario import MAX_SEED
from drivesim.wfm.conditions import Conditions
from drivesim.wfm.flow import is_int, is_number
from drivesim.wfm.generate import SamplingConfig
from drivesim.wfm.pipeline import resolve_device

__all__ = ["INITS", "RolloutConfig", "hold_start_frame", "reproject_start_frame", "rollout"]

INITS = ("auto", "noise", "reprojected", "painted")  # what every chunk's sampling starts from (see rollout)


# ---------------------------------------------------------------- one chunk's inputs


def _start_video(scenario, rig, device) -> torch.Tensor:
    """The scenario's start frame from its store, per camera of the rig, as video [1, V, 1, 3, H, W]."""
    import torch.nn.functional as F

    from drivesim.data.store import open_clip, open_store

    start = scenario.start_frames
    where = f"{scenario.source}: start_frames"
    root = open_store(scenario.start_store())
    cameras = list(root.attrs.get("settings", {}).get("cameras", []))
    if start.clip not in root["clips"]:
        raise ConfigError(f"{where}: store {start.store} has no clip {start.clip!r}")
    group = open_clip(root, start.clip)  # a damaged chunk: DataError naming store, clip and array
    missing = [name for name in rig.names if name not in cameras]
    if missing:
        raise ConfigError(f"{where}: store {start.store} has no camera {', '.join(missing)}")
    if not 0 <= start.frame < group["frames"].shape[0]:
        raise ConfigError(f"{where}: frame {start.frame} is outside clip {start.clip!r} "
                          f"({group['frames'].shape[0]} frames)")
    images = np.stack([group["frames"][start.frame, cameras.index(name)] for name in rig.names])  # [V, H, W, 3]
    video = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    video = F.interpolate(video, size=(rig.height, rig.width), mode="bilinear", antialias=True, align_corners=False)
    video = video.clamp(0, 255) / 127.5 - 1
    return video[None, :, None].to(device)  # [1, V, 1, 3, H, W]


def _layout_maps(rig, layout_frames: list, drawn: np.ndarray | None = None, kind: str = "sparse") -> np.ndarray:
    """The layout maps [V, F, C, H, W] of `layout_frames`; `drawn` [V, K, C, H, W]: those of the first K frames,
    already drawn (the frames a chunk shares with the one before: each frame's maps are its own, so they are
    the same maps), so only the rest are rendered. `kind`: the maps the model takes (scene_maps.KINDS)."""
    from drivesim.scene_maps import render_maps

    if drawn is None or not drawn.shape[1]:
        return render_maps(kind, rig, layout_frames)
    if drawn.shape[1] >= len(layout_frames):
        return np.ascontiguousarray(drawn[:, :len(layout_frames)])
    return np.concatenate([drawn, render_maps(kind, rig, layout_frames[drawn.shape[1]:])], axis=1)


def _chunk_conditions(scenario, rig, times: np.ndarray, maps: np.ndarray | None, device) -> Conditions:
    """The model's conditions for one window of frames at `times` (clamped to the scenario's end), with the
    layout maps `maps` [V, F, C, H, W] of those frames (None: no layout)."""
    poses = scenario.world_from_ego(times)
    ego0_from_ego = compose(invert(poses[0]), poses)
    layout = None if maps is None else torch.from_numpy(np.ascontiguousarray(maps))[None].to(device)
    return Conditions(intrinsics=torch.tensor(rig.intrinsics, dtype=torch.float32)[None].to(device),
                      ego_from_cam=torch.tensor(rig.ego_from_cam, dtype=torch.float32)[None].to(device),
                      ego0_from_ego=torch.tensor(ego0_from_ego, dtype=torch.float32)[None].to(device),
                      captions=[scenario.prompt], layout=layout)


@dataclass
class RolloutConfig:
    """How a scenario is rolled out. validate() holds every limit; its errors name these fields (the CLI
    maps them to its flags).

    The defaults are the best measured sampling settings for the shipped weights (MODEL_CARD.md) and the one
    place they live: `drivesim generate`'s flags, --scenarios batches, the editor's Render and `make demo` all
    take them from here."""

    steps: int = 2                       # sampler steps per chunk
    guidance: float = 1.0                # text and layout guidance alike (1: none)
    seed: int | None = None              # None: the scenario's seed; chunk i samples with seed + i
    context: int = 1                     # latent frames a chunk takes, clean, from the one before
    frames: int | None = None            # video frames per chunk (1 + 4k); None: the trained chunk length
    size: tuple[int, int] | None = None  # (width, height); None: the trained size
    method: str = "euler"                # the sampler (flow.METHODS)
    use_layout: bool = True              # False withholds the layout maps (the ablation)
    temperature: float = 0.0             # scale of the starting noise (1: the model's distribution; 0: its mean)
    # What every chunk starts from: reprojected redraws the scenario's start frame at the chunk's ego poses
    # (drivesim/wfm/reproject.py), noised to flow time `strength`; painted paints the chunk's dense scene maps
    # with the palette shipped beside the weights (drivesim/paint_baseline.py), noised to `paint_strength`;
    # auto: reprojected with start frames, else painted where the weights have a palette, else noise.
    init: str = "auto"
    strength: float = 0.3
    paint_strength: float = 0.5  # the best of 0.5-1 on val clips (benchmarks/tune_paint_strength.py, MODEL_CARD.md)

    def validate(self) -> RolloutConfig:
        if not is_number(self.guidance) or not math.isfinite(self.guidance) or self.guidance < 0:
            raise ConfigError(f"guidance must be a finite number >= 0, got {self.guidance!r}")
        if self.seed is not None and (not is_int(self.seed) or not 0 <= self.seed < MAX_SEED):
            raise ConfigError(f"seed must be an integer from 0 to 2**62-1, got {self.seed!r}")
        if not is_int(self.context) or self.context < 1:
            raise ConfigError(f"context must be an integer >= 1 (latent frames), got {self.context!r}")
        if self.frames is not None and not is_int(self.frames):
            raise ConfigError(f"frames must be an integer (video frames per chunk), got {self.frames!r}")
        if self.size is not None and not (isinstance(self.size, (tuple, list)) and len(self.size) == 2
                                          and all(is_int(side) and side > 0 for side in self.size)):
            raise ConfigError(f"size must be (width, height), two positive integers, got {self.size!r}")
        if self.init not in INITS:
            raise ConfigError(f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        if not isinstance(self.use_layout, bool):
            raise ConfigError(f"use_layout must be True or False, got {self.use_layout!r}")
        # The sampler's own limits (steps, method, temperature, start) in one place: SamplingConfig.
        SamplingConfig(steps=self.steps, method=self.method, temperature=self.temperature,
                       start=self.strength).validate(names={"start": "strength"})
        SamplingConfig(steps=self.steps, method=self.method, temperature=self.temperature,
                       start=self.paint_strength).validate(names={"start": "paint_strength"})
        return self

    def starting_from(self, scenario, palette: bool = False) -> str:
        """noise, reprojected or painted, for this scenario and weights that have a palette or not; ConfigError
        when reprojected has no start frame to redraw, or painted no palette to paint with."""
        if self.init != "auto":
            init = self.init
        else:
            init = "reprojected" if scenario.start_frames is not None else "painted" if palette else "noise"
        if init == "reprojected" and scenario.start_frames is None:
            raise ConfigError(f"{scenario.source}: init reprojected redraws the scenario's start frame, and it "
                              "names no start_frames (add them, or start from noise)")
        if init == "painted" and not palette:
            raise ConfigError("init painted paints the scenario's dense scene maps with the palette beside the "
                              "weights, "
                              "and these weights have none (palette.json: drivesim pack-weights --palette)")
        return init


@dataclass
class _Chunks:
    """Where a rollout's chunks fall: `window` video frames each, starting at `starts`, sharing `overlap`
    frames with the chunk before."""

    window: int
    overlap: int
    starts: list[int]
    latent_frames: int

    @classmethod
    def plan(cls, total: int, window: int, context: int, temporal_compression: int) -> _Chunks:
        tc = temporal_compression
        if window < 1 + tc or (window - 1) % tc:
            raise ConfigError(f"frames per chunk must be 1 + {tc}k with k >= 1, got {window}")
        latent_frames = 1 + (window - 1) // tc
        if not 1 <= context < latent_frames:
            raise ConfigError(f"context must be from 1 to {latent_frames - 1} latent frames, got {context!r}")
        overlap = 1 + tc * (context - 1)  # video frames a window shares with the one before
        starts = [0]
        while starts[-1] + window < total:
            starts.append(starts[-1] + window - overlap)
        return cls(window, overlap, starts, latent_frames)


def _rig_for(scenario, pipeline, size: tuple[int, int] | None):
    """The scenario's rig at the rollout's size: `size`, else the size the model was trained at."""
    width, height = size or pipeline.trained_size()
    s, patch = pipeline.config.spatial_compression, pipeline.config.patch
    if width % (s * patch[2]) or height % (s * patch[1]):
        raise ConfigError(f"image size {width}x{height} must be a multiple of {s * patch[2]}x{s * patch[1]} "
                          "(tokenizer compression times the model's patch)")
    return scenario.rig.resized(width, height)


def rollout(scenario, pipeline, config: RolloutConfig | None = None, *, device: str | torch.device | None = None,
            progress: bool = True, on_chunk: Callable[[int, int], None] | None = None) -> Rollout:
    """Generate the scenario's video with a WorldModelPipeline, chunk after chunk (RolloutConfig says how);
    each chunk after the first starts from the last `context` latent frames of the one before, re-encoded and
    given clean, and the first from the scenario's start frame when it has one. The same inputs and seed give
    the same video. on_chunk(done, total) is called after every chunk (the editor's progress bar; an exception
    it raises stops the rollout there)."""
    from tqdm import tqdm

    config = (config or RolloutConfig()).validate()
    init = config.starting_from(scenario, pipeline.palette is not None)
    seed = scenario.seed if config.seed is None else config.seed
    if device is not None:
        pipeline.to(resolve_device(device))
    device = pipeline.device
    model_config = pipeline.config
    rig = _rig_for(scenario, pipeline, config.size)
    chunks = _Chunks.plan(scenario.num_frames, config.frames or pipeline.frames, config.context,
                          model_config.temporal_compression)
    layout = pipeline.model.layout is not None and config.use_layout
    sampling = dict(steps=config.steps, method=config.method, temperature=config.temperature,
                    start={"reprojected": float(config.strength),
                           "painted": float(config.paint_strength)}.get(init, 1.0),
                    **pipeline.guidance_scales(config.guidance, layout))
    s = model_config.spatial_compression
    shape = (1, len(rig.cameras), chunks.latent_frames, model_config.latent_channels, rig.height // s, rig.width // s)
    given = _start_video(scenario, rig, device) if scenario.start_frames is not None else None
    pieces: list[torch.Tensor] = []  # decoded video [V, T, 3, H, W] per chunk, overlap dropped
    video = None                     # the chunk before's, [1, V, window, 3, H, W]
    maps = None                      # the chunk before's layout maps, [V, window, C, H, W]
    end_time = (scenario.num_frames - 1) / scenario.fps
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    with torch.no_grad(), autocast:
        for index, start in enumerate(tqdm(chunks.starts, desc="rollout", unit="chunk", disable=not progress)):
            times = np.minimum(np.arange(start, start + chunks.window) / scenario.fps, end_time)
            frames = scenario.layout_frames(times) if layout else None  # once: the maps and the redrawing
            if layout:  # the frames shared with the chunk before keep the maps drawn for it
                maps = _layout_maps(rig, frames, None if maps is None else maps[:, maps.shape[1] - chunks.overlap:],
                                    model_config.layout_maps)
            conditions = _chunk_conditions(scenario, rig, times, maps, device)
            clean_video = given if video is None else video[:, :, -chunks.overlap:]
            k = 0 if clean_video is None else (1 if video is None else config.context)
            clean_latents = None
            if k:
                clean_latents = torch.zeros(shape, device=device)
                clean_latents[:, :, :k] = pipeline.encode_views(clean_video)
            guess = None
            if init == "reprojected":
                guess = pipeline.encode_views(_reprojected(scenario, rig, given, times, frames))
            elif init == "painted":
                guess = pipeline.encode_views(_painted(scenario, rig, times, pipeline.palette, device))
            sampled = pipeline.sample(conditions, shape, SamplingConfig(clean_frames=k, seed=seed + index, **sampling),
                                      clean_latents=clean_latents, init=guess)
            video = pipeline.decode_views(sampled).float().clamp(-1, 1)  # [1, V, window, 3, H, W]
            pieces.append(video[0] if index == 0 else video[0, :, chunks.overlap:])
            if on_chunk is not None:
                on_chunk(index + 1, len(chunks.starts))
    generated = torch.cat(pieces, dim=1)[:, :scenario.num_frames]  # [V, F, 3, H, W]
    return Rollout.labelled(scenario, rig, _pixels(generated).permute(1, 0, 3, 4, 2).cpu().numpy())


def _painted(scenario, rig, times: np.ndarray, palette, device) -> torch.Tensor:
    """The dense scene maps of `times` painted with `palette` (paint_baseline.py): [1, V, F, 3, H, W] in [-1, 1]."""
    from drivesim.paint_baseline import paint
    from drivesim.scene_maps import render_scene

    pixels = paint(render_scene(rig, scenario.layout_frames(times)), palette)  # [V, F, H, W, 3] uint8
    video = torch.from_numpy(pixels).permute(0, 1, 4, 2, 3).float() / 127.5 - 1
    return video[None].to(device)


def _reprojected(scenario, rig, given: torch.Tensor, times: np.ndarray, layout_frames: list | None) -> torch.Tensor:
    """The start frame `given` [1, V, 1, 3, H, W] redrawn at the ego poses of `times`: [1, V, F, 3, H, W].

    With the layout (`layout_frames`, the scenario's at `times`), depth comes from the scenario's boxes and the
    walls raised on its road edges
    (reproject.scene_depth), then the ground, and a pixel on an agent's box moves with that agent from
    where it was at the start; without (the layout withheld), the ground alone and a still world."""
    from drivesim.wfm.reproject import object_motion, reproject, scene_depth

    poses = scenario.world_from_ego(times)
    source_pose = scenario.world_from_ego(np.zeros(1))[0]
    source_from_target = compose(invert(source_pose), poses)
    depth = objects = motion = None
    if layout_frames is not None:
        boxes = [frame.boxes for frame in layout_frames]
        # layout_frames lists the boxes of the agents present, in the scenario's order
        present = np.array([agent.present(times) for agent in scenario.agents], bool).reshape(-1, len(times))
        at_start = np.array([agent.present(np.zeros(1))[0] for agent in scenario.agents], bool)
        start_boxes = dict(zip(np.flatnonzero(at_start), scenario.layout_frames(np.zeros(1))[0].boxes))
        source_boxes = [[start_boxes.get(a) for a in np.flatnonzero(present[:, f])] for f in range(len(times))]
        hit, which = scene_depth(rig.intrinsics, rig.ego_from_cam, rig.width, rig.height, poses,
                                 list(scenario.road.road_edges), boxes)
        depth = torch.from_numpy(np.where(np.isfinite(hit), hit, 0.0)).float()
        objects = torch.from_numpy(which)
        motion = torch.from_numpy(object_motion(poses, source_pose, boxes, source_boxes)).float()
    video, _ = reproject(given[0, :, 0].float().cpu(), torch.tensor(rig.intrinsics, dtype=torch.float32),
                         torch.tensor(rig.ego_from_cam, dtype=torch.float32),
                         torch.tensor(source_from_target, dtype=torch.float32), depth, objects=objects,
                         object_motion=motion)
    return video.transpose(0, 1)[None].to(given.device)


def reproject_start_frame(scenario, size: tuple[int, int], use_layout: bool = True, chunk: int = 8) -> Rollout:
    """The geometry-only baseline: the scenario's start frame redrawn at every frame's ego pose (see
    _reprojected; use_layout=False: on the flat ground alone), at size = (width, height), with the
    scenario's labels. What a world model adds must show against this."""
    if scenario.start_frames is None:
        raise ConfigError(f"{scenario.source}: no start_frames to redraw (the baseline reprojects a real frame)")
    width, height = size
    rig = scenario.rig.resized(width, height)
    given = _start_video(scenario, rig, torch.device("cpu"))
    times = scenario.frame_times()
    pieces = []
    for first in range(0, len(times), chunk):  # a chunk at a time: every pixel looks into every camera
        window = times[first:first + chunk]
        pieces.append(_reprojected(scenario, rig, given, window, scenario.layout_frames(window) if use_layout
                                   else None)[0])
    video = torch.cat(pieces, dim=1)  # [V, F, 3, H, W]
    return Rollout.labelled(scenario, rig, _pixels(video).permute(1, 0, 3, 4, 2).numpy())


def hold_start_frame(scenario, size: tuple[int, int]) -> Rollout:
    """The baseline a world model must beat: the scenario's start frame (its start_frames) held for every
    frame, at size = (width, height), with the scenario's labels. The video does not move at all."""
    if scenario.start_frames is None:
        raise ConfigError(f"{scenario.source}: no start_frames to hold (the baseline repeats a real frame)")
    width, height = size
    rig = scenario.rig.resized(width, height)
    start = _start_video(scenario, rig, torch.device("cpu"))[0, :, 0]  # [V, 3, H, W] in [-1, 1]
    pixels = _pixels(start).permute(0, 2, 3, 1).numpy()
    return Rollout.labelled(scenario, rig, np.repeat(pixels[None], scenario.num_frames, axis=0))


def _pixels(video: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> uint8 0..255."""
    return ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
