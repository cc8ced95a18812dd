"""Layout preview: what every camera of the rig sees of the scenario at one time, tiled like the car.

These are the layout maps the world model is conditioned on (drivesim.render.render_layout), coloured
into one RGB picture, so a user sees in a fraction of a second whether an agent lands where they meant
it to, long before a rollout is generated. Six nuScenes cameras are tiled front row over back row
(drivesim.media.grid_layout), other rigs in one row.
"""

from __future__ import annotations

import io

import numpy as np

from drivesim.render import LAYOUT_CHANNELS, render_layout
from drivesim.scenario.schema import Scenario
from drivesim.media import grid_layout

__all__ = ["BACKGROUND", "BACK_SHADE", "BLANK", "EDGE_COLOUR", "LANE_COLOUR", "LABEL_HEIGHT", "SEPARATOR",
           "SEPARATOR_COLOUR", "colorize", "layout_preview", "preview_png", "preview_size", "tile_origin"]

BACKGROUND = (48, 48, 52)      # dark grey, like tarmac: where nothing is drawn
LANE_COLOUR = (220, 220, 220)  # lane centre lines: light grey
EDGE_COLOUR = (255, 110, 20)   # road edges: orange
BACK_SHADE = 0.55              # boxes' back halves are this much as bright as their front halves
BLANK = (0, 0, 0)              # a grid cell with no camera
SEPARATOR = 2                  # pixels between tiles
SEPARATOR_COLOUR = (16, 16, 16)
LABEL_HEIGHT = 12              # pixels of the dark strip behind a tile's camera name

_BOX = slice(0, 3)
_FRONT, _LANE, _EDGE = (LAYOUT_CHANNELS.index(name) for name in ("box_front", "lane", "road_edge"))


def colorize(maps: np.ndarray) -> np.ndarray:
    """One camera's layout maps [C, H, W] (channels LAYOUT_CHANNELS) -> uint8 RGB [H, W, 3].

    Background BACKGROUND; a box in its palette colour, full on its front half and BACK_SHADE as bright on
    its back half (which way it faces); lane centre lines LANE_COLOUR, road edges EDGE_COLOUR. Lines are
    painted over boxes because the renderer keeps a line pixel only where the line is the nearer of the two.
    No depth shading: a car's pixel is exactly its palette colour, which keeps the picture exact-testable.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != len(LAYOUT_CHANNELS):
        raise ValueError(f"maps must be [{len(LAYOUT_CHANNELS)}, H, W] (channels {', '.join(LAYOUT_CHANNELS)}), "
                         f"got shape {maps.shape}")
    image = np.empty((*maps.shape[1:], 3), np.float32)
    image[:] = BACKGROUND
    colour = np.moveaxis(maps[_BOX], 0, -1)  # [H, W, 3] in 0..1; black where no box (the palette has no black)
    box = colour.max(axis=-1) > 0
    shade = np.where(maps[_FRONT] > 0.5, 1.0, BACK_SHADE)[..., None]
    image[box] = (255 * colour * shade)[box]
    image[maps[_LANE] > 0.5] = LANE_COLOUR
    image[maps[_EDGE] > 0.5] = EDGE_COLOUR
    return np.round(image).astype(np.uint8)


def preview_size(scenario: Scenario, width: int) -> tuple[int, int]:
    """(width, height) of one tile: the rig's aspect ratio, the height rounded to an even number."""
    rig = scenario.rig
    height = max(2, 2 * int(round(width * rig.height / rig.width / 2)))
    return width, height


def tile_origin(row: int, column: int, size: tuple[int, int]) -> tuple[int, int]:
    """(top, left) pixel of grid cell (row, column) in the tiled preview of tiles of size (width, height)."""
    width, height = size
    return row * (height + SEPARATOR), column * (width + SEPARATOR)


def _labelled(tile: np.ndarray, name: str) -> np.ndarray:
    """The tile with `name` in white on a dark strip at its top left; drawn on the tile alone, so a long
    name is cut at the tile's edge instead of running into its neighbour."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(tile)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((3, 1), name)
    draw.rectangle((0, 0, right + 3, max(LABEL_HEIGHT, bottom + 2) - 1), fill=(0, 0, 0))
    draw.text((3, 1), name, fill=(255, 255, 255))
    return np.asarray(image)


def _tiled(tiles: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Tiles [H, W, 3] (one per camera, in rig order) laid out by grid_layout with SEPARATOR-pixel gaps."""
    rows = grid_layout(list(names))
    height, width = tiles[0].shape[:2]
    columns = max(len(row) for row in rows)
    canvas = np.empty((len(rows) * (height + SEPARATOR) - SEPARATOR,
                       columns * (width + SEPARATOR) - SEPARATOR, 3), np.uint8)
    canvas[:] = SEPARATOR_COLOUR
    for r, row in enumerate(rows):
        for c in range(columns):
            view = row[c] if c < len(row) else None
            top, left = tile_origin(r, c, (width, height))
            canvas[top:top + height, left:left + width] = BLANK if view is None else tiles[view]
    return canvas


def layout_preview(scenario: Scenario, time: float, width: int = 256) -> np.ndarray:
    """uint8 [H_total, W_total, 3]: every camera's layout maps at `time` (clamped to [0, duration]),
    coloured by colorize, labelled with the camera's name and tiled like the car."""
    time = float(np.clip(time, 0.0, scenario.duration))
    rig = scenario.rig
    maps = render_layout(rig, scenario.layout_frames([time]), size=preview_size(scenario, width))  # [V, 1, C, H, W]
    tiles = [_labelled(colorize(maps[v, 0]), name) for v, name in enumerate(rig.names)]
    return _tiled(tiles, list(rig.names))


def preview_png(scenario: Scenario, time: float, width: int = 256) -> bytes:
    """layout_preview as PNG bytes (for st.image and downloads)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(layout_preview(scenario, time, width)).save(buffer, format="PNG")
    return buffer.getvalue()
