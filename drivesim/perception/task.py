"""The `detector` training task: single frames of a clip store (every camera of one time), CenterNet losses
(penalty-reduced focal loss on the heat maps, L1 at object centres), validation scored by nuscenes-devkit's
algorithm in each frame's ego frame, and camera images with predicted and true boxes for TensorBoard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from drivesim.errors import ConfigError
from drivesim.perception.decode import decode_batch
from drivesim.perception.frames import StoreFrames, check_size
from drivesim.perception.model import CameraDetector, ResBlock
from drivesim.perception.pretrained import model_config
from drivesim.train.config import from_dict

# Regression channels (targets.REGRESSION) per loss term.
PARTS = {"offset": slice(0, 2), "depth": slice(2, 3), "size": slice(3, 6), "yaw": slice(6, 8),
         "velocity": slice(8, 10)}


@dataclass
class DetectorData:
    """Which store, at what size; training frames are mirrored at random (flip)."""

    store: str = ""
    # More stores whose every clip trains beside the store's train split: exported and ingested rollouts,
    # for the augmentation experiment (benchmarks/augment.py).
    extra_train_stores: list[str] = field(default_factory=list)
    size: list[int] = field(default_factory=lambda: [256, 128])  # width, height: the world model's
    flip: bool = True


@dataclass
class DetectorLoss:
    """heatmap * focal + the rest * L1 of their regression channels at object centres."""

    heatmap: float = 1.0
    offset: float = 1.0
    depth: float = 1.0
    size: float = 1.0
    yaw: float = 1.0
    velocity: float = 0.2   # one image shows little of speed: a small weight keeps it from pulling the rest

    def validate(self) -> DetectorLoss:
        for name in ("heatmap", *PARTS):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        return self


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), summed and divided by the number of peaks."""
    logits, target = logits.float(), target.float()
    positive = target.eq(1).float()
    probability = torch.sigmoid(logits)
    # logsigmoid, not log(sigmoid): exact where the sigmoid saturates.
    gain = F.logsigmoid(logits) * (1 - probability) ** 2 * positive
    loss = F.logsigmoid(-logits) * probability ** 2 * (1 - target) ** 4 * (1 - positive)
    return -(gain.sum() + loss.sum()) / positive.sum().clamp_min(1)


def regression_losses(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean L1 per part over object centres: prediction and target [B, V, R, h, w], mask [B, V, h, w]."""
    centres = mask.float().unsqueeze(2)                                # [B, V, 1, h, w]
    count = centres.sum().clamp_min(1)
    error = (prediction.float() - target.float()).abs() * centres      # [B, V, R, h, w]
    return {name: error[:, :, part].sum() / (count * (part.stop - part.start)) for name, part in PARTS.items()}


def _unwrap(model: torch.nn.Module) -> CameraDetector:
    return getattr(model, "module", model)


class DetectorTask:
    name = "detector"
    block_types = (ResBlock,)

    def __init__(self):
        self.weights = DetectorLoss()

    def configure_loss(self, loss_section: dict) -> None:
        self.weights = from_dict(DetectorLoss, loss_section, "loss").validate()

    def build_model(self, model_section: dict) -> torch.nn.Module:
        return CameraDetector(model_config(model_section))

    def datasets(self, data_section: dict):
        config = from_dict(DetectorData, data_section, "data")
        if not config.store:
            raise ConfigError("data.store is required: a clip store made by `drivesim ingest`")
        size = check_size(config.size)
        train = StoreFrames(config.store, "train", size, flip=config.flip)
        if config.extra_train_stores:
            train = torch.utils.data.ConcatDataset(
                [train, *(StoreFrames(extra, None, size, flip=config.flip) for extra in config.extra_train_stores)])
        try:
            val = StoreFrames(config.store, "val", size, boxes=True)
        except ConfigError:
            val = None  # a store without val clips: train only
        return train, val

    def _losses(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict]:
        maps = model(batch["image"], batch["intrinsics"], batch["ego_from_cam"])
        parts = {"heatmap": focal_loss(maps["heatmap"], batch["heatmap"]),
                 **regression_losses(maps["regression"], batch["regression"], batch["mask"])}
        total = sum(getattr(self.weights, name) * value for name, value in parts.items())
        return total, parts, maps

    def loss(self, model, batch):
        total, parts, _ = self._losses(model, batch)
        return total, {name: float(value.detach()) for name, value in parts.items()}

    def validate(self, model, batches: Iterable[dict]) -> dict[str, float]:
        """The loss terms, and mAP/NDS (score.py) over the validation frames, each scored in its ego frame."""
        from drivesim.perception.score import Frame, evaluate, ground_truth_of

        sums: dict[str, float] = {}
        frames, count = [], 0
        for batch in batches:
            total, parts, maps = self._losses(model, batch)
            for name, value in {"loss": total, **parts}.items():
                sums[name] = sums.get(name, 0.0) + float(value)
            count += 1
            for b, found in enumerate(decode_batch(maps, batch["intrinsics"], batch["ego_from_cam"])):
                truth = ground_truth_of(batch["boxes"][b].cpu().numpy(), batch["labels"][b].cpu().numpy())
                visible = batch["visible"][b].cpu().numpy()[:len(truth)]
                frames.append(Frame(f"{len(frames)}", truth, visible, found, np.zeros(3)))
        metrics = {name: value / max(count, 1) for name, value in sums.items()}
        score = evaluate(frames)
        # NaN when the frames hold no ground truth: 0 keeps the means across ranks defined.
        metrics.update(mAP=np.nan_to_num(score.mean_ap), NDS=np.nan_to_num(score.nds))
        return metrics

    def samples(self, model, batch):
        from drivesim.perception.draw import boxes_picture

        maps = model(batch["image"][:1], batch["intrinsics"][:1], batch["ego_from_cam"][:1])
        found = decode_batch(maps, batch["intrinsics"][:1], batch["ego_from_cam"][:1], min_score=0.3)[0]
        return {"cameras_true_green_predicted_red": boxes_picture(batch, found, torch.sigmoid(maps["heatmap"][0]))}
