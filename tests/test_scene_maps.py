"""The dense scene maps: each class lands where its geometry projects, whatever the ego's pose."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from drivesim.errors import ConfigError
from drivesim.geometry import invert
from drivesim.render import LayoutFrame, Surroundings
from drivesim.rigs import load_rig
from drivesim.scene_maps import (CLASSES, SCENE_CHANNELS, WALL_HEIGHT, picture, render_maps, render_scene,
                                 scene_channels)

WIDTH, HEIGHT = 256, 128
CLASS = {name: i for i, name in enumerate(CLASSES)}
HALF_ROAD = 7.0   # road edges at y = +-7 m, lanes at +-1.75 and +-5.25, a dashed divider at y = 3.5
SIDEWALK = 3.0
SETBACK = 2.0


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes", size=(WIDTH, HEIGHT))


def pose(x=0.0, y=0.0, yaw=0.0) -> np.ndarray:
    world_from_ego = np.eye(4)
    world_from_ego[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    world_from_ego[:2, 3] = x, y
    return world_from_ego


def line(y: float, x0=-200.0, x1=200.0, step=2.0) -> np.ndarray:
    xs = np.arange(x0, x1 + step / 2, step)
    return np.stack([xs, np.full_like(xs, y), np.zeros_like(xs)], axis=1)


def street(world_from_ego=None, boxes=(), categories=None, surroundings=None) -> LayoutFrame:
    """A straight road along world x, with the map moved with the ego's pose offset (the road stays put)."""
    lines = [line(-5.25), line(-1.75), line(1.75), line(5.25), line(HALF_ROAD), line(-HALF_ROAD), line(3.5),
             np.array([[15, -7, 0], [15, 7, 0], [18, 7, 0], [18, -7, 0], [15, -7, 0]], float)]
    kinds = ["lane"] * 4 + ["road_edge"] * 2 + ["lane_divider", "crosswalk"]
    boxes = np.array(boxes, np.float32).reshape(-1, 7)
    return LayoutFrame(pose() if world_from_ego is None else world_from_ego, boxes,
                       categories or ["vehicle.car"] * len(boxes), lines, kinds,
                       surroundings=surroundings or Surroundings(SIDEWALK, SETBACK, "day", "clear"))


def pixel_of(rig, view: int, world_from_ego: np.ndarray, point) -> tuple[int, int] | None:
    """The pixel (row, column) a world point projects to in camera `view`, None off the image."""
    cam_from_world = invert(world_from_ego @ rig.ego_from_cam[view])
    p = cam_from_world[:3, :3] @ np.asarray(point, float) + cam_from_world[:3, 3]
    if p[2] <= 0.5:
        return None
    u, v, w = rig.intrinsics[view] @ p
    col, row = int(np.floor(u / w)), int(np.floor(v / w))
    return (row, col) if 0 <= row < rig.height and 0 <= col < rig.width else None


def class_at(maps, view, pixel) -> str:
    return CLASSES[maps.classes[view, 0, pixel[0], pixel[1]]]


def test_each_class_lands_where_its_geometry_projects(rig):
    car = (30.0, -1.75, 0.8, 1.9, 4.5, 1.6, 0.0)
    maps = render_scene(rig, [street(boxes=[car])])
    front = [c.name for c in rig.cameras].index("CAM_FRONT")
    expected = {
        (10.0, -1.0, 0.0): "road",
        (16.5, -1.0, 0.0): "crosswalk",
        (20.0, HALF_ROAD + 1.5, 0.0): "sidewalk",          # left of the road, within the sidewalk
        (20.0, -HALF_ROAD - 0.15, 0.0): "kerb",
        (25.0, HALF_ROAD + SIDEWALK + 1.0, 0.0): "ground",  # between the sidewalk and the facade
        (40.0, HALF_ROAD + SIDEWALK + SETBACK, 6.0): "building",
        (200.0, 0.0, 60.0): "sky",
        (30.0, -1.75, 0.8): "car",
    }
    for point, name in expected.items():
        pixel = pixel_of(rig, front, pose(), point)
        assert pixel is not None, point
        assert class_at(maps, front, pixel) == name, (point, name)
    # the heading cue: the front camera sees the car's back (no cue), the back camera a car's front (cue)
    assert not maps.box_front[front, 0][pixel_of(rig, front, pose(), (30.0 - 2.25, -1.75, 0.8))]
    behind = [c.name for c in rig.cameras].index("CAM_BACK")
    towards = render_scene(rig, [street(boxes=[(-30.0, -1.75, 0.8, 1.9, 4.5, 1.6, 0.0)])])
    centre = pixel_of(rig, behind, pose(), (-30.0 + 2.25, -1.75, 0.8))  # the face the back camera sees
    assert class_at(towards, behind, centre) == "car" and towards.box_front[behind, 0][centre]


def test_painted_lines_and_depth(rig):
    maps = render_scene(rig, [street()])
    front = [c.name for c in rig.cameras].index("CAM_FRONT")
    pixel = pixel_of(rig, front, pose(), (8.0, 3.5, 0.0))
    window = maps.classes[front, 0, pixel[0] - 1:pixel[0] + 2, pixel[1] - 1:pixel[1] + 2]
    assert CLASS["lane_divider"] in window
    # depth of a road pixel: the camera-frame z of the ground point its ray meets
    point = (12.0, -1.0, 0.0)
    row, col = pixel_of(rig, front, pose(), point)
    z = (invert(rig.ego_from_cam[front]) @ np.array([*point, 1.0]))[2]
    assert maps.depth[front, 0, row, col] == pytest.approx(z, rel=0.1)
    assert np.isinf(maps.depth[maps.classes == CLASS["sky"]]).all()


@settings(max_examples=20, deadline=None)
@given(x=st.floats(-50, 50), shift=st.floats(-1.5, 1.5), yaw=st.floats(-0.3, 0.3))
def test_the_class_of_a_ground_point_does_not_depend_on_the_ego_pose(rig, x, shift, yaw):
    world_from_ego = pose(x, shift, yaw)
    maps = render_scene(rig, [street(world_from_ego)])
    front = [c.name for c in rig.cameras].index("CAM_FRONT")
    for offset, name in (((12.0, -3.5), "road"), ((12.0, HALF_ROAD + 1.8), "sidewalk")):
        point = (x + offset[0], offset[1], 0.0)
        if 15 - 1 <= point[0] <= 18 + 1:  # the crosswalk
            continue
        pixel = pixel_of(rig, front, world_from_ego, point)
        if pixel is not None:
            assert class_at(maps, front, pixel) == name


def test_channels_one_hot_look_and_edges(rig):
    frame = street(boxes=[(20.0, 0.0, 0.8, 1.9, 4.5, 1.6, 0.0)], surroundings=Surroundings(3.0, 0.0, "night", "rain"))
    channels = render_maps("dense", rig, [frame])
    assert channels.shape == (len(rig.cameras), 1, len(SCENE_CHANNELS), HEIGHT, WIDTH)
    index = {name: i for i, name in enumerate(SCENE_CHANNELS)}
    np.testing.assert_array_equal(channels[:, :, :len(CLASSES)].sum(axis=2), 1.0)  # one class per pixel
    assert (channels[:, :, index["night"]] == 1).all() and (channels[:, :, index["rain"]] == 1).all()
    assert not channels[:, :, index["dusk"]].any() and not channels[:, :, index["fog"]].any()
    edges = channels[:, :, index["edge"]].astype(bool)
    car = channels[:, :, index["car"]].astype(bool)
    assert edges.any() and (edges & ~car).sum() <= edges.sum()  # edges ring the car, inside and out
    assert 0 <= channels.min() and channels.max() <= 1
    assert picture(render_scene(rig, [frame])).dtype == np.uint8


def test_without_edges_lanes_make_the_road_and_nothing_makes_ground(rig):
    bare = LayoutFrame(pose(), np.zeros((0, 7), np.float32), [], [line(0.0)], ["lane"])
    maps = render_scene(rig, [bare])
    front = [c.name for c in rig.cameras].index("CAM_FRONT")
    assert class_at(maps, front, pixel_of(rig, front, pose(), (10.0, 0.5, 0.0))) == "road"
    assert class_at(maps, front, pixel_of(rig, front, pose(), (20.0, 6.0, 0.0))) == "ground"
    empty = render_scene(rig, [LayoutFrame(pose(), np.zeros((0, 7), np.float32), [], [], [])])
    assert set(np.unique(empty.classes)) == {CLASS["sky"], CLASS["ground"]}
    assert not (empty.classes == CLASS["building"]).any() and WALL_HEIGHT > 0


def test_bad_inputs_are_config_errors(rig):
    with pytest.raises(ConfigError, match="pavement"):
        render_scene(rig, [LayoutFrame(pose(), np.zeros((0, 7), np.float32), [], [line(0.0)], ["pavement"])])
    with pytest.raises(ConfigError, match="weather"):
        render_scene(rig, [street(surroundings=Surroundings(3.0, 0.0, "day", "snow"))])
    with pytest.raises(ConfigError, match="sparse, dense"):
        render_maps("satellite", rig, [street()])
    scene = scene_channels(render_scene(rig, []))
    assert scene.shape[1] == 0
