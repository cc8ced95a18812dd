"""Detections scored by nuscenes-devkit's own detection algorithm: mAP over centre-distance thresholds, the
true-positive errors and NDS.

The devkit's DetectionEval finds ground truth through the official split lists, which hold no synthetic
scene, so its algorithm is called directly (algo.accumulate, calc_ap, calc_tp over EvalBoxes), with the
official config (detection_cvpr_2019: thresholds 0.5/1/2/4 m, class ranges, min recall and precision). What
DetectionEval adds around it is done here the same way: boxes beyond their class's range from the ego are
dropped, and so are ground-truth boxes no sensor saw (the devkit drops boxes with no lidar point; the store
keeps no lidar counts, so here: no camera has the box centre in its image).

Two departures, both forced by what drivesim knows:
- Classes: mAP and the TP errors average over the classes that have ground truth in the scored frames (the
  devkit averages over all ten; classes absent from synthetic logs would count as AP 0).
- Attributes: neither the store nor the detector has them, so AAE is not defined. It is reported as NaN and
  left out of NDS, which becomes (5 mAP + sum of the four other TP scores) / 9, the devkit's formula over the
  metrics that exist. (Counting AAE as 1, as the devkit would for a detector without attributes, would cap
  NDS at 0.9.)"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from drivesim.perception.categories import CLASSES, DEVKIT_NAMES
from drivesim.perception.decode import Detections

# The devkit's metric names and the short names the field reports them by. AAE is absent: see above.
TP_ERRORS = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE"}
# The devkit leaves out what a class cannot have (evaluate.py): a barrier's velocity.
NOT_SCORED = {"traffic_cone": ("vel_err", "orient_err"), "barrier": ("vel_err",)}


@dataclass
class DetectionScore:
    """What the devkit's algorithm gives for a set of frames (NaN where nothing could be scored)."""

    mean_ap: float
    nds: float
    ap: dict[str, float] = field(default_factory=dict)            # devkit class name -> AP (mean over thresholds)
    tp_errors: dict[str, float] = field(default_factory=dict)     # ATE (m), ASE (1 - IoU), AOE (rad), AVE (m/s)
    class_tp_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    aae: float = math.nan                                         # not defined without attributes
    frames: int = 0
    ground_truth: int = 0                                         # boxes scored, after the range filter
    predictions: int = 0

    def summary(self) -> str:
        errors = ", ".join(f"{name} {value:.3f}" for name, value in self.tp_errors.items())
        return (f"mAP {self.mean_ap:.4f}, NDS {self.nds:.4f} ({errors}; AAE n/a) over {self.frames} frames, "
                f"{self.ground_truth} boxes, {self.predictions} predictions")


@dataclass
class Frame:
    """One frame to score: its ground truth and its detections in one global frame (world), and the ego
    position there (for the range filter)."""

    token: str
    ground_truth: Detections          # scores unused
    visible: np.ndarray               # [N] bool per ground-truth box: some camera has it in view
    detections: Detections
    ego_position: np.ndarray          # [3]


def detection_config():
    """The official nuScenes detection config (thresholds, ranges, recall and precision floors)."""
    from nuscenes.eval.common.config import config_factory

    return config_factory("detection_cvpr_2019")


def _eval_boxes(frames: Iterable[Frame], ground_truth: bool, class_range: dict[str, float]):
    """EvalBoxes of DetectionBox for the frames' ground truth or detections, range-filtered as the devkit's
    filter_eval_boxes does (ego_dist < class range; ground truth no camera saw counts as num_pts = 0)."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox

    eval_boxes = EvalBoxes()
    for frame in frames:
        found = frame.ground_truth if ground_truth else frame.detections
        boxes = []
        for row in range(len(found)):
            box = found.boxes[row]
            name = DEVKIT_NAMES[CLASSES[int(found.labels[row])]]
            ego_translation = box[:3] - frame.ego_position
            if np.hypot(*ego_translation[:2]) >= class_range[name]:
                continue
            if ground_truth and not frame.visible[row]:
                continue
            half = float(box[6]) / 2
            boxes.append(DetectionBox(
                sample_token=frame.token, translation=tuple(map(float, box[:3])), size=tuple(map(float, box[3:6])),
                rotation=(math.cos(half), 0.0, 0.0, math.sin(half)), velocity=tuple(map(float, box[7:9])),
                ego_translation=tuple(map(float, ego_translation)), detection_name=name,
                detection_score=-1.0 if ground_truth else float(found.scores[row]), attribute_name=""))
        eval_boxes.add_boxes(frame.token, boxes)
    return eval_boxes


def evaluate(frames: list[Frame]) -> DetectionScore:
    """mAP, the TP errors and NDS of the frames' detections against their ground truth (module docstring)."""
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp

    config = detection_config()
    ground_truth = _eval_boxes(frames, True, config.class_range)
    predictions = _eval_boxes(frames, False, config.class_range)
    present = [name for name in dict.fromkeys(DEVKIT_NAMES.values())
               if any(box.detection_name == name for box in ground_truth.all)]
    score = DetectionScore(math.nan, math.nan, frames=len(frames), ground_truth=len(ground_truth.all),
                           predictions=len(predictions.all))
    for name in present:
        aps = []
        for threshold in config.dist_ths:
            curve = accumulate(ground_truth, predictions, name, config.dist_fcn_callable, threshold)
            aps.append(calc_ap(curve, config.min_recall, config.min_precision))
            if threshold == config.dist_th_tp:
                score.class_tp_errors[name] = {
                    short: math.nan if metric in NOT_SCORED.get(name, ()) else calc_tp(curve, config.min_recall,
                                                                                      metric)
                    for metric, short in TP_ERRORS.items()}
        score.ap[name] = float(np.mean(aps))
    if not present:
        return score
    score.mean_ap = float(np.mean(list(score.ap.values())))
    for short in TP_ERRORS.values():
        values = [errors[short] for errors in score.class_tp_errors.values() if not math.isnan(errors[short])]
        score.tp_errors[short] = float(np.mean(values)) if values else math.nan
    # The devkit's DetectionMetrics.nd_score: TP errors become scores 1 - error, floored at 0.
    tp_scores = [max(0.0, 1.0 - error) for error in score.tp_errors.values() if not math.isnan(error)]
    score.nds = float((config.mean_ap_weight * score.mean_ap + sum(tp_scores))
                      / (config.mean_ap_weight + len(tp_scores)))
    return score


def ground_truth_of(item_boxes, item_labels) -> Detections:
    """The real rows of an item's padded boxes [MAX_GT, 9] and labels [MAX_GT] (frames.py) as Detections."""
    labels = np.asarray(item_labels, np.int64)
    keep = labels >= 0
    return Detections(np.asarray(item_boxes, np.float64)[keep], np.ones(int(keep.sum())), labels[keep])


def in_world(found: Detections, world_from_ego: np.ndarray) -> Detections:
    """Detections of the ego frame moved to the world frame."""
    from drivesim.perception.targets import boxes_in_frame

    return Detections(boxes_in_frame(found.boxes, world_from_ego), found.scores, found.labels)


def detect_frames(detector, dataset, batch_size: int = 2, progress: bool = False, desc: str = "detect"
                  ) -> list[Frame]:
    """Run a TrainedDetector (pretrained.py) over a StoreFrames dataset made with boxes=True: every frame's
    detections and ground truth in the world frame, ready for `evaluate`."""
    import torch
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    scored = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        found = detector.detect(batch["image"], batch["intrinsics"], batch["ego_from_cam"])
        for b, detections in enumerate(found):
            world_from_ego = batch["world_from_ego"][b].numpy()
            truth = ground_truth_of(batch["boxes"][b].numpy(), batch["labels"][b].numpy())
            visible = batch["visible"][b].numpy()[:len(truth)]
            scored.append(Frame(f"{batch['clip_id'][b]}/{int(batch['frame'][b])}", in_world(truth, world_from_ego),
                                visible, in_world(detections, world_from_ego), world_from_ego[:3, 3]))
    return scored


def score_store(detector, store, split: str | None = "val", frames=None, batch_size: int = 2,
                progress: bool = False) -> DetectionScore:
    """Run a TrainedDetector (pretrained.py) over the clips of one split of a store (None: all clips) and score
    it against the store's boxes in the world frame. frames: which frames of each clip (None: all; a count:
    that many spread evenly; or indices)."""
    from drivesim.perception.frames import StoreFrames

    dataset = StoreFrames(store, split, detector.size, targets=False, boxes=True, frames=frames)
    return evaluate(detect_frames(detector, dataset, batch_size, progress))
