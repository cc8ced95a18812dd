"""Map polylines of real nuScenes logs come from the map expansion (maps/expansion/<location>.json), read
with the devkit's NuScenesMap; the tiny fixture carries a hand-written one for singapore-onenorth."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from drivesim.cli import main
from drivesim.data import nuscenes as logs
from drivesim.data import store

TINY = Path(__file__).parent / "fixtures" / "tiny_nuscenes"
LOCATION = "singapore-onenorth"


def _ego_path() -> np.ndarray:
    """world_from_ego of the tiny scene's three frames at 4 Hz: along world +x from (600, 1600)."""
    poses = np.tile(np.eye(4), (3, 1, 1))
    poses[:, 0, 3] = [600.0, 601.0, 602.0]
    poses[:, 1, 3] = 1600.0
    return poses


def _pieces(points, offsets, types, kind):
    return [points[a:b] for a, b, t in zip(offsets[:-1], offsets[1:], types) if logs.POLY_TYPES[t] == kind]


def _copy_without_map(destination: Path) -> Path:
    return Path(shutil.copytree(TINY, destination, ignore=shutil.ignore_patterns("expansion")))


def test_the_devkit_loads_the_fixture_map():
    from nuscenes.map_expansion.arcline_path_utils import discretize_lane
    from nuscenes.map_expansion.map_api import NuScenesMap

    nmap = NuScenesMap(dataroot=str(TINY), map_name=LOCATION)
    assert nmap.get_closest_lane(601.0, 1600.3) == nmap.lane[0]["token"]
    centre = np.asarray(discretize_lane(nmap.arcline_path_3[nmap.lane[0]["token"]], resolution_meters=1.0))
    np.testing.assert_allclose(centre[:, 1], 1600.0, atol=1e-6)
    np.testing.assert_allclose(centre[[0, -1], 0], [580.0, 680.0], atol=1e-6)


def test_real_logs_take_lanes_from_the_map_expansion():
    poses = _ego_path()
    points, offsets, types = logs.polylines_near(str(TINY), LOCATION, poses, radius=60.0)
    assert {logs.POLY_TYPES[t] for t in types} == {"lane", "lane_divider", "road_edge", "crosswalk", "stop_line"}
    assert points.dtype == np.float32 and points.shape[1] == 3
    assert offsets[0] == 0 and offsets[-1] == len(points) and np.all(np.diff(offsets) >= 2)
    distance = np.linalg.norm(points[:, None, :2] - poses[None, :, :2, 3], axis=-1).min(axis=1)
    assert distance.max() <= 60.0 + 1e-3

    lanes = _pieces(points, offsets, types, "lane")
    eastbound = [lane for lane in lanes if lane[-1, 0] > lane[0, 0]]
    westbound = [lane for lane in lanes if lane[-1, 0] < lane[0, 0]]
    assert len(eastbound) == 1 and len(westbound) == 1  # lane centre lines keep their driving direction
    np.testing.assert_allclose(eastbound[0][:, 1], 1600.0, atol=0.01)
    np.testing.assert_allclose(westbound[0][:, 1], 1603.5, atol=0.01)
    assert eastbound[0][:, 0].min() == pytest.approx(580.0) and eastbound[0][:, 0].max() <= 662.0 + 1e-3
    assert np.all(np.linalg.norm(np.diff(eastbound[0][:, :2], axis=0), axis=1) <= 2.0 + 1e-4)

    (divider,) = _pieces(points, offsets, types, "lane_divider")
    np.testing.assert_allclose(divider[:, 1], 1601.75, atol=0.01)
    edges = np.concatenate(_pieces(points, offsets, types, "road_edge"))
    on_boundary = np.isclose(edges[:, 1], 1598.0) | np.isclose(edges[:, 1], 1605.5) | np.isclose(edges[:, 0], 580.0)
    assert on_boundary.all()  # the drivable area's exterior; its far end at x = 680 is out of reach
    (crosswalk,) = _pieces(points, offsets, types, "crosswalk")
    assert crosswalk[:, 0].min() == pytest.approx(640.0) and crosswalk[:, 0].max() == pytest.approx(644.0)
    (stop_line,) = _pieces(points, offsets, types, "stop_line")
    assert 634.9 <= stop_line[:, 0].min() and stop_line[:, 0].max() <= 637.1


def test_a_smaller_radius_cuts_the_map_to_the_ego_path():
    poses = _ego_path()
    points, offsets, types = logs.polylines_near(str(TINY), LOCATION, poses, radius=30.0)
    assert {logs.POLY_TYPES[t] for t in types} == {"lane", "lane_divider", "road_edge"}  # crossing at 640 m
    distance = np.linalg.norm(points[:, None, :2] - poses[None, :, :2, 3], axis=-1).min(axis=1)
    assert distance.max() <= 30.0 + 1e-3
    assert points[:, 0].max() <= 632.0 + 1e-3


def test_logs_without_any_map_give_no_polylines(tmp_path):
    bare = _copy_without_map(tmp_path / "tiny")
    assert not (bare / "maps" / "expansion").exists()
    assert logs.map_polylines(str(bare), LOCATION) == ()
    points, offsets, types = logs.polylines_near(str(bare), LOCATION, _ego_path())
    assert points.shape == (0, 3) and types.shape == (0,)
    assert offsets.tolist() == [0]


def test_ingest_of_a_real_log_stores_the_map_lanes(tmp_path):
    dataroot = Path(shutil.copytree(TINY, tmp_path / "tiny"))
    out = tmp_path / "store"
    assert main(["ingest", "--dataroot", str(dataroot), "--out", str(out), "--cameras", "CAM_FRONT",
                 "--frames", "3", "--fps", "4", "--size", "160x90", "--quiet"]) == 0
    clip = store.read_clip(store.open_store(out), "scene-tiny-0000")
    assert logs.POLY_TYPES.index("lane") in clip["poly_type"].tolist()
    # the tiny map has no road divider, and nuScenes does not tell dashed from solid lane dividers
    assert set(clip["poly_type"].tolist()) == {logs.POLY_TYPES.index(kind) for kind in logs.POLY_TYPES
                                               if kind not in ("solid_line", "double_yellow")}
    assert clip["poly_offsets"][-1] == len(clip["polylines"])
    assert main(["store", "verify", str(out), "--quiet"]) == 0
