"""A contact sheet of one key frame: every camera of the sample laid out like the car's rig,
with the annotated 3D boxes projected through nuscenes-devkit (so it shows what a reader of
the data set gets, not what the generator meant to write).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from drivesim.errors import DrivesimError

# nuScenes' own display order: front row left to right, then back row left to right.
LAYOUT = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT")
COLOURS = {"vehicle.car": (255, 158, 0), "vehicle.truck": (255, 99, 71), "vehicle.bus": (255, 69, 0),
           "vehicle.motorcycle": (255, 61, 99), "vehicle.bicycle": (220, 20, 60), "human": (0, 0, 230),
           "movable_object": (112, 128, 144)}
EDGES = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
NEAR = 0.1  # metres: edges are clipped to the part in front of the camera


def category_colour(category: str) -> tuple[int, int, int]:
    for prefix, colour in COLOURS.items():
        if category.startswith(prefix):
            return colour
    return (200, 200, 200)


def clip_edge(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of segment a-b (camera frame) with z >= NEAR, or None."""
    if a[2] < NEAR and b[2] < NEAR:
        return None
    if a[2] < NEAR or b[2] < NEAR:
        t = (NEAR - a[2]) / (b[2] - a[2])
        cut = a + t * (b - a)
        a, b = (cut, b) if a[2] < NEAR else (a, cut)
    return a, b


def draw_boxes(image: Image.Image, boxes, intrinsic: np.ndarray) -> None:
    """Box edges in the category's colour; the front face drawn thicker to show heading."""
    draw = ImageDraw.Draw(image)
    for box in boxes:
        corners = box.corners().T  # (8, 3) in the camera frame; 0-3 front face, 4-7 back
        colour = category_colour(box.name)
        for i, j in EDGES:
            clipped = clip_edge(corners[i], corners[j])
            if clipped is None:
                continue
            (u0, v0, w0), (u1, v1, w1) = (intrinsic @ p for p in clipped)
            front = i < 4 and j < 4
            draw.line([(u0 / w0, v0 / w0), (u1 / w1, v1 / w1)], fill=colour, width=3 if front else 1)


def contact_sheet(dataroot: Path, out: Path, version: str = "v1.0-mini", scene: int = 0,
                  sample_token: str | None = None) -> Path:
    """Draw the middle key frame of scene `scene` (or `sample_token`) to the PNG `out`."""
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.geometry_utils import BoxVisibility

    nusc = NuScenes(version, dataroot=str(dataroot), verbose=False)
    if sample_token is None:
        if not 0 <= scene < len(nusc.scene):
            raise DrivesimError(f"scene {scene} is out of range: {dataroot} has {len(nusc.scene)} scenes")
        record = nusc.scene[scene]
        tokens = [record["first_sample_token"]]
        while nusc.get("sample", tokens[-1])["next"]:
            tokens.append(nusc.get("sample", tokens[-1])["next"])
        sample_token = tokens[len(tokens) // 2]
    sample = nusc.get("sample", sample_token)
    scene_record = nusc.get("scene", sample["scene_token"])
    channels = [c for c in LAYOUT if c in sample["data"]]
    channels += sorted(c for c in sample["data"] if c.startswith("CAM") and c not in channels)
    tiles = []
    font = ImageFont.load_default(size=14)
    for channel in channels:
        path, boxes, intrinsic = nusc.get_sample_data(sample["data"][channel], box_vis_level=BoxVisibility.ANY)
        image = Image.open(path).convert("RGB")
        draw_boxes(image, boxes, np.asarray(intrinsic))
        ImageDraw.Draw(image).text((6, 4), channel, fill=(255, 255, 255), font=font, stroke_width=2,
                                   stroke_fill=(0, 0, 0))
        tiles.append(image)
    width, height = tiles[0].size
    columns = 3 if len(tiles) >= 3 else len(tiles)
    rows = -(-len(tiles) // columns)
    header = 28
    sheet = Image.new("RGB", (columns * width, rows * height + header), (20, 20, 20))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % columns) * width, header + (k // columns) * height))
    title = f"{scene_record['name']}: {scene_record['description']}  |  sample at {sample['timestamp']}"
    ImageDraw.Draw(sheet).text((8, 6), title, fill=(230, 230, 230), font=font)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
