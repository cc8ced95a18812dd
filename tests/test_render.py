"""Layout maps: boxes land where the rig projects them, follow the ego, carry their category colour
and heading; lanes are thin lines; depth grows with distance; empty frames are zeros."""

from __future__ import annotations

import numpy as np
import pytest

from drivesim import render
from drivesim.errors import ConfigError
from drivesim.geometry import compose, invert, project, transform_points
from drivesim.rigs import load_rig
from drivesim.render import LAYOUT_CHANNELS, PALETTE, LayoutFrame, layout_frames_from_clip, render_layout

WIDTH, HEIGHT = 256, 128
CAR = (10.0, 0.0, 0.9, 1.9, 4.5, 1.8, 0.0)  # 10 m ahead of an ego at the origin, heading the same way
CHANNEL = {name: i for i, name in enumerate(LAYOUT_CHANNELS)}


@pytest.fixture(scope="module")
def rig():
    return load_rig("nuscenes", size=(WIDTH, HEIGHT))


def ego_pose(x: float = 0.0, y: float = 0.0, yaw: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    pose[:2, 3] = x, y
    return pose


def frame(boxes=(), categories=None, polylines=(), poly_types=(), world_from_ego=None) -> LayoutFrame:
    boxes = np.array(boxes, np.float32).reshape(-1, 7)
    return LayoutFrame(ego_pose() if world_from_ego is None else world_from_ego, boxes,
                       categories or ["vehicle.car"] * len(boxes), [np.asarray(p, float) for p in polylines],
                       list(poly_types))


def box_mask(maps: np.ndarray) -> np.ndarray:
    return maps[CHANNEL["box_red"]:CHANNEL["box_blue"] + 1].any(axis=0)


def predicted_pixels(rig, view: int, world_from_ego: np.ndarray, points_world: np.ndarray):
    """Pixels and depth of world points in camera `view`, by the rig's geometry alone."""
    cam_from_world = invert(compose(world_from_ego, rig.ego_from_cam[view]))
    return project(rig.intrinsics[view], transform_points(cam_from_world, points_world))


def centre_pixel(rig, view, box, world_from_ego=None) -> tuple[int, int]:
    """(column, row) of the pixel a box's centre projects to."""
    pixels, _ = predicted_pixels(rig, view, ego_pose() if world_from_ego is None else world_from_ego,
                                 np.array([box[:3]], float))
    column, row = np.round(pixels[0]).astype(int)
    return int(column), int(row)


def box_rectangle(rig, view, world_from_ego, box):
    """The projected bounding rectangle (u0, v0, u1, v1) of a box's corners."""
    from drivesim.geometry import box_corners

    pixels, _ = predicted_pixels(rig, view, world_from_ego, box_corners(np.array([box]))[0])
    return np.concatenate([pixels.min(axis=0), pixels.max(axis=0)])


def drawn_rectangle(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], float)


def test_maps_have_shape_views_frames_channels_height_width(rig):
    maps = render_layout(rig, [frame([CAR])] * 3)
    assert maps.shape == (6, 3, len(LAYOUT_CHANNELS), HEIGHT, WIDTH)
    assert maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1


def test_size_renders_at_that_size(rig):
    assert render_layout(rig, [frame([CAR])], size=(64, 32)).shape == (6, 1, len(LAYOUT_CHANNELS), 32, 64)


def test_empty_frames_give_zeros(rig):
    assert not render_layout(rig, [frame(), frame()]).any()


def test_box_ten_metres_ahead_lands_where_the_rig_projects_it(rig):
    front = rig.names.index("CAM_FRONT")
    maps = render_layout(rig, [frame([CAR])])[front, 0]
    column, row = centre_pixel(rig, front, CAR)
    assert box_mask(maps)[row, column]
    # Pixel centres inside the projected corners are drawn: the rectangle matches within a pixel.
    np.testing.assert_allclose(drawn_rectangle(box_mask(maps)), box_rectangle(rig, front, ego_pose(), CAR), atol=1.0)
    # Only the front camera and its neighbours can see it.
    others = render_layout(rig, [frame([CAR])])
    for view in ("CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT"):
        assert not others[rig.names.index(view), 0].any()


def test_moving_the_ego_left_moves_the_box_where_the_geometry_predicts(rig):
    front = rig.names.index("CAM_FRONT")
    here, left = ego_pose(), ego_pose(y=3.5)
    maps = render_layout(rig, [frame([CAR], world_from_ego=here), frame([CAR], world_from_ego=left)])[front]
    before, after = box_mask(maps[0]), box_mask(maps[1])
    predicted = box_rectangle(rig, front, left, CAR).clip(0, [WIDTH - 1, HEIGHT - 1, WIDTH - 1, HEIGHT - 1])
    # Now partly past the right edge of the image: the drawn part is the predicted part.
    np.testing.assert_allclose(drawn_rectangle(after), predicted, atol=1.0)
    column_before, row = centre_pixel(rig, front, CAR, here)
    column_after, row_after = centre_pixel(rig, front, CAR, left)
    assert row_after == row and column_after - column_before > 40  # the ego went left: the box went right
    assert after[row, column_after] and not after[row, column_before] and before[row, column_before]
    shift = drawn_rectangle(after)[0] - drawn_rectangle(before)[0]
    predicted_shift = box_rectangle(rig, front, left, CAR)[0] - box_rectangle(rig, front, here, CAR)[0]
    assert shift == pytest.approx(predicted_shift, abs=1.5)


def test_each_camera_draws_from_the_ego_pose_it_fired_at(rig):
    """A camera that took its image 1.5 m further on sees the box from there, its neighbours do not move."""
    front, left = rig.names.index("CAM_FRONT"), rig.names.index("CAM_FRONT_LEFT")
    late = np.repeat(ego_pose()[None], len(rig.cameras), axis=0)
    late[front] = ego_pose(x=1.5)
    still, moved = frame([CAR]), LayoutFrame(ego_pose(), np.array([CAR], np.float32), ["vehicle.car"], [], [],
                                             world_from_ego_cam=late)
    maps = render_layout(rig, [still, moved])
    predicted = box_rectangle(rig, front, ego_pose(x=1.5), CAR).clip(0, [WIDTH - 1, HEIGHT - 1] * 2)
    np.testing.assert_allclose(drawn_rectangle(box_mask(maps[front, 1])), predicted, atol=1.0)
    assert drawn_rectangle(box_mask(maps[front, 1]))[2] > drawn_rectangle(box_mask(maps[front, 0]))[2] + 5
    np.testing.assert_array_equal(maps[left, 1], maps[left, 0])


def test_a_pitched_box_is_drawn_with_its_full_rotation(rig):
    from drivesim.geometry import box_corners
    from drivesim.geometry import quaternion_from_matrix

    front = rig.names.index("CAM_FRONT")
    tipped = np.array([[np.cos(0.6), 0, np.sin(0.6)], [0, 1, 0], [-np.sin(0.6), 0, np.cos(0.6)]])  # nose down
    rotation = quaternion_from_matrix(tipped)[None]
    flat, pitched = frame([CAR]), LayoutFrame(ego_pose(), np.array([CAR], np.float32), ["vehicle.car"], [], [],
                                              box_rotation=rotation)
    maps = render_layout(rig, [flat, pitched])[front]
    corners = box_corners(np.array([CAR]), rotation)[0]
    pixels, _ = predicted_pixels(rig, front, ego_pose(), corners)
    np.testing.assert_allclose(drawn_rectangle(box_mask(maps[1])),
                               np.concatenate([pixels.min(axis=0), pixels.max(axis=0)]), atol=1.0)
    assert drawn_rectangle(box_mask(maps[1]))[3] - drawn_rectangle(box_mask(maps[0]))[3] > 3  # taller in the image
    # The heading cue follows the tipped nose: the front half is the lower, nearer half.
    front_rows = np.nonzero(maps[1, CHANNEL["box_front"]])[0]
    back_rows = np.nonzero(box_mask(maps[1]) & (maps[1, CHANNEL["box_front"]] == 0))[0]
    assert front_rows.mean() > back_rows.mean()


def test_box_colour_is_its_super_categorys(rig):
    front = rig.names.index("CAM_FRONT")
    pedestrian = (8.0, 2.0, 0.9, 0.6, 0.6, 1.8, 0.0)
    bus = (25.0, -4.0, 1.6, 2.8, 11.0, 3.2, 0.0)
    maps = render_layout(rig, [frame([CAR, pedestrian, bus], ["vehicle.car", "human.pedestrian.adult",
                                                              "vehicle.bus.rigid"])])[front, 0]
    for box, key in ((CAR, "car"), (pedestrian, "pedestrian"), (bus, "bus")):
        column, row = centre_pixel(rig, front, box)
        colour = maps[:3, row, column]
        np.testing.assert_array_equal(colour, PALETTE[key])


def test_super_categories_cover_nuscenes_names():
    assert render.super_category("vehicle.car") == "car"
    assert render.super_category("vehicle.truck") == "truck"
    assert render.super_category("vehicle.bus.bendy") == "bus"
    assert render.super_category("vehicle.motorcycle") == "bicycle"
    assert render.super_category("human.pedestrian.child") == "pedestrian"
    assert render.super_category("movable_object.trafficcone") == "barrier"
    assert render.super_category("animal") == "other"
    assert render.super_category("vehicle.carriage") == "other"  # a prefix must end at a dot
    assert len({tuple(c) for c in PALETTE.values()}) == len(PALETTE) and all(any(c) for c in PALETTE.values())


def test_front_channel_marks_the_front_half_of_a_box(rig):
    front = rig.names.index("CAM_FRONT")
    away, towards = CAR, CAR[:6] + (np.pi,)
    maps = render_layout(rig, [frame([away]), frame([towards])])[front, :, CHANNEL["box_front"]]
    mask = box_mask(render_layout(rig, [frame([away])])[front, 0])
    assert not maps[0][mask].any()  # seen from behind: only its back half
    assert maps[1][mask].all()  # coming at us: only its front half
    # Crossing to the right: the front half is the right half of its silhouette.
    crossing = CAR[:6] + (-np.pi / 2,)
    layout = render_layout(rig, [frame([crossing])])[front, 0]
    rows, cols = np.nonzero(layout[CHANNEL["box_front"]])
    back_rows, back_cols = np.nonzero(box_mask(layout) & (layout[CHANNEL["box_front"]] == 0))
    assert len(cols) and len(back_cols) and cols.mean() > back_cols.mean()


def test_lanes_and_road_edges_are_thin_lines_on_their_channels(rig):
    front = rig.names.index("CAM_FRONT")
    x = np.linspace(2.0, 60.0, 30)
    lane = np.c_[x, np.full_like(x, 1.75), np.zeros_like(x)]
    edge = np.c_[x, np.full_like(x, -5.0), np.zeros_like(x)]
    maps = render_layout(rig, [frame(polylines=[lane, edge], poly_types=["lane", "road_edge"])])[front, 0]
    for line, channel, other in ((lane, "lane", "road_edge"), (edge, "road_edge", "lane")):
        pixels, depth = predicted_pixels(rig, front, ego_pose(), line)
        inside = (depth > 0) & (pixels[:, 0] >= 0) & (pixels[:, 0] <= WIDTH - 1) & (pixels[:, 1] >= 0) \
            & (pixels[:, 1] <= HEIGHT - 1)
        assert inside.sum() > 5
        for u, v in np.round(pixels[inside]).astype(int):
            assert maps[CHANNEL[channel], v, u] == 1
            assert maps[CHANNEL[other], v, u] == 0 or channel == "road_edge"
    # Thin: about LINE_WIDTH pixels across, so about LINE_WIDTH pixels per pixel of its longer extent.
    for channel in ("lane", "road_edge"):
        rows, cols = np.nonzero(maps[CHANNEL[channel]])
        extent = max(np.ptp(rows), np.ptp(cols)) + 1
        assert extent > 20 and len(rows) <= (render.LINE_WIDTH + 1) * extent
    assert not box_mask(maps).any()


def test_a_box_hides_the_lane_behind_it(rig):
    front = rig.names.index("CAM_FRONT")
    x = np.linspace(2.0, 60.0, 30)
    lane = np.c_[x, np.zeros_like(x), np.zeros_like(x)]
    maps = render_layout(rig, [frame([CAR], polylines=[lane], poly_types=["lane"])])[front, 0]
    beyond = np.c_[np.linspace(8.5, 60.0, 50), np.zeros(50), np.zeros(50)]  # under and past the car
    pixels, _ = predicted_pixels(rig, front, ego_pose(), beyond)
    columns, rows = np.round(pixels).astype(int).T
    assert box_mask(maps)[rows, columns].all() and not maps[CHANNEL["lane"], rows, columns].any()
    assert maps[CHANNEL["lane"]].sum() > 20  # the stretch before the car shows


def test_depth_grows_with_distance_and_is_z_over_max_depth(rig):
    front = rig.names.index("CAM_FRONT")
    boxes = [(distance, 0.0, 0.9, 1.9, 4.5, 1.8, 0.0) for distance in (10.0, 20.0, 40.0)]
    depths = []
    for box in boxes:
        maps = render_layout(rig, [frame([box])])[front, 0]
        column, row = centre_pixel(rig, front, box)
        depths.append(maps[CHANNEL["depth"], row, column])
        # The back face (x = centre - length / 2) seen from the camera about 1.7 m ahead of the origin.
        back_face = np.array([[box[0] - box[4] / 2, 0.0, 0.9]])
        _, z = predicted_pixels(rig, front, ego_pose(), back_face)
        assert depths[-1] == pytest.approx(z[0] / render.MAX_DEPTH, abs=0.002)
    assert depths[0] < depths[1] < depths[2]
    far = (500.0, 0.0, 0.9, 1.9, 4.5, 1.8, 0.0)
    assert render_layout(rig, [frame([far])])[front, 0, CHANNEL["depth"]].max() == 1.0


def test_world_far_from_the_origin_renders_the_same(rig):
    """Poses ~1e5 m from the origin (as in logs) must not lose the box to float32 rounding."""
    pose = ego_pose(250_000.0, -40_000.0, 0.7)
    box = np.array(CAR)
    box[:3] = transform_points(pose, np.array([CAR[:3]]))[0]
    box[6] = 0.7
    far = render_layout(rig, [frame([box], world_from_ego=pose)])
    near = render_layout(rig, [frame([CAR])])
    # Boxes are float32 (as in the store): 1.6 cm steps out there move a few silhouette pixels, no more.
    assert (np.abs(far - near) > 1e-3).mean() < 0.005
    front = rig.names.index("CAM_FRONT")
    assert (box_mask(far[front, 0]) != box_mask(near[front, 0])).sum() <= 0.05 * box_mask(near[front, 0]).sum()


def test_unknown_backend_and_polyline_type_are_config_errors(rig):
    with pytest.raises(ConfigError, match="backend"):
        render_layout(rig, [frame()], backend="vulkan")
    with pytest.raises(ConfigError, match="pavement"):
        render_layout(rig, [frame(polylines=[np.zeros((2, 3))], poly_types=["pavement"])])
    # the dense maps' types are known, and the sparse maps leave them out
    assert not render_layout(rig, [frame(polylines=[np.zeros((2, 3))], poly_types=["crosswalk"])]).any()


@pytest.mark.skipif(render.pytorch3d_available(), reason="pytorch3d is installed")
def test_pytorch3d_backend_without_pytorch3d_says_so(rig):
    with pytest.raises(ConfigError, match="pytorch3d is not installed"):
        render_layout(rig, [frame([CAR])], backend="pytorch3d")


@pytest.mark.skipif(not render.pytorch3d_available(), reason="pytorch3d is not installed (no Linux wheel on PyPI)")
def test_pytorch3d_and_open3d_backends_agree(rig):
    crossing = (12.0, 3.0, 0.9, 1.9, 4.5, 1.8, -1.2)
    frames = [frame([CAR, crossing]), frame([CAR], world_from_ego=ego_pose(y=3.5))]
    open3d_maps = render_layout(rig, frames, backend="open3d")
    pytorch3d_maps = render_layout(rig, frames, backend="pytorch3d")
    # Pixels on a silhouette edge may go either way; everything else must match.
    assert (np.abs(open3d_maps - pytorch3d_maps) > 1e-3).mean() < 0.01


def test_frames_from_a_clip_map_store_names_and_keep_each_frames_boxes():
    clip = {
        "world_from_ego": np.stack([ego_pose(x=t) for t in range(4)]), "ego_from_cam": np.tile(np.eye(4), (2, 1, 1)),
        "boxes": np.array([[10, 0, 1, 2, 4, 2, 0, 0, 0, 1], [11, 0, 1, 2, 4, 2, 0, 0, 0, 1],
                           [12, 0, 1, 2, 4, 2, 0, 0, 0, 1], [5, 5, 1, 1, 1, 2, 0, 0, 0, 1]], np.float32),
        "box_offsets": np.array([0, 1, 2, 4, 4]), "box_category": np.array([1, 1, 1, 0]),
        "box_track": np.array([7, 7, 7, 8]),
        "polylines": np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 2, 0], [1, 2, 0]], np.float32),
        "poly_offsets": np.array([0, 2, 4, 6]), "poly_type": np.array([0, 2, 1]),
    }
    frames = layout_frames_from_clip(clip, ["human.pedestrian.adult", "vehicle.car"],
                                     ["lane", "road_edge", "lane_divider"], start=1, stop=4)
    assert len(frames) == 3
    np.testing.assert_array_equal(frames[0].world_from_ego, ego_pose(x=1))
    assert [len(f.boxes) for f in frames] == [1, 2, 0]
    assert frames[1].categories == ["vehicle.car", "human.pedestrian.adult"]
    assert frames[1].boxes.shape == (2, 7) and frames[1].boxes[0, 0] == 12
    assert frames[0].poly_types == ["lane", "lane_divider", "road_edge"]  # the dense maps draw dividers
    np.testing.assert_array_equal(frames[0].polylines[2], clip["polylines"][4:6])


def test_frames_from_a_clip_carry_each_cameras_pose_and_each_boxs_rotation():
    poses = np.stack([ego_pose(x=t) for t in range(3)])
    per_camera = np.stack([poses, poses + np.array([[0, 0, 0, 0.3]] + [[0] * 4] * 3)], axis=1)  # [3, 2, 4, 4]
    rotations = np.array([[1, 0, 0, 0], [0.6, 0.8, 0, 0]], np.float32)
    clip = {"world_from_ego": poses, "world_from_ego_cam": per_camera, "ego_from_cam": np.tile(np.eye(4), (2, 1, 1)),
            "boxes": np.zeros((2, 10), np.float32), "box_rotation": rotations, "box_offsets": np.array([0, 0, 1, 2]),
            "box_category": np.array([0, 0]), "polylines": np.zeros((0, 3), np.float32),
            "poly_offsets": np.array([0]), "poly_type": np.zeros(0, np.int64)}
    frames = layout_frames_from_clip(clip, ["vehicle.car"], ["lane"], start=1, views=[1])
    assert len(frames) == 2
    np.testing.assert_array_equal(frames[0].world_from_ego_cam, per_camera[1, [1]])
    np.testing.assert_array_equal(frames[1].box_rotation, rotations[1:])
    old = {name: value for name, value in clip.items() if name not in ("world_from_ego_cam", "box_rotation")}
    frames = layout_frames_from_clip(old, ["vehicle.car"], ["lane"])  # a drivesim-clips/1 clip
    np.testing.assert_array_equal(frames[2].world_from_ego_cam, poses[[2, 2]])
    np.testing.assert_array_equal(frames[2].box_rotation, [[1, 0, 0, 0]])
