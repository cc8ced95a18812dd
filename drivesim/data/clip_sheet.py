"""A picture of one stored clip: a few frames of every camera with the clip's boxes and map
polylines projected from the world frame through its own poses and calibration, so a wrong
pose, intrinsic or box shows at a glance; optionally each beside its dense scene map
(drivesim/scene_maps.py), which is what a world model taking dense maps is given."""

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


def clip_maps(root, clip_id: str, clip: dict, chosen: list[int], categories: list[str],
              poly_types: list[str]):
    """The dense scene maps (scene_maps.SceneMaps [V, F, H, W]) of frames `chosen` of a clip read with
    read_clip, drawn with the clip's own rig at the stored size (as the data set draws them)."""
    from drivesim.render import layout_frames_from_clip  # open3d: only when asked for
    from drivesim.rigs import Camera, Rig
    from drivesim.scene_maps import render_scene

    height, width = clip["frames"].shape[2:4]
    rig = Rig("clip", int(width), int(height),
              tuple(Camera(name, k, e) for name, k, e in zip(clip["attrs"]["cameras"], clip["intrinsics"],
                                                             np.asarray(clip["ego_from_cam"], np.float64))))
    group = store.open_clip(root, clip_id)  # the group, not the dict: its attrs hold the caption's look
    layout = [frame for t in chosen for frame in layout_frames_from_clip(group, categories, poly_types, t, t + 1)]
    return render_scene(rig, layout)


def maps_legend(width: int) -> Image.Image:
    """A strip `width` wide naming the colours of scene_maps.picture, wrapped onto as many rows as needed."""
    from drivesim.scene_maps import CLASS_COLOURS

    names: dict[tuple, list[str]] = {}
    for name, colour in CLASS_COLOURS.items():  # classes painted alike share one swatch
        names.setdefault(tuple(colour), []).append(name.replace("_", " "))
    entries = [(colour, " / ".join(group)) for colour, group in names.items()]
    font = ImageFont.load_default(size=12)
    note = "dense scene map: darker = farther, black = box outlines"
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows, row, x = [], [], 6
    for colour, label in entries:
        step = 18 + int(measure.textlength(label, font=font)) + 14
        if row and x + step > width:
            rows.append(row)
            row, x = [], 6
        row.append((x, colour, label))
        x += step
    rows.append(row)
    line = 18
    strip = Image.new("RGB", (width, line * (len(rows) + 1) + 4), (20, 20, 20))
    draw = ImageDraw.Draw(strip)
    draw.text((6, 3), note, fill=(230, 230, 230), font=font)
    for r, entries_of_row in enumerate(rows, start=1):
        for x, colour, label in entries_of_row:
            top = r * line + 3
            draw.rectangle((x, top, x + 13, top + 12), fill=colour, outline=(90, 90, 90))
            draw.text((x + 18, top - 1), label, fill=(230, 230, 230), font=font)
    return strip


def clip_sheet(path: str | Path, out: str | Path, clip_id: str | None = None, frames: int = 3,
               maps: bool = False) -> Path:
    """Draw `frames` evenly spaced frames (rows) of every camera (columns) of one clip to the PNG `out`.

    With `maps`, every camera is a row instead, and each of its frames has its dense scene map beside it
    (columns: frame, map, frame, map, ...), with a legend of the map's colours below."""
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
    seconds = (clip["timestamps"] - clip["timestamps"][0]) / 1e6
    title = f"{clip_id} ({clip['attrs'].get('split')}): {clip['attrs'].get('caption')}"

    def frame_tile(t: int, v: int) -> Image.Image:
        tile = draw_frame(clip, t, v, categories, poly_types)
        _label(tile, f"{clip['attrs']['cameras'][v]}  t={seconds[t]:.2f}s", font)
        return tile

    if not maps:
        header = 22
        sheet = Image.new("RGB", (views * width, len(chosen) * height + header), (20, 20, 20))
        for row, t in enumerate(chosen):
            for v in range(views):
                sheet.paste(frame_tile(t, v), (v * width, header + row * height))
        ImageDraw.Draw(sheet).text((6, 4), title, fill=(230, 230, 230), font=font)
    else:
        from drivesim.scene_maps import picture

        scene = clip_maps(root, clip_id, clip, chosen, categories, poly_types)
        pictures = picture(scene)
        sheet_width = 2 * len(chosen) * width
        lines = _wrapped(f"{title}   [scene maps: {scene.look[0]}, {scene.look[1]}]", sheet_width - 12, font)
        header = 6 + 16 * len(lines)
        legend = maps_legend(sheet_width)
        sheet = Image.new("RGB", (sheet_width, header + views * height + legend.height), (20, 20, 20))
        for v in range(views):
            for column, t in enumerate(chosen):
                sheet.paste(frame_tile(t, v), (2 * column * width, header + v * height))
                tile = Image.fromarray(pictures[v, column])
                _label(tile, "scene map", font)
                sheet.paste(tile, ((2 * column + 1) * width, header + v * height))
        sheet.paste(legend, (0, header + views * height))
        ImageDraw.Draw(sheet).multiline_text((6, 4), "\n".join(lines), fill=(230, 230, 230), font=font, spacing=4)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def _label(tile: Image.Image, text: str, font) -> None:
    ImageDraw.Draw(tile).text((4, 3), text, fill=(255, 255, 255), font=font, stroke_width=2, stroke_fill=(0, 0, 0))


def _wrapped(text: str, width: int, font) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels (a longer word stands alone)."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = [""]
    for word in text.split(" "):
        candidate = f"{lines[-1]} {word}" if lines[-1] else word
        if lines[-1] and measure.textlength(candidate, font=font) > width:
            lines.append(word)
        else:
            lines[-1] = candidate
    return lines
