"""Pictures of what the detector sees: each camera of a frame with the true boxes (green) and the predicted ones
(red) projected into it, above the heat map (the maximum over classes)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from drivesim.data.contact_sheet import EDGES, clip_edge
from drivesim.geometry import box_corners, invert, transform_points
from drivesim.perception.decode import Detections

TRUE, PREDICTED = (60, 220, 60), (255, 60, 60)


def draw_boxes(image: Image.Image, boxes_ego: np.ndarray, intrinsics: np.ndarray, ego_from_cam: np.ndarray,
               colour: tuple[int, int, int]) -> None:
    """Wireframes of boxes [N, >=7] (ego frame) drawn into one camera's image, front face thick."""
    if not len(boxes_ego):
        return
    draw = ImageDraw.Draw(image)
    cam_from_ego = invert(np.asarray(ego_from_cam, np.float64))
    intrinsics = np.asarray(intrinsics, np.float64)
    for corners in box_corners(np.asarray(boxes_ego, np.float64)):
        corners = transform_points(cam_from_ego, corners)
        for i, j in EDGES:
            clipped = clip_edge(corners[i], corners[j])
            if clipped is None:
                continue
            (u0, v0, w0), (u1, v1, w1) = (intrinsics @ point for point in clipped)
            draw.line(((u0 / w0, v0 / w0), (u1 / w1, v1 / w1)), fill=colour, width=2 if i < 4 and j < 4 else 1)


def boxes_picture(batch: dict, found: Detections, heat: torch.Tensor) -> torch.Tensor:
    """[3, 2H, V W] in [0, 1]: the first frame of a batch (frames.py items, with boxes) per camera, boxes drawn,
    over its heat map [V, C, h, w]."""
    images = ((batch["image"][0].float().cpu() + 1) * 127.5).clamp(0, 255).byte()  # [V, 3, H, W]
    views, _, height, width = images.shape
    labels = batch["labels"][0].cpu().numpy()
    truth = batch["boxes"][0].cpu().numpy()[labels >= 0]
    tiles = []
    for v in range(views):
        tile = Image.fromarray(images[v].permute(1, 2, 0).numpy())
        intrinsics, ego_from_cam = batch["intrinsics"][0, v].cpu().numpy(), batch["ego_from_cam"][0, v].cpu().numpy()
        draw_boxes(tile, truth, intrinsics, ego_from_cam, TRUE)
        draw_boxes(tile, found.boxes, intrinsics, ego_from_cam, PREDICTED)
        tiles.append(torch.from_numpy(np.array(tile)).permute(2, 0, 1).float() / 255)  # [3, H, W]
    pictures = torch.cat(tiles, dim=-1)                                                  # [3, H, V W]
    peak = heat.float().cpu().amax(dim=1, keepdim=True)                                  # [V, 1, h, w]
    peak = F.interpolate(peak, size=(height, width), mode="nearest")                     # [V, 1, H, W]
    heat_row = torch.cat(list(peak), dim=-1).expand(3, -1, -1)                           # [3, H, V W]
    return torch.cat([pictures, heat_row], dim=-2)
