"""Camera rigs: the cameras of a car in view order (views/*.yaml), their image size and which views
neighbour which; read from the views/ folder by name, from a rig file the user gave, or inline.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml

from drivesim.errors import ConfigError
from drivesim.geometry import resize_intrinsics, transform_from

__all__ = ["Camera", "Rig", "load_rig", "parse_size", "rig_document", "rig_names"]


def _frozen(array, shape: tuple[int, ...]) -> np.ndarray:
    array = np.array(array, dtype=np.float64).reshape(shape)
    array.setflags(write=False)  # a frozen dataclass should not hold arrays one can edit in place
    return array


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == on numpy arrays is ambiguous
class Camera:
    """One camera of a rig: pinhole intrinsics (3, 3) and pose ego_from_cam (4, 4), float64."""

    name: str
    intrinsics: np.ndarray
    ego_from_cam: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "intrinsics", _frozen(self.intrinsics, (3, 3)))
        object.__setattr__(self, "ego_from_cam", _frozen(self.ego_from_cam, (4, 4)))


@dataclass(frozen=True, eq=False)
class Rig:
    """Cameras in view order, the image size they share, and which views neighbour which."""

    name: str
    width: int
    height: int
    cameras: tuple[Camera, ...]
    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(camera.name for camera in self.cameras)

    @property
    def intrinsics(self) -> np.ndarray:
        """(V, 3, 3) at the rig's image size."""
        return np.stack([camera.intrinsics for camera in self.cameras])

    @property
    def ego_from_cam(self) -> np.ndarray:
        """(V, 4, 4)."""
        return np.stack([camera.ego_from_cam for camera in self.cameras])

    def camera(self, name: str) -> Camera:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise ConfigError(f"rig {self.name!r} has no camera {name!r}; it has {', '.join(self.names)}")

    def resized(self, width: int, height: int) -> Rig:
        """The rig at another image size; x and y scale independently (1600x900 -> 448x256)."""
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            raise ConfigError(f"rig {self.name!r}: image size must be integers > 0, got {width}x{height}")
        scale_x, scale_y = width / self.width, height / self.height
        cameras = [replace(c, intrinsics=resize_intrinsics(c.intrinsics, scale_x, scale_y)) for c in self.cameras]
        return replace(self, width=width, height=height, cameras=tuple(cameras))


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def show_value(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."  # a whole bad list would drown the message


class _RigFile:
    """Strict reader of one views/*.yaml file: every error names the file and the field."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, where: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where} {problem}" if where else f"{self.path}: {problem}")

    def mapping(self, value, where: str, fields: tuple[str, ...]) -> dict:
        if not isinstance(value, dict):
            # The whole document (where == ""): its type only, since a file that is no rig may be anything.
            shown = show_value(value) if where else f"a {type(value).__name__}"
            raise self.error(where, f"must be a mapping with fields {', '.join(fields)}, got {shown}")
        missing = [name for name in fields if name not in value]
        if missing:
            raise self.error(where, f"is missing field(s) {', '.join(missing)}")
        extra = [str(name) for name in value if name not in fields]
        if extra:  # counted, not named, at the top: the keys of a file that is no rig are its content
            shown = ", ".join(show_value(name) for name in extra) if where else f"{len(extra)}"
            raise self.error(where, f"has unknown field(s) {shown}; expected {', '.join(fields)}")
        return value

    def number(self, value, where: str, positive: bool = False) -> float:
        try:
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:  # YAML ints are unbounded
            number = math.inf
        if not math.isfinite(number):
            raise self.error(where, f"must be a finite number, got {show_value(value)}")
        if positive and value <= 0:
            raise self.error(where, f"must be > 0, got {show_value(value)}")
        return number

    def numbers(self, value, where: str, length: int) -> list[float]:
        if not isinstance(value, list) or len(value) != length:
            raise self.error(where, f"must be a list of {length} numbers, got {show_value(value)}")
        return [self.number(item, f"{where}[{i}]") for i, item in enumerate(value)]

    def name(self, value, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.error(where, f"must be a non-empty string, got {show_value(value)}")
        return value

    def camera(self, value, where: str) -> tuple[Camera, list]:
        fields = ("name", "intrinsics", "translation", "rotation", "neighbours")
        value = self.mapping(value, where, fields)
        intrinsics = self.mapping(value["intrinsics"], f"{where}.intrinsics", ("fx", "fy", "cx", "cy"))
        fx, fy = (self.number(intrinsics[k], f"{where}.intrinsics.{k}", positive=True) for k in ("fx", "fy"))
        cx, cy = (self.number(intrinsics[k], f"{where}.intrinsics.{k}") for k in ("cx", "cy"))
        translation = self.numbers(value["translation"], f"{where}.translation", 3)
        rotation = self.numbers(value["rotation"], f"{where}.rotation", 4)
        norm = math.sqrt(sum(c * c for c in rotation))
        # Rounded quaternions are fine; a norm far from 1 means a typo, not rounding.
        if abs(norm - 1) > 1e-2:
            raise self.error(f"{where}.rotation", f"must be a unit quaternion (w, x, y, z), got norm {norm:.4g}")
        ego_from_cam = transform_from(np.array(translation), np.array(rotation) / norm)
        k = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        camera = Camera(self.name(value["name"], f"{where}.name"), k, ego_from_cam)
        return camera, value["neighbours"]

    def rig(self, document) -> Rig:
        document = self.mapping(document, "", ("name", "image_size", "cameras"))
        name = self.name(document["name"], "name")
        size = self.mapping(document["image_size"], "image_size", ("width", "height"))
        for key in ("width", "height"):
            if not _is_int(size[key]) or size[key] <= 0:
                raise self.error(f"image_size.{key}", f"must be an integer > 0, got {show_value(size[key])}")
        if not isinstance(document["cameras"], list) or not document["cameras"]:
            raise self.error("cameras", f"must be a non-empty list, got {show_value(document['cameras'])}")
        parsed = [self.camera(value, f"cameras[{i}]") for i, value in enumerate(document["cameras"])]
        names = [camera.name for camera, _ in parsed]
        for i, camera_name in enumerate(names):
            if camera_name in names[:i]:
                raise self.error(f"cameras[{i}].name", f"repeats camera name {camera_name!r}")
        neighbours = {}
        for i, (camera, listed) in enumerate(parsed):
            where = f"cameras[{i}].neighbours"
            if not isinstance(listed, list):
                raise self.error(where, f"must be a list of camera names, got {show_value(listed)}")
            for j, other in enumerate(listed):
                if other not in names or other == camera.name:
                    problem = f"names {show_value(other)}, not another camera of the rig: {', '.join(names)}"
                    raise self.error(f"{where}[{j}]", problem)
                if other in listed[:j]:
                    raise self.error(f"{where}[{j}]", f"lists {show_value(other)} twice")
            neighbours[camera.name] = tuple(listed)
        return Rig(name, size["width"], size["height"], tuple(camera for camera, _ in parsed), neighbours)


def views_folder() -> Path:
    return Path(os.environ.get("DRIVESIM_VIEWS") or Path(__file__).resolve().parents[1] / "views")


def _rig_path(name_or_path: str | os.PathLike) -> Path:
    """A bare name ("nuscenes") is views/<name>.yaml; anything else is a path."""
    text = str(name_or_path)
    is_name = isinstance(name_or_path, str) and Path(text).name == text and not text.endswith((".yaml", ".yml"))
    path = views_folder() / f"{text}.yaml" if is_name else Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such rig file; rigs in {views_folder()}: {', '.join(rig_names()) or '(none)'}")
    return path


def _read_rig(path: Path):
    """The parsed YAML of a rig file. Errors give the parser's problem and position, never the file's text:
    a rig path may name any file on the machine, and its first bytes are nobody's business."""
    try:
        return yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read the rig: not UTF-8 text") from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: cannot read the rig: not valid YAML{where} ({error.problem})") from None
    # Not only YAMLError: PyYAML's constructors raise ValueError (`!!int x`, a 13th month), IndexError,
    # AttributeError and RecursionError for text they cannot take; their messages may quote the file.
    except Exception as error:  # noqa: BLE001 - a parse of a file the user named: any failure is a bad file
        reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
        raise ConfigError(f"{path}: cannot read the rig: {reason}") from None


def rig_names() -> list[str]:
    """The rigs of the views folder, by name."""
    return sorted(p.stem for p in views_folder().glob("*.yaml"))


def rig_document(name_or_path: str | os.PathLike) -> dict:
    """A rig file's document, checked as load_rig checks it: what a scenario holds as its inline rig."""
    path = _rig_path(name_or_path)
    document = _read_rig(path)
    _RigFile(path).rig(document)
    return document


def load_rig(name_or_path: str | os.PathLike, size: tuple[int, int] | None = None) -> Rig:
    """Load a camera rig: a bare name ("nuscenes") from the views folder, else a YAML path.

    The views folder is $DRIVESIM_VIEWS, else <repo>/views. size = (width, height) rescales it.
    """
    path = _rig_path(name_or_path)
    rig = _RigFile(path).rig(_read_rig(path))
    if size is None:
        return rig
    if not (isinstance(size, (tuple, list)) and len(size) == 2 and all(_is_int(s) and s > 0 for s in size)):
        raise ConfigError(f"{path}: size must be (width, height), positive integers, got {size!r}")
    return rig.resized(*size)


def parse_size(text: str) -> tuple[int, int]:
    """'448x256' -> (448, 256); a clear error names --size otherwise."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size must be WIDTHxHEIGHT in pixels, like 448x256, got '{text}'") from None
    if width <= 0 or height <= 0:
        raise ConfigError(f"--size must be positive, got {width}x{height}")
    return width, height
