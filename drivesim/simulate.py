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
from pathlib import Path

import numpy as np
import torch

from drivesim.errors import ConfigError, DataError
from drivesim.geometry import compose, invert
from drivesim.rollout import Rollout
from drivesim.scenario import MAX_SEED

__all__ = ["INITS", "hold_start_frame", "load_world_model", "reproject_start_frame", "rollout"]

INITS = ("auto", "noise", "reprojected")  # what every chunk's sampling starts from (see rollout)


# ---------------------------------------------------------------- loading


def _device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"--device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available")
    return torch.device(device)


def _resolve_tokenizer(path: Path, document: dict) -> Path:
    data = document.get("data") or {}
    given = data.get("tokenizer") if isinstance(data, dict) else None
    if not given:
        raise ConfigError(f"--checkpoint {path}: its config names no data.tokenizer")
    tokenizer = Path(given)
    if not tokenizer.is_absolute() and (path / tokenizer).exists():
        return path / tokenizer  # packed weights (drivesim/weights.py) carry their tokenizer inside
    if not tokenizer.is_absolute() and not tokenizer.exists():
        # A run moved with its tokenizer beside it: try the paths relative to the run folder's parents.
        for base in (path.parent.parent.parent, path.parent.parent, path.parent):
            if (base / tokenizer).exists():
                return base / tokenizer
    if not tokenizer.exists():
        raise ConfigError(f"--checkpoint {path}: its tokenizer folder {given} (data.tokenizer) is missing")
    return tokenizer


def _non_persistent_names(model: torch.nn.Module) -> set[str]:
    return {f"{prefix}.{name}" if prefix else name for prefix, module in model.named_modules()
            for name in module._non_persistent_buffers_set}


def load_world_model(checkpoint_dir: str | Path, device: str | torch.device = "cpu"):
    """(WorldModel, tokenizer) from a `drivesim train wfm` run folder (its newest complete checkpoint) or
    one checkpoint folder, EMA weights when present, both in eval mode on `device`. The checkpoint's
    config is kept on the model as `model.checkpoint_config` (rollout reads data.frames and data.size)."""
    from drivesim.train.checkpoint import load_weights, resolve_checkpoint
    from drivesim.wfm.model import WorldModel, model_config
    from drivesim.wfm.task import load_tokenizer

    device = _device(device)
    path, document = resolve_checkpoint(Path(checkpoint_dir), "wfm", report=lambda text: None)
    tokenizer_path = _resolve_tokenizer(path, document)
    try:
        tokenizer = load_tokenizer(tokenizer_path)
    except ConfigError as error:
        raise ConfigError(f"--checkpoint {path}: its tokenizer {tokenizer_path}: {error}") from None
    section = dict(document.get("model") or {})
    for name in ("temporal_compression", "spatial_compression", "latent_channels"):
        section.setdefault(name, getattr(tokenizer.config, name))  # as WfmTask.build_model does
    try:
        model = WorldModel(model_config(section))
    except ConfigError as error:
        raise ConfigError(f"--checkpoint {path}: {error}") from None
    weights = path / ("ema.safetensors" if (path / "ema.safetensors").is_file() else "model.safetensors")
    try:
        state = load_weights(weights)
        # EMA files written before ema.persistent_buffers also hold non-persistent buffers: not weights.
        stale = _non_persistent_names(model)
        model.load_state_dict({name: tensor for name, tensor in state.items() if name not in stale})
    except RuntimeError as error:
        raise ConfigError(f"--checkpoint {weights} does not fit its config.yaml: "
                          f"{str(error).splitlines()[0]}") from None
    model.checkpoint_config = document
    return model.to(device).eval(), tokenizer.to(device).eval()


def _trained_size(model) -> tuple[int, int]:
    """(width, height) the model was trained at: data.size, else its store's frames."""
    data = (getattr(model, "checkpoint_config", None) or {}).get("data") or {}
    if data.get("size"):
        width, height = data["size"]
        return int(width), int(height)
    if data.get("store"):
        from drivesim.data.store import open_store

        try:
            settings = open_store(data["store"]).attrs.get("settings", {})
            return int(settings["width"]), int(settings["height"])
        except (DataError, KeyError):
            pass
    raise ConfigError("the checkpoint's config has no data.size and its data.store cannot be read: "
                      "pass size=(width, height)")


def _trained_frames(model) -> int:
    data = (getattr(model, "checkpoint_config", None) or {}).get("data") or {}
    return int(data.get("frames", 9))


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


def _chunk_conditions(scenario, rig, times: np.ndarray, layout: bool, device) -> dict:
    """The model's conditions for one window of frames at `times` (clamped to the scenario's end)."""
    from drivesim.render import render_layout

    poses = scenario.world_from_ego(times)
    ego0_from_ego = compose(invert(poses[0]), poses)
    conditions = {
        "intrinsics": torch.tensor(rig.intrinsics, dtype=torch.float32)[None].to(device),
        "ego_from_cam": torch.tensor(rig.ego_from_cam, dtype=torch.float32)[None].to(device),
        "ego0_from_ego": torch.tensor(ego0_from_ego, dtype=torch.float32)[None].to(device),
        "captions": [scenario.prompt],
    }
    if layout:
        maps = render_layout(rig, scenario.layout_frames(times))
        conditions["layout"] = torch.from_numpy(maps)[None].to(device)
    return conditions


def rollout(scenario, model, tokenizer, *, steps: int = 20, guidance: float = 1.0, seed: int | None = None,
            device: str | torch.device | None = None, progress: bool = True, context: int = 1,
            frames: int | None = None, size: tuple[int, int] | None = None, method: str = "euler",
            on_chunk: Callable[[int, int], None] | None = None, use_layout: bool = True,
            temperature: float = 1.0, init: str = "auto", strength: float = 0.5) -> Rollout:
    """Generate the scenario's video with the world model, in windows of `frames` video frames (default:
    data.frames of the checkpoint) at `size` = (width, height) (default: the training size); each window
    after the first starts from the last `context` latent frames of the one before, re-encoded and given
    clean. guidance scales text and layout alike (1: no guidance); seed defaults to the scenario's.
    The same inputs and seed give the same video. on_chunk(done, total) is called after every chunk
    (the editor's progress bar; an exception it raises stops the rollout there). use_layout=False withholds
    the layout maps from a model trained with them, as training's layout dropout does (an ablation).
    temperature scales the starting noise of every chunk (1: the model's distribution; lower: smoother).
    init="reprojected" starts every chunk from the scenario's start frame redrawn at the chunk's ego poses
    (reprojected, drivesim/wfm/reproject.py), noised to flow time `strength` (1: all noise, as init="noise";
    lower keeps more of the redrawn frame), so the picture moves with the ego from the first step; init="auto"
    does that when the scenario has start frames, else starts from noise."""
    from tqdm import tqdm

    from drivesim.tokenizer.model import flatten_views, unflatten_views
    from drivesim.wfm.generate import SamplingConfig, sample_latents

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"--steps must be an integer >= 1, got {steps!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ConfigError(f"--guidance must be a finite number >= 0, got {guidance!r}")
    if init not in INITS:
        raise ConfigError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "auto":
        init = "reprojected" if scenario.start_frames is not None else "noise"
    if init == "reprojected":
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            raise ConfigError(f"--strength must be a flow time in (0, 1], got {strength!r}")
        if scenario.start_frames is None:
            raise ConfigError(f"{scenario.source}: --init reprojected redraws the scenario's start frame, and it "
                              "names no start_frames (add them, or use --init noise)")
    seed = scenario.seed if seed is None else seed
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < MAX_SEED:
        raise ConfigError(f"seed must be an integer from 0 to 2**62-1, got {seed!r}")
    device = next(model.parameters()).device if device is None else _device(device)
    model.to(device)
    tokenizer.to(device)
    config = model.config
    tc, s = config.temporal_compression, config.spatial_compression
    window = _trained_frames(model) if frames is None else int(frames)
    if window < 1 + tc or (window - 1) % tc:
        raise ConfigError(f"frames per chunk must be 1 + {tc}k with k >= 1, got {window}")
    latent_frames = 1 + (window - 1) // tc
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context < latent_frames:
        raise ConfigError(f"context must be from 1 to {latent_frames - 1} latent frames, got {context!r}")
    width, height = size or _trained_size(model)
    unit = s * config.patch[1], s * config.patch[2]
    if width % unit[1] or height % unit[0]:
        raise ConfigError(f"image size {width}x{height} must be a multiple of {unit[1]}x{unit[0]} (tokenizer "
                          "compression times the model's patch)")
    rig = scenario.rig.resized(width, height)
    views = len(rig.cameras)
    layout = model.layout is not None and use_layout
    overlap = 1 + tc * (context - 1)  # video frames a window shares with the one before
    total = scenario.num_frames
    starts = [0]
    while starts[-1] + window < total:
        starts.append(starts[-1] + window - overlap)
    start_time = float(strength) if init == "reprojected" else 1.0
    sampling = dict(steps=steps, method=method, temperature=temperature, start=start_time,  # checked by sample_latents
                    text_scale=guidance if model.text is not None else 1.0,
                    layout_scale=guidance if layout else 1.0)
    shape = (1, views, latent_frames, config.latent_channels, height // s, width // s)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    given = _start_video(scenario, rig, device) if scenario.start_frames is not None else None
    pieces: list[torch.Tensor] = []   # decoded video [V, T, 3, H, W] per window, overlap dropped
    last_video = None                 # the window before's generated frames
    end_time = (total - 1) / scenario.fps
    with torch.no_grad(), autocast:
        for index, start in enumerate(tqdm(starts, desc="rollout", unit="chunk", disable=not progress)):
            times = np.minimum(np.arange(start, start + window) / scenario.fps, end_time)
            conditions = _chunk_conditions(scenario, rig, times, layout, device)
            clean_video = given if index == 0 else (last_video[:, :, -overlap:] if last_video is not None else None)
            k = 0 if clean_video is None else (1 if index == 0 else context)
            clean_latents = None
            if k:
                encoded = unflatten_views(tokenizer.encode(flatten_views(clean_video.float())), views)
                clean_latents = torch.zeros(shape, device=device)
                clean_latents[:, :, :k] = model.normalize(encoded.float())
            guess = None
            if init == "reprojected":
                warped = _reprojected(scenario, rig, given, times, layout)
                guess = model.normalize(unflatten_views(tokenizer.encode(flatten_views(warped.float())), views).float())
            sampled = sample_latents(model, conditions, shape,
                                     SamplingConfig(clean_frames=k, seed=seed + index, **sampling),
                                     clean_latents=clean_latents, init=guess)
            video = unflatten_views(tokenizer.decode(flatten_views(model.denormalize(sampled.float()))), views)
            video = video.float().clamp(-1, 1)  # [1, V, window, 3, H, W]
            pieces.append(video[0] if index == 0 else video[0, :, overlap:])
            last_video = video
            if on_chunk is not None:
                on_chunk(index + 1, len(starts))
    generated = torch.cat(pieces, dim=1)[:, :total]  # [V, F, 3, H, W]
    return Rollout.labelled(scenario, rig, _pixels(generated).permute(1, 0, 3, 4, 2).cpu().numpy())


def _reprojected(scenario, rig, given: torch.Tensor, times: np.ndarray, use_layout: bool) -> torch.Tensor:
    """The start frame `given` [1, V, 1, 3, H, W] redrawn at the ego poses of `times`: [1, V, F, 3, H, W].

    With the layout, depth comes from the scenario's boxes and the walls raised on its road edges
    (reproject.scene_depth), then the ground, and a pixel on an agent's box moves with that agent from
    where it was at the start; without (the layout withheld), the ground alone and a still world."""
    from drivesim.wfm.reproject import object_motion, reproject, scene_depth

    poses = scenario.world_from_ego(times)
    source_pose = scenario.world_from_ego(np.zeros(1))[0]
    source_from_target = compose(invert(source_pose), poses)
    depth = objects = motion = None
    if use_layout:
        boxes = [frame.boxes for frame in scenario.layout_frames(times)]
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
        pieces.append(_reprojected(scenario, rig, given, times[first:first + chunk], use_layout)[0])
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
