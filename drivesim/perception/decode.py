"""From the network's maps to 3D boxes: heat-map peaks per camera, lifted through the camera's intrinsics and
ego_from_cam to the ego frame (targets.py's parametrisation inverted), then one box per object across cameras
(greedy non-maximum suppression by bird's-eye-view centre distance, per class)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from drivesim.geometry import transform_points, unproject
from drivesim.perception.categories import CLASSES, MERGE_RADIUS
from drivesim.perception.targets import FOCAL_REFERENCE, STRIDE, focal, ray_azimuth

TOP_K = 100          # peaks kept per camera
MIN_SCORE = 0.05     # peaks below this are dropped (the devkit's curves start at recall 0.1 anyway)
MAX_BOXES = 500      # per frame: the devkit's max_boxes_per_sample


@dataclass
class Detections:
    """The boxes of one frame: boxes [N, 9] (centre xyz, size wlh, yaw, velocity xy) in one frame (ego or
    world), scores [N] in (0, 1], labels [N] (indices into CLASSES)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 9)), np.zeros(0), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, keep) -> Detections:
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


def peaks(heat_logits: torch.Tensor, top_k: int = TOP_K, min_score: float = MIN_SCORE):
    """Local maxima of one camera's heat maps [C, h, w]: (scores [K], classes [K], rows [K], columns [K])."""
    heat = torch.sigmoid(heat_logits.float())
    # A cell that is the maximum of its 3x3 neighbourhood is a peak: CenterNet's NMS.
    local = heat == F.max_pool2d(heat[None], 3, 1, 1)[0]
    scores, flat = (heat * local).flatten().topk(min(top_k, heat.numel()))
    keep = scores >= min_score
    scores, flat = scores[keep], flat[keep]
    _, height, width = heat.shape
    return scores, flat // (height * width), (flat // width) % height, flat % width


def lift(regression: np.ndarray, rows: np.ndarray, columns: np.ndarray, intrinsics: np.ndarray,
         ego_from_cam: np.ndarray) -> np.ndarray:
    """Boxes [K, 9] in the ego frame from the regression [R, h, w] at cells (rows, columns) of one camera."""
    values = regression[:, rows, columns].T.astype(np.float64)  # [K, R]
    cells = np.stack([columns, rows], -1) + values[:, 0:2]     # cell coordinates of the centres
    pixels = (cells + 0.5) * STRIDE - 0.5                      # their pixels (targets.py's convention)
    depth = np.exp(values[:, 2]) * focal(intrinsics) / FOCAL_REFERENCE
    centres_cam = unproject(np.asarray(intrinsics, np.float64), pixels, depth)  # [K, 3]
    azimuth = ray_azimuth(centres_cam, ego_from_cam)
    yaw = np.arctan2(values[:, 6], values[:, 7]) + azimuth
    along, across = values[:, 8], values[:, 9]
    velocity = np.stack([np.cos(azimuth) * along - np.sin(azimuth) * across,
                         np.sin(azimuth) * along + np.cos(azimuth) * across], -1)
    centres = transform_points(np.asarray(ego_from_cam, np.float64), centres_cam)
    yaw = np.arctan2(np.sin(yaw), np.cos(yaw))  # wrapped to (-pi, pi]
    return np.concatenate([centres, np.exp(values[:, 3:6]), yaw[:, None], velocity], -1)


def merge(detections: Detections) -> Detections:
    """One detection per object: within a class, highest score first, drop any whose bird's-eye-view centre is
    within MERGE_RADIUS of one kept (the same object seen by two cameras)."""
    kept = []
    for label in np.unique(detections.labels):
        rows = np.flatnonzero(detections.labels == label)
        rows = rows[np.argsort(-detections.scores[rows], kind="stable")]
        radius = MERGE_RADIUS[CLASSES[label]]
        chosen: list[int] = []
        for row in rows:
            if chosen:
                gaps = np.linalg.norm(detections.boxes[chosen, :2] - detections.boxes[row, :2], axis=-1)
                if gaps.min() < radius:
                    continue
            chosen.append(row)
        kept.extend(chosen)
    kept = np.asarray(sorted(kept, key=lambda row: -detections.scores[row]), np.int64)[:MAX_BOXES]
    return detections.take(kept)


@torch.no_grad()
def decode_frame(heat_logits: torch.Tensor, regression: torch.Tensor, intrinsics, ego_from_cam,
                 min_score: float = MIN_SCORE) -> Detections:
    """Detections of one frame in the ego frame, from its cameras' maps [V, C, h, w] and [V, R, h, w], with
    intrinsics [V, 3, 3] at the network's input size and ego_from_cam [V, 4, 4]."""
    intrinsics = np.asarray(torch.as_tensor(intrinsics).cpu(), np.float64)
    ego_from_cam = np.asarray(torch.as_tensor(ego_from_cam).cpu(), np.float64)
    parts = []
    for view in range(heat_logits.shape[0]):
        scores, labels, rows, columns = (t.cpu().numpy() for t in peaks(heat_logits[view], min_score=min_score))
        boxes = lift(regression[view].float().cpu().numpy(), rows, columns, intrinsics[view], ego_from_cam[view])
        parts.append(Detections(boxes, scores.astype(np.float64), labels.astype(np.int64)))
    every = Detections(*(np.concatenate(field) for field in zip(*((p.boxes, p.scores, p.labels) for p in parts))))
    return merge(every)


def decode_batch(maps: dict, intrinsics: torch.Tensor, ego_from_cam: torch.Tensor,
                 min_score: float = MIN_SCORE) -> list[Detections]:
    """decode_frame for every frame of a batch (maps as CameraDetector returns them)."""
    return [decode_frame(maps["heatmap"][b], maps["regression"][b], intrinsics[b], ego_from_cam[b], min_score)
            for b in range(maps["heatmap"].shape[0])]
