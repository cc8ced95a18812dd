"""What a rollout is: a generated drive with the scenario's labels (`Rollout`), and its folder: one MP4 per
camera, grid.mp4, contact_sheet.png, scenario.yaml and rollout.zarr, a clip store drivesim/data/dataset.py,
`drivesim eval` and `drivesim export` read back (`find_rollouts`, `store_folder`)."""

from __future__ import annotations

import functools
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError
from drivesim.folders import check_out_dir, publish_folder, staging_folder, writer_lock
from drivesim.media import contact_sheet, grid_frames, write_mp4

__all__ = ["ROLLOUT_STORE", "Labels", "Rollout", "find_rollouts", "store_folder"]

ROLLOUT_STORE = "rollout.zarr"
SAVE_THREADS = 4  # files of a rollout written at once (save)


@dataclass(frozen=True, eq=False)
class Labels:
    """The scenario's boxes frame by frame, packed as the clip store keeps them (drivesim/data/store.py):
    a rollout's store takes them as they are, and export and eval read them back the same way."""

    boxes: np.ndarray                 # float32 [N, 10]: centre xyz, size wlh, yaw, velocity xy (world frame), 1
    offsets: np.ndarray               # int32 [F + 1]: frame f's boxes are boxes[offsets[f]:offsets[f + 1]]
    category: np.ndarray              # int16 [N]: index into drivesim.data.nuscenes.CATEGORIES
    track: np.ndarray                 # int32 [N]: index into `tracks`
    tracks: list[str]                 # the scenario's agent ids

    @classmethod
    def of_scenario(cls, scenario, times: np.ndarray) -> Labels:
        """Every agent present at each of `times` (seconds): its box, its velocity (zero when parked)."""
        from drivesim.data.nuscenes import CATEGORY_INDEX

        agents = list(scenario.agents)
        layout_frames = scenario.layout_frames(times)
        present = [agent.present(times) for agent in agents]
        velocities = [np.zeros((len(times), 2)) if agent.parked else agent.trajectory.velocity(times)[:, :2]
                      for agent in agents]
        rows, offsets, category, track = [], [0], [], []
        for f, frame in enumerate(layout_frames):
            here = [a for a in range(len(agents)) if present[a][f]]  # layout_frames keeps the agents' order
            speed = np.array([velocities[a][f] for a in here], np.float32).reshape(-1, 2)
            boxes = np.asarray(frame.boxes, np.float32).reshape(-1, 7)
            rows.append(np.concatenate([boxes, speed, np.ones((len(boxes), 1), np.float32)], axis=1))
            offsets.append(offsets[-1] + len(boxes))
            category += [CATEGORY_INDEX.get(name, CATEGORY_INDEX["other"]) for name in frame.categories]
            track += here
        return cls(boxes=np.concatenate(rows) if rows else np.zeros((0, 10), np.float32),
                   offsets=np.asarray(offsets, np.int32), category=np.asarray(category, np.int16),
                   track=np.asarray(track, np.int32), tracks=[agent.id for agent in agents])

    def first(self, frames: int) -> Labels:
        """The labels of the first `frames` frames (a rollout cut short)."""
        end = int(self.offsets[frames])
        return Labels(boxes=self.boxes[:end], offsets=self.offsets[:frames + 1], category=self.category[:end],
                      track=self.track[:end], tracks=list(self.tracks))

    def frame(self, f: int) -> slice:
        """Where frame f's boxes are in `boxes`, `category` and `track` (f < 0 counts from the end)."""
        f = range(len(self.offsets) - 1)[f]  # an IndexError past either end, not a wrong slice
        return slice(int(self.offsets[f]), int(self.offsets[f + 1]))


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
    labels: Labels
    fps: float = 12.0

    @classmethod
    def labelled(cls, scenario, rig, video: np.ndarray) -> Rollout:
        """A Rollout of `video` [F, V, H, W, 3] with the scenario's poses, boxes and tracks, seen through `rig`."""
        times = scenario.frame_times()[:video.shape[0]]
        return cls(video=video, scenario=scenario, cameras=list(rig.names),
                   intrinsics=rig.intrinsics.astype(np.float32), ego_from_cam=rig.ego_from_cam.astype(np.float32),
                   world_from_ego=scenario.world_from_ego(times), timestamps=np.round(times * 1e6).astype(np.int64),
                   labels=Labels.of_scenario(scenario, times), fps=float(scenario.fps))

    def boxes(self, f: int) -> np.ndarray:
        """Frame f's boxes, float32 [N, 7]: centre xyz, size wlh, yaw (world frame)."""
        return self.labels.boxes[self.labels.frame(f), :7]

    def track_ids(self, f: int) -> list[str]:
        """Frame f's agent ids, in the order of boxes(f)."""
        return [self.labels.tracks[i] for i in self.labels.track[self.labels.frame(f)]]

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
        video, cameras, fps = self.video, self.cameras, self.fps
        writers = {camera: functools.partial(write_mp4, staging / f"{camera}.mp4", video[:, v], fps)
                   for v, camera in enumerate(cameras)}
        writers["grid"] = lambda: write_mp4(staging / "grid.mp4", grid_frames(video, cameras), fps)
        writers["contact_sheet"] = functools.partial(contact_sheet, video, cameras, self.timestamps,
                                                     staging / "contact_sheet.png")
        writers["scenario"] = functools.partial(save_scenario, self.scenario, staging / "scenario.yaml")
        writers["store"] = functools.partial(self.write_store, staging / ROLLOUT_STORE)
        # The files do not depend on each other, so they are written side by side: the encoders (x264, zlib,
        # the store's codec) let go of the GIL. Each file is what it would be written alone.
        pool = ThreadPoolExecutor(max_workers=SAVE_THREADS)
        try:
            futures = {key: pool.submit(write) for key, write in writers.items()}
            names = {key: future.result().name for key, future in futures.items()}  # a writer's error raises
            publish_folder(staging, out)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # no writer left to write into the removed folder
            shutil.rmtree(staging, ignore_errors=True)
            raise
        finally:
            pool.shutdown()
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
        # Every line of the scenario's road under its store type (crosswalks closed, as the store keeps them),
        # and its sidewalk width and building setback in the clip's attrs (render.clip_surroundings reads them).
        road = getattr(self.scenario, "road", None)
        polylines, kinds = road.map_polylines() if road is not None else ([], [])
        lines = list(zip(kinds, polylines))
        points = [np.asarray(p, np.float32).reshape(-1, 3) for _, p in lines]
        widths = {name: float(getattr(road, name)) for name in ("sidewalk_width", "building_setback")
                  if road is not None}
        widths.update({name: str(getattr(self.scenario, name)) for name in ("time_of_day", "weather")
                       if getattr(self.scenario, name, None)})  # the scenario's look, over what its prompt says
        labels = self.labels
        clip = store.Clip(
            clip_id=self.clip_id(), frames=self.video, intrinsics=self.intrinsics, ego_from_cam=self.ego_from_cam,
            world_from_ego=self.world_from_ego, timestamps=self.timestamps,
            boxes=labels.boxes, box_offsets=labels.offsets, box_category=labels.category, box_track=labels.track,
            polylines=np.concatenate(points) if points else np.zeros((0, 3), np.float32),
            poly_offsets=np.cumsum([0, *(len(p) for p in points)]).astype(np.int32),
            poly_type=np.asarray([POLY_TYPES.index(kind) for kind, _ in lines], np.int16),
            attrs={"source": "drivesim-rollout", "scene": getattr(self.scenario, "name", "") or "rollout",
                   "split": "val", "caption": getattr(self.scenario, "prompt", "") or "rollout",
                   "cameras": list(self.cameras), "fps": float(self.fps), "start": 0, "tracks": list(labels.tracks),
                   **widths})
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
