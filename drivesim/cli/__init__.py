"""The `drivesim` command. User errors print one line naming the input and exit 2."""

from __future__ import annotations

import argparse
import sys

from drivesim.cli import data, scenarios, tools, training
from drivesim.cli.common import one_line
from drivesim.errors import DrivesimError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="drivesim", description="A multi-camera world simulator for driving.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In the order `drivesim --help` lists them: the data path, training, scenarios and rollouts, the tools.
    for module in (data, training, scenarios, tools):
        module.add(commands)
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


