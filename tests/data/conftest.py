"""Shared logs and stores for the data tests: built once per session, copied where a test damages them."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest


TINY = Path(__file__).parent / "fixtures" / "tiny_nuscenes"


@pytest.fixture
def tiny_logs(tmp_path) -> Path:
    """A private copy of the hand-written nuScenes fixture, free to damage."""
    return Path(shutil.copytree(TINY, tmp_path / "tiny"))


def store_contents(path: Path) -> dict:
    """Everything a reader of the store sees: root attributes, and per clip its attributes and array digests."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    contents = {"root": dict(root.attrs)}
    for clip_id in sorted(root["clips"].group_keys()):
        group = root["clips"][clip_id]
        arrays = {name: (group[name].shape, group[name].dtype.str,
                         hashlib.sha256(group[name][...].tobytes()).hexdigest())
                  for name in sorted(group.array_keys())}
        contents[clip_id] = {"attrs": dict(group.attrs), "arrays": arrays}
    return contents


def retime(root: Path, step_us: int) -> None:
    """Move the tiny log's three CAM_FRONT frames (their ego poses and key frames too) `step_us` apart:
    99_997 makes it a 10 Hz camera whose stamps fall a few microseconds short of the period."""
    import json

    tables = root / "v1.0-mini"
    start = json.loads((tables / "sample_data.json").read_text())[0]["timestamp"]
    for table in ("sample_data", "ego_pose", "sample"):
        records = json.loads((tables / f"{table}.json").read_text())
        for record in records:
            frame = round((record["timestamp"] - start) / 250_000)  # the fixture's frames are 0.25 s apart
            record["timestamp"] = start + frame * step_us
        (tables / f"{table}.json").write_text(json.dumps(records))
