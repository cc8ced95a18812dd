"""A scenario replaying a clip of the store: its rig, ego poses, tracks and road; or, from a one-frame clip,
an Image2World start whose ego path comes from the user or from the source log."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np

from drivesim.render import clip_surroundings
from drivesim.scenario.schema import (CATEGORIES, LANE_LINE_TYPES, Agent, Road, Scenario, StartFrames, is_closed,
                                      plain_value)
from drivesim.scenario.trajectory import MOVING, Trajectory, limits_for
from drivesim.scenario.validate import kinematic_problem, validate

KEY_FRAME_HZ = 2.0  # nuScenes annotates boxes at 2 Hz
THINNEST = 2.0  # seconds between waypoints, at most, when a recorded track breaks the limits
log = logging.getLogger(__name__)


def _rig_document(name: str, width: int, height: int, cameras: list[str], intrinsics, ego_from_cam) -> dict:
    """An inline rig from a clip's calibration; neighbours: the two nearest cameras by azimuth."""
    from drivesim.geometry import quaternion_from_matrix

    axis = ego_from_cam[:, :2, 2]
    azimuth = np.arctan2(axis[:, 1], axis[:, 0])
    difference = np.abs((azimuth[:, None] - azimuth[None, :] + math.pi) % (2 * math.pi) - math.pi)
    np.fill_diagonal(difference, np.inf)
    entries = []
    for v, camera in enumerate(cameras):
        nearest = np.argsort(difference[v], kind="stable")[:min(2, len(cameras) - 1)]
        k = intrinsics[v]
        entries.append({
            "name": camera,
            "intrinsics": {key: plain_value(value) for key, value in
                           zip(("fx", "fy", "cx", "cy"), (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))},
            "translation": [plain_value(c) for c in ego_from_cam[v, :3, 3]],
            "rotation": [plain_value(c) for c in quaternion_from_matrix(ego_from_cam[v, :3, :3].astype(np.float64))],
            "neighbours": [cameras[int(n)] for n in nearest]})
    return {"name": name, "image_size": {"width": int(width), "height": int(height)}, "cameras": entries}


def _open_clip(store_path: str | os.PathLike, clip_id: str):
    """The store's root group; DataError naming the store and a few of its clips when it lacks `clip_id`."""
    from drivesim.data.store import open_store, stored_clip_ids
    from drivesim.errors import DataError

    root = open_store(store_path)
    known = stored_clip_ids(Path(store_path))
    if clip_id not in known:
        shown = ", ".join(known[:5]) + (", ..." if len(known) > 5 else "")
        raise DataError(f"store {store_path}: no clip {clip_id!r}; clips: {shown or '(none)'}")
    return root


def clip_length(store_path: str | os.PathLike, clip_id: str) -> tuple[int, float]:
    """(frames, fps) of a stored clip; fps 0 when the store does not say."""
    from drivesim.data.store import open_clip

    root = _open_clip(store_path, clip_id)
    group = open_clip(root, clip_id)
    fps = dict(group.attrs).get("fps") or dict(root.attrs.get("settings", {})).get("fps") or 0
    return int(group["world_from_ego"].shape[0]), float(fps)


def from_clip(store_path: str | os.PathLike, clip_id: str, ego: Trajectory | None = None) -> Scenario:
    """A scenario replaying a stored clip, in its first ego frame: the clip's rig, ego poses, tracks and road.

    Tracks seen in fewer than two frames, and boxes of category "other", are left out; a track that
    stays put for the whole clip becomes a parked agent.

    A one-frame clip (a key frame ingested with --frames 1) shows no motion, so it takes `ego`: the ego's path
    from t = 0 in that frame's ego frame (x forward, y left; see constant_path). The scenario lasts as long
    as that path, and the agents drive on at their recorded velocities. Only a one-frame clip takes `ego`.
    """
    from drivesim.data.store import read_clip
    from drivesim.errors import ConfigError, DataError
    from drivesim.geometry import invert, quaternion_from_matrix

    root = _open_clip(store_path, clip_id)
    names = tuple(n for n in ("intrinsics", "ego_from_cam", "world_from_ego", "timestamps", "boxes", "box_offsets",
                              "box_category", "box_track", "polylines", "poly_offsets", "poly_type"))
    clip = read_clip(root, clip_id, names)
    attrs, settings = clip["attrs"], dict(root.attrs.get("settings", {}))
    categories, poly_types = list(root.attrs["categories"]), list(root.attrs["poly_types"])
    frames = len(clip["world_from_ego"])
    fps = float(attrs.get("fps") or settings.get("fps") or 0)
    if frames < 1 or not fps > 0:
        raise DataError(f"store {store_path}: clip {clip_id} has {frames} frame(s) and fps {fps}: nothing to replay")
    if (frames == 1) != (ego is not None):
        raise ConfigError(f"clip {clip_id} has one frame, which shows no motion: it needs the ego's path (ego)"
                          if frames == 1 else f"clip {clip_id} has {frames} frames and replays their ego path: "
                                              "only a one-frame clip takes one (ego)")
    times = np.arange(frames) / fps
    ego0_from_world = invert(clip["world_from_ego"][0])
    if frames > 1:
        ego_poses = ego0_from_world @ clip["world_from_ego"]  # [T, 4, 4]
        ego = _replayable(times, ego_poses[:, :3, 3], fps, limits_for(None),
                          rotations=quaternion_from_matrix(ego_poses[:, :3, :3]))
        if ego is None:  # validation names the limit the recorded drive breaks
            ego = Trajectory(times, ego_poses[:, :3, 3], rotations=quaternion_from_matrix(ego_poses[:, :3, :3]))
    duration = float(times[-1]) if frames > 1 else ego.end
    if frames > 1:
        agents, left_out = _replayed_agents(clip, categories, times, fps, ego0_from_world)
    else:
        agents, left_out = _agents_driving_on(clip, categories, duration, ego0_from_world), []

    road = _clip_road(clip, poly_types, ego0_from_world, attrs)

    width, height = settings.get("width"), settings.get("height")
    cameras = list(attrs.get("cameras") or settings.get("cameras") or [])
    rig = _rig_document(clip_id, width, height, cameras, clip["intrinsics"].astype(np.float64),
                        clip["ego_from_cam"].astype(np.float64))
    caption = attrs.get("caption") or f"a drive replayed from clip {clip_id}"
    surroundings = clip_surroundings(attrs)
    scenario = Scenario(rig_spec=rig, fps=fps, duration=duration, ego=ego, prompt=caption,
                        agents=tuple(agents), road=road, name=clip_id,
                        start_frames=StartFrames(str(store_path), clip_id, 0),
                        source=f"clip {clip_id} of store {store_path}",
                        time_of_day=surroundings.time_of_day, weather=surroundings.weather)
    if left_out:
        log.warning("clip %s: left out %d track(s) whose recorded motion breaks the physical limits even at "
                    "1 waypoint per %g s: %s", clip_id, len(left_out), THINNEST, ", ".join(left_out))
    return validate(scenario)


def _clip_road(clip: dict, poly_types: list[str], ego0_from_world: np.ndarray, attrs: dict) -> Road:
    """The clip's polylines in its first ego frame, each of the types drivesim.render.layout_frames_from_clip
    keeps (MAP_POLY_TYPES), in the store's order within each type, and its sidewalk width and building setback
    (render.clip_surroundings). A crosswalk is stored closed; the scenario holds its corners and closes it
    again when drawn. Lines of fewer than 2 points and crosswalks of fewer than 3 corners are left out. A
    crosswalk the store cut open at its radius (polylines_near) is the one line drawn otherwise than the
    store's layout frames draw it: closed, by a chord across the cut."""
    from drivesim.render import MAP_POLY_TYPES

    rotation, translation = ego0_from_world[:3, :3], ego0_from_world[:3, 3]
    points = clip["polylines"].astype(np.float64) @ rotation.T + translation
    kinds = {store_type: kind for kind, store_type in LANE_LINE_TYPES.items()}
    found = {"lane": [], "road_edge": [], "lane_line": [], "crosswalk": [], "stop_line": []}
    for k, type_index in enumerate(clip["poly_type"]):
        line = points[clip["poly_offsets"][k]:clip["poly_offsets"][k + 1]]
        name = poly_types[int(type_index)]
        if len(line) < 2 or name not in MAP_POLY_TYPES:
            continue
        if name in kinds:
            found["lane_line"].append((kinds[name], line))
        elif name == "crosswalk":
            while is_closed(line):
                line = line[:-1]
            if len(line) >= 3:
                found["crosswalk"].append(line)
        else:
            found[name].append(line)
    surroundings = clip_surroundings(attrs)
    return Road(*(tuple(found[name]) for name in ("lane", "road_edge", "lane_line", "crosswalk", "stop_line")),
                sidewalk_width=surroundings.sidewalk_width, building_setback=surroundings.building_setback)


def _replayed_agents(clip: dict, categories: list[str], times: np.ndarray, fps: float,
                     ego0_from_world: np.ndarray) -> tuple[list[Agent], list[str]]:
    """(agents, ids left out) of a clip of several frames: each track on its recorded path."""
    frames = len(times)
    boxes, offsets = clip["boxes"].astype(np.float64), clip["box_offsets"]
    frame_of_row = np.repeat(np.arange(frames), np.diff(offsets))
    rotation, translation = ego0_from_world[:3, :3], ego0_from_world[:3, 3]
    centres = boxes[:, :3] @ rotation.T + translation
    heading = np.arctan2(rotation[1, 0], rotation[0, 0])
    agents, left_out = [], []
    for track in np.unique(clip["box_track"]):
        rows = np.flatnonzero(clip["box_track"] == track)
        category = categories[int(clip["box_category"][rows[0]])]
        if len(rows) < 2 or category not in CATEGORIES:
            continue
        rows = rows[np.argsort(frame_of_row[rows], kind="stable")]
        size = tuple(float(c) for c in boxes[rows[0], 3:6])
        bottoms = centres[rows] - [0.0, 0.0, size[2] / 2]
        yaws = np.unwrap(boxes[rows, 6] + heading)
        agent_id = f"track{int(track)}"
        if len(rows) == frames and np.linalg.norm(bottoms - bottoms[0], axis=1).max() < 0.3:
            agents.append(Agent(agent_id, category, size, Trajectory([0.0], bottoms[:1], yaws[:1]), parked=True))
        else:
            trajectory = _replayable(times[frame_of_row[rows]], bottoms, fps, limits_for(category), yaws=yaws)
            if trajectory is None:
                left_out.append(agent_id)
            else:
                agents.append(Agent(agent_id, category, size, trajectory))
    return agents, left_out


def _agents_driving_on(clip: dict, categories: list[str], duration: float,
                       ego0_from_world: np.ndarray) -> list[Agent]:
    """The agents of a one-frame clip: each drives on at its recorded velocity and heading for `duration`;
    parked when slower than MOVING, or when that velocity breaks its limits (a bad annotation)."""
    boxes = clip["boxes"].astype(np.float64)
    rotation, translation = ego0_from_world[:3, :3], ego0_from_world[:3, 3]
    heading = np.arctan2(rotation[1, 0], rotation[0, 0])
    agents = []
    for row, box in enumerate(boxes):
        category = categories[int(clip["box_category"][row])]
        if category not in CATEGORIES:
            continue
        size = tuple(float(c) for c in box[3:6])
        bottom = box[:3] @ rotation.T + translation - [0.0, 0.0, size[2] / 2]
        yaw = float(box[6] + heading)
        velocity = np.append(rotation[:2, :2] @ box[7:9], 0.0)  # world -> first ego frame
        agent_id = f"track{int(clip['box_track'][row])}"
        path = Trajectory([0.0, duration], [bottom, bottom + velocity * duration], [yaw, yaw])
        if np.linalg.norm(velocity) < MOVING or kinematic_problem(path, limits_for(category)) is not None:
            path = Trajectory([0.0], bottom[None], [yaw])
        agents.append(Agent(agent_id, category, size, path, parked=len(path.times) == 1))
    return agents


def constant_path(speed: float, yaw_rate: float, duration: float) -> Trajectory:
    """An ego path from the origin of its start frame at a constant speed (m/s) and turn rate (rad/s, left
    positive) for `duration` seconds, with waypoints 0.25 s apart: straight ahead when yaw_rate is 0."""
    times = np.linspace(0.0, duration, max(2, math.ceil(duration * 4) + 1))
    heading = yaw_rate * times
    if abs(yaw_rate) < 1e-9:
        xy = np.column_stack([speed * times, np.zeros_like(times)])
    else:  # a circular arc of radius speed / yaw_rate
        xy = speed / yaw_rate * np.column_stack([np.sin(heading), 1 - np.cos(heading)])
    return Trajectory.from_xy(times, xy, heading)


def logged_motion(store_path: str | os.PathLike, clip_id: str) -> tuple[float, float]:
    """(speed m/s, turn rate rad/s, left positive) of the ego at a clip's first frame, from the frames either
    side of it in the log the store was ingested from (settings dataroot and version). DataError when that
    log is not at hand or lacks the frame: the speed must then come from the user."""
    from drivesim.data import nuscenes as logs
    from drivesim.data.store import read_clip
    from drivesim.errors import DataError, DrivesimError
    from drivesim.geometry import invert

    root = _open_clip(store_path, clip_id)
    clip = read_clip(root, clip_id, ("world_from_ego", "timestamps"))
    settings, attrs = dict(root.attrs.get("settings", {})), clip["attrs"]
    dataroot, version, scene = settings.get("dataroot"), settings.get("version"), attrs.get("scene")
    cameras = list(attrs.get("cameras") or settings.get("cameras") or [])
    where = f"clip {clip_id}: the ego's motion is read from its source log {dataroot}"
    try:
        if not (dataroot and version and scene and cameras):
            raise DataError("the store does not name its log, scene and cameras")
        if not (Path(dataroot) / version).is_dir():
            raise DataError(f"no {version} tables there")
        nusc = logs.cached_log(str(dataroot), str(version))
        camera = cameras[logs.reference_camera(cameras)]
        found = logs.ego_poses_around(nusc, scene, camera, int(clip["timestamps"][0]))
    except DrivesimError as error:
        raise DataError(f"{where}, which cannot give it: {error}") from None
    if found is None:
        raise DataError(f"{where}, which has no other {camera} frame of {scene} beside the clip's")
    times, poses = found
    relative = invert(clip["world_from_ego"][0]) @ poses  # [2, 4, 4] in the clip's first ego frame
    seconds = (int(times[1]) - int(times[0])) * 1e-6
    step = relative[1, :2, 3] - relative[0, :2, 3]
    turn = math.atan2(relative[1, 1, 0], relative[1, 0, 0]) - math.atan2(relative[0, 1, 0], relative[0, 0, 0])
    turn = math.pi - (math.pi - turn) % (2 * math.pi)  # wrapped to (-pi, pi]
    speed = float(np.linalg.norm(step)) / seconds * (1.0 if step[0] >= 0 else -1.0)  # negative: reversing
    return speed, turn / seconds


def _replayable(times: np.ndarray, positions: np.ndarray, fps: float, limits, yaws=None,
                rotations=None) -> Trajectory | None:
    """A recorded trajectory with waypoints at 2 Hz, the rate nuScenes annotates at (boxes between key
    frames are interpolated in the logs already), or sparser until it keeps to `limits`; None if even
    THINNEST seconds apart it does not. A spline through every 12 Hz box turns centimetres of jitter into
    accelerations no car makes, and synthetic traffic stops dead at the end of its path."""
    frame = np.round(times * fps).astype(np.int64)
    for seconds in (1 / KEY_FRAME_HZ, 1.0, THINNEST):
        keep = (frame - frame[0]) % max(1, round(fps * seconds)) == 0
        keep[-1] = True
        trajectory = Trajectory(times[keep], positions[keep], None if yaws is None else yaws[keep],
                                None if rotations is None else rotations[keep])
        if kinematic_problem(trajectory, limits) is None:
            return trajectory
    return None


def copy_start_frame(store_path: str | os.PathLike, clip_id: str, out: str | os.PathLike, frame: int = 0) -> Path:
    """A new clip store at `out` holding only `frame` of the clip (all its cameras, the boxes and road of
    that frame): a scenario's start frame small enough to ship beside the scenario file."""
    from drivesim.data import store
    from drivesim.errors import DataError

    out = Path(out)
    if out.exists():
        raise DataError(f"{out} exists: the start-frame store is written new")
    root = _open_clip(store_path, clip_id)
    clip = store.read_clip(root, clip_id)
    frames = len(clip["frames"])
    if not 0 <= frame < frames:
        raise DataError(f"clip {clip_id!r} has {frames} frames; no frame {frame}")
    low, high = int(clip["box_offsets"][frame]), int(clip["box_offsets"][frame + 1])
    one = store.Clip(clip_id=clip_id, frames=clip["frames"][frame:frame + 1],
                     intrinsics=clip["intrinsics"], ego_from_cam=clip["ego_from_cam"],
                     world_from_ego=clip["world_from_ego"][frame:frame + 1],
                     timestamps=clip["timestamps"][frame:frame + 1], boxes=clip["boxes"][low:high],
                     box_offsets=np.array([0, high - low], np.int32), box_category=clip["box_category"][low:high],
                     box_track=clip["box_track"][low:high], polylines=clip["polylines"],
                     poly_offsets=clip["poly_offsets"], poly_type=clip["poly_type"],
                     attrs={**clip["attrs"], "start": int(clip["attrs"].get("start", 0)) + frame},
                     world_from_ego_cam=store.camera_poses(clip, frame, frame + 1),
                     box_rotation=store.box_rotations(clip, low, high))
    settings = {**dict(root.attrs["settings"]), "frames": 1}
    written = store.create_store(out, settings, list(root.attrs["categories"]), list(root.attrs["poly_types"]))
    store.write_clip(out, one)
    entry = dict(root.attrs.get("clips", {})).get(clip_id, {"scene": clip_id, "split": "val", "caption": ""})
    written.attrs.update({"clips": {clip_id: entry}})
    return out
