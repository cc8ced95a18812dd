"""`drivesim tokenizer eval`: reconstruct whole stored clips (every camera, full size), score them
with PSNR and SSIM, print a table, and write originals beside reconstructions as MP4 videos."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from drivesim.errors import ConfigError
from drivesim.tokenizer.metrics import psnr, ssim


def _usable_frames(stored: int, temporal_compression: int) -> int:
    """The longest 1 + tc*k that fits in the stored clip."""
    return 1 + (stored - 1) // temporal_compression * temporal_compression


def write_side_by_side(path: Path, original: torch.Tensor, reconstruction: torch.Tensor, fps: float) -> Path:
    """[V, T, 3, H, W] in [-1, 1] twice -> an MP4: originals in the top row, reconstructions below."""
    import av

    grid = torch.cat([rearrange(original, "v t c h w -> t h (v w) c"),
                      rearrange(reconstruction, "v t c h w -> t h (v w) c")], dim=1)
    pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    height, width = pixels.shape[1] // 2 * 2, pixels.shape[2] // 2 * 2  # yuv420p needs even sizes
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for frame in pixels:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]),
                                                                   format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def check_video_folder(out: Path | None) -> None:
    """--out can hold the videos: refused before any clip is reconstructed, not at the first video written.
    Videos join what is in the folder already, so a non-empty one is fine."""
    from drivesim.folders import check_out_dir

    if out is not None:
        check_out_dir(out, overwrite=True)


def evaluate(model, store: str | Path, split: str = "val", clips: int | None = None, videos: int = 2,
             out: Path | None = None, progress: bool = True) -> dict:
    """Scores per clip and camera, their means, and the videos written."""
    from tqdm import tqdm

    from drivesim.data.dataset import ClipDataset

    check_video_folder(out)

    tc = model.config.temporal_compression
    probe = ClipDataset(store, split=split, random_crop=False)
    frames = _usable_frames(probe.settings["frames"], tc)
    dataset = ClipDataset(store, split=split, frames=frames, random_crop=False)
    height, width = dataset.settings["height"], dataset.settings["width"]
    if height % model.config.spatial_compression or width % model.config.spatial_compression:
        raise ConfigError(f"store frames {width}x{height} are not divisible by the tokenizer's spatial "
                          f"compression {model.config.spatial_compression}")
    count = len(dataset) if clips is None else min(clips, len(dataset))
    rows, written, started = [], [], time.perf_counter()
    for index in tqdm(range(count), desc="tokenizer eval", unit="clip", disable=not progress):
        item = dataset[index]
        video = rearrange(item["video"], "v t c h w -> v c t h w")
        with torch.no_grad():
            reconstruction = torch.cat([model(video[v:v + 1])[0] for v in range(video.shape[0])]).clamp(-1, 1)
        scores_psnr, scores_ssim = psnr(reconstruction, video), ssim(reconstruction, video)
        for v, camera in enumerate(dataset.cameras):
            rows.append({"clip": item["clip_id"], "camera": camera, "psnr": float(scores_psnr[v]),
                         "ssim": float(scores_ssim[v])})
        if out is not None and index < videos:
            written.append(write_side_by_side(Path(out) / f"{item['clip_id']}.mp4",
                                              rearrange(video, "v c t h w -> v t c h w"),
                                              rearrange(reconstruction, "v c t h w -> v t c h w"),
                                              dataset.settings["fps"]))
    seconds = time.perf_counter() - started
    return {"rows": rows, "frames": frames, "size": (width, height), "seconds": seconds, "videos": written,
            "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows]))}


def table(result: dict) -> str:
    """Per camera means, then the whole: what a reader compares between checkpoints."""
    cameras = sorted({r["camera"] for r in result["rows"]}, key=[r["camera"] for r in result["rows"]].index)
    lines = [f"{'camera':<18}{'PSNR dB':>9}{'SSIM':>8}"]
    for camera in cameras:
        mine = [r for r in result["rows"] if r["camera"] == camera]
        psnr, ssim = np.mean([r["psnr"] for r in mine]), np.mean([r["ssim"] for r in mine])
        lines.append(f"{camera:<18}{psnr:>9.2f}{ssim:>8.3f}")
    clips = len({r["clip"] for r in result["rows"]})
    lines.append(f"{'all':<18}{result['psnr']:>9.2f}{result['ssim']:>8.3f}")
    width, height = result["size"]
    lines.append(f"{clips} clips x {len(cameras)} cameras, {result['frames']} frames at {width}x{height}, "
                 f"{result['seconds']:.1f} s")
    return "\n".join(lines)
