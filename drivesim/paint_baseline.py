"""The model-free baseline a Text2World model must beat: the dense scene maps painted by numbers.

Each class of drivesim/scene_maps.py gets its mean colour in the training frames of the same time of
day (the maps carry it), shaded by depth (a straight line in the depth channel, fitted by least squares
per time of day, class and colour channel), and a scenario's maps are painted with it. Whatever a world
model adds to the same maps must show against this. The palette is fitted on a training store only:
measuring on held-out logs stays fair. Packed beside the weights, it is also where Text2World starts
(simulate.py, init painted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drivesim.errors import ConfigError, DataError
from drivesim.render import TIMES_OF_DAY
from drivesim.scene_maps import CLASSES, MAX_DEPTH, SCENE_CHANNELS, SceneMaps, render_scene

__all__ = ["Palette", "fit_palette", "paint", "paint_rollout"]


@dataclass(frozen=True, eq=False)
class Palette:
    """Per time of day and class: colour = base + slope * min(depth / MAX_DEPTH, 1), RGB in 0..255."""

    base: np.ndarray    # float [T, K, 3]: T = len(TIMES_OF_DAY), K = len(CLASSES)
    slope: np.ndarray   # float [T, K, 3]
    pixels: np.ndarray  # int [T, K]: training pixels seen (0: the class's colour over all times, else all classes')

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"classes": list(CLASSES), "times_of_day": list(TIMES_OF_DAY),
                                          "base": self.base.round(3).tolist(), "slope": self.slope.round(3).tolist(),
                                          "pixels": self.pixels.tolist()}))

    @classmethod
    def load(cls, path: Path) -> Palette:
        try:
            document = json.loads(Path(path).read_text())
            if document["classes"] != list(CLASSES) or document["times_of_day"] != list(TIMES_OF_DAY):
                raise ValueError(f"classes and times of day are not this version's {list(CLASSES)}, "
                                 f"{list(TIMES_OF_DAY)}")
            palette = cls(np.asarray(document["base"], float), np.asarray(document["slope"], float),
                          np.asarray(document["pixels"], np.int64))
            shape = (len(TIMES_OF_DAY), len(CLASSES))
            if palette.base.shape != (*shape, 3) or palette.slope.shape != (*shape, 3) or palette.pixels.shape != shape:
                raise ValueError(f"base, slope and pixels must be {shape} (x 3)")
            return palette
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(f"palette {path}: unreadable ({error})") from None


def _depth_feature(depth: np.ndarray) -> np.ndarray:
    return np.minimum(np.nan_to_num(depth, posinf=MAX_DEPTH) / MAX_DEPTH, 1.0)


def fit_palette(store, size: tuple[int, int], split: str = "train", every: int = 4, progress: bool = True) -> Palette:
    """The palette of a store's `split`: the first frame of every `every`-th clip, at size = (width, height),
    with the dense maps the dataset draws for it (data.layout: dense), as training sees them."""
    from tqdm import tqdm

    from drivesim.data.dataset import ClipDataset

    if not isinstance(every, int) or every < 1:
        raise ConfigError(f"every={every!r} must be a positive integer")
    dataset = ClipDataset(store, split=split, frames=1, size=size, random_crop=False, layout="dense")
    channel = {name: i for i, name in enumerate(SCENE_CHANNELS)}
    count = len(CLASSES)
    # Normal equations of [1, d] -> colour per time of day and class: sums of 1, d, d^2, c, d*c.
    sums = np.zeros((len(TIMES_OF_DAY), count, 5, 3))
    for clip_id in tqdm(dataset.clip_ids[::every], desc="palette", unit="clip", disable=not progress):
        item = dataset.read_window(clip_id, 0, list(range(len(dataset._cameras))))
        video = ((item["video"][:, 0] + 1) * 127.5).permute(0, 2, 3, 1).numpy()  # [V, H, W, 3]
        maps = item["layout"][:, 0].numpy()  # [V, C, H, W], channels SCENE_CHANNELS
        classes = maps[:, :count].argmax(axis=1).ravel()  # one-hot: the class
        depth = maps[:, channel["depth"]].ravel()  # min(depth / MAX_DEPTH, 1), as _depth_feature
        time_of_day = next((name for name in ("night", "dusk") if maps[0, channel[name], 0, 0]), "day")
        colours = video.reshape(-1, 3).astype(np.float64)
        look = sums[TIMES_OF_DAY.index(time_of_day)]
        for column, values in enumerate((np.ones_like(depth), depth, depth**2)):
            look[:, column, 0] += np.bincount(classes, values, minlength=count)
        for c in range(3):
            look[:, 3, c] += np.bincount(classes, colours[:, c], minlength=count)
            look[:, 4, c] += np.bincount(classes, depth * colours[:, c], minlength=count)
    return _solve(sums)


def _solve(sums: np.ndarray) -> Palette:
    """sums [T, K, 5, 3] -> the palette; a time of day that never showed a class paints it as all times did."""
    overall = _solve_one(sums.sum(axis=0))
    parts = [_solve_one(look, overall) for look in sums]
    return Palette(np.stack([p.base for p in parts]), np.stack([p.slope for p in parts]),
                   np.stack([p.pixels for p in parts]))


def _solve_one(sums: np.ndarray, fallback: Palette | None = None) -> Palette:
    n, sd, sdd = sums[:, 0, 0], sums[:, 1, 0], sums[:, 2, 0]
    sc, sdc = sums[:, 3], sums[:, 4]
    base, slope = np.zeros((len(n), 3)), np.zeros((len(n), 3))
    seen = n > 0
    mean_all = sc[seen].sum(axis=0) / max(n[seen].sum(), 1)
    for k in range(len(n)):
        if not seen[k]:
            if fallback is not None:
                base[k], slope[k] = fallback.base[k], fallback.slope[k]
            else:
                base[k] = mean_all
            continue
        determinant = n[k] * sdd[k] - sd[k] ** 2
        if determinant > 1e-9 * max(n[k], 1) ** 2:  # depth varies within the class: fit the line
            slope[k] = (n[k] * sdc[k] - sd[k] * sc[k]) / determinant
            base[k] = (sc[k] - slope[k] * sd[k]) / n[k]
        else:
            base[k] = sc[k] / n[k]
    return Palette(base, slope, n.astype(np.int64))


def paint(maps: SceneMaps, palette: Palette) -> np.ndarray:
    """uint8 [V, F, H, W, 3]: every pixel its class's colour at its depth, at the maps' time of day."""
    depth = _depth_feature(maps.depth)[..., None]
    look = TIMES_OF_DAY.index(maps.look[0])
    image = palette.base[look][maps.classes] + palette.slope[look][maps.classes] * depth
    return image.round().clip(0, 255).astype(np.uint8)


def paint_rollout(scenario, palette: Palette, size: tuple[int, int], chunk: int = 8):
    """The scenario painted by numbers at size = (width, height), with its labels, as a Rollout."""
    from drivesim.rollout import Rollout

    width, height = size
    rig = scenario.rig.resized(width, height)
    times = scenario.frame_times()
    pieces = [paint(render_scene(rig, scenario.layout_frames(times[first:first + chunk])), palette)
              for first in range(0, len(times), chunk)]
    video = np.concatenate(pieces, axis=1)  # [V, F, H, W, 3]
    return Rollout.labelled(scenario, rig, video.transpose(1, 0, 2, 3, 4))
