"""Reading driving logs in nuScenes v1.0 format through nuscenes-devkit: frames on a common
timeline, calibration, ego poses, boxes interpolated between key frames, and map polylines."""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from drivesim.errors import DataError
from drivesim.geometry import matrix_from_quaternion, resize_intrinsics, slerp, transform_from, yaw_from_matrix

TABLES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map", "sample",
          "sample_annotation", "sample_data", "scene", "sensor", "visibility")

# The 23 nuScenes categories; a log's other names are stored as "other" (index 23).
CATEGORIES = (
    "animal", "human.pedestrian.adult", "human.pedestrian.child", "human.pedestrian.construction_worker",
    "human.pedestrian.personal_mobility", "human.pedestrian.police_officer", "human.pedestrian.stroller",
    "human.pedestrian.wheelchair", "movable_object.barrier", "movable_object.debris",
    "movable_object.pushable_pullable", "movable_object.trafficcone", "static_object.bicycle_rack",
    "vehicle.bicycle", "vehicle.bus.bendy", "vehicle.bus.rigid", "vehicle.car", "vehicle.construction",
    "vehicle.emergency.ambulance", "vehicle.emergency.police", "vehicle.motorcycle", "vehicle.trailer",
    "vehicle.truck", "other")
CATEGORY_INDEX = {name: index for index, name in enumerate(CATEGORIES)}

# New types go at the end: a store's poly_type indices point into its own copy of this list (root attrs).
POLY_TYPES = ("lane", "road_edge", "lane_divider", "crosswalk", "stop_line", "solid_line", "double_yellow")

# The order of the nuScenes rig (views/nuscenes.yaml); other camera names follow alphabetically.
CAMERA_ORDER = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")


def _check_tables(table_root: Path) -> None:
    """Name the first missing table before the devkit fails with a bare assertion."""
    for table in TABLES:
        path = table_root / f"{table}.json"
        if not path.is_file():
            raise DataError(f"{path}: table missing (a nuScenes version folder holds {len(TABLES)} tables)")


def _unreadable_table(table_root: Path) -> DataError | None:
    """After the devkit failed to parse: which table is not a JSON list (tables are only re-read on error)."""
    for table in TABLES:
        path = table_root / f"{table}.json"
        try:
            with open(path, "rb") as file:
                document = json.load(file)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            return DataError(f"{path}: not valid JSON ({error})")
        if not isinstance(document, list):
            return DataError(f"{path}: expected a JSON list of records, got {type(document).__name__}")
    return None


def open_log(dataroot: str | Path, version: str):
    """Load a nuScenes log with nuscenes-devkit; raise DataError naming the folder or table at fault."""
    dataroot = Path(dataroot)
    if not dataroot.is_dir():
        raise DataError(f"--dataroot {dataroot}: no such folder")
    table_root = dataroot / version
    if not table_root.is_dir():
        found = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and (p / "scene.json").exists())
        raise DataError(f"--version {version}: {table_root} does not exist "
                        f"(versions in {dataroot}: {', '.join(found) or 'none'})")
    _check_tables(table_root)
    from nuscenes.nuscenes import NuScenes

    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, AssertionError, TypeError, IndexError) as error:
        named = _unreadable_table(table_root)
        if named is not None:
            raise named from None
        raise DataError(f"{table_root}: the tables do not fit together ({type(error).__name__}: {error})") from None


@lru_cache(maxsize=2)
def cached_log(dataroot: str, version: str):
    """One loaded log per worker process: Ray and process pools reuse workers across scenes."""
    return open_log(dataroot, version)


def camera_channels(nusc) -> list[str]:
    """The log's camera channels in the nuScenes rig order, others alphabetically after."""
    names = {s["channel"] for s in nusc.sensor if s["modality"] == "camera"}
    known = [name for name in CAMERA_ORDER if name in names]
    return known + sorted(names - set(known))


def is_synthetic(dataroot: str | Path) -> bool:
    """drivesim's own synthetic logs carry drivesim/scenes.json beside the tables."""
    return (Path(dataroot) / "drivesim" / "scenes.json").is_file()


@dataclass
class SceneTimeline:
    """A scene's frames on one timeline: per frame the reference timestamp and each camera's sample_data."""

    name: str
    description: str
    location: str
    timestamps: np.ndarray          # int64 [T] microseconds, of the reference camera (or the target time in a gap)
    tokens: list[list[str | None]]  # [T][V] sample_data token, None where a camera has no frame near in time
    cameras: list[str]
    reference: int = 0              # the camera whose frames set the timeline and the ego poses


def _camera_chain(nusc, scene: dict, channel: str) -> list[dict]:
    """All sample_data (key frames and sweeps) of one camera between the scene's first and last key frame."""
    first = nusc.get("sample", scene["first_sample_token"])
    last = nusc.get("sample", scene["last_sample_token"])
    if channel not in first["data"]:
        return []
    record = nusc.get("sample_data", first["data"][channel])
    # Walk back to sweeps that precede the first key frame but fall inside the window (rare).
    while record["prev"] and nusc.get("sample_data", record["prev"])["timestamp"] >= first["timestamp"]:
        record = nusc.get("sample_data", record["prev"])
    # A camera fires when the lidar sweeps past it, up to ~40 ms after the sample's (lidar) time: the
    # window ends at the later of the two, or the last key frame's own image of this camera is lost.
    end = last["timestamp"]
    if channel in last["data"]:
        end = max(end, nusc.get("sample_data", last["data"][channel])["timestamp"])
    chain = []
    while record is not None and record["timestamp"] <= end:
        chain.append(record)
        record = nusc.get("sample_data", record["next"]) if record["next"] else None
    return chain


def reference_camera(cameras: list[str]) -> int:
    """CAM_FRONT where the rig has it (as nuScenes' own ego poses are read), else the first camera."""
    return cameras.index("CAM_FRONT") if "CAM_FRONT" in cameras else 0


def scene_timeline(nusc, scene_name: str, cameras: list[str], fps: float) -> SceneTimeline:
    """Frames at `fps` from the reference camera's chain; every other camera takes its nearest frame
    within half a period."""
    scene = _scene_record(nusc, scene_name)
    location = nusc.get("log", scene["log_token"])["location"]
    chains = {channel: _camera_chain(nusc, scene, channel) for channel in cameras}
    reference = reference_camera(cameras)
    leader = cameras[reference]
    if not chains[leader]:
        return SceneTimeline(scene_name, scene["description"], location, np.zeros(0, np.int64), [], cameras,
                             reference)
    period = 1e6 / fps
    times = {channel: [r["timestamp"] for r in chain] for channel, chain in chains.items()}
    timestamps, tokens = [], []
    for when, reference_record in _resample(chains[leader], times[leader], period):
        timestamps.append(when)
        if reference_record is None:
            # A gap in the reference camera: the frame stays, empty, so no clip spans it.
            tokens.append([None] * len(cameras))
            continue
        row = []
        for channel in cameras:
            record = reference_record if channel == leader else _nearest(chains[channel], times[channel], when,
                                                                         period / 2)
            row.append(None if record is None else record["token"])
        tokens.append(row)
    if sum(row[reference] is None for row in tokens) > len(tokens) / 2:
        raise DataError(f"--fps {fps:g} is faster than the log's {leader} "
                        f"(about {_rate(times[leader]):.1f} Hz in {scene_name})")
    return SceneTimeline(scene_name, scene["description"], location, np.asarray(timestamps, np.int64), tokens,
                         cameras, reference)


def _resample(chain: list[dict], times: list[int], period: float) -> list[tuple[int, dict | None]]:
    """(timestamp, record or None for a gap) per frame: the record nearest one period after the frame
    before, within half a period. Stepping from the frame actually taken, not along a fixed grid from
    the first, keeps timestamps a few microseconds short of the period (a fixed grid dropped the last of
    0, 99 997 and 199 994 us at 10 Hz) and a camera a few percent off `fps` (a grid drifts off it
    within seconds and leaves gaps)."""
    frames, when = [], float(times[0])
    while when <= times[-1] + period / 2:
        record = _nearest(chain, times, when, period / 2)
        if record is not None:
            when = record["timestamp"]
        frames.append((int(round(when)), record))
        when += period
    return frames


def _scene_record(nusc, scene_name: str) -> dict:
    scene = next((s for s in nusc.scene if s["name"] == scene_name), None)
    if scene is None:
        raise DataError(f"scene {scene_name!r} is not in the log")
    return scene


def scene_rate(nusc, scene_name: str, cameras: list[str]) -> float | None:
    """The frame rate of the scene's reference camera in Hz; None with fewer than two frames."""
    chain = _camera_chain(nusc, _scene_record(nusc, scene_name), cameras[reference_camera(cameras)])
    return _rate([record["timestamp"] for record in chain]) if len(chain) >= 2 else None


def _rate(times: list[int]) -> float:
    """Hz from the median step between timestamps, so a dropped or late frame does not move it. Within 1%
    of a whole number it is that number: cameras run at whole rates, and jitter in the steps should not
    become 11.99 fps in every clip."""
    if len(times) < 2:
        return 0.0
    rate = 1e6 / max(float(np.median(np.diff(np.asarray(times, np.int64)))), 1.0)
    whole = round(rate)
    return float(whole) if whole and abs(rate - whole) <= 0.01 * rate else round(rate, 2)


def _nearest(chain: list[dict], times: list[int], when: float, tolerance: float) -> dict | None:
    index = bisect.bisect_left(times, when)
    best = min((i for i in (index - 1, index) if 0 <= i < len(times)), key=lambda i: abs(times[i] - when),
               default=None)
    if best is None or abs(times[best] - when) > tolerance:
        return None
    return chain[best]


def ego_poses_around(nusc, scene_name: str, camera: str, timestamp: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(timestamps int64 [2], world_from_ego [2, 4, 4]) at `camera`'s frames either side of its frame at
    `timestamp` (that frame itself at either end of the scene): what the ego's speed and turn were there.
    None when the camera has no frame at that time in the scene, or no other frame."""
    chain = _camera_chain(nusc, _scene_record(nusc, scene_name), camera)
    times = [record["timestamp"] for record in chain]
    index = bisect.bisect_left(times, timestamp)
    if len(chain) < 2 or index == len(times) or times[index] != timestamp:
        return None
    pair = (chain[max(index - 1, 0)], chain[min(index + 1, len(chain) - 1)])
    return (np.array([record["timestamp"] for record in pair], np.int64),
            world_from_ego(nusc, [record["token"] for record in pair]))


def pose_matrix(record: dict) -> np.ndarray:
    """A 4x4 transform from a nuScenes record with translation and rotation (w, x, y, z)."""
    return transform_from(np.asarray(record["translation"], np.float64), np.asarray(record["rotation"], np.float64))


def world_from_ego(nusc, tokens: list[str]) -> np.ndarray:
    """float64 [N, 4, 4]: the ego pose at each given sample_data (nuScenes records one per image, at the
    image's own time: a frame's cameras fire up to ~40 ms apart)."""
    return np.stack([pose_matrix(nusc.get("ego_pose", nusc.get("sample_data", t)["ego_pose_token"]))
                     for t in tokens])


def calibration(nusc, tokens: list[str], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(intrinsics [V, 3, 3] rescaled to `size` (w, h), ego_from_cam [V, 4, 4]) from one frame's sample_data."""
    intrinsics, ego_from_cam = [], []
    for token in tokens:
        record = nusc.get("sample_data", token)
        sensor = nusc.get("calibrated_sensor", record["calibrated_sensor_token"])
        if not sensor["camera_intrinsic"]:
            raise DataError(f"calibrated_sensor {sensor['token']}: no camera_intrinsic for {record['filename']}")
        k = np.asarray(sensor["camera_intrinsic"], np.float64)
        intrinsics.append(resize_intrinsics(k, size[0] / record["width"], size[1] / record["height"]))
        ego_from_cam.append(pose_matrix(sensor))
    return np.stack(intrinsics).astype(np.float32), np.stack(ego_from_cam).astype(np.float32)


def _yaw(rotation_wxyz) -> float:
    matrix = matrix_from_quaternion(np.asarray(rotation_wxyz, np.float64))
    return math.atan2(matrix[1, 0], matrix[0, 0])


def annotation_times(nusc, tokens: list[str], timestamps: np.ndarray) -> np.ndarray:
    """int64 [T]: the time to take each frame's boxes at. Where the frame's (reference camera's) sample_data
    is a key frame, its sample's own time: nuScenes annotates at the sample (lidar) time and the devkit hands
    every camera of a key frame those annotations as they are; elsewhere the frame's timestamp."""
    times = np.asarray(timestamps, np.int64).copy()
    for t, token in enumerate(tokens):
        record = nusc.get("sample_data", token)
        if record["is_key_frame"]:
            times[t] = nusc.get("sample", record["sample_token"])["timestamp"]
    return times


@dataclass
class _KeyFrame:
    timestamp: int
    boxes: dict[str, np.ndarray]   # instance token -> [10]
    rotations: dict[str, np.ndarray]  # instance token -> float64 [4], unit quaternion (w, x, y, z), world frame
    categories: dict[str, str]


class BoxTrack:
    """A scene's annotations, interpolated to any time between its key frames."""

    def __init__(self, nusc, scene_name: str):
        scene = next(s for s in nusc.scene if s["name"] == scene_name)
        self.track_ids = {}  # instance token -> index in the log's instance table: stable across clips
        instance_index = getattr(nusc, "_drivesim_instance_index", None)
        if instance_index is None:
            instance_index = {record["token"]: i for i, record in enumerate(nusc.instance)}
            nusc._drivesim_instance_index = instance_index
        self.instance_index = instance_index
        self.key_frames: list[_KeyFrame] = []
        token = scene["first_sample_token"]
        while token:
            sample = nusc.get("sample", token)
            boxes, rotations, categories = {}, {}, {}
            for ann_token in sample["anns"]:
                ann = nusc.get("sample_annotation", ann_token)
                velocity = np.nan_to_num(nusc.box_velocity(ann_token)[:2])
                boxes[ann["instance_token"]] = np.array(
                    [*ann["translation"], *ann["size"], _yaw(ann["rotation"]), *velocity, 1.0], np.float64)
                rotation = np.asarray(ann["rotation"], np.float64)
                rotations[ann["instance_token"]] = rotation / np.linalg.norm(rotation)
                categories[ann["instance_token"]] = ann["category_name"]
            self.key_frames.append(_KeyFrame(sample["timestamp"], boxes, rotations, categories))
            token = sample["next"]
        self.times = [k.timestamp for k in self.key_frames]

    def at(self, when: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes float32 [N, 10], category int16 [N], track int32 [N]) at time `when` (microseconds)."""
        boxes, _, categories, tracks = self.oriented_at(when)
        return boxes, categories, tracks

    def oriented_at(self, when: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(boxes float32 [N, 10], rotation float32 [N, 4] (w, x, y, z, world frame), category int16 [N],
        track int32 [N]) at time `when` (microseconds).

        Objects in both bracketing key frames are interpolated (centre, size and velocity linearly,
        rotation by slerp, as the devkit does; the yaw column is the heading of that rotation); the
        last column is 1 on a key frame and 0 when interpolated. An object in only one of them is held
        while that key frame is the nearer one.
        """
        index = bisect.bisect_right(self.times, when) - 1
        index = min(max(index, 0), len(self.key_frames) - 1)
        before = self.key_frames[index]
        after = self.key_frames[min(index + 1, len(self.key_frames) - 1)]
        span = after.timestamp - before.timestamp
        amount = 0.0 if span <= 0 else min(max((when - before.timestamp) / span, 0.0), 1.0)
        rows, ends, categories, tracks = [], [], [], []
        for instance in sorted(set(before.boxes) | set(after.boxes), key=self.instance_index.__getitem__):
            a, b = before.boxes.get(instance), after.boxes.get(instance)
            if a is not None and b is not None:
                box, end = a + (b - a) * amount, (before.rotations[instance], after.rotations[instance])
            elif a is not None and amount < 0.5:
                box, end = a.copy(), (before.rotations[instance],) * 2
            elif b is not None and amount >= 0.5:
                box, end = b.copy(), (after.rotations[instance],) * 2
            else:
                continue
            box[9] = 1.0 if amount in (0.0, 1.0) else 0.0
            category = (before.categories.get(instance) or after.categories[instance])
            rows.append(box)
            ends.append(end)
            categories.append(CATEGORY_INDEX.get(category, CATEGORY_INDEX["other"]))
            tracks.append(self.instance_index[instance])
        if not rows:
            return (np.zeros((0, 10), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.int16),
                    np.zeros(0, np.int32))
        boxes = np.stack(rows)
        start, end = (np.stack(q) for q in zip(*ends))
        # On a key frame, the annotation's own rotation, not slerp's rounding of it.
        rotations = start if amount == 0.0 else end if amount == 1.0 else slerp(start, end, np.full(len(rows), amount))
        rotations = np.where(rotations[:, :1] < 0, -rotations, rotations)  # w >= 0: one sign per rotation
        boxes[:, 6] = yaw_from_matrix(matrix_from_quaternion(rotations))
        return (boxes.astype(np.float32), rotations.astype(np.float32), np.asarray(categories, np.int16),
                np.asarray(tracks, np.int32))


def image_path(nusc, token: str) -> Path:
    return Path(nusc.dataroot) / nusc.get("sample_data", token)["filename"]


def load_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, 3] at `size` (w, h). Raises FileNotFoundError or DataError (corrupt) naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"{path}: image missing")
    try:
        with Image.open(path) as image:
            # JPEG decodes straight to a smaller power-of-two scale: much less work for 1600x900 -> 448x256.
            image.draft("RGB", (size[0], size[1]))
            image = image.convert("RGB")
            if image.size != tuple(size):
                image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(image, np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise DataError(f"{path}: corrupt image ({error})") from None


def _runs_near(points: np.ndarray, centres: np.ndarray, radius: float) -> list[np.ndarray]:
    """Pieces of a polyline whose vertices lie within `radius` of any centre, at least 2 points long."""
    if len(points) < 2:
        return []
    distance = np.min(np.linalg.norm(points[:, None, :2] - centres[None, :, :2], axis=-1), axis=1)
    near = distance <= radius
    pieces, start = [], None
    for i, flag in enumerate([*near, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if i - start >= 2:
                pieces.append(points[start:i])
            start = None
    return pieces


def _synthetic_polylines(dataroot: Path, location: str) -> list[tuple[str, np.ndarray]] | None:
    path = dataroot / "drivesim" / "towns" / f"{location}.json"
    if not path.is_file():
        return None
    from drivesim.data.synth.side_files import read_town_json

    try:
        town = read_town_json(path)
    except (ValueError, KeyError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: unreadable town side file ({error})") from None
    lines = [("lane", np.asarray(lane["centerline"], np.float64)) for lane in town["lanes"]]
    kinds = {"dashed_white": "lane_divider", "solid_white": "solid_line", "double_yellow": "double_yellow",
             "stop_line": "stop_line"}
    lines += [(kinds[m["kind"]], np.asarray(m["points"], np.float64)) for m in town["markings"] if m["kind"] in kinds]
    lines += [("road_edge", _closed(np.asarray(edge, np.float64))) for edge in town["road_edges"]]
    lines += [("crosswalk", _closed(np.asarray(c, np.float64))) for c in town["crosswalks"]]
    return lines


def _closed(points: np.ndarray) -> np.ndarray:
    return points if np.allclose(points[0], points[-1]) else np.concatenate([points, points[:1]])


def _expansion_polylines(dataroot: Path, location: str) -> list[tuple[str, np.ndarray]] | None:
    """Lanes and edges from the nuScenes map expansion (maps/expansion/<location>.json), when installed."""
    if not (dataroot / "maps" / "expansion" / f"{location}.json").is_file():
        return None
    from nuscenes.map_expansion.arcline_path_utils import discretize_lane
    from nuscenes.map_expansion.map_api import NuScenesMap

    nmap = NuScenesMap(dataroot=str(dataroot), map_name=location)
    lines = []
    for record in nmap.lane + nmap.lane_connector:
        arcline = nmap.arcline_path_3.get(record["token"])
        if arcline:
            lines.append(("lane", np.asarray(discretize_lane(arcline, resolution_meters=1.0))[:, :2]))
    # A road divider parts the two directions of travel: drawn as the double line that does so.
    for layer, kind in (("lane_divider", "lane_divider"), ("road_divider", "double_yellow")):
        for record in getattr(nmap, layer):
            line = nmap.extract_line(record["line_token"])
            lines.append((kind, np.asarray(line.coords, np.float64)))
    for layer, kind in (("drivable_area", "road_edge"), ("ped_crossing", "crosswalk"), ("stop_line", "stop_line")):
        for record in getattr(nmap, layer):
            for polygon_token in record.get("polygon_tokens", [record.get("polygon_token")]):
                if polygon_token:
                    polygon = nmap.extract_polygon(polygon_token)
                    lines.append((kind, np.asarray(polygon.exterior.coords, np.float64)))
    return lines


def _densify(points: np.ndarray, step: float) -> np.ndarray:
    """Extra vertices so no segment is longer than `step`: cropping by vertex keeps long straight lines."""
    if len(points) < 2:
        return points
    lengths = np.linalg.norm(np.diff(points, axis=0), axis=1)
    pieces = [points[:1]]
    for start, end, length in zip(points[:-1], points[1:], lengths):
        count = max(int(np.ceil(length / step)), 1)
        amounts = np.arange(1, count + 1)[:, None] / count
        pieces.append(start + (end - start) * amounts)
    return np.concatenate(pieces)


@lru_cache(maxsize=8)
def map_polylines(dataroot: str, location: str, step: float = 2.0) -> tuple[tuple[str, np.ndarray], ...]:
    """All polylines of a location (synthetic side file, else map expansion, else none) in the world frame,
    with vertices at most `step` metres apart."""
    root = Path(dataroot)
    lines = _synthetic_polylines(root, location)
    if lines is None:
        lines = _expansion_polylines(root, location)
    return tuple((kind, _densify(points, step)) for kind, points in lines or ())


def polylines_near(dataroot: str, location: str, world_from_ego: np.ndarray, radius: float = 60.0):
    """(points float32 [P, 3], offsets int32 [K+1], types int16 [K]) within `radius` of the ego path."""
    centres = world_from_ego[:, :3, 3]
    points, offsets, types = [], [0], []
    for kind, line in map_polylines(str(dataroot), location):
        for piece in _runs_near(line, centres, radius):
            xyz = np.zeros((len(piece), 3), np.float32)
            xyz[:, :piece.shape[1]] = piece[:, :3]
            points.append(xyz)
            offsets.append(offsets[-1] + len(piece))
            types.append(POLY_TYPES.index(kind))
    stacked = np.concatenate(points) if points else np.zeros((0, 3), np.float32)
    return stacked, np.asarray(offsets, np.int32), np.asarray(types, np.int16)
