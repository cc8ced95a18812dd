"""`drivesim eval` (drivesim/eval/report.py): reports on rollouts of a tiny random world model, the
reference path proven by rollouts whose frames ARE the reference clip's, the given start frame left out
of PSNR/SSIM, OpenCV failures counted instead of raised, a broken rollout listed while the others are
scored, FID through a TorchScript file given on the command line, strict JSON, escaped HTML, and option
errors that exit 2 before any work."""

from __future__ import annotations

import dataclasses
import html
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_helpers import TinyInception, noisy

from drivesim.cli import main
from drivesim.errors import ConfigError
from drivesim.eval.quality import SKIPPED_NOTE, load_inception
from drivesim.eval.report import FailedPairs, Report, SummaryRow, _json_safe, evaluate, summary_table, write_report
from drivesim.scenario import StartFrames
from drivesim.rollout import ROLLOUT_STORE, Rollout

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.fixture(scope="module")
def with_reference(rollouts) -> Report:
    return evaluate(rollouts["generated"], reference=rollouts["reference"], progress=False)


def by_name(results: Report) -> dict[str, SummaryRow]:
    return {row.name: row for row in results.summary.rows}


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "inception.pt"
    torch.jit.script(TinyInception()).save(str(path))
    return path


def strict_json(path: Path) -> dict:
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}: not strict JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


# ---------------------------------------------------------------- without a reference


def test_a_report_without_reference_has_the_table_plots_nulls_and_the_fid_note(rollouts, tmp_path):
    results = evaluate(rollouts["plain"], progress=False)
    json_path, html_path = write_report(results, tmp_path / "eval")
    assert (json_path, html_path) == (tmp_path / "eval" / "report.json", tmp_path / "eval" / "report.html")
    report = strict_json(json_path)
    (entry,) = report["rollouts"]
    assert entry["name"] == "plain" and entry["clip_id"] == "eval_drive" and entry["frames"] == 7
    assert entry["quality"]["psnr"] is None and entry["quality"]["ssim"] is None  # NaN -> null
    assert "start_frames" in entry["quality"]["note"]
    assert report["summary"]["rows"][0]["psnr"] is None
    assert report["distribution"]["fid"] is None and SKIPPED_NOTE in report["distribution"]["notes"]
    assert report["reference"] is None
    # consistency and trajectory ran on the rollout itself
    pairs = entry["consistency"]["cross_view"]["pairs"]
    assert pairs.keys() == {"CAM_FRONT_LEFT-CAM_FRONT", "CAM_FRONT-CAM_FRONT_RIGHT"}
    temporal = entry["consistency"]["temporal"]
    assert temporal["series_frames"] == list(range(6)) and len(temporal["cameras"]["CAM_FRONT"]["series"]) == 6
    trajectory = entry["trajectory"]
    assert trajectory["camera"] == "CAM_FRONT" and len(trajectory["path"]["commanded_world_from_ego"]) == 7
    assert report["machine"]["cpu_count"] and report["drivesim_version"]
    page = html_path.read_text()
    assert '<table id="summary">' in page and "<th>CSE px</th>" in page and "<th>SSIM</th>" in page
    assert page.count('<img src="data:image/png;base64,') >= 3  # trajectory, TSE, CSE (no PSNR: no reference)
    assert html.escape(SKIPPED_NOTE) in page and "drivesim never downloads weights" in page


# ---------------------------------------------------------------- with a reference


def test_rollouts_made_of_the_reference_frames_score_perfectly(with_reference):
    rows = by_name(with_reference)
    for name in ("perfect", "later", "small"):  # the same pixels; from frame 2; resized as the evaluation resizes
        assert math.isinf(rows[name].psnr), name
        assert rows[name].ssim == pytest.approx(1.0, abs=1e-12), name
        assert math.isinf(rows[name].layout_psnr_in) and math.isinf(rows[name].layout_psnr_out), name
    assert 15 < rows["noisy"].psnr < 30 and rows["noisy"].ssim < 0.95
    assert math.isfinite(rows["noisy"].layout_psnr_in) and math.isfinite(rows["noisy"].layout_psnr_out)
    quality = {entry.name: entry.quality for entry in with_reference.rollouts}
    assert quality["later"].reference.frame == 2 and quality["later"].frames == 4  # 5, less the given
    assert quality["perfect"].frame_indices == [1, 2, 3, 4, 5, 6] and quality["perfect"].given_frames == 1
    assert quality["perfect"].scored == "frames 1-6 of 7; frame 0 was given to the model"
    assert quality["small"].size == [32, 16] and quality["small"].reference_size == [64, 32]
    assert quality["noisy"].cameras == ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"]
    assert 0 < quality["noisy"].layout.box_fraction < 0.5  # the lead car and the truck are in view


def test_the_reference_clip_is_measured_beside_the_rollouts(with_reference, rollouts, tmp_path):
    reference = with_reference.reference
    assert reference.store == str(rollouts["reference"])
    assert [clip.clip_id for clip in reference.clips] == ["eval_drive"]  # the clip they all start from
    (row,) = with_reference.summary.reference_rows
    assert row.name == "eval_drive" and math.isnan(row.psnr)
    # the perfect rollout holds the reference clip's frames: the same consistency numbers
    perfect = by_name(with_reference)["perfect"]
    for key in ("cse_px", "tse_px"):
        ours, theirs = getattr(perfect, key), getattr(row, key)
        assert ours == theirs or (math.isnan(ours) and math.isnan(theirs))
    json_path, html_path = write_report(with_reference, tmp_path / "out")
    report = strict_json(json_path)
    assert {row["name"]: row for row in report["summary"]["rows"]}["perfect"]["psnr"] == "inf"
    page = html_path.read_text()
    assert "reference clips (real or ground truth)" in page and "mean (reference)" in page
    assert page.count("PSNR per frame") >= 4  # a PSNR plot for each rollout with a reference
    text = summary_table(with_reference)
    assert text.splitlines()[0].startswith("rollout") and "ref eval_drive" in text and "inf" in text


def test_the_start_frames_store_is_found_without_reference(rollouts):
    results = evaluate(rollouts["generated"] / "perfect", progress=False)
    assert math.isinf(results.summary.rows[0].psnr) and results.reference is None


def test_the_given_start_frame_is_left_out_of_psnr_and_ssim_unless_asked(rollouts, tmp_path, capsys):
    # Frame 0 is the start frame the model was given: counted, it alone makes PSNR infinite.
    fair = evaluate(rollouts["copied-start"], progress=False)
    quality = fair.rollouts[0].quality
    assert 15 < quality.psnr < 30 and quality.frame_indices == [1, 2, 3, 4, 5, 6]
    assert "PSNR/SSIM over frames 1-6 of 7; frame 0 was given to the model" in summary_table(fair)
    _, html_path = write_report(fair, tmp_path / "fair")
    assert "frames 1-6 of 7; frame 0 was given to the model" in html_path.read_text()
    flattered = evaluate(rollouts["copied-start"], progress=False, include_given=True)
    quality = flattered.rollouts[0].quality
    assert math.isinf(quality.psnr) and quality.frame_indices == list(range(7))
    assert quality.scored == "frames 0-6 of 7; frame 0 was given to the model and is scored too"
    assert flattered.settings.include_given is True
    out = tmp_path / "cli"
    assert main(["eval", "--rollouts", str(rollouts["copied-start"]), "--include-given", "--out", str(out),
                 "--frame-step", "2", "--quiet"]) == 0
    assert "PSNR/SSIM over frames 0-6 (step 2) of 7; frame 0 was given to the model and is scored too" in \
        capsys.readouterr().out


def test_a_start_clip_missing_from_the_reference_gives_nan_and_a_note(rollouts, tmp_path):
    # plain/ has no start_frames; perfect/ names clip eval_drive, which the reference does hold
    import shutil

    from drivesim.scenario import load, save

    folder = tmp_path / "elsewhere"
    shutil.copytree(rollouts["generated"] / "perfect", folder)
    scenario = load(folder / "scenario.yaml")
    save(dataclasses.replace(scenario, start_frames=StartFrames(scenario.start_frames.store, "nope", 0)),
         folder / "scenario.yaml")
    results = evaluate(folder, reference=rollouts["reference"], progress=False)
    quality = results.rollouts[0].quality
    assert math.isnan(quality.psnr) and "no clip 'nope'" in quality.note
    assert any("no clip 'nope'" in note for note in results.rollouts[0].notes)


# ---------------------------------------------------------------- a rendered drive as ground truth


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    """`drivesim synth` (front3, 0.5 s, 224x128: enough texture for SIFT) ingested as one 7-frame clip."""
    from drivesim.data.ingest import IngestConfig, ingest
    from drivesim.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("drive")
    generate(SynthConfig(out=root / "logs", scenes=1, seconds=0.5, width=224, height=128, fps=12, seed=0,
                         rig="front3"), progress=False)
    ingest(IngestConfig(dataroot=root / "logs", out=root / "store", width=224, height=128, frames=7), progress=False)
    return root / "store"


@pytest.fixture(scope="module")
def drive_rollouts(drive, tmp_path_factory) -> Path:
    """perfect/: a Rollout built from the stored clip (its scenario from `from_clip`, whose start_frames
    name the clip; its frames the clip's); noisy/: the same with noise."""
    from drivesim.data.store import open_store, read_clip, stored_clip_ids
    from drivesim.scenario import from_clip

    (clip_id,) = stored_clip_ids(drive)
    frames = read_clip(open_store(drive), clip_id, ("frames",))["frames"]
    scenario = from_clip(drive, clip_id)
    perfect = Rollout.labelled(scenario, scenario.rig, frames)
    base = tmp_path_factory.mktemp("drive-rollouts")
    perfect.save(base / "perfect")
    dataclasses.replace(perfect, video=noisy(frames, 12)).save(base / "noisy")
    return base


@pytest.fixture(scope="module")
def drive_results(drive, drive_rollouts) -> Report:
    return evaluate(drive_rollouts, reference=drive, progress=False)


def test_a_rollout_of_the_reference_clip_scores_perfectly_and_measures_like_it(drive_results, tmp_path):
    rows = by_name(drive_results)
    (reference,) = drive_results.summary.reference_rows
    perfect, noisy_row = rows["perfect"], rows["noisy"]
    assert math.isinf(perfect.psnr) and perfect.ssim == pytest.approx(1.0, abs=1e-12)
    assert math.isinf(perfect.layout_psnr_in) and math.isinf(perfect.layout_psnr_out)
    assert 25 < noisy_row.psnr < 35 and 0.3 < noisy_row.ssim < 0.99
    assert math.isfinite(noisy_row.layout_psnr_in) and math.isfinite(noisy_row.layout_psnr_out)
    # A rendered drive has texture: consistency is measured, on the rollout as on the clip, and every
    # frame pair's motion recovered.
    for row in (perfect, reference):
        for key in ("cse_px", "tse_px"):
            assert math.isfinite(getattr(row, key)), (row.name, key)
        assert row.failed_pairs == 0, row.name
    assert perfect.cse_px == pytest.approx(reference.cse_px, rel=1e-3)  # the same frames, calibration
    assert perfect.tse_px == pytest.approx(reference.tse_px, rel=1e-6)
    assert perfect.tse_px < 1.0
    entry = next(e for e in drive_results.rollouts if e.name == "perfect")
    series = entry.consistency.temporal.cameras["CAM_FRONT"].series
    assert len(series) == 6 and np.mean(series) == entry.consistency.temporal.cameras["CAM_FRONT"].tse
    assert entry.trajectory.frames_recovered > 0.5
    assert entry.failed_pairs == FailedPairs(trajectory=0, trajectory_pairs=6, tse=0, tse_pairs=18, total=0,
                                             solver_errors=0, solver_error=None)
    # Half a second of a drive in its lane cannot test following: ATE and RPE are n/a, and say why.
    assert all(math.isnan(getattr(row, key)) for row in (perfect, reference) for key in ("ate_m", "rpe_m", "rpe_deg"))
    for e in [*drive_results.rollouts, *drive_results.reference.clips]:
        assert e.notes == [f"ATE/RPE n/a: {e.trajectory.note}"] and e.trajectory.note, e.name
    _, html_path = write_report(drive_results, tmp_path / "drive")
    page = html_path.read_text()
    # per rollout: trajectory, TSE, CSE and PSNR plots; per reference clip: trajectory, TSE, CSE
    assert page.count('<img src="data:image/png;base64,') == 2 * 4 + 3


def test_the_report_measures_each_frame_pair_once(drive_rollouts, monkeypatch):
    # The TSE plot's series and the TSE column come from one pass: one RANSAC fit per camera and frame
    # pair, SIFT once per image for consistency and once per front image for the trajectory.
    import cv2

    from drivesim.eval import consistency

    calls = dict.fromkeys(("findFundamentalMat", "SIFT_create", "temporal_sampson"), 0)
    for module, name in ((cv2, "findFundamentalMat"), (cv2, "SIFT_create"), (consistency, "temporal_sampson")):
        def counted(*args, _original=getattr(module, name), _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, counted)
    results = evaluate(drive_rollouts / "perfect", progress=False)
    (entry,) = results.rollouts
    assert entry.failed_pairs.tse_pairs == 3 * 6 and calls["findFundamentalMat"] == 3 * 6
    assert calls["SIFT_create"] == 7 * 3 + 7 and calls["temporal_sampson"] == 0
    temporal = entry.consistency.temporal
    every_pair = [value for camera in temporal.cameras.values() for value in camera.series]
    assert len(every_pair) == 18 and results.summary.rows[0].tse_px == pytest.approx(np.mean(every_pair), rel=1e-12)


def _failing(name: str):
    import cv2

    def fail(*args, **kwargs):
        raise cv2.error(f"OpenCV(test) {name}: (-215:Assertion failed) in function 'solvePoly'")
    return fail


def test_opencv_errors_are_counted_as_failed_pairs_and_the_report_is_written(drive_rollouts, monkeypatch, tmp_path):
    import cv2

    monkeypatch.setattr(cv2, "findEssentialMat", _failing("findEssentialMat"))
    monkeypatch.setattr(cv2, "findFundamentalMat", _failing("findFundamentalMat"))
    results = evaluate(drive_rollouts / "perfect", progress=False)
    (entry,) = results.rollouts
    assert results.failed == []
    failed = entry.failed_pairs
    assert (failed.trajectory, failed.trajectory_pairs, failed.tse, failed.tse_pairs) == (6, 6, 18, 18)
    assert failed.total == 24 and failed.solver_errors == 24
    assert failed.solver_error.startswith("cv2.error: OpenCV(test) find")
    assert math.isnan(by_name(results)["perfect"].tse_px) and by_name(results)["perfect"].failed_pairs == 24
    assert math.isfinite(by_name(results)["perfect"].cse_px)  # under the calibration's F: no solver to fail
    assert any("24 frame pair(s) not recovered because OpenCV failed" in note for note in entry.notes)
    table = summary_table(results)
    assert "pairs failed" in table.splitlines()[0] and "24.0" in table.splitlines()[1]
    json_path, html_path = write_report(results, tmp_path / "cv-errors")
    assert strict_json(json_path)["rollouts"][0]["failed_pairs"]["total"] == 24
    page = html_path.read_text()
    assert "<th>pairs failed</th>" in page and "frame pairs not recovered: trajectory 6 of 6, TSE 18 of 18" in page


def test_a_rollout_that_cannot_be_scored_is_listed_and_the_others_are_scored(drive_rollouts, tmp_path, capsys):
    import shutil

    from drivesim.data.store import stored_clip_ids

    folder = tmp_path / "rollouts"
    for name in ("perfect", "broken"):
        shutil.copytree(drive_rollouts / "perfect", folder / name)
    (clip_id,) = stored_clip_ids(folder / "broken" / ROLLOUT_STORE)
    shutil.rmtree(folder / "broken" / ROLLOUT_STORE / "clips" / clip_id / "frames")  # a damaged store
    results = evaluate(folder, progress=False)
    assert [entry.name for entry in results.rollouts] == ["perfect"]
    assert math.isinf(by_name(results)["perfect"].psnr)
    (failed,) = results.failed
    # A chunk file gone (or a bad checksum) is named, store, clip and array, never read as black frames.
    shutil.copytree(drive_rollouts / "perfect", tmp_path / "chunkless" / "chunkless")
    (tmp_path / "chunkless" / "chunkless" / ROLLOUT_STORE / "clips" / clip_id / "frames/c/0/0/0/0/0").unlink()
    (chunkless,) = evaluate(tmp_path / "chunkless", progress=False).failed
    assert f"clip {clip_id}/frames: chunk c/0/0/0/0/0 missing" in chunkless.reason
    assert failed.name == "broken" and failed.folder == str(folder / "broken") and failed.reason
    assert results.summary.failed == [failed]
    assert f"broken: could not be scored: {failed.reason}" in summary_table(results)
    out = tmp_path / "eval"
    assert main(["eval", "--rollouts", str(folder), "--out", str(out), "--quiet"]) == 1  # the report is incomplete
    captured = capsys.readouterr()
    assert "1 of 2 rollouts could not be scored" in captured.err and "could not be scored" in captured.out
    report = strict_json(out / "report.json")
    assert [entry["name"] for entry in report["rollouts"]] == ["perfect"] and report["failed"][0]["name"] == "broken"
    assert 'class="failed"' in (out / "report.html").read_text()


# ---------------------------------------------------------------- FID on the command line


def test_fid_through_inception_on_the_command_line(rollouts, inception_file, tmp_path, capsys):
    out = tmp_path / "fid"
    assert main(["eval", "--rollouts", str(rollouts["generated"]), "--reference", str(rollouts["reference"]),
                 "--inception", str(inception_file), "--out", str(out), "--frame-step", "2", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed and "CSE px" in printed
    report = strict_json(out / "report.json")
    assert report["settings"]["frame_step"] == 2
    distribution = report["distribution"]
    assert isinstance(distribution["fid"], float) and distribution["fid"] > 0
    assert distribution["fid_images"] == {"generated": 4 * 7 * 3 - 2 * 3, "reference": 7 * 3}
    assert any("FVD skipped" in note for note in distribution["notes"])
    # the perfect rollout alone holds exactly the reference frames: FID ~0
    alone = evaluate(rollouts["generated"] / "perfect", reference=rollouts["reference"],
                     inception=load_inception(inception_file), progress=False)
    assert alone.distribution.fid == pytest.approx(0, abs=1e-6)


def test_the_default_out_is_rollouts_eval(rollouts, tmp_path, capsys):
    import shutil

    folder = tmp_path / "one"
    shutil.copytree(rollouts["plain"], folder)
    assert main(["eval", "--rollouts", str(folder), "--quiet"]) == 0
    assert (folder / "eval" / "report.html").is_file() and (folder / "eval" / "report.json").is_file()
    assert "FID n/a" in capsys.readouterr().out


# ---------------------------------------------------------------- JSON and HTML details


def test_json_safe_turns_nan_into_null_and_inf_into_a_string():
    value = _json_safe({"a": math.nan, "b": np.float32(math.inf), "c": [np.int64(3), np.array([1.5, np.nan])],
                        "d": np.bool_(True), "e": Path("x"), "f": -math.inf})
    assert value == {"a": None, "b": "inf", "c": [3, [1.5, None]], "d": True, "e": "x", "f": "-inf"}
    json.dumps(value, allow_nan=False)


def test_text_from_files_is_escaped_in_the_page(with_reference, tmp_path):
    entry = dataclasses.replace(with_reference.rollouts[0], name="<script>alert(1)</script>",
                                notes=["a note with <b>tags</b> & ampersands"])
    row = dataclasses.replace(with_reference.summary.rows[0], name="<script>alert(1)</script>")
    results = dataclasses.replace(with_reference, rollouts=[entry],
                                  summary=dataclasses.replace(with_reference.summary, rows=[row]))
    _, html_path = write_report(results, tmp_path / "escaped")
    page = html_path.read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;b&gt;tags&lt;/b&gt; &amp; ampersands" in page


# ---------------------------------------------------------------- option errors


def test_option_errors_exit_2_naming_the_option_before_any_work(rollouts, inception_file, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    not_a_store = tmp_path / "not-a-store"
    not_a_store.mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    plain = str(rollouts["plain"])
    out = tmp_path / "never"
    cases = [
        (["--rollouts", str(empty)], "--rollouts"),
        (["--rollouts", str(tmp_path / "absent")], "--rollouts"),
        (["--rollouts", plain, "--reference", str(not_a_store)], "--reference"),
        (["--rollouts", plain, "--reference", str(tmp_path / "absent")], "--reference"),
        (["--rollouts", plain, "--frame-step", "0"], "--frame-step"),
        (["--rollouts", plain, "--reference", str(rollouts["reference"]), "--inception", str(tmp_path / "no.pt")],
         "--inception"),
        (["--rollouts", plain, "--reference", str(rollouts["reference"]), "--i3d", str(a_file)], "--i3d"),
        (["--rollouts", plain, "--inception", str(inception_file)], "--inception"),
        (["--rollouts", plain, "--out", str(a_file)], "--out"),
    ]
    for arguments, option in cases:
        extra = [] if "--out" in arguments else ["--out", str(out)]
        assert main(["eval", *arguments, *extra, "--quiet"]) == 2, arguments
        error = capsys.readouterr().err
        assert error.startswith("drivesim eval: error: ") and option in error, (arguments, error)
    assert not out.exists()  # nothing was written
    with pytest.raises(ConfigError, match="--frame-step"):
        evaluate(plain, frame_step=True)
