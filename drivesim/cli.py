"""The `drivesim` command. User errors print one line naming the input and exit 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from drivesim.errors import ConfigError, DrivesimError


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
    from drivesim.data.synth import check_writable

    if path.suffix.lower() != ".png":
        raise ConfigError(f"{option} must name a .png file, got {path}")
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder")
    check_writable(path, option)


def _run_synth(args) -> int:
    from drivesim.data.synth import SynthConfig, generate, parse_size

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drivesim", description="A multi-camera world simulator for driving.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_synth(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except DrivesimError as error:
        print(f"drivesim {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drivesim {args.command}: interrupted; nothing was published", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
