"""Curation stages of ingest: split logs into fixed-length multi-camera clips, drop the unusable
ones, caption what is left, remove near duplicates and assign train/val splits."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field, fields

import cv2
import numpy as np

from drivesim.errors import ConfigError

REASONS = ("static ego", "too dark", "overexposed", "blurred", "missing camera", "corrupt image",
           "missing image", "near duplicate")
REC601 = np.array([0.299, 0.587, 0.114])
STOPPED_SPEED = 0.5  # m/s: below this the ego is parked or creeping in a queue
CURVE_DEGREES = 10.0  # net heading change that makes a clip a bend rather than lane keeping
# A bend tighter than this (path length over heading change) is a turn: intersections are turned at 5-25 m,
# while a road that curves at 60 m is still one road.
TURN_RADIUS_M = 30.0


@dataclass(frozen=True)
class CurationConfig:
    min_travel_m: float = 1.0
    dark_luma: float = 20.0
    bright_luma: float = 235.0
    exposure_fraction: float = 0.5
    min_sharpness: float = 15.0
    blur_fraction: float = 0.5
    max_hash_distance: int = 4
    val_fraction: float = 0.2

    def validate(self) -> None:
        """Raise ConfigError naming the first field whose value makes no sense."""
        # `not (lo <= x <= hi)` so that NaN fails too
        for name in ("min_travel_m", "min_sharpness"):
            if not (getattr(self, name) >= 0):
                raise ConfigError(f"curation: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("dark_luma", "bright_luma"):
            if not (0 <= getattr(self, name) <= 255):
                raise ConfigError(f"curation: {name} must be in [0, 255], got {getattr(self, name)}")
        if not self.dark_luma < self.bright_luma:
            raise ConfigError(f"curation: dark_luma ({self.dark_luma}) must be below bright_luma ({self.bright_luma})")
        for name in ("exposure_fraction", "blur_fraction", "val_fraction"):
            if not (0 <= getattr(self, name) <= 1):
                raise ConfigError(f"curation: {name} must be in [0, 1], got {getattr(self, name)}")
        distance = self.max_hash_distance
        if isinstance(distance, bool) or not isinstance(distance, (int, np.integer)) or not 0 <= distance <= 64:
            raise ConfigError(f"curation: max_hash_distance must be an integer in [0, 64], got {distance!r}")


# --- split -----------------------------------------------------------------------------------

def clip_starts(num_frames: int, frames: int, stride: int) -> list[int]:
    """Start indices of every full window of `frames` frames, `stride` apart."""
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got frames={frames}, stride={stride}")
    return list(range(0, num_frames - frames + 1, stride))


# --- filter ----------------------------------------------------------------------------------

def ego_travel(world_from_ego: np.ndarray) -> float:
    """Path length of the ego origin in metres."""
    steps = np.diff(np.asarray(world_from_ego, dtype=np.float64)[:, :3, 3], axis=0)
    return float(np.linalg.norm(steps, axis=1).sum())


def static_ego(world_from_ego: np.ndarray, config: CurationConfig) -> str | None:
    """'static ego' when the ego barely moves: such clips teach the model nothing about motion. A single
    frame has no motion to judge (key-frame clips, the starts of Image2World scenarios): it passes."""
    if len(world_from_ego) < 2:
        return None
    return "static ego" if ego_travel(world_from_ego) < config.min_travel_m else None


def luma(images: np.ndarray) -> np.ndarray:
    """Mean Rec.601 luma (0-255) of each image: [..., H, W, 3] -> [...]."""
    # luma is linear in RGB, so weighting the channel means avoids a float copy of the images
    return np.asarray(images).mean(axis=(-3, -2), dtype=np.float64) @ REC601


def _fraction(mask: np.ndarray) -> float:
    return float(mask.mean()) if mask.size else 0.0


def exposure(frames: np.ndarray, config: CurationConfig) -> str | None:
    """'too dark' or 'overexposed' when more than exposure_fraction of the images are."""
    y = luma(frames)
    if _fraction(y < config.dark_luma) > config.exposure_fraction:
        return "too dark"
    if _fraction(y > config.bright_luma) > config.exposure_fraction:
        return "overexposed"
    return None


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image)
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def sharpness(images: np.ndarray) -> np.ndarray:
    """Variance of the Laplacian of each grey image: [..., H, W, 3] -> [...]."""
    images = np.asarray(images)
    flat = images.reshape(-1, *images.shape[-3:])
    values = [cv2.Laplacian(_grey(image), cv2.CV_64F).var() for image in flat]
    return np.array(values, dtype=np.float64).reshape(images.shape[:-3])


def blur(frames: np.ndarray, config: CurationConfig) -> str | None:
    """'blurred' when more than blur_fraction of the images lack fine detail."""
    return "blurred" if _fraction(sharpness(frames) < config.min_sharpness) > config.blur_fraction else None


# --- deduplicate -----------------------------------------------------------------------------

def perceptual_hash(image: np.ndarray) -> int:
    """64-bit DCT perceptual hash: which of the 8x8 lowest frequencies exceed their median."""
    small = cv2.resize(_grey(image).astype(np.float32), (32, 32), interpolation=cv2.INTER_AREA)
    low = cv2.dct(small.astype(np.float64))[:8, :8].ravel()  # orthonormal DCT-II, like scipy's
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def clip_hashes(frames: np.ndarray) -> list[int]:
    """One perceptual hash per view, of the clip's middle frame."""
    middle = frames[len(frames) // 2]
    return [perceptual_hash(view) for view in middle]


def hamming(a: int, b: int) -> int:
    """Number of differing bits."""
    return (a ^ b).bit_count()


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    # np.bitwise_count is numpy >= 2 only; a byte table works on both
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.int64)


def near_duplicates(hashes: dict[str, list[int]], max_distance: int) -> dict[str, str]:
    """Clip id -> the earlier kept clip it nearly duplicates, every view within max_distance bits."""
    # sorted ids make the result independent of the order the workers reported clips in
    ids = sorted(hashes)
    by_views: dict[int, list[int]] = {}
    for i, clip in enumerate(ids):
        by_views.setdefault(len(hashes[clip]), []).append(i)
    duplicates: dict[str, str] = {}
    for views, members in by_views.items():
        table = np.array([hashes[ids[i]] for i in members], dtype=np.uint64).reshape(len(members), views)
        kept = np.zeros(len(members), dtype=bool)
        for row, i in enumerate(members):
            distance = _popcount(table[:row] ^ table[row]).max(axis=1, initial=0)
            match = np.flatnonzero(kept[:row] & (distance <= max_distance))
            if match.size:
                duplicates[ids[i]] = ids[members[match[0]]]
            else:
                kept[row] = True
    return duplicates


# --- caption ---------------------------------------------------------------------------------

CONDITIONS = {"night": r"night", "dusk": r"dusk", "rain": r"rain(?:y|ing|s)?", "fog": r"fog(?:gy)?",
              "snow": r"snow(?:y|ing|s)?"}


def conditions(description: str) -> list[str]:
    """Weather and time-of-day words in a scene description, in a fixed order."""
    return [name for name, pattern in CONDITIONS.items()
            if re.search(rf"\b{pattern}\b", description, flags=re.IGNORECASE)]


def _yaw(world_from_ego: np.ndarray) -> float:
    return math.atan2(world_from_ego[1, 0], world_from_ego[0, 0])


def ego_motion(world_from_ego: np.ndarray, timestamps_us: np.ndarray) -> tuple[str, float]:
    """The ego's manoeuvre over the clip and its mean speed in m/s: stopped, driving straight, curving
    (a bend of CURVE_DEGREES or more, gentler than TURN_RADIUS_M) or turning, to the left or right."""
    duration = (int(timestamps_us[-1]) - int(timestamps_us[0])) * 1e-6
    travel = ego_travel(world_from_ego)
    speed = travel / duration if duration > 0 else 0.0
    if speed < STOPPED_SPEED:
        return "stopped", speed
    turn = _yaw(world_from_ego[-1]) - _yaw(world_from_ego[0])
    turn = math.pi - (math.pi - turn) % (2 * math.pi)  # wrapped to (-pi, pi]
    if abs(turn) < math.radians(CURVE_DEGREES):
        return "driving straight", speed
    side = "left" if turn > 0 else "right"
    # Radius, not heading change alone: a short clip of an intersection turn changes heading less than a
    # long one of a highway bend.
    return ("turning " if travel / abs(turn) < TURN_RADIUS_M else "curving ") + side, speed


AGENT_GROUPS: dict[str, str] = {
    "vehicle.car": "car", "vehicle.emergency": "car",
    "vehicle.truck": "truck", "vehicle.construction": "truck", "vehicle.trailer": "truck",
    "vehicle.bus": "bus", "vehicle.motorcycle": "motorcycle", "vehicle.bicycle": "bicycle",
    "human.pedestrian": "pedestrian",
}
NOUNS = ("car", "truck", "bus", "motorcycle", "bicycle", "pedestrian")
PLURALS = {"bus": "buses"}


def _group(category: str) -> str | None:
    for prefix, noun in AGENT_GROUPS.items():
        if category == prefix or category.startswith(prefix + "."):
            return noun
    return None


def count_agents(track_categories: dict[int, str]) -> dict[str, int]:
    """Tracks per caption noun, in a fixed order, without zeros."""
    counts = dict.fromkeys(NOUNS, 0)
    for category in track_categories.values():
        noun = _group(category)
        if noun is not None:
            counts[noun] += 1
    return {noun: n for noun, n in counts.items() if n}


def caption(description: str, world_from_ego: np.ndarray, timestamps_us: np.ndarray,
            track_categories: dict[int, str]) -> str:
    """A short caption: 'night, rain; turning left at 6 m/s; 4 cars, 1 pedestrian' ('night, rain; 4 cars,
    1 pedestrian' for a single frame)."""
    weather = ", ".join(conditions(description)) or "day"
    agents = ", ".join(f"{n} {noun if n == 1 else PLURALS.get(noun, noun + 's')}"
                       for noun, n in count_agents(track_categories).items())
    agents = agents or "no other road users"
    if len(world_from_ego) < 2:  # one frame shows no motion; "stopped" would be a guess
        return f"{weather}; {agents}"
    manoeuvre, speed = ego_motion(world_from_ego, timestamps_us)
    # half-up rounding: Python's round() would turn 2.5 m/s into 2
    motion = manoeuvre if manoeuvre == "stopped" else f"{manoeuvre} at {math.floor(speed + 0.5)} m/s"
    return f"{weather}; {motion}; {agents}"


# --- train/val -------------------------------------------------------------------------------

def assign_splits(scene_names: list[str], val_fraction: float,
                  official: dict[str, str] | None = None) -> dict[str, str]:
    """Scene -> 'train' or 'val', whole scenes only so no clip leaks across splits."""
    names = set(scene_names)
    if official and names <= official.keys():
        return {name: official[name] for name in sorted(names)}
    if not (0 <= val_fraction <= 1):
        raise ConfigError(f"curation: val_fraction must be in [0, 1], got {val_fraction}")
    # sha1 rather than hash(): Python salts str hashes per process
    ranked = sorted(names, key=lambda name: (hashlib.sha1(name.encode()).hexdigest(), name))
    n = len(ranked)
    n_val = round(val_fraction * n)
    if n >= 2:
        n_val = min(max(n_val, 1 if val_fraction > 0 else 0), n - 1)
    val = set(ranked[:n_val])
    return {name: "val" if name in val else "train" for name in sorted(names)}


def official_splits(version: str) -> dict[str, str]:
    """Scene -> 'train'/'val' from nuscenes-devkit's official splits; {} when unknown."""
    wanted = {"v1.0-mini": {"mini_train": "train", "mini_val": "val"},
              "v1.0-trainval": {"train": "train", "val": "val"}}.get(version)
    if wanted is None:
        return {}
    try:
        from nuscenes.utils.splits import create_splits_scenes
        splits = create_splits_scenes()
    except Exception:  # the devkit is optional; without it the hash split is used
        return {}
    return {scene: ours for theirs, ours in wanted.items() for scene in splits.get(theirs, [])}


# --- report ----------------------------------------------------------------------------------

@dataclass
class CurationReport:
    scenes: int = 0
    windows: int = 0  # candidate clips after splitting
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> clips
    kept: int = 0
    by_split: dict[str, int] = field(default_factory=dict)  # split -> kept clips

    def drop(self, reason: str, n: int = 1) -> None:
        """Count n clips dropped for `reason`."""
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def merge(self, other: CurationReport) -> None:
        """Add another report's counts to this one."""
        self.scenes += other.scenes
        self.windows += other.windows
        self.kept += other.kept
        for reason, n in other.dropped.items():
            self.drop(reason, n)
        for split, n in other.by_split.items():
            self.by_split[split] = self.by_split.get(split, 0) + n

    def to_dict(self) -> dict:
        """A JSON-able copy."""
        return {f.name: dict(v) if isinstance(v := getattr(self, f.name), dict) else v for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> CurationReport:
        """The report `to_dict` wrote."""
        return cls(scenes=int(d.get("scenes", 0)), windows=int(d.get("windows", 0)),
                   dropped={str(k): int(v) for k, v in d.get("dropped", {}).items()},
                   kept=int(d.get("kept", 0)),
                   by_split={str(k): int(v) for k, v in d.get("by_split", {}).items()})

    def table(self) -> str:
        """A plain-text table of the counts, most common drop reason first."""
        rows = [("scenes", self.scenes), ("windows", self.windows)]
        rows += [(f"dropped: {reason}", n)
                 for reason, n in sorted(self.dropped.items(), key=lambda item: (-item[1], item[0]))]
        rows.append(("kept", self.kept))
        order = {"train": 0, "val": 1}
        rows += [(f"  {split}", n) for split, n in sorted(self.by_split.items(),
                                                          key=lambda item: (order.get(item[0], 2), item[0]))]
        label = max(len("stage"), *(len(name) for name, _ in rows))
        count = max(len("clips"), *(len(str(n)) for _, n in rows))
        lines = [f"{'stage':<{label}}  {'clips':>{count}}"]
        lines += [f"{name:<{label}}  {n:>{count}}" for name, n in rows]
        return "\n".join(lines)
