"""A rollout's pictures: H.264 MP4s, the grid laid out like the car's cameras, and the contact sheet."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["contact_sheet", "grid_frames", "grid_layout", "write_mp4"]

# nuScenes-like rigs: the cameras as they sit on the car, seen from above with the front up.
_CAR_LAYOUT = (("FRONT_LEFT", "FRONT", "FRONT_RIGHT"), ("BACK_LEFT", "BACK", "BACK_RIGHT"))


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> Path:
    """uint8 [T, H, W, 3] -> an H.264 MP4 (odd sizes padded by one edge pixel: yuv420p needs even ones)."""
    import av

    frames = np.asarray(frames, np.uint8)
    height, width = frames.shape[1:3]
    pad = ((0, 0), (0, height % 2), (0, width % 2), (0, 0))
    if any(p[1] for p in pad):
        frames = np.pad(frames, pad, mode="edge")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def grid_layout(cameras: list[str]) -> list[list[int | None]]:
    """Rows of view indices: FRONT_LEFT FRONT FRONT_RIGHT over BACK_LEFT BACK BACK_RIGHT when the rig has
    those six cameras (any prefix, e.g. CAM_), else one row in rig order."""
    def short(name: str) -> str:
        return name[4:] if name.upper().startswith("CAM_") else name

    names = {short(name).upper(): v for v, name in enumerate(cameras)}
    wanted = {n for row in _CAR_LAYOUT for n in row}
    if len(cameras) == 6 and wanted <= set(names):
        return [[names[n] for n in row] for row in _CAR_LAYOUT]
    return [list(range(len(cameras)))]


def grid_frames(video: np.ndarray, cameras: list[str]) -> np.ndarray:
    """[F, V, H, W, 3] -> [F, rows*H, columns*W, 3] laid out by grid_layout."""
    rows = grid_layout(cameras)
    blank = np.zeros_like(video[:, 0])
    return np.concatenate([np.concatenate([video[:, v] if v is not None else blank for v in row], axis=2)
                           for row in rows], axis=1)


def contact_sheet(video: np.ndarray, cameras: list[str], timestamps: np.ndarray, path: Path, count: int = 4) -> Path:
    """A PNG of video [F, V, H, W, 3]: `count` evenly spaced frames (rows) of every camera (columns), each
    row labelled with its time (timestamps [F], microseconds)."""
    from PIL import Image, ImageDraw

    total = video.shape[0]
    frames = sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int)))
    height, width = video.shape[2:4]
    label = 14
    sheet = Image.new("RGB", (width * len(cameras), label + (height + label) * len(frames)), "black")
    draw = ImageDraw.Draw(sheet)
    for v, camera in enumerate(cameras):
        draw.text((v * width + 2, 1), camera, fill="white")
    for row, f in enumerate(frames):
        top = label + row * (height + label)
        draw.text((2, top + 1), f"t = {timestamps[f] / 1e6:.2f} s (frame {f})", fill="white")
        for v in range(len(cameras)):
            sheet.paste(Image.fromarray(video[f, v]), (v * width, top + label))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
