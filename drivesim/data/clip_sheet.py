"""A picture of one stored clip: a few frames of every camera with the clip's boxes and map
polylines projected from the world frame through its own poses and calibration, so a wrong
pose, intrinsic or box shows at a glance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from drivesim.data import store
from drivesim.data.contact_sheet import EDGES, clip_edge, category_colour
from drivesim.errors import DataError
from drivesim.geometry import box_corners, compose, invert, transform_points

POLY_COLOURS = {"lane": (80, 220, 255), "road_edge": (255, 255, 255), "lane_divider": (255, 235, 60),
                "crosswalk": (120, 255, 120), "stop_line": (255, 80, 80)}


def cam_from_world(clip: dict, t: int, v: int) -> np.ndarray:
    """The transform taking world points into camera `v` at frame `t` of a clip read with read_clip,
    through the ego pose at that camera's own capture time."""
    world_from_ego = store.camera_poses(clip, t, t + 1)[0, v]
    return invert(compose(world_from_ego, clip["ego_from_cam"][v].astype(np.float64)))


def _segments(points_cam: np.ndarray, intrinsics: np.ndarray):
    """Pixel segments of a camera-frame polyline, cut at the near plane."""
    for a, b in zip(points_cam[:-1], points_cam[1:]):
        clipped = clip_edge(a, b)
        if clipped is not None:
            (u0, v0, w0), (u1, v1, w1) = (intrinsics @ p for p in clipped)
            yield (u0 / w0, v0 / w0), (u1 / w1, v1 / w1)


def draw_frame(clip: dict, t: int, v: int, categories: list[str], poly_types: list[str]) -> Image.Image:
    """Camera `v` at frame `t` with polylines (thin) and boxes (front face thick) drawn on it."""
    image = Image.fromarray(clip["frames"][t, v])
    draw = ImageDraw.Draw(image)
    cam_from = cam_from_world(clip, t, v)
    intrinsics = clip["intrinsics"][v].astype(np.float64)
    offsets = clip["poly_offsets"]
    for k, kind in enumerate(clip["poly_type"]):
        line = transform_points(cam_from, clip["polylines"][offsets[k]:offsets[k + 1]].astype(np.float64))
        for segment in _segments(line, intrinsics):
            draw.line(segment, fill=POLY_COLOURS.get(poly_types[kind], (200, 200, 200)), width=1)
    rows = slice(clip["box_offsets"][t], clip["box_offsets"][t + 1])
    boxes = clip["boxes"][rows].astype(np.float64)
    rotations = store.box_rotations(clip, rows.start, rows.stop)
    for corners, category in zip(box_corners(boxes, rotations), clip["box_category"][rows]):
        corners = transform_points(cam_from, corners)
        colour = category_colour(categories[category])
        for i, j in EDGES:
            for segment in _segments(corners[[i, j]], intrinsics):
                draw.line(segment, fill=colour, width=3 if i < 4 and j < 4 else 1)
    return image


def clip_sheet(path: str | Path, out: str | Path, clip_id: str | None = None, frames: int = 3) -> Path:
    """Draw `frames` evenly spaced frames (rows) of every camera (columns) of one clip to the PNG `out`."""
    root = store.open_store(path)
    index = root.attrs.get("clips", {})
    if not index:
        raise DataError(f"store {path} has no clips")
    clip_id = clip_id or sorted(index)[0]
    if clip_id not in index:
        raise DataError(f"--clip {clip_id}: not in store {path} (e.g. {', '.join(sorted(index)[:3])})")
    clip = store.read_clip(root, clip_id)
    categories, poly_types = list(root.attrs["categories"]), list(root.attrs["poly_types"])
    length, views = clip["frames"].shape[:2]
    chosen = sorted(set(np.linspace(0, length - 1, max(1, min(frames, length))).round().astype(int).tolist()))
    height, width = clip["frames"].shape[2:4]
    font = ImageFont.load_default(size=12)
    header = 22
    sheet = Image.new("RGB", (views * width, len(chosen) * height + header), (20, 20, 20))
    seconds = (clip["timestamps"] - clip["timestamps"][0]) / 1e6
    for row, t in enumerate(chosen):
        for v in range(views):
            tile = draw_frame(clip, t, v, categories, poly_types)
            label = f"{clip['attrs']['cameras'][v]}  t={seconds[t]:.2f}s"
            ImageDraw.Draw(tile).text((4, 3), label, fill=(255, 255, 255), font=font, stroke_width=2,
                                      stroke_fill=(0, 0, 0))
            sheet.paste(tile, (v * width, header + row * height))
    title = f"{clip_id} ({clip['attrs'].get('split')}): {clip['attrs'].get('caption')}"
    ImageDraw.Draw(sheet).text((6, 4), title, fill=(230, 230, 230), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
