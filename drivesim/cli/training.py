"""`drivesim train`, `drivesim tokenizer eval` and `drivesim pack-weights`: training runs, scoring a tokenizer, and
packing a trained world model to ship."""

from __future__ import annotations

import os
from pathlib import Path

from drivesim.errors import ConfigError


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train", help="train a model (plain, or under torchrun --nproc_per_node N)",
        description="Train TASK with the config file and key.sub=value overrides. Run it plainly on one "
                    "process, or under `torchrun --nproc_per_node N` for DDP (parallel=fsdp for FSDP2). "
                    "SIGTERM or Ctrl-C saves a checkpoint and stops; --resume continues from the newest "
                    "complete checkpoint in the run folder.")
    parser.add_argument("task", help="what to train: tokenizer, wfm or detector")
    parser.add_argument("--config", type=Path, help="a YAML file under configs/ (keys: see drivesim/train/config.py)")
    parser.add_argument("--resume", action="store_true", help="continue the run in `out` from its latest checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. steps=200")
    parser.set_defaults(run=_run_train, interrupted="run it again with --resume to continue")


def _run_train(args) -> int:
    from drivesim.train.config import TrainConfig, apply_overrides, from_dict, load_document
    from drivesim.train.task import task_by_name
    from drivesim.train.trainer import train

    task = task_by_name(args.task)
    document = apply_overrides(load_document(args.config), args.overrides)
    if document.setdefault("task", args.task) != args.task:
        raise ConfigError(f"the config is for task {document['task']!r}, not {args.task!r}")
    config = from_dict(TrainConfig, document)
    result = train(config, task, resume=args.resume, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary, not one per process
        shown = ", ".join(f"{name} {value:.4g}" for name, value in sorted(result.items()))
        print(f"done: {shown}")
    return 0


def _add_tokenizer(commands) -> None:
    parser = commands.add_parser("tokenizer", help="evaluate a trained video tokenizer")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    evaluate = actions.add_parser(
        "eval", help="PSNR, SSIM and blockiness on stored clips, and side-by-side reconstruction videos",
        description="Reconstruct every camera of the store's clips (at the stored size, or --size) with a "
                    "tokenizer, print PSNR, SSIM and blockiness (the reconstruction's against the ground "
                    "truth's) per camera, and write originals above reconstructions as MP4.")
    evaluate.add_argument("--checkpoint", type=Path, required=True,
                          help="a training run folder (its newest checkpoint), one checkpoint folder, or a tokenizer "
                               "folder (config.yaml + model.safetensors, e.g. weights/drivesim-small/tokenizer)")
    evaluate.add_argument("--store", type=Path, required=True, help="the clip store")
    evaluate.add_argument("--split", default="val", choices=("train", "val", "all"),
                          help="which clips (default val; all for a held-out store no training used)")
    evaluate.add_argument("--size", help="resize frames to WIDTHxHEIGHT first, e.g. 256x128 (default: as stored)")
    evaluate.add_argument("--frames", type=int, help="frames per clip, 1 + tc*k (default: as many as fit)")
    evaluate.add_argument("--clips", type=int, help="at most this many clips (default all)")
    evaluate.add_argument("--out", type=Path, help="folder for the side-by-side videos (default: none)")
    evaluate.add_argument("--videos", type=int, default=2, help="clips written as video (default 2)")
    evaluate.add_argument("--raw", action="store_true", help="the raw weights instead of the EMA ones")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.set_defaults(run=_run_tokenizer_eval)


def _run_tokenizer_eval(args) -> int:
    from drivesim.train.distributed import flushing_denormals

    with flushing_denormals():  # as in training (see flush_denormals); the caller's float mode comes back after
        return _tokenizer_eval(args)


def _tokenizer_eval(args) -> int:
    from drivesim.rigs import parse_size
    from drivesim.tokenizer.evaluate import check_video_folder, evaluate, load_tokenizer, table

    if args.clips is not None and args.clips < 1:
        raise ConfigError(f"--clips must be >= 1, got {args.clips}")
    if args.videos < 0:
        raise ConfigError(f"--videos must be >= 0, got {args.videos}")
    size = parse_size(args.size) if args.size is not None else None
    check_video_folder(args.out)  # before loading the model, too
    model = load_tokenizer(args.checkpoint, ema=not args.raw)
    result = evaluate(model, args.store, args.split, args.clips, args.videos, args.out, progress=not args.quiet,
                      size=size, frames=args.frames)
    print(table(result))
    for path in result["videos"]:
        print(f"video: {path}")
    return 0



def _add_pack_weights(commands) -> None:
    parser = commands.add_parser(
        "pack-weights", help="pack a trained world model and its tokenizer, or a detector, into one folder to ship",
        description="Copy the EMA weights of a `drivesim train wfm` checkpoint (float16) and its tokenizer into "
                    "one checkpoint folder that `drivesim generate --checkpoint` loads on its own; or those of a "
                    "`drivesim train detector` checkpoint (float32) into a folder `drivesim eval --detector` "
                    "loads.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a `drivesim train wfm` or `train detector` run folder (its newest checkpoint) or one "
                             "checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (e.g. weights/drivesim-small)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.add_argument("--tokenizer", type=Path,
                        help="world models: pack this tokenizer (a `drivesim train tokenizer` run, checkpoint or "
                             "tokenizer folder) in place of the checkpoint's own; refused unless its encoder equals "
                             "the one the world model was trained on (a retrained decoder)")
    parser.add_argument("--palette", type=Path, metavar="JSON",
                        help="world models: the paint palette (`drivesim fit-palette`) kept beside the weights for "
                             "Text2World's painted starts (--init painted)")
    parser.set_defaults(run=_run_pack_weights)


def _run_pack_weights(args) -> int:
    from drivesim.weights import pack

    packed = pack(args.checkpoint, args.out, overwrite=args.overwrite, tokenizer=args.tokenizer,
                  palette=args.palette)
    rounding = ("weights as trained (float32)" if packed["max_difference"] is None
                else f"largest float16 rounding of a weight {packed['max_difference']:.2e}")
    print(f"{packed['folder']}: step {packed['step']}, {packed['bytes'] / 2**20:.1f} MiB, {rounding}")
    return 0


def add(commands) -> None:
    """Add this module's commands to the `drivesim` parser."""
    _add_train(commands)
    _add_tokenizer(commands)
    _add_pack_weights(commands)
    _add_fit_palette(commands)


def _add_fit_palette(commands) -> None:
    parser = commands.add_parser(
        "fit-palette", help="fit the paint palette of the dense scene maps on a training store",
        description="Each class of the dense scene maps (drivesim/scene_maps.py) gets its mean colour in the "
                    "store's training frames, as a line in depth: the paint baseline, and the painted starts of "
                    "Text2World once packed beside the weights (pack-weights --palette).")
    parser.add_argument("--store", type=Path, required=True, help="a clip store (its train split is used)")
    parser.add_argument("--size", default="256x128", help="WIDTHxHEIGHT the frames are read at (default 256x128)")
    parser.add_argument("--every", type=int, default=2, help="use every N-th training clip (default 2)")
    parser.add_argument("--out", type=Path, required=True, metavar="JSON", help="the palette file to write")
    parser.set_defaults(run=_run_fit_palette)


def _run_fit_palette(args) -> int:
    from drivesim.folders import check_writable
    from drivesim.paint_baseline import fit_palette
    from drivesim.rigs import parse_size

    if args.every < 1:
        raise ConfigError(f"--every must be a positive integer, got {args.every}")
    if args.out.suffix.lower() != ".json" or args.out.is_dir():
        raise ConfigError(f"--out must name a .json file, got {args.out}")
    check_writable(args.out, "--out")
    palette = fit_palette(args.store, parse_size(args.size), every=args.every)
    palette.save(args.out)
    seen = palette.pixels.sum(axis=0)
    print(f"{args.out}: {int((seen > 0).sum())} of {len(seen)} classes seen in {int(seen.sum())} pixels")
    return 0
