"""Single frames of a clip store for the detector: every camera of one time, resized, with the frame's boxes
in its ego frame and (for training) the CenterNet targets of every camera.

An item: image [V, 3, H, W] in [-1, 1], intrinsics [V, 3, 3] at (W, H), ego_from_cam [V, 4, 4] (each camera in
the frame's reference ego frame, through the ego pose at its own capture time), world_from_ego [4, 4]
(float64); with targets: heatmap [V, C, H/4, W/4], regression [V, R, H/4, W/4], mask [V, H/4, W/4]; with boxes:
boxes [MAX_GT, 9] (ego frame), labels [MAX_GT] (-1 pads) and visible [MAX_GT]."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from drivesim.data import store as clip_store
from drivesim.errors import ConfigError
from drivesim.geometry import invert, resize_intrinsics
from drivesim.perception.categories import CLASSES, class_indices
from drivesim.perception.targets import boxes_in_frame, ego_from_cameras, encode_frame, flip_targets, visible_in_any

MAX_GT = 256  # boxes per frame an item carries (padded): the synthetic logs annotate ~50 within 60 m


def check_size(size, option: str = "data.size") -> tuple[int, int]:
    """(width, height), both positive multiples of 32 (the network's deepest stride)."""
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(s, int) and s > 0 for s in size)):
        raise ConfigError(f"{option} must be [width, height], two positive integers, got {size!r}")
    if size[0] % 32 or size[1] % 32:
        raise ConfigError(f"{option}={list(size)}: width and height must be multiples of 32")
    return int(size[0]), int(size[1])


def _frame_choice(frames, length: int) -> list[int]:
    """Which frames of a clip of `length`: all (None), n spread evenly (an int), or the given indices."""
    if frames is None:
        return list(range(length))
    if isinstance(frames, int) and not isinstance(frames, bool):
        if frames < 1:
            raise ConfigError(f"frames={frames} must be >= 1")
        return sorted(set(np.linspace(0, length - 1, min(frames, length)).round().astype(int).tolist()))
    if isinstance(frames, Sequence) and frames and all(isinstance(f, int) and 0 <= f < length for f in frames):
        return sorted(set(frames))
    raise ConfigError(f"frames={frames!r} must be None, a count, or frame indices from 0 to {length - 1}")


class StoreFrames(torch.utils.data.Dataset):
    """Frames of the clips of one split of a store (None: every clip; `clips`: only these), in a fixed order."""

    def __init__(self, store, split: str | None, size: Sequence[int], targets: bool = True, boxes: bool = False,
                 flip: bool = False, frames=None, clips: Sequence[str] | None = None):
        self.path = os.fspath(store)
        root = clip_store.open_store(self.path)  # DataError naming the path if it is not a store
        index = dict(root.attrs.get("clips", {}))
        settings = dict(root.attrs.get("settings", {}))
        self.labels_of = np.asarray(class_indices(list(root.attrs.get("categories", []))) + [-1], np.int64)
        if split is not None and split not in clip_store.SPLITS:
            raise ConfigError(f"split={split!r} is not one of {', '.join(clip_store.SPLITS)} (or None: every clip)")
        self.clip_ids = sorted(c for c, entry in index.items() if split is None or entry.get("split") == split)
        if clips is not None:
            missing = sorted(set(clips) - set(self.clip_ids))
            if missing:
                raise ConfigError(f"store {self.path} has no {split + ' ' if split else ''}clip {missing[0]!r}")
            self.clip_ids = sorted(set(clips))
        if not self.clip_ids:
            raise ConfigError(f"store {self.path} has no {split + ' ' if split else ''}clips")
        chosen = _frame_choice(frames, int(settings.get("frames", 0)))
        self.items = [(clip_id, t) for clip_id in self.clip_ids for t in chosen]
        self.width, self.height = check_size(list(size), "size")
        self.targets, self.boxes, self.flip = targets, boxes, flip
        self._root, self._pid, self._clips = None, None, {}

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.update(_root=None, _pid=None, _clips={})  # zarr handles do not travel to worker processes
        return state

    def _clip(self, clip_id: str) -> clip_store.StoredClip:
        if self._root is None or self._pid != os.getpid():
            self._root, self._pid, self._clips = clip_store.open_store(self.path), os.getpid(), {}
        if clip_id not in self._clips:
            self._clips[clip_id] = clip_store.open_clip(self._root, clip_id)
        return self._clips[clip_id]

    def _image(self, clip, t: int) -> tuple[torch.Tensor, np.ndarray]:
        """The frame's cameras [V, 3, H, W] in [-1, 1] at the dataset's size, and their intrinsics there."""
        frames = clip["frames"][t]  # (V, h, w, 3) uint8
        stored_height, stored_width = frames.shape[1:3]
        image = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "v h w c -> v c h w").float()
        intrinsics = np.asarray(clip["intrinsics"][...], np.float64)
        if (stored_width, stored_height) != (self.width, self.height):
            # As ClipDataset resizes: antialiased bilinear, and the intrinsics through resize_intrinsics.
            image = F.interpolate(image, size=(self.height, self.width), mode="bilinear", antialias=True,
                                  align_corners=False).clamp_(0, 255)
            intrinsics = resize_intrinsics(intrinsics, self.width / stored_width, self.height / stored_height)
        return image.div_(127.5).sub_(1), intrinsics

    def _frame_boxes(self, clip, t: int, ego_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The frame's boxes [N, 9] in its ego frame and their class indices [N] (-1: not a detector class)."""
        offsets = clip["box_offsets"][t:t + 2]
        rows = slice(int(offsets[0]), int(offsets[1]))
        boxes = boxes_in_frame(np.asarray(clip["boxes"][rows], np.float64)[:, :9], ego_from_world)
        categories = np.asarray(clip["box_category"][rows], np.int64)
        return boxes, self.labels_of[np.clip(categories, -1, len(self.labels_of) - 1)]

    def __getitem__(self, i: int) -> dict:
        clip_id, t = self.items[i]
        clip = self._clip(clip_id)
        image, intrinsics = self._image(clip, t)
        world_from_ego = np.asarray(clip["world_from_ego"][t], np.float64)
        ego_from_cam = ego_from_cameras(world_from_ego, clip_store.camera_poses(clip, t, t + 1)[0],
                                        clip["ego_from_cam"][...])
        boxes, labels = self._frame_boxes(clip, t, invert(world_from_ego))
        item = {"world_from_ego": torch.from_numpy(world_from_ego), "clip_id": clip_id, "frame": t}
        if self.boxes:  # before any flip: the boxes stay those of the unmirrored world
            item.update(self._padded_boxes(boxes, labels, intrinsics, ego_from_cam))
        if self.targets:
            targets = encode_frame(boxes, labels, intrinsics, ego_from_cam, self.width, self.height, len(CLASSES))
            # torch's global RNG: the trainer seeds it per item (train/data.py), so flips repeat on resume.
            if self.flip and not self.boxes and bool(torch.rand(()) < 0.5):
                image = image.flip(-1)
                targets = flip_targets(targets)
                intrinsics = intrinsics.copy()
                intrinsics[:, 0, 2] = self.width - 1 - intrinsics[:, 0, 2]  # the mirrored image's rays
            item.update({name: torch.from_numpy(value) for name, value in targets.items()})
        item.update(image=image, intrinsics=torch.from_numpy(intrinsics.astype(np.float32)),
                    ego_from_cam=torch.from_numpy(ego_from_cam.astype(np.float32)))
        return item

    def _padded_boxes(self, boxes, labels, intrinsics, ego_from_cam) -> dict:
        """The detector-class boxes of the frame, padded to MAX_GT rows, with whether some camera saw them."""
        keep = np.flatnonzero(labels >= 0)[:MAX_GT]
        padded = np.zeros((MAX_GT, 9), np.float64)
        padded[:len(keep)] = boxes[keep]
        padded_labels = np.full(MAX_GT, -1, np.int64)
        padded_labels[:len(keep)] = labels[keep]
        visible = np.zeros(MAX_GT, bool)
        visible[:len(keep)] = visible_in_any(boxes[keep], intrinsics, ego_from_cam, self.width, self.height)
        return {"boxes": torch.from_numpy(padded), "labels": torch.from_numpy(padded_labels),
                "visible": torch.from_numpy(visible)}
