"""The zarr v3 clip store (schema: ../shared/DESIGN.md): write a clip atomically, read it, list,
remove, keep the root index, and verify every clip against its checksums and shapes.

Every command reads clips through `open_clip`: a chunk file that is gone (zarr would read it back as
zeros) or fails its checksum is a DataError naming the store, the clip and the array."""

from __future__ import annotations

import itertools
import math
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drivesim.errors import DamagedData, DataError, describe

SCHEMA = "drivesim-clips/2"
# drivesim-clips/1 stores lack world_from_ego_cam and box_rotation: they are read (camera_poses and
# box_rotations stand in for the two) and verified, but not written to. Version 2 writes every chunk,
# even one that is all zeros (zarr leaves those out by default), so a missing chunk file is damage;
# in a version 1 store it may be an all-zero chunk, so only checksums are checked there.
READABLE_SCHEMAS = ("drivesim-clips/1", SCHEMA)
ADDED_IN_2 = ("world_from_ego_cam", "box_rotation")
PARTIAL = ".partial"  # clips being written; never listed, cleared when ingest starts
SPLITS = ("train", "val")


@dataclass
class Clip:
    """One clip in memory, all geometry in the world frame, arrays as in the store."""

    clip_id: str
    frames: np.ndarray          # uint8 [T, V, H, W, 3]
    intrinsics: np.ndarray      # float32 [V, 3, 3]
    ego_from_cam: np.ndarray    # float32 [V, 4, 4]
    world_from_ego: np.ndarray  # float64 [T, 4, 4]
    timestamps: np.ndarray      # int64 [T] microseconds
    boxes: np.ndarray           # float32 [N, 10]: centre xyz, size wlh, yaw, velocity xy, 1 = key frame
    box_offsets: np.ndarray     # int32 [T+1]
    box_category: np.ndarray    # int16 [N]
    box_track: np.ndarray       # int32 [N]
    polylines: np.ndarray       # float32 [P, 3]
    poly_offsets: np.ndarray    # int32 [K+1]
    poly_type: np.ndarray       # int16 [K]
    attrs: dict = field(default_factory=dict)  # source, scene, split, caption, cameras, fps, start
    # The ego pose when each camera's image was taken, float64 [T, V, 4, 4] (world_from_ego is the
    # reference camera's), and each box's rotation, float32 [N, 4] (w, x, y, z, world frame; boxes[:, 6]
    # is its heading). None: the cameras fire together and the boxes only turn about z (rollouts).
    world_from_ego_cam: np.ndarray | None = None
    box_rotation: np.ndarray | None = None


ARRAY_DTYPES = {"frames": np.uint8, "intrinsics": np.float32, "ego_from_cam": np.float32,
                "world_from_ego": np.float64, "timestamps": np.int64, "boxes": np.float32,
                "box_offsets": np.int32, "box_category": np.int16, "box_track": np.int32,
                "polylines": np.float32, "poly_offsets": np.int32, "poly_type": np.int16,
                "world_from_ego_cam": np.float64, "box_rotation": np.float32}


def camera_poses(clip, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float64 [T, V, 4, 4]: the ego pose at each camera's own capture time, frames [start, stop) of a
    clip (a zarr group or a dict of its arrays). A clip without them (drivesim-clips/1) gives every
    camera its frame's world_from_ego."""
    if "world_from_ego_cam" in clip:
        return np.asarray(clip["world_from_ego_cam"][start:stop], np.float64)
    poses = np.asarray(clip["world_from_ego"][start:stop], np.float64)
    return np.repeat(poses[:, None], clip["ego_from_cam"].shape[0], axis=1)


def box_rotations(clip, start: int = 0, stop: int | None = None) -> np.ndarray:
    """float64 [N, 4]: unit quaternions (w, x, y, z, world frame) of box rows [start, stop) of a clip (a
    zarr group or a dict of its arrays). A clip without them (drivesim-clips/1) turns each box by its
    yaw about z."""
    if "box_rotation" in clip:
        return np.asarray(clip["box_rotation"][start:stop], np.float64)
    half_yaw = np.asarray(clip["boxes"][start:stop, 6], np.float64) / 2
    zero = np.zeros_like(half_yaw)
    return np.stack([np.cos(half_yaw), zero, zero, np.sin(half_yaw)], axis=-1)


EVERY_CHUNK = {"write_empty_chunks": True}  # see SCHEMA: a chunk of zeros is written, not left out


def _codecs(level: int):
    from zarr.codecs import Crc32cCodec, ZstdCodec

    # zstd keeps decoding far faster than JPEG; crc32c lets `store verify` catch any flipped byte.
    return [ZstdCodec(level=level), Crc32cCodec()]


def _is_store(path: Path) -> bool:
    return (path / "zarr.json").is_file() and (path / "clips").is_dir()


def create_store(path: Path, settings: dict, categories: list[str], poly_types: list[str]):
    """Open the store at `path` for writing, creating it; an existing store must have the same settings."""
    import zarr

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"--out {path} is a file, not a clip store folder")
    if path.is_dir() and any(path.iterdir()):
        if not _is_store(path):
            raise DataError(f"--out {path} is a non-empty folder that is not a clip store")
        root = zarr.open_group(str(path), mode="r+")
        if root.attrs.get("schema") != SCHEMA:
            raise DataError(f"--out {path}: store schema {root.attrs.get('schema')!r}, expected {SCHEMA!r} "
                            "(a store of an older drivesim is read, not added to: use a new --out)")
        stored = root.attrs.get("settings", {})
        changed = [f"{key}: store has {stored.get(key)!r}, this run {value!r}"
                   for key, value in settings.items() if stored.get(key) != value]
        if changed:
            raise DataError(f"--out {path} was ingested with other settings ({'; '.join(changed)}); "
                            "use a new --out")
        return root
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    root.attrs.update({"schema": SCHEMA, "settings": settings, "categories": list(categories),
                       "poly_types": list(poly_types), "clips": {}})
    root.create_group("clips")
    return root


def open_store(path: str | os.PathLike, mode: str = "r"):
    """The root group of an existing store; DataError naming the path if it is not one."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise DataError(f"store {path}: no such folder")
    if not _is_store(path):
        raise DataError(f"store {path}: not a clip store (no zarr.json and clips/)")
    try:
        root = zarr.open_group(str(path), mode=mode)
    except Exception as error:  # a truncated or garbled zarr.json: zarr raises JSON, key and value errors
        raise DataError(f"store {path}: zarr.json is damaged ({describe(error)})") from None
    if root.attrs.get("schema") not in READABLE_SCHEMAS:
        raise DataError(f"store {path}: schema {root.attrs.get('schema')!r}, expected one of {READABLE_SCHEMAS}")
    return root


def clear_partial(path: Path) -> int:
    """Remove what an interrupted run left half-written; returns how many entries went."""
    partial = Path(path) / PARTIAL
    if not partial.is_dir():
        return 0
    entries = list(partial.iterdir())
    shutil.rmtree(partial)
    return len(entries)


def clip_exists(path: Path, clip_id: str) -> bool:
    return (Path(path) / "clips" / clip_id / "zarr.json").is_file()


def write_clip(path: Path, clip: Clip, level: int = 3) -> bool:
    """Write `clip` whole into a private folder, then rename it into clips/: readers never see part of it.

    Returns False (and writes nothing) when the clip is already there: ingest is deterministic, so
    the existing clip is what this call would have written.
    """
    import zarr

    path = Path(path)
    target = path / "clips" / clip.clip_id
    if clip_exists(path, clip.clip_id):
        return False
    staging = path / PARTIAL / f"{clip.clip_id}.{uuid.uuid4().hex}"
    staging.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(staging), mode="w", zarr_format=3)
    group.attrs.update(clip.attrs)
    arrays = {name: getattr(clip, name) for name in ARRAY_DTYPES if getattr(clip, name) is not None}
    # A Clip without per-camera poses or box rotations is stored with what readers would stand in for them.
    arrays.update(world_from_ego_cam=camera_poses(arrays), box_rotation=box_rotations(arrays))
    for name, dtype in ARRAY_DTYPES.items():
        data = np.ascontiguousarray(arrays[name], dtype=dtype)
        if name == "frames":
            # One chunk per image, one shard per clip: a clip is one file, an image one decode.
            group.create_array("frames", data=data, chunks=(1, 1, *data.shape[2:]), shards=data.shape,
                               compressors=_codecs(level), config=EVERY_CHUNK)
        else:
            group.create_array(name, data=data, chunks=data.shape if data.size else "auto",
                               compressors=_codecs(level), config=EVERY_CHUNK)
    try:
        os.rename(staging, target)
    except OSError:
        if not clip_exists(path, clip.clip_id):
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another worker finished the same clip first
        return False
    return True


def remove_clip(path: Path, clip_id: str) -> None:
    """Take a clip out of the store: renamed away first, so it vanishes at once even if the delete stops."""
    source = Path(path) / "clips" / clip_id
    if not source.exists():
        return
    trash = Path(path) / PARTIAL / f"removed.{clip_id}.{uuid.uuid4().hex}"
    trash.parent.mkdir(parents=True, exist_ok=True)
    os.rename(source, trash)
    shutil.rmtree(trash)


def stored_clip_ids(path: Path) -> list[str]:
    """Every complete clip in clips/, sorted."""
    clips = Path(path) / "clips"
    return sorted(p.name for p in clips.iterdir() if (p / "zarr.json").is_file()) if clips.is_dir() else []


def _missing_chunks(array) -> list[str]:
    """Chunk (or shard) keys of `array` whose files are not in its local store."""
    step = array.shards or array.chunks
    grid = [math.ceil(size / length) for size, length in zip(array.shape, step)]
    folder = Path(str(array.store_path.store.root)) / array.store_path.path
    return [key for coords in itertools.product(*(range(n) for n in grid))
            if not (folder / (key := array.metadata.encode_chunk_key(coords))).is_file()]


class StoredArray:
    """One array of a stored clip: its shape and dtype, and reads that name the store, clip and array when a
    chunk is missing (checked at first read) or fails its checksum."""

    def __init__(self, array, where: str, every_chunk: bool):
        self._array, self.where, self._every_chunk = array, where, every_chunk
        self._checked = not every_chunk
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def check(self) -> None:
        """DataError when one of the array's chunk files is gone (version 2 stores write every chunk)."""
        if self._checked:
            return
        missing = _missing_chunks(self._array)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise DamagedData(self.where, f"chunk {missing[0]}{more} missing (the store is damaged: run drivesim "
                                          "store verify; re-ingest or remove the clip)")
        self._checked = True

    def __getitem__(self, selection) -> np.ndarray:
        self.check()
        try:
            return self._array[selection]
        except Exception as error:  # zarr: a crc32c mismatch, a chunk that does not decode
            raise DamagedData(self.where, f"unreadable ({describe(error)}; run drivesim store verify)") from None


class StoredClip(Mapping):
    """A stored clip's arrays by name (StoredArray) and its attributes: how every command reads a clip."""

    def __init__(self, root, clip_id: str):
        store_path = getattr(root.store, "root", "store")
        self.where = f"store {store_path}: clip {clip_id}"
        try:
            self._group = root["clips"][clip_id]
            self.attrs = dict(self._group.attrs)
            self._names = list(self._group.array_keys())
        except KeyError:
            raise DataError(f"store {store_path}: no clip {clip_id!r}") from None
        except Exception as error:  # a truncated or missing zarr.json
            raise DamagedData(self.where, f"cannot open ({describe(error)})") from None
        self._every_chunk = root.attrs.get("schema") == SCHEMA
        self._arrays: dict[str, StoredArray] = {}

    def __getitem__(self, name: str) -> StoredArray:
        if name not in self._arrays:
            if name not in self._names:
                raise KeyError(name)
            try:
                array = self._group[name]
            except Exception as error:  # the array's zarr.json is gone or garbled
                raise DamagedData(f"{self.where}/{name}", f"cannot open ({describe(error)})") from None
            self._arrays[name] = StoredArray(array, f"{self.where}/{name}", self._every_chunk)
        return self._arrays[name]

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def open_clip(root, clip_id: str) -> StoredClip:
    """Clip `clip_id` of an open store (`open_store`); DataError naming store and clip when it is not there."""
    return StoredClip(root, clip_id)


def read_clip(root, clip_id: str, names: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """The clip's arrays (all it has, or `names`) as numpy, plus its attributes under "attrs".

    A drivesim-clips/1 clip has no world_from_ego_cam or box_rotation: read them with camera_poses and
    box_rotations, which stand in for them."""
    clip = open_clip(root, clip_id)
    out = {name: clip[name][...] for name in (names or [n for n in ARRAY_DTYPES if n in clip])}
    out["attrs"] = dict(clip.attrs)
    return out


@dataclass
class Problem:
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def _expected_shapes(settings: dict, shapes: dict[str, tuple]) -> dict[str, tuple]:
    frames, width, height = settings["frames"], settings["width"], settings["height"]
    views = len(settings["cameras"])
    n, p, k = shapes["boxes"][0], shapes["polylines"][0], shapes["poly_type"][0]
    expected = {"frames": (frames, views, height, width, 3), "intrinsics": (views, 3, 3),
                "ego_from_cam": (views, 4, 4), "world_from_ego": (frames, 4, 4), "timestamps": (frames,),
                "boxes": (n, 10), "box_offsets": (frames + 1,), "box_category": (n,), "box_track": (n,),
                "polylines": (p, 3), "poly_offsets": (k + 1,), "poly_type": (k,),
                "world_from_ego_cam": (frames, views, 4, 4), "box_rotation": (n, 4)}
    return {name: shape for name, shape in expected.items() if name in shapes}


def _check_offsets(offsets: np.ndarray, total: int) -> str | None:
    if offsets[0] != 0 or offsets[-1] != total or np.any(np.diff(offsets) < 0):
        return f"offsets must rise from 0 to {total}, got {offsets[0]}..{offsets[-1]}"
    return None


def _check_unit(name: str, quaternions: np.ndarray) -> str | None:
    norms = np.linalg.norm(quaternions.astype(np.float64), axis=-1)
    if not np.all(np.isfinite(norms)) or np.any(np.abs(norms - 1) > 1e-3):
        return f"{name} are not finite unit quaternions"
    return None


def _check_rigid(name: str, transforms: np.ndarray) -> str | None:
    if not np.all(np.isfinite(transforms)):
        return f"{name} has non-finite values"
    rotation = transforms[..., :3, :3].astype(np.float64)
    error = np.abs(rotation @ np.swapaxes(rotation, -1, -2) - np.eye(3)).max() if len(rotation) else 0.0
    if error > 1e-3 or np.any(np.abs(transforms[..., 3, :] - [0, 0, 0, 1]) > 1e-6):
        return f"{name} is not a rigid transform (rotation off by {error:.2g})"
    return None


def verify_clip(root, clip_id: str, settings: dict) -> list[Problem]:
    """Read every array of one clip (zarr checks each chunk's crc32c) and check shapes and values."""
    where = f"clips/{clip_id}"
    try:
        group = open_clip(root, clip_id)
    except DamagedData as error:
        return [Problem(where, error.what)]
    except DataError as error:  # zarr took a broken clip folder for no clip at all
        return [Problem(where, str(error))]
    data, problems = {}, []
    legacy = root.attrs.get("schema") != SCHEMA  # a drivesim-clips/1 store: its clips lack ADDED_IN_2
    for name, dtype in ARRAY_DTYPES.items():
        if legacy and name in ADDED_IN_2 and name not in group:
            continue
        if name not in group:
            problems.append(Problem(f"{where}/{name}", "missing"))
            continue
        try:
            array = group[name]
            if array.dtype != np.dtype(dtype):
                problems.append(Problem(f"{where}/{name}", f"dtype {array.dtype}, expected {np.dtype(dtype)}"))
            data[name] = array[...]
        except DamagedData as error:  # a chunk file gone, a checksum mismatch, unreadable metadata
            problems.append(Problem(f"{where}/{name}", error.what))
    if problems:
        return problems
    expected = _expected_shapes(settings, {name: value.shape for name, value in data.items()})
    for name, shape in expected.items():
        if data[name].shape != shape:
            problems.append(Problem(f"{where}/{name}", f"shape {data[name].shape}, expected {shape}"))
    if problems:
        return problems
    checks = {
        "world_from_ego": _check_rigid("world_from_ego", data["world_from_ego"]),
        "world_from_ego_cam": _check_rigid("world_from_ego_cam", data["world_from_ego_cam"].reshape(-1, 4, 4))
        if "world_from_ego_cam" in data else None,
        "box_rotation": _check_unit("box_rotation", data["box_rotation"]) if "box_rotation" in data else None,
        "ego_from_cam": _check_rigid("ego_from_cam", data["ego_from_cam"]),
        "intrinsics": None if np.all(np.isfinite(data["intrinsics"])) and np.all(data["intrinsics"][:, 0, 0] > 0)
        else "intrinsics are not finite with positive focal lengths",
        "timestamps": None if np.all(np.diff(data["timestamps"]) > 0) else "timestamps do not increase",
        "boxes": None if np.all(np.isfinite(data["boxes"])) else "boxes have non-finite values",
        "box_offsets": _check_offsets(data["box_offsets"], len(data["boxes"])),
        "poly_offsets": _check_offsets(data["poly_offsets"], len(data["polylines"])),
    }
    problems += [Problem(f"{where}/{name}", what) for name, what in checks.items() if what]
    attrs = dict(group.attrs)
    if attrs.get("cameras") != settings["cameras"]:
        problems.append(Problem(where, f"cameras {attrs.get('cameras')!r}, store has {settings['cameras']!r}"))
    if attrs.get("split") not in SPLITS:
        problems.append(Problem(where, f"split {attrs.get('split')!r} is not one of {SPLITS}"))
    if not isinstance(attrs.get("caption"), str) or not attrs["caption"]:
        problems.append(Problem(where, "caption missing"))
    return problems


def verify(path: str | os.PathLike, progress: bool = False) -> tuple[int, list[Problem]]:
    """(clips checked, problems) for the whole store: index against clips/, then every clip."""
    path = Path(path)
    root = open_store(path)
    settings, index = root.attrs.get("settings"), root.attrs.get("clips", {})
    if not isinstance(settings, dict) or not {"frames", "width", "height", "cameras"} <= set(settings):
        return 0, [Problem("zarr.json", "settings missing or incomplete")]
    stored = stored_clip_ids(path)
    problems = [Problem(f"clips/{c}", "in the index but not in the store") for c in sorted(set(index) - set(stored))]
    problems += [Problem(f"clips/{c}", "in the store but not in the index (ingest did not finish: run it again)")
                 for c in sorted(set(stored) - set(index))]
    partial = path / PARTIAL
    if partial.is_dir() and any(partial.iterdir()):
        problems.append(Problem(PARTIAL, "an interrupted ingest left unfinished writes (run ingest again)"))
    from tqdm import tqdm

    for clip_id in tqdm(stored, desc="verify", unit="clip", disable=not progress):
        problems += verify_clip(root, clip_id, settings)
    return len(stored), problems
