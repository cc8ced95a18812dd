"""Accumulate a driving log as the 13 nuScenes v1.0 tables and write them as JSON,
exactly as nuscenes-devkit 1.2.0 reads them (`NuScenes(version, dataroot=root)`).

Conventions the caller follows (checked where the writer can check them):

- Transforms are 4x4 `a_from_b` matrices; records store translation [x, y, z] in metres
  and rotation as a unit quaternion [w, x, y, z], as nuScenes does.
- Per scene, call in time order: `begin_scene`, then for each key frame k
  `add_sample(t_k)`, the sweeps that fall in (t_{k-1}, t_k) with `sample_token` = sample k,
  then the key-frame sample_data and the annotations of sample k; finally `end_scene`.
  A sweep belongs to the NEXT key frame: `NuScenes.get_boxes` interpolates a sweep's boxes
  between `sample['prev']` and the sweep's `sample`, clamping t into [t_prev, t_sample], so a
  sweep tied to the previous key frame would silently get that frame's boxes. Sweeps after a
  scene's last key frame therefore cannot be written; sweeps before the first one may be.
- Key frames sit under `samples/<CHANNEL>/`, sweeps under `sweeps/<CHANNEL>/`, maps under
  `maps/` (paths relative to `root`); the writer records paths, the caller writes the files.
- Every log needs a map record: the devkit opens each map's PNG on load and gives each log
  its map.
- An annotation needs num_lidar_pts + num_radar_pts > 0 to count in the devkit's detection
  evaluation (`filter_eval_boxes` drops boxes without points); the default 0 keeps it out.
- Tokens are md5 hex of "<table>/<seed>/<counter>", so the same calls give byte-identical
  files; logs meant to be merged need different seeds. Category, attribute and sensor tokens
  depend only on their name, visibility tokens are "1".."4", and an ego_pose shares its
  sample_data's token, as in the real data.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DrivesimError
from drivesim.geometry import translation_rotation_from

TABLE_NAMES = ("attribute", "calibrated_sensor", "category", "ego_pose", "instance", "log", "map",
               "sample", "sample_annotation", "sample_data", "scene", "sensor", "visibility")

# The 23 annotated classes. `index` is the one the lidarseg release added to category.json
# (the devkit only reads it when lidarseg tables exist, but current v1.0 downloads carry it).
CATEGORIES = {
    "animal": (1, "All animals, e.g. cats, rats, dogs, deer, birds."),
    "human.pedestrian.adult": (2, "Adult subcategory."),
    "human.pedestrian.child": (3, "Child subcategory."),
    "human.pedestrian.construction_worker": (4, "Construction worker"),
    "human.pedestrian.personal_mobility": (5, "A small electric or self-propelled vehicle, e.g. skateboard, segway, or scooters, on which the person typically travels in a upright position. Driver and (if applicable) rider should be included in the bounding box along with the vehicle."),  # noqa: E501
    "human.pedestrian.police_officer": (6, "Police officer."),
    "human.pedestrian.stroller": (7, "Strollers. If a person is in the stroller, include in the annotation."),
    "human.pedestrian.wheelchair": (8, "Wheelchairs. If a person is in the wheelchair, include in the annotation."),
    "movable_object.barrier": (9, "Temporary road barrier placed in the scene in order to redirect traffic. Commonly used at construction sites. This includes concrete barrier, metal barrier and water barrier. No fences."),  # noqa: E501
    "movable_object.debris": (10, "Movable object that is left on the driveable surface that is too large to be driven over safely, e.g tree branch, full trash bag etc."),  # noqa: E501
    "movable_object.pushable_pullable": (11, "Objects that a pedestrian may push or pull. For example dolleys, wheel barrows, garbage-bins, or shopping carts."),  # noqa: E501
    "movable_object.trafficcone": (12, "All types of traffic cone."),
    "static_object.bicycle_rack": (13, "Area or device intended to park or secure the bicycles in a row. It includes all the bikes parked in it and any empty slots that are intended for parking bikes."),  # noqa: E501
    "vehicle.bicycle": (14, "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds either on road surface, sidewalks or bike paths."),  # noqa: E501
    "vehicle.bus.bendy": (15, "Bendy bus subcategory. Annotate each section of the bendy bus individually."),
    "vehicle.bus.rigid": (16, "Rigid bus subcategory."),
    "vehicle.car": (17, "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans, mini-vans, SUVs and jeeps. If the vehicle is designed to carry more than 10 people use vehicle.bus. If it is primarily designed to haul cargo use vehicle.truck."),  # noqa: E501
    "vehicle.construction": (18, "Vehicles primarily designed for construction. Typically very slow moving or stationary. Cranes and extremities of construction vehicles are only included in annotations if they interfere with traffic. Trucks used to haul rocks or building materials are considered vehicle.truck rather than construction vehicles."),  # noqa: E501
    "vehicle.emergency.ambulance": (19, "All types of ambulances."),
    "vehicle.emergency.police": (20, "All types of police vehicles including police bicycles and motorcycles."),
    "vehicle.motorcycle": (21, "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly (at the speed of standard cars) on the road surface. This category includes all motorcycles, vespas and scooters."),  # noqa: E501
    "vehicle.trailer": (22, "Any vehicle trailer, both for trucks, cars and bikes."),
    "vehicle.truck": (23, "Vehicles primarily designed to haul cargo including pick-ups, lorrys, trucks and semi-tractors. Trailers hauled after a semi-tractor should be labeled as vehicle.trailer"),  # noqa: E501
}

ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is NO rider on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}

# Generated logs start at 2026-01-01T00:00:00Z (microseconds): drivesim synth's scenes and export's alike.
START_US = 1_767_225_600_000_000
VISIBILITY_LEVELS = {1: "v0-40", 2: "v40-60", 3: "v60-80", 4: "v80-100"}
# A version folder's name, as the devkit's loader takes it: one plain name, so root/version stays in root.
VERSION = re.compile(r"v1\.0-[A-Za-z0-9_-]+")
MODALITIES = ("camera", "lidar", "radar")


class NuScenesTableError(DrivesimError, ValueError):
    """A call that would make the nuScenes tables wrong or unreadable by the devkit."""


def _name_token(key: str) -> str:
    return hashlib.md5(key.encode(), usedforsecurity=False).hexdigest()


def _floats(values) -> list[float]:
    # json writes numpy scalars badly or not at all; plain floats also print reproducibly.
    return [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]


def _pose_fields(transform, name: str) -> tuple[list[float], list[float]]:
    """(translation, rotation wxyz) of a rigid 4x4 transform."""
    matrix = np.asarray(transform, dtype=np.float64)
    if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
        raise NuScenesTableError(f"{name} must be a finite 4x4 matrix, got shape {matrix.shape}")
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-5) or np.linalg.det(rotation) < 0:
        raise NuScenesTableError(f"{name} must be a rigid transform: its 3x3 block is not a rotation")
    translation, rotation_wxyz = translation_rotation_from(matrix)  # w >= 0 keeps files stable
    return _floats(translation), _floats(rotation_wxyz)


def _check_attribute_fits(category: str, attribute: str) -> None:
    # The devkit's detection eval scores attributes per class group (eval/detection/utils.py).
    if category.startswith("human.pedestrian."):
        group = "pedestrian."
    elif category in ("vehicle.bicycle", "vehicle.motorcycle"):
        group = "cycle."
    elif category.startswith("vehicle."):
        group = "vehicle."
    else:
        group = None
    if group is None or not attribute.startswith(group):
        allowed = f"'{group}*' attributes" if group else "no attributes"
        raise NuScenesTableError(f"attribute '{attribute}' does not fit category '{category}': it takes {allowed}")


def check_version(version) -> str:
    """`version` as a table folder name (v1.0-mini, v1.0-trainval, ...); ConfigError naming --version otherwise."""
    if not isinstance(version, str) or not VERSION.fullmatch(version):
        raise ConfigError(f"--version must look like v1.0-mini or v1.0-trainval (v1.0- then letters, digits, _ or "
                          f"-), got {version!r}")
    return version


def attribute_for(category: str, speed: float, parked: bool) -> list[str]:
    """The nuScenes attribute a box's motion implies (the devkit scores attributes per class group)."""
    if category in ("vehicle.bicycle", "vehicle.motorcycle"):
        return ["cycle.with_rider"]
    if category.startswith("vehicle."):
        return ["vehicle.parked" if parked else "vehicle.moving" if speed > 0.5 else "vehicle.stopped"]
    if category.startswith("human.pedestrian"):
        return ["pedestrian.moving" if speed > 0.3 else "pedestrian.standing"]
    return []


class NuScenesWriter:
    """Builds the nuScenes tables of one or more logs in memory; `write` puts them on disk."""

    def __init__(self, root: Path, version: str = "v1.0-mini", seed: int = 0):
        self.root = Path(root)
        self.version = check_version(version)  # the tables go to root/version
        self.seed = seed
        self._tables: dict[str, dict[str, dict]] = {name: {} for name in TABLE_NAMES}
        self._counters = {name: 0 for name in TABLE_NAMES}
        for name, (index, description) in CATEGORIES.items():
            self._insert("category", {"token": _name_token(f"category/{name}"), "name": name,
                                      "description": description, "index": index})
        for name, description in ATTRIBUTES.items():
            self._insert("attribute", {"token": _name_token(f"attribute/{name}"), "name": name,
                                       "description": description})
        for token, level in VISIBILITY_LEVELS.items():
            low, high = level[1:].split("-")
            self._insert("visibility", {"description": f"visibility of whole object is between {low} and {high}%",
                                        "token": str(token), "level": level})
        self._scene: dict | None = None

    # --- bookkeeping ---------------------------------------------------------------

    def _new_token(self, table: str) -> str:
        self._counters[table] += 1
        return _name_token(f"{table}/{self.seed}/{self._counters[table]}")

    def _insert(self, table: str, record: dict) -> str:
        self._tables[table][record["token"]] = record
        return record["token"]

    def _get(self, table: str, token: str, what: str) -> dict:
        if token not in self._tables[table]:
            raise NuScenesTableError(f"{what} '{token}' is not a {table} token of this writer")
        return self._tables[table][token]

    def _require_scene(self, call: str) -> dict:
        if self._scene is None:
            raise NuScenesTableError(f"{call} needs an open scene: call begin_scene first")
        return self._scene

    def _scene_sample(self, sample_token: str, call: str) -> dict:
        scene = self._require_scene(call)
        sample = self._get("sample", sample_token, f"{call}: sample_token")
        if sample["scene_token"] != scene["token"]:
            raise NuScenesTableError(f"{call}: sample '{sample_token}' belongs to another scene than "
                                     f"the open one '{scene['name']}'")
        return sample

    # --- static records ------------------------------------------------------------

    def add_log(self, logfile: str, vehicle: str, date_captured: str, location: str) -> str:
        """A log record; `date_captured` as 'YYYY-MM-DD', `location` e.g. 'singapore-onenorth'."""
        return self._insert("log", {"token": self._new_token("log"), "logfile": logfile, "vehicle": vehicle,
                                    "date_captured": date_captured, "location": location})

    def add_map(self, log_tokens: list[str], filename: str | None = None, category: str = "semantic_prior") -> str:
        """A map record for these logs. `filename` is relative to root and defaults to
        'maps/<map token>.png' (the real naming); the caller writes that PNG mask."""
        for log_token in log_tokens:
            self._get("log", log_token, "add_map: log token")
        token = self._new_token("map")
        filename = f"maps/{token}.png" if filename is None else filename
        if Path(filename).is_absolute():
            raise NuScenesTableError(f"add_map: filename '{filename}' must be relative to the data root")
        return self._insert("map", {"category": category, "token": token, "filename": filename,
                                    "log_tokens": list(log_tokens)})

    def add_calibrated_sensor(self, channel: str, modality: str, ego_from_sensor: np.ndarray,
                              intrinsics: np.ndarray | None = None) -> str:
        """A calibration of `channel` (one sensor record per channel, shared by its calibrations).
        Cameras need a 3x3 `intrinsics`; lidar and radar store [] as nuScenes does."""
        if modality not in MODALITIES:
            raise NuScenesTableError(f"add_calibrated_sensor: modality '{modality}' of {channel} "
                                     f"is not one of {MODALITIES}")
        sensor_token = _name_token(f"sensor/{channel}")
        sensor = self._tables["sensor"].get(sensor_token)
        if sensor is not None and sensor["modality"] != modality:
            raise NuScenesTableError(f"add_calibrated_sensor: channel {channel} was a {sensor['modality']} "
                                     f"sensor, now given as {modality}")
        if sensor is None:
            self._insert("sensor", {"token": sensor_token, "channel": channel, "modality": modality})
        if modality == "camera":
            matrix = None if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
            if matrix is None or matrix.shape != (3, 3):
                raise NuScenesTableError(f"add_calibrated_sensor: camera {channel} needs 3x3 intrinsics")
            camera_intrinsic = [_floats(row) for row in matrix]
        elif intrinsics is not None:
            raise NuScenesTableError(f"add_calibrated_sensor: {modality} {channel} takes no intrinsics")
        else:
            camera_intrinsic = []
        translation, rotation = _pose_fields(ego_from_sensor, f"ego_from_sensor of {channel}")
        return self._insert("calibrated_sensor", {
            "token": self._new_token("calibrated_sensor"), "sensor_token": sensor_token,
            "translation": translation, "rotation": rotation, "camera_intrinsic": camera_intrinsic})

    # --- scenes ----------------------------------------------------------------------

    def begin_scene(self, name: str, description: str, log_token: str) -> str:
        if self._scene is not None:
            raise NuScenesTableError(f"begin_scene '{name}': scene '{self._scene['name']}' is still open; "
                                     "call end_scene")
        self._get("log", log_token, f"begin_scene '{name}': log_token")
        self._scene = {"token": self._new_token("scene"), "log_token": log_token, "nbr_samples": 0,
                       "first_sample_token": "", "last_sample_token": "", "name": name, "description": description}
        self._last_sample: dict | None = None
        self._last_data: dict[str, dict] = {}  # channel -> latest sample_data, for prev/next
        self._key_frames: set[tuple[str, str]] = set()  # (sample token, channel)
        self._instances: dict[str, dict] = {}  # instance_key -> instance record
        self._last_annotation: dict[str, dict] = {}  # instance token -> latest annotation
        return self._insert("scene", self._scene)

    def add_sample(self, timestamp_us: int) -> str:
        """The next key frame of the open scene (timestamps strictly increase)."""
        scene = self._require_scene("add_sample")
        timestamp_us, previous = int(timestamp_us), self._last_sample
        if previous is not None and timestamp_us <= previous["timestamp"]:
            raise NuScenesTableError(f"add_sample: timestamp {timestamp_us} does not follow the previous key "
                                     f"frame's {previous['timestamp']} in scene '{scene['name']}'")
        sample = {"token": self._new_token("sample"), "timestamp": timestamp_us,
                  "prev": previous["token"] if previous else "", "next": "", "scene_token": scene["token"]}
        if previous is not None:
            previous["next"] = sample["token"]
        else:
            scene["first_sample_token"] = sample["token"]
        scene["last_sample_token"] = sample["token"]
        scene["nbr_samples"] += 1
        self._last_sample = sample
        return self._insert("sample", sample)

    def add_sample_data(self, channel: str, calibrated_sensor_token: str, sample_token: str, timestamp_us: int,
                        world_from_ego: np.ndarray, filename: str, width: int, height: int,
                        is_key_frame: bool, fileformat: str = "jpg") -> str:
        """One sensor reading and its ego pose. A key frame names its own sample; a sweep names
        the first sample after it (see the module docstring). Lidar and radar use width = height = 0."""
        calibrated = self._get("calibrated_sensor", calibrated_sensor_token, "add_sample_data: calibrated_sensor_token")
        sensor_channel = self._tables["sensor"][calibrated["sensor_token"]]["channel"]
        if sensor_channel != channel:
            raise NuScenesTableError(f"add_sample_data: calibrated sensor '{calibrated_sensor_token}' "
                                     f"is {sensor_channel}, not {channel}")
        sample = self._scene_sample(sample_token, "add_sample_data")
        timestamp_us = int(timestamp_us)
        previous = self._last_data.get(channel)
        if previous is not None and timestamp_us <= previous["timestamp"]:
            raise NuScenesTableError(f"add_sample_data: {channel} timestamp {timestamp_us} does not follow its "
                                     f"previous reading's {previous['timestamp']}")
        if is_key_frame:
            if (sample_token, channel) in self._key_frames:
                raise NuScenesTableError(f"add_sample_data: sample '{sample_token}' already has a {channel} key frame")
            self._key_frames.add((sample_token, channel))
        else:
            before = self._tables["sample"].get(sample["prev"])
            if not (timestamp_us < sample["timestamp"] and (before is None or before["timestamp"] < timestamp_us)):
                raise NuScenesTableError(
                    f"add_sample_data: the {channel} sweep at {timestamp_us} must name the first key frame after it "
                    f"as sample_token (the devkit interpolates its boxes from that sample and the one before); "
                    f"'{sample_token}' is at {sample['timestamp']}")
        if Path(filename).is_absolute():
            raise NuScenesTableError(f"add_sample_data: filename '{filename}' must be relative to the data root")
        token = self._new_token("sample_data")
        translation, rotation = _pose_fields(world_from_ego, f"world_from_ego at {timestamp_us}")
        self._insert("ego_pose", {"token": token, "timestamp": timestamp_us,
                                  "rotation": rotation, "translation": translation})
        record = {"token": token, "sample_token": sample_token, "ego_pose_token": token,
                  "calibrated_sensor_token": calibrated_sensor_token, "timestamp": timestamp_us,
                  "fileformat": fileformat, "is_key_frame": bool(is_key_frame), "height": int(height),
                  "width": int(width), "filename": filename, "prev": previous["token"] if previous else "", "next": ""}
        if previous is not None:
            previous["next"] = token
        self._last_data[channel] = record
        return self._insert("sample_data", record)

    def add_annotation(self, sample_token: str, instance_key: str, category: str, translation, size_wlh,
                       rotation_wxyz, visibility: int, attributes: list[str],
                       num_lidar_pts: int = 0, num_radar_pts: int = 0) -> str:
        """A 3D box (world frame, centre, width-length-height, wxyz) of the object `instance_key`
        (one instance per key per scene) in a key frame; an object's boxes come in time order."""
        sample = self._scene_sample(sample_token, "add_annotation")
        where = f"add_annotation '{instance_key}'"
        if category not in CATEGORIES:
            raise NuScenesTableError(f"{where}: unknown category '{category}'; nuScenes has {sorted(CATEGORIES)}")
        if visibility not in VISIBILITY_LEVELS:
            raise NuScenesTableError(f"{where}: visibility {visibility!r} must be 1..4 (0-40, 40-60, 60-80, 80-100 %)")
        for name in attributes:
            if name not in ATTRIBUTES:
                raise NuScenesTableError(f"{where}: unknown attribute '{name}'; nuScenes has {sorted(ATTRIBUTES)}")
            _check_attribute_fits(category, name)
        if len(attributes) > 1:  # the devkit's evaluation loader refuses more than one
            raise NuScenesTableError(f"{where}: at most one attribute per box, got {attributes}")
        box = [np.asarray(v, dtype=np.float64) for v in (translation, size_wlh, rotation_wxyz)]
        if [b.shape for b in box] != [(3,), (3,), (4,)] or not all(np.all(np.isfinite(b)) for b in box):
            raise NuScenesTableError(f"{where}: translation, size_wlh and rotation_wxyz must be finite, "
                                     "of length 3, 3, 4")
        if np.any(box[1] <= 0) or not np.isclose(np.linalg.norm(box[2]), 1.0, atol=1e-4):
            raise NuScenesTableError(f"{where}: size must be positive and rotation a unit quaternion")
        if num_lidar_pts < 0 or num_radar_pts < 0:
            raise NuScenesTableError(f"{where}: point counts must not be negative")

        instance = self._instances.get(instance_key)
        category_token = _name_token(f"category/{category}")
        if instance is None:
            instance = {"token": self._new_token("instance"), "category_token": category_token, "nbr_annotations": 0,
                        "first_annotation_token": "", "last_annotation_token": ""}
            self._instances[instance_key] = self._tables["instance"][instance["token"]] = instance
        elif instance["category_token"] != category_token:
            raise NuScenesTableError(f"{where}: the object was annotated with another category before")
        previous = self._last_annotation.get(instance["token"])
        if previous is not None:
            previous_time = self._tables["sample"][previous["sample_token"]]["timestamp"]
            if previous_time >= sample["timestamp"]:
                raise NuScenesTableError(f"{where}: boxes of one object must come in time order, one per sample; "
                                         f"this sample is at {sample['timestamp']}, the last box at {previous_time}")
        token = self._new_token("sample_annotation")
        record = {"token": token, "sample_token": sample_token, "instance_token": instance["token"],
                  "visibility_token": str(visibility),
                  "attribute_tokens": [_name_token(f"attribute/{name}") for name in attributes],
                  "translation": _floats(box[0]), "size": _floats(box[1]), "rotation": _floats(box[2]),
                  "prev": previous["token"] if previous else "", "next": "",
                  "num_lidar_pts": int(num_lidar_pts), "num_radar_pts": int(num_radar_pts)}
        if previous is not None:
            previous["next"] = token
        else:
            instance["first_annotation_token"] = token
        instance["last_annotation_token"] = token
        instance["nbr_annotations"] += 1
        self._last_annotation[instance["token"]] = record
        return self._insert("sample_annotation", record)

    def instance_token(self, instance_key: str) -> str:
        """The instance token given to `instance_key` by its first annotation."""
        if instance_key not in self._instances:
            raise NuScenesTableError(f"instance_token: '{instance_key}' has no annotation yet")
        return self._instances[instance_key]["token"]

    def end_scene(self) -> None:
        """Closes the open scene; its sample count and first/last samples are kept up to date as
        samples arrive, so this only checks that the scene has a key frame."""
        scene = self._require_scene("end_scene")
        if scene["nbr_samples"] == 0:
            raise NuScenesTableError(f"end_scene: scene '{scene['name']}' has no samples")
        self._scene = None

    # --- output ----------------------------------------------------------------------

    def write(self) -> Path:
        """Writes `<root>/<version>/<table>.json` for all 13 tables; returns that folder."""
        if self._scene is not None:
            raise NuScenesTableError(f"write: scene '{self._scene['name']}' is still open; call end_scene")
        mapped = {log for record in self._tables["map"].values() for log in record["log_tokens"]}
        unmapped = [record["logfile"] for record in self._tables["log"].values() if record["token"] not in mapped]
        if not self._tables["map"] or unmapped:
            raise NuScenesTableError(f"write: every log needs a map record (add_map); logs without one: {unmapped}")
        table_root = self.root / self.version
        table_root.mkdir(parents=True, exist_ok=True)
        for name in TABLE_NAMES:
            path = table_root / f"{name}.json"
            # Write then rename, so a crash never leaves a half-written table beside good ones.
            partial = path.with_suffix(".json.partial")
            partial.write_text(json.dumps(list(self._tables[name].values()), indent=0) + "\n")
            os.replace(partial, path)
        return table_root
