"""Files a synthetic log carries beside the nuScenes tables: the drivable-area map PNG the
devkit expects, and the lane geometry later stages draw (format: docs/synthetic_logs.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from drivesim.data.synth.town import Town

MAP_RESOLUTION = 0.1  # metres per pixel, as nuScenes' semantic prior maps
TOWN_FORMAT = "drivesim-town/1"


def write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")


def drivable_mask(town: Town, resolution: float = MAP_RESOLUTION) -> np.ndarray:
    """uint8 (rows, cols): 255 on roads; row 0 is the town's northern edge (max y), as the
    devkit's MapMask reads nuScenes maps."""
    width, height = (int(np.ceil(s / resolution)) for s in town.size)
    xs = (np.arange(width) + 0.5) * resolution
    ys = (height - np.arange(height) - 0.5) * resolution
    mask = np.zeros((height, width), dtype=bool)
    for x, hw in zip(town.xs, town.half_widths_x):
        mask[:, np.abs(xs - x) <= hw] = True
    for y, hw in zip(town.ys, town.half_widths_y):
        mask[np.abs(ys - y) <= hw, :] = True
    return mask.astype(np.uint8) * 255


def write_drivable_png(town: Town, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(drivable_mask(town)).save(path, optimize=True)


def _points(array: np.ndarray) -> list[list[float]]:
    return np.round(np.asarray(array, dtype=np.float64), 3).tolist()


def town_record(town: Town) -> dict:
    """The town as JSON-able map data, all coordinates in the nuScenes global (world) frame."""
    return {
        "format": TOWN_FORMAT,
        "name": town.name,
        "size": [round(town.size[0], 3), round(town.size[1], 3)],
        "map_resolution": MAP_RESOLUTION,
        "lanes": [{"id": lane.id, "centerline": _points(lane.points), "width": lane.width,
                   "successors": list(lane.successors), "turn": lane.turn,
                   "left": lane.left, "right": lane.right} for lane in town.lanes],
        "markings": [{"kind": m.kind, "points": _points(m.points)} for m in town.markings],
        "road_edges": [_points(edge) for edge in town.road_edges()],
        "crosswalks": [_points(c) for c in town.crosswalks],
        "buildings": [{"footprint": _points(b.footprint), "height": round(b.height, 3)} for b in town.buildings],
    }


def write_town_json(town: Town, path: Path) -> None:
    write_json(path, town_record(town))


def read_town_json(path: Path) -> dict:
    """The town record with numpy polylines; raises ValueError on another format."""
    record = json.loads(Path(path).read_text())
    if record.get("format") != TOWN_FORMAT:
        raise ValueError(f"{path}: not a {TOWN_FORMAT} file (format {record.get('format')!r})")
    for lane in record["lanes"]:
        lane["centerline"] = np.asarray(lane["centerline"], dtype=np.float64)
    for marking in record["markings"]:
        marking["points"] = np.asarray(marking["points"], dtype=np.float64)
    record["road_edges"] = [np.asarray(e, dtype=np.float64) for e in record["road_edges"]]
    return record
