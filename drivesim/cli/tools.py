"""`drivesim ui`, `drivesim export` and `drivesim eval`: the editor, rollouts as a nuScenes data set, and the
weight-free evaluation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from drivesim.errors import ConfigError


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
    script = Path(__file__).resolve().parents[2] / "ui" / "app.py"
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
    parser.add_argument("--detector", default="auto", metavar="RUN_OR_FOLDER",
                        help="a `drivesim train detector` run or packed folder: detection mAP/NDS on the generated "
                             "frames beside the real frames of the clips the scenarios start from, and their ratio "
                             "(default auto: the shipped weights/detector-small; none: skip)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=_run_eval)


def _run_eval(args) -> int:
    from drivesim.eval.report import evaluate, summary_table, write_report

    out = args.out if args.out is not None else args.rollouts / "eval"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    results = evaluate(args.rollouts, reference=args.reference, inception=args.inception, i3d=args.i3d,
                       frame_step=args.frame_step, progress=not args.quiet,
                       include_given=args.include_given, detector=args.detector)  # checks every input first
    json_path, html_path = write_report(results, out)
    print(summary_table(results))
    print(f"report: {html_path}")
    print(f"numbers: {json_path}")
    if results.failed:  # the report is written, but a script must learn that it is incomplete
        print(f"drivesim eval: {len(results.failed)} of {len(results.failed) + len(results.rollouts)} "
              "rollouts could not be scored (listed in the report)", file=sys.stderr)
        return 1
    return 0


def add(commands) -> None:
    """Add this module's commands to the `drivesim` parser."""
    _add_ui(commands)
    _add_export(commands)
    _add_eval(commands)
