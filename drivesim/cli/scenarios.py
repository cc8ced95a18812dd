"""`drivesim scenario` and `drivesim generate`: scenario files checked or made from a clip, and rolled out by a
world model."""

from __future__ import annotations

import sys
from pathlib import Path

from drivesim.cli.common import one_line
from drivesim.errors import ConfigError, DrivesimError

START_FRAMES = 17  # a one-frame clip's scenario runs one 1 + 4k chunk unless --duration or --waypoints say


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
    vary = actions.add_parser("vary", help="write seeded variants of a scenario",
                              description="Write --count variants of a scenario as DIR/<name>_vNNN.yaml: each one to "
                                          "three edits drawn at random (an agent added on a lane, removed or moved; "
                                          "the ego's or an agent's speed scaled; mirrored; the prompt's time of day "
                                          "and weather) and a new seed, every variant validated. The same --seed "
                                          "writes the same files. A scenario with start frames keeps them, and "
                                          "then only speeds and the prompt vary (see --drop-start-frames). Exit 1 "
                                          "when a variant found no valid draw (the others are written).")
    vary.add_argument("scenario", type=Path, metavar="SCENARIO", help="a scenario YAML file")
    vary.add_argument("--count", type=int, required=True, metavar="N", help="how many variants")
    vary.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write them into")
    vary.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    vary.add_argument("--drop-start-frames", action="store_true",
                      help="variants start from noise, not from the scenario's start frames, so every edit may be "
                           "drawn (mirroring or moving agents would contradict a start frame)")
    vary.add_argument("--overwrite", action="store_true", help="replace variant files that exist")
    vary.set_defaults(run=_run_scenario_vary)


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


MAX_VARIANTS = 100_000


def _run_scenario_vary(args) -> int:
    from drivesim.folders import check_writable
    from drivesim.scenario import MAX_SEED, load, save
    from drivesim.scenario.vary import variant

    if not 1 <= args.count <= MAX_VARIANTS:
        raise ConfigError(f"--count must be from 1 to {MAX_VARIANTS}, got {args.count}")
    if not 0 <= args.seed < MAX_SEED:
        raise ConfigError(f"--seed must be an integer from 0 to 2**62-1, got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder")
    check_writable(args.out, "--out")
    scenario = load(args.scenario)
    digits = max(3, len(str(args.count)))
    targets = [args.out / f"{args.scenario.stem}_v{index:0{digits}d}.yaml" for index in range(1, args.count + 1)]
    if not args.overwrite:
        existing = [target for target in targets if target.exists()]
        if existing:
            raise ConfigError(f"--out {existing[0]} exists ({len(existing)} of the {args.count} variant files do); "
                              "pass --overwrite to replace them")
    args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for index, target in enumerate(targets, start=1):
        try:
            result = variant(scenario, index, args.seed, name=target.stem, drop_start_frames=args.drop_start_frames)
        except DrivesimError as error:  # reported; the other variants are still written
            print(f"drivesim scenario vary: error: {one_line(error)}", file=sys.stderr)
            failed += 1
            continue
        save(result.scenario, target)
        print(f"{target}: {'; '.join(result.edits)}")
    return 1 if failed else 0


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


def rollout_defaults() -> dict:
    """RolloutConfig's field defaults (drivesim/simulate.py): the best measured sampling settings, kept there
    alone. Read from its source while they are plain literals, so that building the parser does not import
    torch (seconds on every `drivesim` command); otherwise from the imported class. The two are the same
    (tests/test_sampling_defaults.py)."""
    import ast
    import importlib.util

    try:
        tree = ast.parse(Path(importlib.util.find_spec("drivesim.simulate").origin).read_text())
        body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "RolloutConfig")
        return {node.target.id: ast.literal_eval(node.value) for node in body.body
                if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None}
    except (AttributeError, OSError, StopIteration, SyntaxError, TypeError, ValueError):
        import dataclasses

        from drivesim.simulate import RolloutConfig

        return {field.name: field.default for field in dataclasses.fields(RolloutConfig)
                if field.default is not dataclasses.MISSING}


def _add_generate(commands) -> None:
    default = rollout_defaults()  # every sampling flag's default, shown in --help
    parser = commands.add_parser(
        "generate", help="turn a scenario into multi-camera video with a trained world model",
        description="Roll the world model out over a scenario, chunk by chunk at the length it was trained on, "
                    "and write one MP4 per camera, a grid MP4, a contact sheet and a clip store with the "
                    "scenario's labels into --out. With --scenarios, roll out a whole set: one such folder per "
                    "scenario under --out (named by the file's stem), finished ones skipped, so a rerun resumes; "
                    "a scenario that fails is reported and the others go on; --out/summary.json records each. "
                    "Exit 0 when every scenario is finished, 1 when any failed, 2 on a bad option.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--scenario", type=Path, metavar="FILE", help="a scenario YAML file")
    which.add_argument("--scenarios", metavar="DIR_OR_GLOB",
                       help="many scenarios: a folder (its *.yaml) or a quoted glob such as 'variants/*.yaml'")
    parser.add_argument("--rig", metavar="RIG", help=RIG_HELP)
    parser.add_argument("--checkpoint", type=Path,
                        help="a `drivesim train wfm` run folder (its newest checkpoint) or one checkpoint folder "
                             "(default: the shipped weights, weights/drivesim-small; see MODEL_CARD.md)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or new)")
    parser.add_argument("--steps", type=int, default=default["steps"],
                        help=f"sampling steps per chunk (default {default['steps']:g})")
    parser.add_argument("--guidance", type=float, default=default["guidance"],
                        help=f"classifier-free guidance scale for text and layout (default {default['guidance']:g}; "
                             "1: none)")
    parser.add_argument("--seed", type=int, default=default["seed"],
                        help="random seed of the starting noise (default: the scenario's; no effect at "
                             "--temperature 0)")
    parser.add_argument("--temperature", type=float, default=default["temperature"],
                        help=f"scale of the starting noise, 0 to 2 (default {default['temperature']:g}; 1: the "
                             "model's distribution; lower gives smoother, likelier pictures; 0: the mean)")
    parser.add_argument("--no-layout", action="store_true",
                        help="withhold the scenario's layout maps from the model (an ablation for evaluation)")
    parser.add_argument("--init", choices=("auto", "noise", "reprojected", "painted"), default=default["init"],
                        help="what each chunk's sampling starts from: noise; the scenario's start frame redrawn "
                             "at the chunk's ego poses (reprojected; needs start_frames); the chunk's dense scene "
                             "maps painted with the palette beside the weights (painted); or auto: reprojected "
                             "when the scenario has start frames, else painted when the weights have a palette, "
                             f"else noise (default {default['init']})")
    parser.add_argument("--strength", type=float, default=default["strength"],
                        help="with reprojected: the flow time the redrawn frames are noised to, in (0, 1] "
                             f"(1: all noise; lower keeps more of them; default {default['strength']:g})")
    parser.add_argument("--paint-strength", type=float, default=default["paint_strength"],
                        help="with painted: the flow time the painted maps are noised to, in (0, 1] "
                             f"(default {default['paint_strength']:g})")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    parser.add_argument("--overwrite", action="store_true", help="replace what is in a non-empty --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="with --scenarios: scenarios rendered at once, each worker loading the model once "
                             "(default 1: in this process)")
    parser.add_argument("--engine", choices=("local", "ray"),
                        help="with --scenarios: local processes (default) or Ray, one task per scenario and a "
                             "GPU per task where there are GPUs (pip install 'drivesim[ray]')")
    parser.set_defaults(run=_run_generate)


# RolloutConfig's fields as generate's flags: library errors name the field, the command line its flag.
_GENERATE_FLAGS = {"steps": "--steps", "guidance": "--guidance", "seed": "--seed", "temperature": "--temperature",
                   "strength": "--strength", "init": "--init", "paint_strength": "--paint-strength"}


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
                           temperature=args.temperature, init=args.init, strength=args.strength,
                           paint_strength=args.paint_strength)
    try:
        config.validate()
    except ConfigError as error:
        raise _as_flags(error) from None
    if args.scenarios is not None:
        return _generate_many(args, config)
    for flag in ("workers", "engine"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag} is for many scenarios (--scenarios DIR_OR_GLOB); --scenario renders one")
    check_out_dir(args.out, args.overwrite)  # before minutes of work
    if not args.scenario.is_file():
        raise ConfigError(f"--scenario {args.scenario}: no such file")
    scenario = load(args.scenario, rig=args.rig)
    try:
        config.starting_from(scenario, palette=True)  # whether the weights have a palette shows once loaded
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


def _generate_many(args, config) -> int:
    """--scenarios: every scenario into its own folder under --out, resumable; exit 1 when any failed."""
    from drivesim.folders import check_writable, writer_lock
    from drivesim.simulate_many import BatchConfig, generate_many, summary_table

    if args.overwrite:
        raise ConfigError("--overwrite: with --scenarios finished rollouts are kept and skipped; to render them "
                          "again, give a new --out or remove their folders")
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} is a file, not a folder")
    check_writable(args.out, "--out")
    if args.rig is not None:  # once here, not as every scenario's failure
        from drivesim.rigs import rig_document

        try:
            rig_document(args.rig)
        except ConfigError as error:
            raise ConfigError(f"--rig {args.rig}: {error}") from None
    if args.checkpoint is None:
        from drivesim.weights import shipped_checkpoint

        args.checkpoint = shipped_checkpoint()
    batch = BatchConfig(scenarios=args.scenarios, out=args.out, checkpoint=args.checkpoint, rollout=config,
                        rig=args.rig, device=args.device, workers=1 if args.workers is None else args.workers,
                        engine=args.engine or "local").validate()
    args.interrupted = "finished rollouts are kept: run the same command again to go on"
    with writer_lock(args.out, "--out"):  # a second batch into the same --out is refused, not interleaved
        summary = generate_many(batch, progress=not args.quiet)
    print(summary_table(summary))
    print(f"{args.out / 'summary.json'}: {summary['done']} done, {summary['skipped']} skipped, "
          f"{summary['failed']} failed")
    return 1 if summary["failed"] else 0


def add(commands) -> None:
    """Add this module's commands to the `drivesim` parser."""
    _add_scenario(commands)
    _add_generate(commands)
