"""What a rollout is: a generated drive with the scenario's labels (`Rollout`), and its folder: one MP4 per
camera, grid.mp4, contact_sheet.png, scenario.yaml and rollout.zarr, a clip store drivesim/data/dataset.py,
`drivesim eval` and `drivesim export` read back (`find_rollouts`, `store_folder`)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError
from drivesim.folders import check_out_dir, publish_folder, staging_folder, writer_lock
from drivesim.media import contact_sheet, grid_frames, write_mp4

__all__ = ["ROLLOUT_STORE", "Rollout", "find_rollouts", "store_folder"]

ROLLOUT_STORE = "rollout.zarr"


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

    @classmethod
    def labelled(cls, scenario, rig, video: np.ndarray) -> Rollout:
        """A Rollout of `video` [F, V, H, W, 3] with the scenario's poses, boxes and tracks, seen through `rig`."""
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
        return cls(video=video, scenario=scenario, cameras=list(rig.names),
                   intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
                   world_from_ego=scenario.world_from_ego(times), timestamps=np.round(times * 1e6).astype(np.int64),
                   boxes=[frame.boxes for frame in layout_frames],
                   categories=[frame.categories for frame in layout_frames],
                   track_ids=track_ids, velocities=speeds, fps=float(scenario.fps))

    @property
    def num_frames(self) -> int:
        return int(self.video.shape[0])

    def save(self, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write the rollout into `out_dir` (new or empty, unless overwrite): <camera>.mp4 per camera,
        grid.mp4, contact_sheet.png, scenario.yaml and rollout.zarr (a clip store). Returns what was written.

        Everything goes to a folder beside `out_dir` that replaces it once whole: a run killed while writing
        leaves `out_dir` as it was (a later run clears the staging folder), never half a rollout; another
        process writing `out_dir` is a DataError (writer_lock)."""
        out = Path(out_dir)
        with writer_lock(out, "out_dir"):  # re-entered when the caller holds it (drivesim generate)
            check_out_dir(out, overwrite)
            return self._save(out)

    def _save(self, out: Path) -> dict[str, Path]:
        from drivesim.scenario import save as save_scenario

        staging = staging_folder(out)
        names: dict[str, str] = {camera: f"{camera}.mp4" for camera in self.cameras}
        try:
            for v, camera in enumerate(self.cameras):
                write_mp4(staging / names[camera], self.video[:, v], self.fps)
            names["grid"] = write_mp4(staging / "grid.mp4", grid_frames(self.video, self.cameras), self.fps).name
            names["contact_sheet"] = contact_sheet(self.video, self.cameras, self.timestamps,
                                                   staging / "contact_sheet.png").name
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


def find_rollouts(path: Path) -> list[Path]:
    """The rollout folders (holding rollout.zarr) `path` names: itself, else its sub-folders, sorted."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"--rollouts {path}: no such folder")
    if not path.is_dir():
        raise ConfigError(f"--rollouts {path} is not a folder")
    if (path / ROLLOUT_STORE).exists():
        return [path]
    folders = sorted(child for child in path.iterdir() if child.is_dir() and (child / ROLLOUT_STORE).exists())
    if not folders:
        raise DataError(f"--rollouts {path}: no {ROLLOUT_STORE} in it or in its sub-folders "
                        "(write rollouts with `drivesim generate`)")
    return folders


def store_folder(path: Path) -> Path:
    """The clip store `path` names: itself, or the rollout.zarr of the rollout folder it is."""
    path = Path(path)
    if not (path / "zarr.json").is_file() and (path / ROLLOUT_STORE).is_dir():
        return path / ROLLOUT_STORE
    return path
