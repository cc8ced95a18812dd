"""How well the annotated 3D boxes, read back through nuscenes-devkit, cover the rendered
objects: per camera and key frame, the IoU between each box's projected image hull and the
object's instance mask from the renderer. The synth tests use it, and it runs on any log
`drivesim synth` wrote (docs/synthetic_logs.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path as FilePath

import numpy as np
from matplotlib.path import Path
from scipy.spatial import ConvexHull


@dataclass(frozen=True)
class BoxFit:
    scene: str
    channel: str
    agent: int
    category: str
    iou: float
    mask_pixels: int
    mask_extent: int  # the smaller side of the mask's bounding rectangle, pixels
    unoccluded: float  # fraction of the object's silhouette that is the first hit (this camera)


def hull_mask(corners_px: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixels whose centre (OpenCV convention: at integer coordinates) lies inside the convex
    hull of projected box corners (2, 8)."""
    points = corners_px.T
    hull = Path(points[ConvexHull(points).vertices])
    u0, v0 = np.clip(np.floor(points.min(axis=0)), 0, [width - 1, height - 1]).astype(int)
    u1, v1 = np.clip(np.ceil(points.max(axis=0)), 0, [width - 1, height - 1]).astype(int)
    mask = np.zeros((height, width), dtype=bool)
    vs, us = np.mgrid[v0:v1 + 1, u0:u1 + 1]
    inside = hull.contains_points(np.column_stack([us.ravel(), vs.ravel()]))
    mask[v0:v1 + 1, u0:u1 + 1] = inside.reshape(us.shape)
    return mask


def box_fits(dataroot: FilePath, version: str = "v1.0-mini", max_samples: int | None = None) -> list[BoxFit]:
    """IoUs for every annotated object in front of a camera in every (or the first n) key frames."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    from drivesim.data.synth.logs import SceneWorld, SynthConfig, plan_scene

    dataroot = FilePath(dataroot)
    meta = json.loads((dataroot / "drivesim" / "scenes.json").read_text())
    saved = meta["config"]
    config = SynthConfig(out=dataroot, **{k: saved[k] for k in ("scenes", "seconds", "width", "height", "fps",
                                                               "seed", "rig", "version")})
    nusc = NuScenes(version, dataroot=str(dataroot), verbose=False)
    fits: list[BoxFit] = []
    worlds: dict[str, object] = {}
    samples = nusc.sample if max_samples is None else nusc.sample[:max_samples]
    for sample in samples:
        scene = nusc.get("scene", sample["scene_token"])
        index = int(scene["name"].split("-")[1]) - 1
        if scene["name"] not in worlds:
            worlds[scene["name"]] = SceneWorld(config, plan_scene(config, index))
        world = worlds[scene["name"]]
        instances = meta["scenes"][scene["name"]]["instances"]
        frame = world.frame_at(sample["timestamp"])
        rendered, dynamic = world.render(frame)
        world_from_cams = world.world_from_ego(frame) @ world.rig.ego_from_cam
        silhouettes = world.renderer.visibility(dynamic, world_from_cams, world.rig.intrinsics, config.width,
                                                config.height)
        for v, channel in enumerate(world.rig.names):
            _, boxes, intrinsic = nusc.get_sample_data(sample["data"][channel], box_vis_level=BoxVisibility.ANY)
            instance_mask = rendered.instance[v]
            for box in boxes:
                corners = box.corners()
                if np.any(corners[2] < 0.5):  # behind or at the camera: no sane projection
                    continue
                agent = instances[nusc.get("sample_annotation", box.token)["instance_token"]]
                mask = instance_mask == agent
                if not mask.any():
                    continue
                hull = hull_mask(view_points(corners, np.asarray(intrinsic), normalize=True)[:2],
                                 config.width, config.height)
                union = np.logical_or(hull, mask).sum()
                whole = silhouettes[v].get(agent, (0, 0))[1]
                rows, cols = np.nonzero(mask)
                extent = int(min(rows.max() - rows.min(), cols.max() - cols.min()) + 1)
                fits.append(BoxFit(scene["name"], channel, agent, box.name,
                                   float(np.logical_and(hull, mask).sum() / union), int(mask.sum()), extent,
                                   float(mask.sum() / whole) if whole else 0.0))
    return fits
