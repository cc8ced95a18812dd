"""Rollouts: a scenario turned into multi-camera video by a trained world model, chunk by chunk.

A scenario's frames are cut into windows of the length the model was trained on (1 + 4k frames);
the first window starts from noise (or from a stored frame, when the scenario names start frames),
each next one from the last generated frame, re-encoded by the tokenizer and given clean. Every
window has its own conditions: the cameras, the ego's path in the window's first ego frame, the
prompt and the layout maps of its frames. `Rollout.save` writes one MP4 per camera, a grid MP4 laid
out like the car's cameras, a contact sheet and a clip store holding the video with the scenario's
labels, which drivesim/data/dataset.py reads back.
"""

from __future__ import annotations

import contextlib
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from drivesim.errors import ConfigError, DataError
from drivesim.geometry import compose, invert
from drivesim.scenario import MAX_SEED

__all__ = ["Rollout", "load_world_model", "rollout", "write_mp4", "grid_layout", "hold_start_frame",
           "reproject_start_frame", "INITS", "ROLLOUT_STORE"]

ROLLOUT_STORE = "rollout.zarr"
INITS = ("auto", "noise", "reprojected")  # what every chunk's sampling starts from (see rollout)
# nuScenes-like rigs: the cameras as they sit on the car, seen from above with the front up.
_CAR_LAYOUT = (("FRONT_LEFT", "FRONT", "FRONT_RIGHT"), ("BACK_LEFT", "BACK", "BACK_RIGHT"))


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


# ---------------------------------------------------------------- the rollout


@dataclass(eq=False)
class Rollout:
    """A generated drive: video and the scenario's labels, per frame."""

    video: np.ndarray                 # uint8 [F, V, H, W, 3]
    scenario: object                  # the drivesim.scenario.Scenario it shows
    cameras: list[str]
    intrinsics: np.ndarray            # float32 [V, 3, 3] at the video's size
    ego_from_cam: np.ndarray          # float32 [V, 4, 4]
    world_from_ego: np.ndarray        # float64 [F, 4, 4]
    timestamps: np.ndarray            # int64 [F] microseconds from the start
    boxes: list[np.ndarray]           # per frame float32 [N, 7]: centre xyz, size wlh, yaw (world frame)
    categories: list[list[str]]       # per frame N nuScenes category names
    track_ids: list[list[str]]        # per frame N agent ids
    velocities: list[np.ndarray] = field(default_factory=list)  # per frame float32 [N, 2] world-frame vx, vy
    fps: float = 12.0

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    def save(self, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write the rollout into `out_dir` (new or empty, unless overwrite): <camera>.mp4 per camera,
        grid.mp4, contact_sheet.png, scenario.yaml and rollout.zarr (a clip store). Returns what was written.

        Everything goes to a folder beside `out_dir` that replaces it once whole: a run killed while writing
        leaves `out_dir` as it was (a later run clears the staging folder), never half a rollout; another
        process writing `out_dir` is a DataError (writer_lock)."""
        from drivesim.data.writer_lock import writer_lock

        out = Path(out_dir)
        with writer_lock(out, "out_dir"):  # re-entered when the caller holds it (drivesim generate)
            check_out_dir(out, overwrite)
            return self._save(out)

    def _save(self, out: Path) -> dict[str, Path]:
        from drivesim.data.synth import publish_folder, staging_folder
        from drivesim.scenario import save as save_scenario

        staging = staging_folder(out)
        names: dict[str, str] = {camera: f"{camera}.mp4" for camera in self.cameras}
        try:
            for v, camera in enumerate(self.cameras):
                write_mp4(staging / names[camera], self.video[:, v], self.fps)
            names["grid"] = write_mp4(staging / "grid.mp4", grid_frames(self.video, self.cameras), self.fps).name
            names["contact_sheet"] = contact_sheet(self, staging / "contact_sheet.png").name
            names["scenario"] = save_scenario(self.scenario, staging / "scenario.yaml").name
            names["store"] = self.write_store(staging / ROLLOUT_STORE).name
            publish_folder(staging, out)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return {key: out / name for key, name in names.items()}

    def clip_id(self) -> str:
        name = getattr(self.scenario, "name", "") or "rollout"
        return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)

    def write_store(self, path: Path) -> Path:
        """The rollout as one clip of a new clip store (drivesim/data/store.py), labels included."""
        from drivesim.data import store
        from drivesim.data.nuscenes import CATEGORIES, POLY_TYPES

        frames, views, height, width = self.video.shape[:4]
        settings = {"source": "drivesim-rollout", "width": int(width), "height": int(height), "frames": int(frames),
                    "fps": float(self.fps), "cameras": list(self.cameras)}
        root = store.create_store(path, settings, list(CATEGORIES), list(POLY_TYPES))
        rows, offsets, category, track = [], [0], [], []
        agent_ids = [agent.id for agent in getattr(self.scenario, "agents", ())]  # box_track indexes these
        for f in range(frames):
            boxes = np.asarray(self.boxes[f], np.float32).reshape(-1, 7)
            velocity = (np.asarray(self.velocities[f], np.float32).reshape(-1, 2) if self.velocities
                        else np.zeros((len(boxes), 2), np.float32))
            rows.append(np.concatenate([boxes, velocity, np.ones((len(boxes), 1), np.float32)], axis=1))
            offsets.append(offsets[-1] + len(boxes))
            category += [CATEGORIES.index(c) if c in CATEGORIES else CATEGORIES.index("other")
                         for c in self.categories[f]]
            track += [agent_ids.index(a) for a in self.track_ids[f]]
        road = getattr(self.scenario, "road", None)
        lines = [*(("lane", p) for p in getattr(road, "lanes", ())),
                 *(("road_edge", p) for p in getattr(road, "road_edges", ()))]
        points = [np.asarray(p, np.float32).reshape(-1, 3) for _, p in lines]
        clip = store.Clip(
            clip_id=self.clip_id(), frames=self.video, intrinsics=self.intrinsics, ego_from_cam=self.ego_from_cam,
            world_from_ego=self.world_from_ego, timestamps=self.timestamps,
            boxes=np.concatenate(rows) if rows else np.zeros((0, 10), np.float32),
            box_offsets=np.asarray(offsets, np.int32), box_category=np.asarray(category, np.int16),
            box_track=np.asarray(track, np.int32),
            polylines=np.concatenate(points) if points else np.zeros((0, 3), np.float32),
            poly_offsets=np.cumsum([0, *(len(p) for p in points)]).astype(np.int32),
            poly_type=np.asarray([POLY_TYPES.index(kind) for kind, _ in lines], np.int16),
            attrs={"source": "drivesim-rollout", "scene": getattr(self.scenario, "name", "") or "rollout",
                   "split": "val", "caption": getattr(self.scenario, "prompt", "") or "rollout",
                   "cameras": list(self.cameras), "fps": float(self.fps), "start": 0, "tracks": agent_ids})
        store.write_clip(path, clip)
        index = dict(root.attrs.get("clips", {}))
        index[clip.clip_id] = {"scene": clip.attrs["scene"], "split": "val", "caption": clip.attrs["caption"]}
        root.attrs.update({"clips": index})
        return path


def check_out_dir(out: Path, overwrite: bool) -> None:
    """--out must be new or an empty folder, or overwrite is given."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} is not empty; pass --overwrite to replace what is in it")


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
    return _labelled(scenario, rig, _pixels(generated).permute(1, 0, 3, 4, 2).cpu().numpy())


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
    return _labelled(scenario, rig, _pixels(video).permute(1, 0, 3, 4, 2).numpy())


def hold_start_frame(scenario, size: tuple[int, int]) -> Rollout:
    """The baseline a world model must beat: the scenario's start frame (its start_frames) held for every
    frame, at size = (width, height), with the scenario's labels. The video does not move at all."""
    if scenario.start_frames is None:
        raise ConfigError(f"{scenario.source}: no start_frames to hold (the baseline repeats a real frame)")
    width, height = size
    rig = scenario.rig.resized(width, height)
    start = _start_video(scenario, rig, torch.device("cpu"))[0, :, 0]  # [V, 3, H, W] in [-1, 1]
    pixels = _pixels(start).permute(0, 2, 3, 1).numpy()
    return _labelled(scenario, rig, np.repeat(pixels[None], scenario.num_frames, axis=0))


def _pixels(video: torch.Tensor) -> torch.Tensor:
    """Values in [-1, 1] -> uint8 0..255."""
    return ((video + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


def _labelled(scenario, rig, video: np.ndarray) -> Rollout:
    """A Rollout of `video` [F, V, H, W, 3] with the scenario's poses, boxes and tracks."""
    times = scenario.frame_times()[:video.shape[0]]
    layout_frames = scenario.layout_frames(times)
    present = [agent.present(times) for agent in scenario.agents]
    velocities = [agent.trajectory.velocity(times)[:, :2] for agent in scenario.agents]
    track_ids, speeds = [], []
    for f in range(len(times)):
        ids = [agent.id for a, agent in enumerate(scenario.agents) if present[a][f]]
        track_ids.append(ids)
        rows = [np.zeros(2) if agent.parked else velocities[a][f]
                for a, agent in enumerate(scenario.agents) if present[a][f]]
        speeds.append(np.array(rows, np.float32).reshape(-1, 2))
    return Rollout(video=video, scenario=scenario, cameras=list(rig.names),
                   intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
                   world_from_ego=scenario.world_from_ego(times), timestamps=np.round(times * 1e6).astype(np.int64),
                   boxes=[frame.boxes for frame in layout_frames],
                   categories=[frame.categories for frame in layout_frames],
                   track_ids=track_ids, velocities=speeds, fps=float(scenario.fps))


# ---------------------------------------------------------------- pictures and videos


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """uint8 [T, H, W, 3] -> an H.264 MP4 (odd sizes padded by one edge pixel: yuv420p needs even ones)."""
    import av

    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1:3]
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    if any(p[1] for p in pad):
        frames = np.pad(frames, pad, mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def grid_layout(cameras: list[str]) -> list[list[int | None]]:
    """Rows of view indices: FRONT_LEFT FRONT FRONT_RIGHT over BACK_LEFT BACK BACK_RIGHT when the rig has
    those six cameras (any prefix, e.g. CAM_), else one row in rig order."""
    def short(name: str) -> str:
        return name[4:] if name.upper().startswith("CAM_") else name

    names = {short(name).upper(): v for v, name in enumerate(cameras)}
    wanted = {n for row in _CAR_LAYOUT for n in row}
    if len(cameras) == 6 and wanted <= set(names):
        return [[names[n] for n in row] for row in _CAR_LAYOUT]
    return [list(range(len(cameras)))]


def grid_frames(video: np.ndarray, cameras: list[str]) -> np.ndarray:
    """[F, V, H, W, 3] -> [F, rows*H, columns*W, 3] laid out by grid_layout."""
    rows = grid_layout(cameras)
    blank = np.zeros_like(video[:, 0])
    return np.concatenate([np.concatenate([video[:, v] if v is not None else blank for v in row], axis=2)
                           for row in rows], axis=1)


def contact_sheet(result: Rollout, path: Path, count: int = 4) -> Path:
    """A PNG: `count` evenly spaced frames (rows) of every camera (columns), each row labelled with its time."""
    from PIL import Image, ImageDraw

    frames = sorted(set(np.linspace(0, result.num_frames - 1, min(count, result.num_frames)).round().astype(int)))
    height, width = result.video.shape[2:4]
    label = 14
    sheet = Image.new("RGB", (width * len(result.cameras), label + (height + label) * len(frames)), "black")
    draw = ImageDraw.Draw(sheet)
    for v, camera in enumerate(result.cameras):
        draw.text((v * width + 2, 1), camera, fill="white")
    for row, f in enumerate(frames):
        top = label + row * (height + label)
        draw.text((2, top + 1), f"t = {result.timestamps[f] / 1e6:.2f} s (frame {f})", fill="white")
        for v in range(len(result.cameras)):
            sheet.paste(Image.fromarray(result.video[f, v]), (v * width, top + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
