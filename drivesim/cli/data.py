"""`drivesim synth`, `drivesim ingest` and `drivesim store`: synthetic logs, driving logs into the clip store, and
looking at a store."""

from __future__ import annotations

import sys
from pathlib import Path

from drivesim.cli.common import check_png_target
from drivesim.errors import ConfigError


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


def _run_synth(args) -> int:
    from drivesim.data.synth import SynthConfig, generate
    from drivesim.rigs import parse_size

    width, height = parse_size(args.size)
    config = SynthConfig(out=args.out, scenes=args.scenes, seconds=args.seconds, width=width, height=height,
                         fps=args.fps, seed=args.seed, rig=args.rig, version=args.version,
                         overwrite=args.overwrite, workers=args.workers)
    config.validate()
    if args.contact_sheet is not None:
        check_png_target(args.contact_sheet, "--contact-sheet")
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
    from drivesim.rigs import parse_size

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
                                           "and map polylines projected through its own poses and calibration; "
                                           "--maps puts each frame's dense scene map beside it.")
    sheet.add_argument("store", type=Path, help="the clip store folder")
    sheet.add_argument("--out", type=Path, required=True, metavar="PNG", help="the picture to write")
    sheet.add_argument("--clip", help="clip id (default: the first in the index)")
    sheet.add_argument("--frames", type=int, default=3, help="frames shown, evenly spaced (default 3)")
    sheet.add_argument("--maps", action="store_true",
                       help="draw each camera's dense scene map beside its frame, with a legend of the map's colours")
    sheet.set_defaults(run=_run_sheet)


def _run_sheet(args) -> int:
    from drivesim.data.clip_sheet import clip_sheet

    if args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    check_png_target(args.out, "--out")
    print(f"clip sheet: {clip_sheet(args.store, args.out, args.clip, args.frames, maps=args.maps)}")
    return 0


def _run_verify(args) -> int:
    from drivesim.data.store import verify

    checked, problems = verify(args.store, progress=not args.quiet)
    for problem in problems:
        print(problem)
    print(f"{args.store}: {checked} clips checked, {len(problems)} problem(s)")
    return 1 if problems else 0


def add(commands) -> None:
    """Add this module's commands to the `drivesim` parser."""
    _add_synth(commands)
    _add_ingest(commands)
    _add_store(commands)
