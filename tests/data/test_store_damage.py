"""A damaged store is named, never read as zeros: a deleted chunk file or a bad checksum is a DataError
naming store, clip and array in every reader, `store verify` finds both, and training skips such a clip."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from drivesim.cli import main
from drivesim.data import store
from drivesim.data.dataset import ClipDataset
from drivesim.errors import DataError

FRAMES_SHARD = Path("frames/c/0/0/0/0/0")  # frames: one shard per clip
BOXES_CHUNK = Path("boxes/c/0/0")


def _first_clip(path: Path, split: str = "train") -> str:
    index = store.open_store(path).attrs["clips"]
    return sorted(c for c, entry in index.items() if entry["split"] == split)[0]


def _flip_a_byte(path: Path, at: int | None = None) -> None:
    """Flip one byte: the middle one, or the one `at` (a shard's first image starts at byte 0)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def damaged(synthetic_store, tmp_path) -> tuple[Path, str]:
    """A copy of the synthetic store whose first train clip lost its frames shard and its boxes chunk."""
    path = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    clip_id = _first_clip(path)
    (path / "clips" / clip_id / FRAMES_SHARD).unlink()
    (path / "clips" / clip_id / BOXES_CHUNK).unlink()
    return path, clip_id


def test_verify_names_deleted_chunk_files(damaged, capsys):
    path, clip_id = damaged
    checked, problems = store.verify(path)
    where = {p.where: p.what for p in problems}
    assert f"clips/{clip_id}/frames" in where and f"clips/{clip_id}/boxes" in where
    assert "missing" in where[f"clips/{clip_id}/frames"]
    assert main(["store", "verify", str(path)]) == 1
    assert f"clips/{clip_id}/boxes" in capsys.readouterr().out


def test_an_all_zero_clip_writes_every_chunk_and_verifies_clean(tmp_path):
    settings = {"width": 8, "height": 4, "frames": 2, "cameras": ["CAM_A"], "fps": 10.0}
    path = tmp_path / "store"
    root = store.create_store(path, settings, ["vehicle.car"], ["lane"])
    clip = store.Clip("zeros-0000", np.zeros((2, 1, 4, 8, 3), np.uint8), np.eye(3, dtype=np.float32)[None].copy(),
                      np.eye(4, dtype=np.float32)[None], np.tile(np.eye(4), (2, 1, 1)), np.array([0, 100_000]),
                      np.zeros((1, 10), np.float32), np.array([0, 1, 1], np.int32), np.zeros(1, np.int16),
                      np.zeros(1, np.int32), np.zeros((2, 3), np.float32), np.array([0, 2], np.int32),
                      np.zeros(1, np.int16), {"split": "train", "caption": "x", "cameras": ["CAM_A"]})
    clip.intrinsics[0, 0, 0] = clip.intrinsics[0, 1, 1] = 5.0
    store.write_clip(path, clip)
    root.attrs["clips"] = {"zeros-0000": {"scene": "zeros", "split": "train", "caption": "x"}}
    assert (path / "clips" / "zeros-0000" / FRAMES_SHARD).is_file()  # zarr would leave an all-zero chunk out
    assert store.verify(path) == (1, [])
    assert not store.read_clip(store.open_store(path), "zeros-0000")["frames"].any()


@pytest.mark.parametrize("array", ["frames", "boxes"])
def test_reading_a_deleted_chunk_names_store_clip_and_array(damaged, array):
    path, clip_id = damaged
    with pytest.raises(DataError, match=f"store {path}: clip {clip_id}/{array}: chunk .* missing"):
        store.read_clip(store.open_store(path), clip_id, (array,))


def test_reading_a_bad_checksum_names_store_clip_and_array(synthetic_store, tmp_path):
    path = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    clip_id = _first_clip(path)
    _flip_a_byte(path / "clips" / clip_id / BOXES_CHUNK)
    with pytest.raises(DataError, match=f"store {path}: clip {clip_id}/boxes: unreadable"):
        store.read_clip(store.open_store(path), clip_id, ("boxes",))
    problems = store.verify(path)[1]
    assert [p.where for p in problems] == [f"clips/{clip_id}/boxes"]


def test_the_dataset_names_a_damaged_clip_and_training_skips_and_counts_it(damaged, capsys):
    path, clip_id = damaged
    strict = ClipDataset(path, split="train", frames=5)
    position = strict.clip_ids.index(clip_id)
    with pytest.raises(DataError, match=f"clip {clip_id}/frames"):
        strict[position]
    lenient = ClipDataset(path, split="train", frames=5, skip_damaged=True)
    item = lenient[position]
    assert item["clip_id"] == lenient.clip_ids[position + 1]
    assert list(lenient.damaged) == [clip_id]
    assert f"skipping a damaged clip (1 of {len(lenient.clip_ids)} so far)" in capsys.readouterr().err


def test_training_stops_when_too_many_clips_are_damaged(synthetic_store, tmp_path):
    path = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    dataset = ClipDataset(path, split="train", frames=5, skip_damaged=True)
    for clip_id in dataset.clip_ids:
        (path / "clips" / clip_id / FRAMES_SHARD).unlink()
    with pytest.raises(DataError, match="clips are damaged, more than 25%: stopping"):
        dataset[0]


def test_train_tokenizer_runs_past_a_damaged_clip(damaged, tmp_path, capsys):
    path, clip_id = damaged
    config = Path(__file__).parents[2] / "configs" / "tokenizer-tiny.yaml"
    code = main(["train", "tokenizer", "--config", str(config), f"data.store={path}", f"out={tmp_path / 'run'}",
                 "steps=2", "checkpoint_every=2", "val_every=2", "sample_every=2", "--quiet"])
    assert code == 0
    assert f"clip {clip_id}/frames: chunk" in capsys.readouterr().err


def _one_line_naming(capsys, argv, *named) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for text in named:
        assert text in err, err


def test_store_sheet_and_from_clip_name_the_damage(damaged, tmp_path, capsys):
    path, clip_id = damaged
    _one_line_naming(capsys, ["store", "sheet", str(path), "--clip", clip_id, "--out", str(tmp_path / "s.png")],
                     f"clip {clip_id}/", "missing")
    _one_line_naming(capsys, ["scenario", "from-clip", "--store", str(path), "--clip", clip_id,
                              "--out", str(tmp_path / "s.yaml"), "--with-start-frame"], f"clip {clip_id}/boxes")
    assert not (tmp_path / "s.yaml").exists()


def test_generate_from_a_damaged_start_frame_names_it(synthetic_store, tiny_wfm_run, tmp_path, capsys):
    path = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    clip_id = _first_clip(path)
    scenario = tmp_path / "replay.yaml"
    assert main(["scenario", "from-clip", "--store", str(path), "--clip", clip_id, "--out", str(scenario)]) == 0
    _flip_a_byte(path / "clips" / clip_id / FRAMES_SHARD, at=16)  # in frame 0's first camera: the start frame
    capsys.readouterr()
    _one_line_naming(capsys, ["generate", "--scenario", str(scenario), "--checkpoint", str(tiny_wfm_run),
                              "--out", str(tmp_path / "out"), "--steps", "1", "--device", "cpu", "--quiet"],
                     f"clip {clip_id}/frames: unreadable")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [["store", "verify"], ["store", "sheet"]])
def test_a_truncated_root_zarr_json_is_one_line(synthetic_store, tmp_path, capsys, command):
    path = Path(shutil.copytree(synthetic_store, tmp_path / "store"))
    text = (path / "zarr.json").read_text()
    (path / "zarr.json").write_text(text[:len(text) // 2])
    extra = ["--out", str(tmp_path / "sheet.png")] if command[1] == "sheet" else []
    _one_line_naming(capsys, [*command, str(path), *extra], f"store {path}: zarr.json is damaged")
