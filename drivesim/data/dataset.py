"""The torch Dataset and DataLoader over a clip store: clips as tensors per the batch contract
(../shared/DESIGN.md), with temporal crops, view subsets and resizing."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from drivesim.data import store as clip_store
from drivesim.errors import ConfigError, DataError
from drivesim.geometry import compose, invert, resize_intrinsics
from drivesim.rigs import Camera, Rig

__all__ = ["MAX_DAMAGED_FRACTION", "ClipDataset", "make_loader"]

# With skip_damaged, the share of a split's clips that may be damaged before reading stops: a few bad
# chunks in a large store cost those clips, a store that is mostly unreadable is not trained on.
MAX_DAMAGED_FRACTION = 0.25


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


class ClipDataset(torch.utils.data.Dataset):
    """Clips of a store as tensors per the batch contract.

    A damaged clip (a chunk missing or failing its checksum) raises a DataError naming store, clip and
    array; with skip_damaged (training) it is reported on stderr, counted, and the next clip is read in its
    place, until more than MAX_DAMAGED_FRACTION of the clips are damaged."""

    def __init__(self, store, split: str | None = "train", frames: int | None = None,
                 views: Sequence[str] | None = None, num_views: int | None = None,
                 size: tuple[int, int] | None = None, random_crop: bool = True, layout: bool | str = False,
                 skip_damaged: bool = False):
        self.path = os.fspath(store)
        root = clip_store.open_store(self.path)  # DataError naming the path if it is not a store
        self._settings = dict(root.attrs.get("settings", {}))
        index = dict(root.attrs.get("clips", {}))
        self._categories = list(root.attrs.get("categories", []))
        self._poly_types = list(root.attrs.get("poly_types", []))
        del root  # workers open their own handle: see _root
        self._cameras = list(self._settings.get("cameras", []))
        self._clip_frames = int(self._settings.get("frames", 0))

        if split is not None and split not in clip_store.SPLITS:
            raise ConfigError(f"split={split!r} is not one of {', '.join(map(repr, clip_store.SPLITS))} "
                              "(or None for all clips)")
        # Sorted, so item i is the same clip in every process and every run.
        self.clip_ids = sorted(c for c, entry in index.items() if split is None or entry.get("split") == split)
        if not self.clip_ids:
            raise ConfigError(f"split={split!r}: store {self.path} has no {repr(split) + ' ' if split else ''}clips")
        self._captions = {c: str(index[c].get("caption", "")) for c in self.clip_ids}

        if frames is None:
            frames = self._clip_frames
        if not _is_int(frames) or not 1 <= frames <= self._clip_frames:
            raise ConfigError(f"frames={frames!r} must be an integer from 1 to {self._clip_frames} "
                              f"(the clip length of store {self.path})")
        self.frames = int(frames)

        self._view_indices = self._check_views(views, num_views)
        self._num_views = num_views

        if size is not None and not (isinstance(size, (tuple, list)) and len(size) == 2
                                     and all(_is_int(s) and s > 0 for s in size)):
            raise ConfigError(f"size={size!r} must be (width, height), two positive integers")
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.random_crop = bool(random_crop)
        if not (isinstance(layout, bool) or isinstance(layout, str) and layout in ("sparse", "dense")):
            raise ConfigError(f"layout={layout!r} must be True or False, or the kind of maps: sparse or dense")
        self.layout = "sparse" if layout is True else layout  # False: no maps
        self.skip_damaged = bool(skip_damaged)
        self.damaged: dict[str, str] = {}  # clip id -> why it could not be read (this process's reads)
        self._root = None
        self._root_pid = None
        self._opened: dict[str, clip_store.StoredClip] = {}

    def _check_views(self, views, num_views) -> list[int] | None:
        """Store indices of the fixed `views` (None when num_views or all cameras apply)."""
        if views is not None and num_views is not None:
            raise ConfigError("views and num_views cannot both be set: views fixes the cameras, "
                              "num_views draws them at random")
        if num_views is not None and (not _is_int(num_views) or not 1 <= num_views <= len(self._cameras)):
            raise ConfigError(f"num_views={num_views!r} must be an integer from 1 to {len(self._cameras)} "
                              f"(the cameras of store {self.path})")
        if views is None:
            return None
        # A bare string is a Sequence[str] too, of single letters: almost surely a mistake.
        if isinstance(views, str) or not isinstance(views, Sequence) or not views:
            raise ConfigError(f"views={views!r} must be a non-empty list of camera names")
        unknown = [name for name in views if name not in self._cameras]
        if unknown:
            raise ConfigError(f"views: unknown camera(s) {', '.join(map(repr, unknown))}; "
                              f"store {self.path} has {', '.join(self._cameras)}")
        if len(set(views)) != len(views):
            raise ConfigError(f"views={list(views)!r} names a camera twice")
        return [self._cameras.index(name) for name in views]

    @property
    def cameras(self) -> list[str]:
        """The store's camera names, in store order."""
        return list(self._cameras)

    @property
    def settings(self) -> dict:
        """The store's settings (width, height, frames, fps, cameras, ...)."""
        return dict(self._settings)

    def _clip(self, clip_id: str) -> clip_store.StoredClip:
        """One clip of the store, opened once per process: its metadata is read, and its chunk files checked
        for damage, on the first item of it only, not on every item of every epoch."""
        # A forked worker inherits the parent's handles; reopening keeps each process on its own.
        if self._root is None or self._root_pid != os.getpid():
            self._root = clip_store.open_store(self.path)
            self._root_pid = os.getpid()
            self._opened = {}
        if clip_id not in self._opened:
            self._opened[clip_id] = clip_store.open_clip(self._root, clip_id)
        return self._opened[clip_id]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_root"] = state["_root_pid"] = None  # zarr handles do not travel to worker processes
        state["_opened"] = {}
        return state

    def __len__(self) -> int:
        return len(self.clip_ids)

    def _choose_views(self) -> list[int]:
        if self._view_indices is not None:
            return self._view_indices
        if self._num_views is not None:
            # Kept in store order so neighbouring cameras stay neighbours along the view axis.
            return sorted(torch.randperm(len(self._cameras))[:self._num_views].tolist())
        return list(range(len(self._cameras)))

    def _choose_start(self) -> int:
        starts = self._clip_frames - self.frames + 1
        # torch's global RNG: DataLoader seeds it per worker from the loader's generator.
        return int(torch.randint(starts, ()).item()) if self.random_crop and starts > 1 else 0

    @staticmethod
    def _read_frames(array, start: int, stop: int, views: list[int]) -> np.ndarray:
        """Frames [start, stop) of `views`, decoding only those images (a chunk is one image)."""
        if views == list(range(views[0], views[-1] + 1)):
            return array[start:stop, views[0]:views[-1] + 1]
        # Not one slice: read view by view, as zarr 3.1's integer-array (oindex) path is ~15x slower.
        return np.stack([array[start:stop, view] for view in views], axis=1)

    def __getitem__(self, i: int) -> dict:
        if not self.skip_damaged:
            return self._item(self.clip_ids[i])
        for offset in range(len(self.clip_ids)):
            clip_id = self.clip_ids[(i + offset) % len(self.clip_ids)]
            if clip_id in self.damaged:
                continue
            try:
                return self._item(clip_id)
            except DataError as error:
                self._skip(clip_id, str(error))
        raise DataError(f"store {self.path}: every clip is damaged ({next(iter(self.damaged.values()))})")

    def _skip(self, clip_id: str, reason: str) -> None:
        """Count a damaged clip, say so, and stop when too many of the split are damaged."""
        self.damaged[clip_id] = reason
        count, total = len(self.damaged), len(self.clip_ids)
        print(f"drivesim: skipping a damaged clip ({count} of {total} so far): {reason}", file=sys.stderr)
        if count > max(1, MAX_DAMAGED_FRACTION * total):
            raise DataError(f"store {self.path}: {count} of {total} clips are damaged, more than "
                            f"{MAX_DAMAGED_FRACTION:.0%}: stopping (run drivesim store verify); the first: "
                            f"{next(iter(self.damaged.values()))}")

    def _item(self, clip_id: str) -> dict:
        return self.read_window(clip_id, self._choose_start(), self._choose_views())

    def read_window(self, clip_id: str, start: int, views: list[int]) -> dict:
        """The item of frames [start, start + frames) of `views` (store indices) of one clip; DataError if
        the clip is damaged. __getitem__ draws start and views (random crops, view subsets), then reads this."""
        group = self._clip(clip_id)
        stop = start + self.frames
        frames = self._read_frames(group["frames"], start, stop, views)  # (T, V, H, W, 3) uint8
        intrinsics = group["intrinsics"][...][views].astype(np.float64)
        ego_from_cam = group["ego_from_cam"][...][views]
        world_from_ego = group["world_from_ego"][start:stop]
        timestamps = group["timestamps"][start:stop]

        # Reorder the bytes before widening them: a quarter of the memory traffic of reordering floats.
        video = rearrange(torch.from_numpy(frames), "t v h w c -> v t c h w").contiguous().float()
        if self.size is not None:
            width, height = self.size
            stored_height, stored_width = frames.shape[2:4]
            flat = rearrange(video, "v t c h w -> (v t) c h w")
            flat = F.interpolate(flat, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
            # Bilinear weights are convex, but float rounding can step just outside [0, 255].
            video = rearrange(flat.clamp_(0, 255), "(v t) c h w -> v t c h w", v=len(views))
            intrinsics = resize_intrinsics(intrinsics, width / stored_width, height / stored_height)
        video = video.div_(127.5).sub_(1)

        # In float64: world coordinates can be ~1e5 m, where float32 keeps only centimetres.
        ego0_from_ego = compose(invert(world_from_ego[0]), world_from_ego)
        item = {
            "video": video,
            "intrinsics": torch.from_numpy(intrinsics.astype(np.float32)),
            "ego_from_cam": torch.from_numpy(np.asarray(ego_from_cam, dtype=np.float32)),
            "ego0_from_ego": torch.from_numpy(ego0_from_ego.astype(np.float32)),
            "time": torch.from_numpy(((timestamps - timestamps[0]) / 1e6).astype(np.float32)),
            "caption": self._captions[clip_id],
            "clip_id": clip_id,
        }
        if self.layout:
            item["layout"] = self._render_layout(group, start, stop, views, intrinsics, ego_from_cam, video.shape)
        return item

    def _render_layout(self, group, start: int, stop: int, views: list[int], intrinsics, ego_from_cam,
                       video_shape) -> torch.Tensor:
        """Layout maps [V, T, C, H, W] of the returned frames and cameras, at the returned size."""
        from drivesim.render import layout_frames_from_clip  # open3d: only when asked for
        from drivesim.scene_maps import render_maps

        height, width = video_shape[-2:]
        names = [self._cameras[v] for v in views]
        rig = Rig("clip", int(width), int(height),
                  tuple(Camera(n, k, e) for n, k, e in zip(names, intrinsics, np.asarray(ego_from_cam, np.float64))))
        frames = layout_frames_from_clip(group, self._categories, self._poly_types, start, stop, views)
        return torch.from_numpy(render_maps(self.layout, rig, frames))


def make_loader(store, split: str | None = "train", batch_size: int = 1, num_workers: int = 0,
                shuffle: bool | None = None, seed: int = 0, drop_last: bool = False,
                **dataset_options) -> torch.utils.data.DataLoader:
    """A DataLoader over ClipDataset(store, split, **dataset_options), repeatable for a given seed.

    shuffle defaults to True for "train" only. `seed` drives the shuffle order and the workers'
    seeds, so with num_workers > 0 two loaders with the same seed give the same batches, crops and
    view subsets included; with num_workers=0 crops and view subsets come from this process's global
    torch RNG (seed it with torch.manual_seed to repeat them). Batches hold the contract's video,
    intrinsics, ego_from_cam, ego0_from_ego and caption (plus time and clip_id), and the layout
    maps (drivesim/render.py) when layout=True.
    """
    if not _is_int(batch_size) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be an integer >= 1")
    if not _is_int(num_workers) or num_workers < 0:
        raise ConfigError(f"num_workers={num_workers!r} must be an integer >= 0")
    dataset = ClipDataset(store, split, **dataset_options)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=(split == "train") if shuffle is None else shuffle,
        num_workers=num_workers, generator=torch.Generator().manual_seed(seed), drop_last=drop_last,
        persistent_workers=num_workers > 0)
