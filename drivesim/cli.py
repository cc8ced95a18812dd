"""The `drivesim` command. User errors print one line naming the input and exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from drivesim.errors import ConfigError, DrivesimError

START_FRAMES = 17  # a one-frame clip's scenario runs one 1 + 4k chunk unless --duration or --waypoints say


def _add_synth(commands) -> None:
    parser = commands.add_parser(
        "synth", help="generate synthetic driving logs in nuScenes v1.0 format",
        description="Render procedural driving scenes with the rig's cameras (CPU ray casting) and write "
                    "them as a nuScenes v1.0 data set that nuscenes-devkit loads.")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or new)")
    parser.add_argument("--scenes", type=int, default=4, help="number of scenes (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per scene, rounded down to 0.5 s "
                                                                    "(default 20, as nuScenes)")
    parser.add_argument("--size", default="448x256", help="image size WIDTHxHEIGHT (default 448x256)")
    parser.add_argument("--fps", type=int, default=12, help="camera frame rate; key frames at 2 Hz (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same options, same files (default 0)")
    parser.add_argument("--rig", default="nuscenes", help="camera rig: a views/ name or a YAML file")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder name")
    parser.add_argument("--workers", type=int, default=1, help="scenes rendered in parallel (default 1)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once done")
    parser.add_argument("--contact-sheet", type=Path, metavar="PNG",
                        help="also draw a sample's cameras with projected boxes to this PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_synth)


def _check_png_target(path: Path, option: str) -> None:
    from drivesim.folders import check_writable

    if path.suffix.lower() != ".png":
        raise ConfigError(f"{option} must name a .png file, got {path}")
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder")
    check_writable(path, option)


def _run_synth(args) -> int:
    from drivesim.data.synth import SynthConfig, generate
    from drivesim.geometry import parse_size

    width, height = parse_size(args.size)
    config = SynthConfig(out=args.out, scenes=args.scenes, seconds=args.seconds, width=width, height=height,
                         fps=args.fps, seed=args.seed, rig=args.rig, version=args.version,
                         overwrite=args.overwrite, workers=args.workers)
    config.validate()
    if args.contact_sheet is not None:
        _check_png_target(args.contact_sheet, "--contact-sheet")
    generate(config, progress=not args.quiet)
    if args.contact_sheet is not None:
        from drivesim.data.contact_sheet import contact_sheet

        sheet = contact_sheet(args.out, args.contact_sheet, version=args.version)
        print(f"contact sheet: {sheet}")
    return 0


def _add_ingest(commands) -> None:
    parser = commands.add_parser(
        "ingest", help="curate nuScenes-format logs into the zarr clip store",
        description="Read logs through nuscenes-devkit (key frames and sweeps), split scenes into clips, "
                    "filter, deduplicate and caption them, and write them to a zarr clip store. "
                    "A killed run continues where it stopped when run again.")
    parser.add_argument("--dataroot", type=Path, required=True, help="the folder holding VERSION/ and samples/")
    parser.add_argument("--version", default="v1.0-mini", help="table folder name (default v1.0-mini)")
    parser.add_argument("--out", type=Path, required=True, help="the clip store (new, or one to resume)")
    parser.add_argument("--size", default="448x256", help="stored image size WIDTHxHEIGHT (default 448x256)")
    parser.add_argument("--frames", type=int, default=17, help="frames per clip (default 17 = 1 + 4k)")
    parser.add_argument("--fps", type=float,
                        help="clip frame rate: within 5%% of the cameras' rate, or of a whole fraction of it to "
                             "take every n-th frame (default: the cameras' rate, measured in each scene)")
    parser.add_argument("--stride", type=int, help="frames between clip starts (default: --frames, no overlap)")
    parser.add_argument("--cameras", help="comma-separated camera channels (default: all of the log's)")
    parser.add_argument("--workers", type=int, default=1, help="scenes processed in parallel (default 1)")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local processes, or Ray tasks (a local cluster, or RAY_ADDRESS)")
    parser.add_argument("--on-error", choices=("skip", "fail"), default="skip",
                        help="a missing or corrupt image drops its clip (skip) or stops the run (fail)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of scenes held out for validation, unless the official split covers them")
    parser.add_argument("--min-travel", type=float, default=1.0, metavar="METRES",
                        help="drop clips in which the ego moves less than this (default 1; one-frame clips are "
                             "never dropped for it)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_ingest, interrupted="finished clips are kept: run the same command to resume")


def _run_ingest(args) -> int:
    from drivesim.data.curate import CurationConfig
    from drivesim.data.ingest import SUMMARY, IngestConfig, ingest
    from drivesim.geometry import parse_size

    width, height = parse_size(args.size)
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    if args.cameras is not None and not cameras:
        raise ConfigError("--cameras names no camera")
    if not 0 <= args.val_fraction <= 1:  # also false for NaN
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if not 0 <= args.min_travel < float("inf"):
        raise ConfigError(f"--min-travel must be a number of metres >= 0, got {args.min_travel}")
    config = IngestConfig(dataroot=args.dataroot, out=args.out, version=args.version, width=width, height=height,
                          frames=args.frames, fps=args.fps, stride=args.stride, cameras=cameras,
                          workers=args.workers, engine=args.engine, on_error=args.on_error,
                          curation=CurationConfig(val_fraction=args.val_fraction, min_travel_m=args.min_travel))
    report = ingest(config, progress=not args.quiet)
    print(report.table())
    print(f"store: {args.out} (summary: {args.out / SUMMARY})")
    if not report.kept:  # an empty store is not an error, but nobody should find out at training time
        print(f"drivesim ingest: warning: {_nothing_kept(report, args)}", file=sys.stderr)
    return 0


def _nothing_kept(report, args) -> str:
    """Why an ingest kept no clip, in one line: the drop counts, or that no scene is long enough."""
    from drivesim.data.store import open_store

    if report.dropped:
        counts = ", ".join(f"{reason} {n}" for reason, n in sorted(report.dropped.items(), key=lambda i: -i[1]))
        return (f"kept 0 clips: all {report.windows} window(s) of {report.scenes} scene(s) were dropped "
                f"({counts})" + ("; --min-travel sets the static ego limit" if "static ego" in report.dropped else ""))
    fps = open_store(args.out).attrs["settings"]["fps"]
    return (f"kept 0 clips: none of the {report.scenes} scene(s) holds {args.frames} frames at {fps:g} fps "
            f"(--frames, --fps)")


def _add_store(commands) -> None:
    parser = commands.add_parser("store", help="inspect a clip store")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check every clip: checksums, shapes, finite poses",
                                description="Read every array of every clip (zarr checks crc32c checksums) "
                                            "and check shapes, poses and the index. Exit 1 when anything "
                                            "is wrong, naming it.")
    verify.add_argument("store", type=Path, help="the clip store folder")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(run=_run_verify)
    sheet = actions.add_parser("sheet", help="draw a clip's cameras with its boxes and lanes projected",
                               description="Draw a few frames of every camera of one clip, with the clip's boxes "
                                           "and map polylines projected through its own poses and calibration.")
    sheet.add_argument("store", type=Path, help="the clip store folder")
    sheet.add_argument("--out", type=Path, required=True, metavar="PNG", help="the picture to write")
    sheet.add_argument("--clip", help="clip id (default: the first in the index)")
    sheet.add_argument("--frames", type=int, default=3, help="frames shown, evenly spaced (default 3)")
    sheet.set_defaults(run=_run_sheet)


def _run_sheet(args) -> int:
    from drivesim.data.clip_sheet import clip_sheet

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    _check_png_target(args.out, "--out")
    print(f"clip sheet: {clip_sheet(args.store, args.out, args.clip, args.frames)}")
    return 0


def _run_verify(args) -> int:
    from drivesim.data.store import verify

    checked, problems = verify(args.store, progress=not args.quiet)
    for problem in problems:
        print(problem)
    print(f"{args.store}: {checked} clips checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def _add_train(commands) -> None:
    parser = commands.add_parser(
        "train", help="train a model (plain, or under torchrun --nproc_per_node N)",
        description="Train TASK with the config file and key.sub=value overrides. Run it plainly on one "
                    "process, or under `torchrun --nproc_per_node N` for DDP (parallel=fsdp for FSDP2). "
                    "SIGTERM or Ctrl-C saves a checkpoint and stops; --resume continues from the newest "
                    "complete checkpoint in the run folder.")
    parser.add_argument("task", help="what to train: tokenizer")
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
        "eval", help="PSNR and SSIM on stored clips, and side-by-side reconstruction videos",
        description="Reconstruct every camera of the store's clips at full size with a trained tokenizer, "
                    "print PSNR and SSIM per camera, and write originals above reconstructions as MP4.")
    evaluate.add_argument("--checkpoint", type=Path, required=True,
                          help="a training run folder (its newest checkpoint) or one checkpoint folder")
    evaluate.add_argument("--store", type=Path, required=True, help="the clip store")
    evaluate.add_argument("--split", default="val", choices=("train", "val"), help="which clips (default val)")
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
    from drivesim.tokenizer.evaluate import check_video_folder, evaluate, table
    from drivesim.tokenizer.task import load_trained

    if args.clips is not None and args.clips < 1:
        raise ConfigError(f"--clips must be >= 1, got {args.clips}")
    if args.videos < 0:
        raise ConfigError(f"--videos must be >= 0, got {args.videos}")
    check_video_folder(args.out)  # before loading the model, too
    model = load_trained(args.checkpoint, ema=not args.raw)
    result = evaluate(model, args.store, args.split, args.clips, args.videos, args.out, progress=not args.quiet)
    print(table(result))
    for path in result["videos"]:
        print(f"video: {path}")
    return 0


RIG_HELP = ("a rig in place of the scenario's rig: field: a views/ name or a rig YAML file (a scenario names a "
            "views/ rig or holds one inline, never a file)")


def _add_scenario(commands) -> None:
    parser = commands.add_parser("scenario", help="check scenario files, or make one from a stored clip")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    validate = actions.add_parser("validate", help="check scenario files and print a one-line summary of each",
                                  description="Load and validate each scenario file (schema: scenarios/README.md). "
                                              "Exit 2 when any is invalid, naming the file and the field.")
    validate.add_argument("files", type=Path, nargs="+", metavar="FILE", help="scenario YAML files")
    validate.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    validate.set_defaults(run=_run_scenario_validate)
    from_clip = actions.add_parser("from-clip", help="turn a stored clip into a scenario file",
                                   description="Write a scenario that replays one clip of a clip store: its rig, ego "
                                               "poses, tracked boxes, lanes and road edges, in its first ego frame.")
    from_clip.add_argument("--store", type=Path, required=True, help="the clip store")
    from_clip.add_argument("--clip", required=True, help="clip id")
    from_clip.add_argument("--out", type=Path, required=True, metavar="FILE.yaml", help="the scenario file to write")
    from_clip.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    from_clip.add_argument("--with-start-frame", action="store_true",
                           help="also copy the clip's first frame into FILE.start.zarr beside --out and start the "
                                "scenario from it, so the file and its start frame travel together")
    path = from_clip.add_mutually_exclusive_group()
    path.add_argument("--speed", type=float, metavar="M/S",
                      help="one-frame clips: the ego drives straight ahead at this speed (default: the speed and "
                           "turn rate the ego had there in the source log, when that log is at hand)")
    path.add_argument("--waypoints", nargs="+", metavar="T:X,Y",
                      help="one-frame clips: where the ego is at T seconds, X metres ahead of and Y metres left of "
                           "where it starts, e.g. --waypoints 1:8,0 2:16,1.5 (the heading follows the path)")
    from_clip.add_argument("--duration", type=float, metavar="SECONDS",
                           help=f"one-frame clips, with --speed or the log's motion: how long the scenario runs "
                                f"(default: {START_FRAMES} frames at the clip's rate)")
    from_clip.set_defaults(run=_run_scenario_from_clip)


def _run_scenario_validate(args) -> int:
    from drivesim.scenario import load

    failed = 0
    for path in args.files:
        try:
            print(f"{path}: {load(path, rig=args.rig).summary()}")
        except DrivesimError as error:  # report every file, not only the first bad one
            print(f"drivesim scenario: error: {one_line(error)}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


def _run_scenario_from_clip(args) -> int:
    from drivesim.scenario import from_clip, save

    if args.out.suffix.lower() not in (".yaml", ".yml"):
        raise ConfigError(f"--out must name a .yaml file, got {args.out}")
    if args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a folder")
    if args.out.exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} exists; pass --overwrite to replace it")
    if not args.out.parent.is_dir():
        raise ConfigError(f"--out {args.out}: no such folder {args.out.parent}")
    ego, told = _start_frame_path(args)
    scenario = from_clip(args.store, args.clip, ego)
    if args.with_start_frame:
        import dataclasses
        import shutil

        from drivesim.scenario import StartFrames
        from drivesim.scenario.from_clip import copy_start_frame

        frame_store = args.out.parent / f"{args.out.stem}.start.zarr"
        if frame_store.exists():
            if not args.overwrite:
                raise ConfigError(f"{frame_store} exists; pass --overwrite to replace it")
            shutil.rmtree(frame_store)
        copy_start_frame(args.store, args.clip, frame_store)
        # Named relative to the scenario file, which lives in the same folder: the two travel together.
        scenario = dataclasses.replace(scenario, start_frames=StartFrames(frame_store.name, args.clip, 0),
                                       base_dir=args.out.parent.resolve())
    save(scenario, args.out)
    print(f"{args.out}: {scenario.summary()}")
    if told:
        print(f"ego path: {told}")
    return 0


def _start_frame_path(args):
    """(the ego's path, where it came from) for a one-frame clip; (None, "") for a longer one, which replays
    its own. From --waypoints, --speed, or else the ego's motion in the source log."""
    import math

    from drivesim.errors import DataError
    from drivesim.scenario.from_clip import clip_length, constant_path, logged_motion
    from drivesim.scenario.trajectory import VEHICLE_LIMITS

    frames, fps = clip_length(args.store, args.clip)
    given = [f"--{name}" for name in ("speed", "waypoints", "duration") if getattr(args, name) is not None]
    if frames != 1:
        if given:
            raise ConfigError(f"{given[0]}: clip {args.clip} has {frames} frames and replays their ego path; "
                              f"{given[0]} is for one-frame clips")
        return None, ""
    if args.waypoints is not None:
        if args.duration is not None:
            raise ConfigError("--duration: with --waypoints the last waypoint's time is the duration")
        return _waypoint_path(args.waypoints), f"{len(args.waypoints)} waypoint(s) from --waypoints"
    duration = (START_FRAMES - 1) / fps if args.duration is None else args.duration
    if not (math.isfinite(duration) and duration > 0):
        raise ConfigError(f"--duration must be a number of seconds > 0, got {args.duration}")
    if args.speed is not None:
        if not 0 <= args.speed <= VEHICLE_LIMITS.speed:  # also false for NaN
            raise ConfigError(f"--speed must be from 0 to {VEHICLE_LIMITS.speed:g} m/s, got {args.speed}")
        return constant_path(args.speed, 0.0, duration), f"straight ahead at {args.speed:g} m/s from --speed"
    try:
        speed, yaw_rate = logged_motion(args.store, args.clip)
    except DataError as error:
        raise ConfigError(f"{error}; give the ego's path with --speed M/S or --waypoints") from None
    return (constant_path(speed, yaw_rate, duration),
            f"{speed:.1f} m/s turning {math.degrees(yaw_rate):+.1f} deg/s, as in the source log")


def _waypoint_path(texts: list[str]):
    """The ego's path through 'T:X,Y' waypoints after its start at 0:0,0."""
    import math

    from drivesim.scenario import Trajectory

    rows = [(0.0, 0.0, 0.0)]
    for text in texts:
        try:
            time, position = text.split(":")
            row = (float(time), *(float(value) for value in position.split(",")))
        except ValueError:
            row = ()
        if len(row) != 3 or not all(math.isfinite(value) for value in row):
            raise ConfigError(f"--waypoints {text}: expected T:X,Y (seconds, metres ahead, metres left), e.g. 2:16,1.5")
        if row[0] <= rows[-1][0]:
            raise ConfigError(f"--waypoints {text}: times must increase from 0, the start frame's time")
        rows.append(row)
    times, ahead, left = (list(column) for column in zip(*rows))
    return Trajectory.from_xy(times, list(zip(ahead, left)))


def _add_generate(commands) -> None:
    parser = commands.add_parser(
        "generate", help="turn a scenario into multi-camera video with a trained world model",
        description="Roll the world model out over a scenario, chunk by chunk at the length it was trained on, "
                    "and write one MP4 per camera, a grid MP4, a contact sheet and a clip store with the "
                    "scenario's labels into --out.")
    parser.add_argument("--scenario", type=Path, required=True, metavar="FILE", help="a scenario YAML file")
    parser.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    parser.add_argument("--checkpoint", type=Path,
                        help="a `drivesim train wfm` run folder (its newest checkpoint) or one checkpoint folder "
                             "(default: the shipped weights, weights/drivesim-small; see MODEL_CARD.md)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or new)")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps per chunk (default 20)")
    parser.add_argument("--guidance", type=float, default=1.0,
                        help="classifier-free guidance scale for text and layout (default 1: none)")
    parser.add_argument("--seed", type=int, help="random seed (default: the scenario's)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="scale of the starting noise, 0 to 2 (default 1: the model's distribution; lower "
                             "gives smoother, likelier pictures)")
    parser.add_argument("--no-layout", action="store_true",
                        help="withhold the scenario's layout maps from the model (an ablation for evaluation)")
    parser.add_argument("--init", choices=("auto", "noise", "reprojected"), default="auto",
                        help="what each chunk's sampling starts from: noise, or the scenario's start frame redrawn "
                             "at the chunk's ego poses (reprojected; needs start_frames). Default auto: reprojected "
                             "when the scenario has start frames, else noise")
    parser.add_argument("--strength", type=float, default=0.5,
                        help="with reprojected: the flow time the redrawn frames are noised to, in (0, 1] "
                             "(1: all noise; lower keeps more of them; default 0.5)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    parser.add_argument("--overwrite", action="store_true", help="replace what is in a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_generate)


# RolloutConfig's fields as generate's flags: library errors name the field, the command line its flag.
_GENERATE_FLAGS = {"steps": "--steps", "guidance": "--guidance", "seed": "--seed", "temperature": "--temperature",
                   "strength": "--strength", "init": "--init"}


def _as_flags(error: ConfigError) -> ConfigError:
    """The error with a leading RolloutConfig field (after an optional 'source: ') named by its flag."""
    import re

    pattern = r"(^|: )(" + "|".join(_GENERATE_FLAGS) + r")\b"
    return ConfigError(re.sub(pattern, lambda m: m.group(1) + _GENERATE_FLAGS[m.group(2)], str(error), count=1))


def _run_generate(args) -> int:
    from drivesim.folders import check_out_dir, writer_lock
    from drivesim.scenario import load
    from drivesim.simulate import RolloutConfig

    config = RolloutConfig(steps=args.steps, guidance=args.guidance, seed=args.seed, use_layout=not args.no_layout,
                           temperature=args.temperature, init=args.init, strength=args.strength)
    try:
        config.validate()
    except ConfigError as error:
        raise _as_flags(error) from None
    check_out_dir(args.out, args.overwrite)  # before minutes of work
    if not args.scenario.is_file():
        raise ConfigError(f"--scenario {args.scenario}: no such file")
    scenario = load(args.scenario, rig=args.rig)
    try:
        config.starting_from(scenario)
    except ConfigError as error:
        raise _as_flags(error) from None
    with writer_lock(args.out, "--out"):  # a second generate into the same --out is refused, not mixed in
        return _generate(args, scenario, config)


def _generate(args, scenario, config) -> int:
    from drivesim.simulate import rollout
    from drivesim.wfm.pipeline import WorldModelPipeline

    if args.checkpoint is None:
        from drivesim.weights import shipped_checkpoint

        args.checkpoint = shipped_checkpoint()
    pipeline = WorldModelPipeline.from_pretrained(args.checkpoint, args.device)
    result = rollout(scenario, pipeline, config, progress=not args.quiet)
    written = result.save(args.out, overwrite=args.overwrite)
    height, width = result.video.shape[2:4]
    print(f"{args.out}: {result.num_frames} frames x {len(result.cameras)} cameras at {width}x{height} "
          f"(grid {written['grid'].name}, store {written['store'].name})")
    return 0


def _add_pack_weights(commands) -> None:
    parser = commands.add_parser(
        "pack-weights", help="pack a trained world model and its tokenizer into one folder to ship",
        description="Copy the EMA weights of a `drivesim train wfm` checkpoint (float16) and its tokenizer into "
                    "one checkpoint folder that `drivesim generate --checkpoint` loads on its own.")
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="a `drivesim train wfm` run folder (its newest checkpoint) or one checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="the folder to write (e.g. weights/drivesim-small)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    parser.set_defaults(run=_run_pack_weights)


def _run_pack_weights(args) -> int:
    from drivesim.weights import pack

    packed = pack(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"{packed['folder']}: step {packed['step']}, {packed['bytes'] / 2**20:.1f} MiB, largest float16 "
          f"rounding of a weight {packed['max_difference']:.2e}")
    return 0


def _add_ui(commands) -> None:
    parser = commands.add_parser(
        "ui", help="the scenario editor in the browser (Streamlit)",
        description="Serve the scenario editor: open, edit, preview and render scenarios. It binds "
                    "127.0.0.1 unless --address says otherwise, writes only into --workspace and reads only "
                    "under the --data-root folders, the workspace, --scenarios and --checkpoints. It has no "
                    "log-in: whoever reaches the address can use it.")
    parser.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    parser.add_argument("--address", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; any other serves the editor, which has no log-in, "
                             "to the network)")
    parser.add_argument("--data-root", type=Path, action="append", dest="data_roots", metavar="FOLDER",
                        help="a folder the editor may read clip stores and start frames from; repeat it for more "
                             "(default: the repository's scenarios/ and out/)")
    parser.add_argument("--workspace", type=Path, default=Path("out/ui-workspace"),
                        help="folder for each browser session's uploads, scenarios and renders")
    parser.add_argument("--scenarios", type=Path, help="the scenario library (default: the repository's scenarios/)")
    parser.add_argument("--checkpoints", type=Path, nargs="+",
                        help="folders holding `drivesim train wfm` runs, or runs or packed weights themselves "
                             "(default: the shipped weights, then runs/)")
    parser.set_defaults(run=_run_ui)


def ui_command(args) -> list[str]:
    """The streamlit command line `drivesim ui` runs, and the environment the page reads its settings from."""
    script = Path(__file__).resolve().parents[1] / "ui" / "app.py"
    if not script.is_file():
        raise ConfigError(f"{script}: the editor's script is missing; run from a source checkout (pip install -e .)")
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535, got {args.port}")
    if args.scenarios is not None and not args.scenarios.is_dir():
        raise ConfigError(f"--scenarios {args.scenarios}: no such folder")
    for root in getattr(args, "data_roots", None) or ():
        if not root.is_dir():
            raise ConfigError(f"--data-root {root}: no such folder")
    if args.workspace.exists() and not args.workspace.is_dir():
        raise ConfigError(f"--workspace {args.workspace} is a file, not a folder")
    from drivesim.scenario import MAX_BYTES

    return [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", args.address,
            "--server.port", str(args.port), "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.maxUploadSize", str(MAX_BYTES // 2**20), "--server.fileWatcherType", "none",
            "--client.toolbarMode", "minimal"]


def _loopback(address: str) -> bool:
    import ipaddress

    if address.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip().strip("[]")).is_loopback
    except ValueError:  # a host name: it may well resolve to an outside interface
        return False


def _run_ui(args) -> int:
    import subprocess

    command = ui_command(args)
    try:
        args.workspace.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"--workspace {args.workspace} cannot be created: {error.strerror or error}") from None
    environment = {**os.environ, "DRIVESIM_UI_WORKSPACE": str(args.workspace.resolve())}
    if args.checkpoints:
        environment["DRIVESIM_UI_CHECKPOINTS"] = os.pathsep.join(str(p.resolve()) for p in args.checkpoints)
    if args.scenarios is not None:
        environment["DRIVESIM_UI_SCENARIOS"] = str(args.scenarios.resolve())
    if args.data_roots:
        environment["DRIVESIM_UI_DATA_ROOTS"] = os.pathsep.join(str(p.resolve()) for p in args.data_roots)
    if not _loopback(args.address):
        print(f"drivesim ui: warning: --address {args.address} serves the editor to the network, and it has no "
              "log-in: anyone who reaches it can read the data roots, use the CPU/GPU and write into the workspace",
              file=sys.stderr, flush=True)
    print(f"drivesim ui: http://{args.address}:{args.port} (workspace {args.workspace}); Ctrl-C stops it", flush=True)
    args.interrupted = "the editor stopped"
    return subprocess.call(command, env=environment)


def _add_export(commands) -> None:
    parser = commands.add_parser(
        "export", help="write generated rollouts as a nuScenes v1.0 data set",
        description="Write every clip of the rollouts (folders from `drivesim generate`) as a scene of a nuScenes "
                    "v1.0 data set: JPEG key frames at 2 Hz and sweeps between, calibration, ego poses and the "
                    "scenario's boxes as annotations. With --merge-with, into a copy of that data set (its files "
                    "hard-linked where possible), listed in drivesim_manifest.json.")
    parser.add_argument("--rollouts", type=Path, required=True,
                        help="a rollout folder (holding rollout.zarr), or a folder of rollout folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or new)")
    parser.add_argument("--merge-with", type=Path, metavar="DATAROOT",
                        help="a nuScenes data set (holding VERSION/scene.json) to add the generated scenes to; "
                             "it is left untouched")
    parser.add_argument("--version", default="v1.0-mini", help="table folder name (default v1.0-mini)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out once done")
    parser.set_defaults(run=_run_export)


def _run_export(args) -> int:
    from drivesim.export import ExportConfig, export

    result = export(ExportConfig(rollouts=args.rollouts, out=args.out, merge_with=args.merge_with,
                                 version=args.version, overwrite=args.overwrite))
    print(result.summary())
    return 0


def _add_eval(commands) -> None:
    parser = commands.add_parser(
        "eval", help="score generated rollouts: consistency, trajectory following, image quality",
        description="Measure every rollout (folders from `drivesim generate`): cross-view and temporal Sampson "
                    "errors, the ego path its front camera shows against the commanded one, and PSNR, SSIM and "
                    "layout agreement against the clip its scenario starts from. With --reference, the same on "
                    "real or ground-truth clips beside them. Writes report.json and a self-contained report.html.")
    parser.add_argument("--rollouts", type=Path, required=True, metavar="DIR",
                        help="a rollout folder (holding rollout.zarr), or a folder of rollout folders")
    parser.add_argument("--reference", type=Path, metavar="STORE",
                        help="a clip store of real or ground-truth clips (the rollouts' start_frames clips are "
                             "looked up in it; default: the store each scenario names)")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for report.json and report.html (default: the --rollouts DIR/eval)")
    parser.add_argument("--inception", type=Path, metavar="FILE",
                        help="a locally stored TorchScript InceptionV3 feature network for FID (never downloaded)")
    parser.add_argument("--i3d", type=Path, metavar="FILE",
                        help="a locally stored TorchScript I3D network for FVD (never downloaded)")
    parser.add_argument("--frame-step", type=int, default=1, metavar="N",
                        help="measure every N-th frame (default 1; FID takes every frame, FVD 16-frame windows)")
    parser.add_argument("--include-given", action="store_true",
                        help="score PSNR/SSIM on the frames the model was given (the start frame) too; by default "
                             "they are left out, as they match the reference by construction")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from drivesim.eval.report import evaluate, summary_table, write_report

    out = args.out if args.out is not None else args.rollouts / "eval"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    results = evaluate(args.rollouts, reference=args.reference, inception=args.inception, i3d=args.i3d,
                       frame_step=args.frame_step, progress=not args.quiet,
                       include_given=args.include_given)  # checks every input first
    json_path, html_path = write_report(results, out)
    print(summary_table(results))
    print(f"report: {html_path}")
    print(f"numbers: {json_path}")
    if results["failed"]:  # the report is written, but a script must learn that it is incomplete
        print(f"drivesim eval: {len(results['failed'])} of {len(results['failed']) + len(results['rollouts'])} "
              "rollouts could not be scored (listed in the report)", file=sys.stderr)
        return 1
    return 0


def one_line(error: Exception) -> str:
    """The message on one line: a path or value the user typed may hold a line break, shown escaped."""
    return str(error).replace("\r", "\\r").replace("\n", "\\n")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drivesim", description="A multi-camera world simulator for driving.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(commands)
    _add_ingest(commands)
    _add_store(commands)
    _add_train(commands)
    _add_tokenizer(commands)
    _add_scenario(commands)
    _add_generate(commands)
    _add_pack_weights(commands)
    _add_ui(commands)
    _add_export(commands)
    _add_eval(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # Overrides may come before or after options (`train tokenizer --config X steps=5`): argparse
    # alone takes positionals in one run only.
    if extra and getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args)
    except DrivesimError as error:
        print(f"drivesim {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drivesim {args.command}: interrupted; {getattr(args, 'interrupted', 'nothing was published')}",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
