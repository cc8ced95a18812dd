"""`drivesim export`: generated rollouts written as a nuScenes v1.0 data set that nuscenes-devkit
loads (`NuScenes(version, dataroot=out)`), alone or merged into a copy of a real or synthetic one.

Each clip of each rollout's clip store (`rollout.zarr`, written by `Rollout.save`) becomes one scene
of its own log, written with `NuScenesWriter` as drivesim/data/synth/logs.py writes its scenes:

- Key frames every round(fps / 2) frames (every 6th at 12 fps: 2 Hz, as nuScenes), the frames
  between them as camera sweeps tied to the next key frame. The writer cannot tie frames after the
  last key frame to any sample, so they are dropped and counted in the manifest.
- Images are the rollout's frames as JPEG under samples/ and sweeps/. Each key frame also gets a
  LIDAR_TOP record pointing at an empty point cloud: there is no lidar in generated data, but the
  devkit's detection evaluation reads each sample's ego pose through its LIDAR_TOP record.
- Annotations are the rollout's boxes at key frames, one instance per track. They get
  num_lidar_pts = 1 although no point was measured: the devkit's detection evaluation drops boxes
  with no lidar or radar point, and every generated box is meant to count. Visibility is "4"
  (80-100 %): the rollout does not know occlusion. Attributes follow from the box's velocity.
  nuScenes has no velocity field: the devkit derives it from neighbouring annotations.
- Scenario worlds have their origin at the ego's start, so roads run to negative x and y; nuScenes
  maps put the global origin at the map image's lower left corner. Each scene is therefore shifted
  by a whole number of metres (`world_offset` in the manifest) so all it shows lies at x, y >= 50 m,
  and its map PNG (lanes and the ego's path drawn 3.5 m wide as drivable) lines up with the poses.
- Scene names are `gen-<clip id>`, made unique with `-2`, `-3`, ...; logs are at location
  "drivesim-generated". Timestamps start at 2026-01-01 plus one hour per scene.

With `merge_with`, the other set's files are hard-linked into --out (copied where a link is impossible)
and its tables merged with the generated ones (data/nuscenes_merge.py), the generated tokens from a
writer seed under which none collides with an existing one. `drivesim_manifest.json` lists the
generated scenes (with their rollout folder and scenario) and the merged ones. Everything is written
to a partial folder beside --out and moved into place at the end, so a failure leaves no half-written
--out.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivesim import geometry
from drivesim.data.nuscenes_merge import (TokenCollision, link_tree, merge_tables, read_tables, table_folders,
                                          write_table_files)
from drivesim.data.nuscenes_tables import START_US, TABLE_NAMES, NuScenesWriter, attribute_for, check_version
from drivesim.data.synth.side_files import MAP_RESOLUTION
from drivesim.data.store import open_store, read_clip, stored_clip_ids, verify_clip
from drivesim.errors import ConfigError, DataError
from drivesim.folders import check_out_dir, contains, overlaps, publish_folder
from drivesim.rollout import ROLLOUT_STORE, find_rollouts

__all__ = ["ExportConfig", "ExportResult", "export", "find_rollouts", "MANIFEST", "LOCATION"]

KEY_FRAME_HZ = 2
LOCATION = "drivesim-generated"
MANIFEST = "drivesim_manifest.json"
MANIFEST_FORMAT = "drivesim-export/1"
# As the synthetic logs (drivesim/data/synth/logs.py), not imported from there: that would load the renderer.
EGO_FROM_LIDAR = geometry.transform_from(np.array([0.943713, 0.0, 1.84023]), np.array([1.0, 0.0, 0.0, 0.0]))
SCENE_SPACING_US = 3_600_000_000  # an hour between scene starts: no two scenes overlap in time
MAP_MARGIN = 50.0  # metres of map kept on every side of what a scene shows
LANE_WIDTH = 3.5  # metres drawn as drivable around lanes and the ego's path
MAX_MAP_PIXELS = 8192  # per side (819 m at 0.1 m): what lies beyond is left off the map, not the tables
BASE_SEED = 0x6578706F7274  # "export": far from the small seeds `drivesim synth` is run with
SEED_TRIES = 100
JPEG_QUALITY = 92  # as drivesim synth


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class ExportConfig:
    """Options of `drivesim export`; `validate` names the option that is wrong."""

    rollouts: Path
    out: Path
    merge_with: Path | None = None
    version: str = "v1.0-mini"
    overwrite: bool = False

    def validate(self) -> list[Path]:
        """Check every option before anything is written; returns the rollout folders found."""
        check_version(self.version)
        folders = find_rollouts(self.rollouts)
        check_out_dir(Path(self.out), self.overwrite)  # a file, a non-empty folder, an unwritable place
        out = Path(self.out).resolve()
        if self.merge_with is not None:
            merge = Path(self.merge_with)
            if not merge.is_dir():
                raise ConfigError(f"--merge-with {merge}: no such folder")
            if not (merge / self.version / "scene.json").is_file():
                raise ConfigError(f"--merge-with {merge} is not a nuScenes data set: it has no "
                                  f"{self.version}/scene.json (--version {self.version})")
            if overlaps(out, merge.resolve()):
                raise ConfigError(f"--out {self.out} must lie outside --merge-with {merge}, and not contain it")
        for folder in folders:
            if contains(out, folder.resolve()):  # --overwrite would delete the rollouts being read
                raise ConfigError(f"--out {self.out} must not contain the rollout folder {folder} (--rollouts)")
        return folders


# ---------------------------------------------------------------- reading rollouts


@dataclass
class GeneratedScene:
    """One rollout clip as the tables need it; its images are already written."""

    name: str
    source: Path
    clip_id: str
    scenario: str
    caption: str
    cameras: list[str]
    width: int
    height: int
    intrinsics: np.ndarray      # [V, 3, 3]
    ego_from_cam: np.ndarray    # [V, 4, 4]
    world_from_ego: np.ndarray  # [F, 4, 4] shifted by `offset`, kept frames only
    timestamps: np.ndarray      # [F] microseconds, as exported
    key_frames: list[int]
    images: list[list[str]]     # [F][V] paths relative to the data root
    lidar: list[str]            # per key frame
    boxes: list[list[dict]]     # per key frame
    offset: np.ndarray          # [3] added to the rollout's world coordinates
    map_file: str
    dropped_frames: int = 0
    skipped_boxes: int = 0


def _scenario_name(folder: Path, clip_attrs: dict) -> str:
    """The scenario's own name from the rollout's scenario.yaml, else the clip's scene attribute."""
    import yaml

    path = folder / "scenario.yaml"
    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name") if path.is_file() else None
    except (yaml.YAMLError, OSError, AttributeError):
        name = None
    return str(name or clip_attrs.get("scene") or "")


def _open_rollout(folder: Path):
    """(root group, settings, clip ids) of one rollout folder; DataError naming --rollouts."""
    path = folder / ROLLOUT_STORE
    try:
        root = open_store(path)
    except DataError as error:
        raise DataError(f"--rollouts: {error}") from None
    settings = root.attrs.get("settings")
    if not isinstance(settings, dict) or not {"frames", "width", "height", "cameras"} <= set(settings):
        raise DataError(f"--rollouts: store {path}: settings missing or incomplete")
    clip_ids = stored_clip_ids(path)
    if not clip_ids:
        raise DataError(f"--rollouts: store {path} holds no clip")
    return root, settings, clip_ids


def _read_checked(root, path: Path, clip_id: str, settings: dict) -> dict:
    """The clip's arrays after store.verify_clip found nothing wrong (checksums, shapes, rigid poses)."""
    problems = verify_clip(root, clip_id, settings)
    if problems:
        raise DataError(f"--rollouts: store {path}: {problems[0]}")
    return read_clip(root, clip_id)


def key_frame_step(fps: float) -> int:
    """Frames from one key frame to the next: 2 Hz exactly when fps is even (6 at 12 fps)."""
    return max(1, round(fps / KEY_FRAME_HZ))


def world_offset(points_xy: np.ndarray) -> np.ndarray:
    """[3] whole metres that move every point to x, y >= MAP_MARGIN (the map's corner is the origin)."""
    low = np.min(points_xy, axis=0) if len(points_xy) else np.zeros(2)
    return np.array([*np.ceil(MAP_MARGIN - low), 0.0])


def annotation_fields(row: np.ndarray, offset: np.ndarray) -> dict:
    """A store box row [centre xyz, size wlh, yaw, vx, vy, flag] as nuScenes annotation fields
    (world frame: translation, size wlh, rotation wxyz about +z)."""
    yaw = np.float64(row[6])
    rotation = geometry.quaternion_from_matrix(geometry.matrix_from_yaw(yaw))
    return {"translation": (np.asarray(row[:3], np.float64) + offset).tolist(),
            "size": np.asarray(row[3:6], np.float64).tolist(), "rotation": np.asarray(rotation).tolist()}


def _key_frame_boxes(clip: dict, categories: list[str], frame: int, offset: np.ndarray,
                     parked_tracks: set[int]) -> tuple[list[dict], int]:
    """(annotations at `frame`, boxes left out because nuScenes has no class for them)."""
    tracks = list(clip["attrs"].get("tracks") or [])
    begin, end = int(clip["box_offsets"][frame]), int(clip["box_offsets"][frame + 1])
    boxes, skipped = [], 0
    for n in range(begin, end):
        category = categories[int(clip["box_category"][n])]
        if category == "other":
            skipped += 1
            continue
        row = clip["boxes"][n].astype(np.float64)
        track = int(clip["box_track"][n])
        speed = float(np.hypot(row[7], row[8]))
        boxes.append({"track": tracks[track] if track < len(tracks) else str(track), "category": category,
                      "attributes": attribute_for(category, speed, track in parked_tracks),
                      **annotation_fields(row, offset)})
    return boxes, skipped


def _parked_tracks(clip: dict) -> set[int]:
    """Tracks that never move in the clip: parked rather than stopped."""
    speed = np.hypot(clip["boxes"][:, 7], clip["boxes"][:, 8])
    moving = set(np.unique(clip["box_track"][speed > 0.05]).tolist())
    return set(np.unique(clip["box_track"]).tolist()) - moving


# ---------------------------------------------------------------- writing files


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as file:  # never over a file of the merged set
            Image.fromarray(np.ascontiguousarray(image)).save(file, format="JPEG", quality=JPEG_QUALITY)
    except FileExistsError:
        raise DataError(f"--merge-with: {path.name} is already a file of the merged set") from None


def _write_new(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "xb") as file:
            file.write(data)
    except FileExistsError:
        raise DataError(f"--merge-with: {path.name} is already a file of the merged set") from None


def write_map(path: Path, lines_xy: list[np.ndarray]) -> tuple[int, int]:
    """A drivable-area PNG in the devkit's MapMask layout (0.1 m a pixel, global origin at the lower
    left corner): each polyline drawn LANE_WIDTH wide. Returns (width, height) in pixels."""
    import cv2
    from PIL import Image

    points = np.concatenate(lines_xy) if lines_xy else np.zeros((0, 2))
    extent = (np.max(points, axis=0) if len(points) else np.zeros(2)) + MAP_MARGIN
    width, height = (int(min(np.ceil(e / MAP_RESOLUTION), MAX_MAP_PIXELS)) for e in extent)
    mask = np.zeros((height, width), np.uint8)
    thickness = max(1, round(LANE_WIDTH / MAP_RESOLUTION))
    for line in lines_xy:
        if len(line) < 1:
            continue
        pixels = np.stack([line[:, 0] / MAP_RESOLUTION, height - line[:, 1] / MAP_RESOLUTION], axis=1)
        cv2.polylines(mask, [np.round(pixels).astype(np.int32).reshape(-1, 1, 2)], False, 255, thickness)
    _write_new(path, _png_bytes(Image.fromarray(mask)))
    return width, height


def _png_bytes(image) -> bytes:
    import io

    data = io.BytesIO()
    image.save(data, format="PNG")  # mostly one value: small without the slow optimize pass
    return data.getvalue()


def _scene_lines(clip: dict, poly_types: list[str], offset: np.ndarray,
                 world_from_ego: np.ndarray) -> list[np.ndarray]:
    """The clip's lane polylines and the ego's path, shifted, as [P, 2] arrays for the map."""
    lanes = []
    offsets = clip["poly_offsets"]
    for k, kind in enumerate(clip["poly_type"]):
        if int(kind) < len(poly_types) and poly_types[int(kind)] == "lane":
            lanes.append(clip["polylines"][offsets[k]:offsets[k + 1], :2].astype(np.float64) + offset[:2])
    return [*lanes, world_from_ego[:, :2, 3]]


def prepare_scene(folder: Path, root, settings: dict, clip_id: str, name: str, index: int,
                  staging: Path) -> GeneratedScene:
    """Write one clip's images, empty point clouds and map into `staging`; return what the tables need."""
    path = folder / ROLLOUT_STORE
    clip = _read_checked(root, path, clip_id, settings)
    attrs = clip["attrs"]
    fps = float(attrs.get("fps") or settings.get("fps") or 12.0)
    step = key_frame_step(fps)
    total = len(clip["timestamps"])
    key_frames = list(range(0, total, step))
    kept = key_frames[-1] + 1
    categories = list(root.attrs.get("categories") or [])
    raw_poses = clip["world_from_ego"][:kept].astype(np.float64)
    everything = [raw_poses[:, :2, 3], clip["boxes"][:, :2].astype(np.float64),
                  clip["polylines"][:, :2].astype(np.float64)]
    offset = world_offset(np.concatenate(everything))
    shift = np.eye(4)
    shift[:3, 3] = offset
    world_from_ego = shift @ raw_poses
    start = START_US + index * SCENE_SPACING_US
    timestamps = start + (clip["timestamps"][:kept].astype(np.int64) - int(clip["timestamps"][0]))
    cameras = list(attrs.get("cameras") or settings["cameras"])
    frames = clip["frames"]
    height, width = frames.shape[2:4]
    images, lidar = [], []
    for f in range(kept):
        folder_name = "samples" if f % step == 0 else "sweeps"
        row = []
        for v, camera in enumerate(cameras):
            relative = f"{folder_name}/{camera}/{name}__{camera}__{timestamps[f]}.jpg"
            _write_jpeg(staging / relative, frames[f, v])
            row.append(relative)
        images.append(row)
        if f % step == 0:
            relative = f"samples/LIDAR_TOP/{name}__LIDAR_TOP__{timestamps[f]}.pcd.bin"
            _write_new(staging / relative, b"")  # no lidar: a cloud of zero points
            lidar.append(relative)
    boxes, skipped = [], 0
    parked = _parked_tracks(clip)
    for f in key_frames:
        frame_boxes, frame_skipped = _key_frame_boxes(clip, categories, f, offset, parked)
        boxes.append(frame_boxes)
        skipped += frame_skipped
    map_file = f"maps/{name}.png"
    write_map(staging / map_file, _scene_lines(clip, list(root.attrs.get("poly_types") or []), offset, world_from_ego))
    return GeneratedScene(
        name=name, source=folder.resolve(), clip_id=clip_id, scenario=_scenario_name(folder, attrs),
        caption=str(attrs.get("caption") or ""), cameras=cameras, width=int(width), height=int(height),
        intrinsics=clip["intrinsics"].astype(np.float64), ego_from_cam=clip["ego_from_cam"].astype(np.float64),
        world_from_ego=world_from_ego, timestamps=timestamps, key_frames=key_frames, images=images, lidar=lidar,
        boxes=boxes, offset=offset, map_file=map_file, dropped_frames=total - kept, skipped_boxes=skipped)


def unique_name(base: str, taken: set[str]) -> str:
    """`base`, or `base-2`, `base-3`, ... whichever is not yet taken (and take it)."""
    name, count = base, 1
    while name in taken:
        count += 1
        name = f"{base}-{count}"
    taken.add(name)
    return name


# ---------------------------------------------------------------- tables


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    """A float32-stored rigid transform with its rotation made exactly orthonormal again (SVD)."""
    result = np.array(matrix, np.float64)
    u, _, vt = np.linalg.svd(result[:3, :3])
    result[:3, :3] = u @ vt
    return result


def write_tables(scenes: list[GeneratedScene], root: Path, version: str, seed: int) -> Path:
    """All generated scenes as the 13 nuScenes tables under root/version, tokens from `seed`."""
    writer = NuScenesWriter(root, version, seed=seed)
    for scene in scenes:
        calibrated = {camera: writer.add_calibrated_sensor(camera, "camera", _orthonormal(scene.ego_from_cam[v]),
                                                           scene.intrinsics[v])
                      for v, camera in enumerate(scene.cameras)}
        calibrated["LIDAR_TOP"] = writer.add_calibrated_sensor("LIDAR_TOP", "lidar", EGO_FROM_LIDAR)
        date = time.strftime("%Y-%m-%d", time.gmtime(int(scene.timestamps[0]) / 1e6))
        log = writer.add_log(scene.name, "drivesim-generated", date, LOCATION)
        writer.add_map([log], filename=scene.map_file)
        writer.begin_scene(scene.name, scene.caption, log)
        previous = -1
        for k, frame in enumerate(scene.key_frames):
            sample = writer.add_sample(int(scene.timestamps[frame]))
            for sweep in range(previous + 1, frame):  # a sweep belongs to the next key frame
                _add_images(writer, scene, calibrated, sample, sweep, key=False)
            _add_images(writer, scene, calibrated, sample, frame, key=True)
            writer.add_sample_data("LIDAR_TOP", calibrated["LIDAR_TOP"], sample, int(scene.timestamps[frame]),
                                   scene.world_from_ego[frame], scene.lidar[k], 0, 0, is_key_frame=True,
                                   fileformat="pcd")
            for box in scene.boxes[k]:
                # num_lidar_pts = 1: see the module docstring (kept by the detection evaluation).
                writer.add_annotation(sample, box["track"], box["category"], box["translation"], box["size"],
                                      box["rotation"], 4, box["attributes"], num_lidar_pts=1)
            previous = frame
        writer.end_scene()
    return writer.write()


def _add_images(writer: NuScenesWriter, scene: GeneratedScene, calibrated: dict, sample: str, frame: int,
                key: bool) -> None:
    for v, camera in enumerate(scene.cameras):
        writer.add_sample_data(camera, calibrated[camera], sample, int(scene.timestamps[frame]),
                               scene.world_from_ego[frame], scene.images[frame][v], scene.width, scene.height,
                               is_key_frame=key)


# ---------------------------------------------------------------- the run


@dataclass
class ExportResult:
    """What `export` wrote."""

    out: Path
    generated: list[str]
    merged: list[str] = field(default_factory=list)
    linked_files: int = 0
    copied_files: int = 0
    seed: int = BASE_SEED
    dropped_frames: int = 0
    skipped_boxes: int = 0

    def summary(self) -> str:
        parts = [f"{self.out}: {len(self.generated)} generated scene(s)"]
        if self.merged:
            parts.append(f"{len(self.merged)} merged scene(s) ({self.linked_files} files hard-linked, "
                         f"{self.copied_files} copied)")
        if self.dropped_frames:
            parts.append(f"{self.dropped_frames} frame(s) after the last key frame left out")
        if self.skipped_boxes:
            parts.append(f"{self.skipped_boxes} box(es) of category 'other' left out")
        return ", ".join(parts)


def export(config: ExportConfig) -> ExportResult:
    """Write the rollouts (and the merged set) to config.out; the folder appears only once complete."""
    folders = config.validate()
    out = Path(config.out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        result = _export_into(config, folders, staging)
        publish_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.out = out
    return result


def _export_into(config: ExportConfig, folders: list[Path], staging: Path) -> ExportResult:
    existing, merged_names, linked, copied, merged_manifest = None, [], 0, 0, None
    if config.merge_with is not None:
        merge = Path(config.merge_with)
        existing = read_tables(merge / config.version, "--merge-with")
        merged_names = [record.get("name", "") for record in existing["scene"]]
        skip = table_folders(merge) | {merge / MANIFEST}
        linked, copied = link_tree(merge, staging, skip)
        # Files of the version folder other than the 13 tables (e.g. lidarseg.json) come along as they are.
        version_files = {merge / config.version / f"{name}.json" for name in TABLE_NAMES}
        more = link_tree(merge / config.version, staging / config.version, version_files)
        linked, copied = linked + more[0], copied + more[1]
        if (merge / MANIFEST).is_file():
            merged_manifest = json.loads((merge / MANIFEST).read_text())
    taken = set(merged_names)
    scenes = []
    for folder in folders:
        root, settings, clip_ids = _open_rollout(folder)
        for clip_id in clip_ids:
            name = unique_name(f"gen-{clip_id}", taken)
            scenes.append(prepare_scene(folder, root, settings, clip_id, name, len(scenes), staging))
    seed = _write_all_tables(scenes, staging, config.version, existing)
    _write_manifest(staging / MANIFEST, config, scenes, merged_names, linked, copied, seed, merged_manifest)
    return ExportResult(out=Path(config.out), generated=[s.name for s in scenes], merged=merged_names,
                        linked_files=linked, copied_files=copied, seed=seed,
                        dropped_frames=sum(s.dropped_frames for s in scenes),
                        skipped_boxes=sum(s.skipped_boxes for s in scenes))


def _write_all_tables(scenes: list[GeneratedScene], staging: Path, version: str,
                      existing: dict[str, list[dict]] | None) -> int:
    """Write the tables (merged when `existing`); returns the writer seed whose tokens are all new."""
    for seed in range(BASE_SEED, BASE_SEED + SEED_TRIES):
        table_root = write_tables(scenes, staging, version, seed)
        if existing is None:
            return seed
        try:
            merged = merge_tables(existing, read_tables(table_root, "export"))
        except TokenCollision:
            continue  # e.g. merging into an earlier export, written with the same seed
        write_table_files(table_root, merged)
        return seed
    raise DataError(f"--merge-with: generated tokens collide with its tokens under {SEED_TRIES} writer seeds")


def _write_manifest(path: Path, config: ExportConfig, scenes: list[GeneratedScene], merged_names: list[str],
                    linked: int, copied: int, seed: int, merged_manifest) -> None:
    document = {
        "format": MANIFEST_FORMAT, "version": config.version, "writer_seed": seed,
        "generated": [{"scene": s.name, "rollout": str(s.source), "clip": s.clip_id, "scenario": s.scenario,
                       "caption": s.caption, "frames": len(s.timestamps), "key_frames": len(s.key_frames),
                       "dropped_frames": s.dropped_frames, "skipped_boxes": s.skipped_boxes,
                       "world_offset": s.offset.tolist(), "map": s.map_file} for s in scenes],
        "merged": None if config.merge_with is None else {
            "dataroot": str(Path(config.merge_with).resolve()), "scenes": merged_names,
            "files": {"hard_linked": linked, "copied": copied}, "manifest": merged_manifest},
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


