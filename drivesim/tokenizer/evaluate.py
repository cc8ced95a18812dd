"""`drivesim tokenizer eval`: reconstruct whole stored clips (every camera, at the stored or a given size),
score them with PSNR, SSIM and blockiness (against the ground truth's), print a table, and write originals
beside reconstructions as MP4 videos."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from drivesim.errors import ConfigError
from drivesim.tokenizer.metrics import BLOCKINESS_MARGIN, blockiness, psnr, ssim

SPLITS = ("train", "val", "all")


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


def load_tokenizer(path: str | Path, ema: bool = True):
    """A tokenizer from a `drivesim train tokenizer` run or checkpoint folder, or from a tokenizer folder
    written by save_pretrained (config.yaml with the TokenizerConfig + model.safetensors, e.g. the one
    shipped in weights/drivesim-small/tokenizer)."""
    import yaml

    from drivesim.tokenizer.pretrained import CONFIG_FILE, WEIGHTS_FILE, load_pretrained
    from drivesim.tokenizer.task import load_trained

    path = Path(path)
    config = path / CONFIG_FILE
    if (path / WEIGHTS_FILE).is_file() and config.is_file() and not (path / "checkpoints").is_dir():
        try:
            document = yaml.safe_load(config.read_text())
        except yaml.YAMLError:
            document = None
        if isinstance(document, dict) and "task" not in document:
            return load_pretrained(path)
    return load_trained(path, ema=ema)


def _frames_to_use(stored: int, temporal_compression: int, frames: int | None) -> int:
    usable = _usable_frames(stored, temporal_compression)
    if frames is None:
        return usable
    if frames < 1 or (frames - 1) % temporal_compression:
        raise ConfigError(f"--frames {frames}: the tokenizer takes 1 + {temporal_compression}k frames")
    if frames > usable:
        raise ConfigError(f"--frames {frames}: the store's clips give at most {usable}")
    return frames


def evaluate(model, store: str | Path, split: str = "val", clips: int | None = None, videos: int = 2,
             out: Path | None = None, progress: bool = True, size: tuple[int, int] | None = None,
             frames: int | None = None) -> dict:
    """Scores per clip and camera, their means, and the videos written. `split` is train, val or all;
    `size` (width, height) resizes the stored frames first (as training and the world model do)."""
    from tqdm import tqdm

    from drivesim.data.dataset import ClipDataset

    check_video_folder(out)
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} must be one of {', '.join(SPLITS)}")
    tc, s = model.config.temporal_compression, model.config.spatial_compression
    probe = ClipDataset(store, split=None if split == "all" else split, random_crop=False)
    frames = _frames_to_use(probe.settings["frames"], tc, frames)
    dataset = ClipDataset(store, split=None if split == "all" else split, frames=frames, size=size,
                          random_crop=False)
    width, height = size or (dataset.settings["width"], dataset.settings["height"])
    if height % s or width % s:
        raise ConfigError(f"frames {width}x{height} are not divisible by the tokenizer's spatial compression {s}"
                          + ("" if size else "; give --size"))
    count = len(dataset) if clips is None else min(clips, len(dataset))
    rows, written, started = [], [], time.perf_counter()
    for index in tqdm(range(count), desc="tokenizer eval", unit="clip", disable=not progress):
        item = dataset[index]
        video = rearrange(item["video"], "v t c h w -> v c t h w")
        with torch.no_grad():
            reconstruction = torch.cat([model(video[v:v + 1])[0] for v in range(video.shape[0])]).clamp(-1, 1)
        scores = {"psnr": psnr(reconstruction, video), "ssim": ssim(reconstruction, video),
                  "blockiness": blockiness(reconstruction), "blockiness_truth": blockiness(video)}
        for v, camera in enumerate(dataset.cameras):
            rows.append({"clip": item["clip_id"], "camera": camera, **{k: float(x[v]) for k, x in scores.items()}})
        if out is not None and index < videos:
            written.append(write_side_by_side(Path(out) / f"{item['clip_id']}.mp4",
                                              rearrange(video, "v c t h w -> v t c h w"),
                                              rearrange(reconstruction, "v c t h w -> v t c h w"),
                                              dataset.settings["fps"]))
    seconds = time.perf_counter() - started
    means = {key: float(np.mean([r[key] for r in rows])) for key in ("psnr", "ssim", "blockiness", "blockiness_truth")}
    return {"rows": rows, "frames": frames, "size": (width, height), "seconds": seconds, "videos": written,
            **means, "blockiness_ratio": _ratio(rows)}


def table(result: dict) -> str:
    """Per camera means, then the whole: what a reader compares between checkpoints. Blockiness is the
    reconstruction's, the ground truth's, and their ratio, which the rule holds to at most BLOCKINESS_MARGIN."""
    rows = result["rows"]
    cameras = sorted({r["camera"] for r in rows}, key=[r["camera"] for r in rows].index)
    lines = [f"{'camera':<18}{'PSNR dB':>9}{'SSIM':>8}{'blocky':>9}{'truth':>8}{'ratio':>8}"]

    def line(name: str, mine: list[dict]) -> str:
        mean = {key: np.mean([r[key] for r in mine]) for key in ("psnr", "ssim", "blockiness", "blockiness_truth")}
        ratio = _ratio(mine)
        return (f"{name:<18}{mean['psnr']:>9.2f}{mean['ssim']:>8.3f}{mean['blockiness']:>9.3f}"
                f"{mean['blockiness_truth']:>8.3f}{ratio:>8.3f}")

    lines += [line(camera, [r for r in rows if r["camera"] == camera]) for camera in cameras]
    lines.append(line("all", rows))
    clips = len({r["clip"] for r in rows})
    width, height = result["size"]
    ratio = result["blockiness_ratio"]
    above = [camera for camera in cameras if _ratio([r for r in rows if r["camera"] == camera]) > BLOCKINESS_MARGIN]
    lines.append(f"blockiness rule (the reconstruction's at most {BLOCKINESS_MARGIN - 1:.0%} above the ground "
                 f"truth's): {'met' if ratio <= BLOCKINESS_MARGIN else 'NOT met'} overall, {ratio:.3f}x; "
                 + (f"above it: {', '.join(above)}" if above else "every camera within it"))
    lines.append(f"{clips} clips x {len(cameras)} cameras, {result['frames']} frames at {width}x{height}, "
                 f"{result['seconds']:.1f} s")
    return "\n".join(lines)


def _ratio(rows: list[dict]) -> float:
    """Mean reconstruction blockiness over mean ground-truth blockiness."""
    return float(np.mean([r["blockiness"] for r in rows]) / np.mean([r["blockiness_truth"] for r in rows]))
