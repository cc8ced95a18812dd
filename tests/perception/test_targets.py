"""CenterNet targets: a peak per object at its centre cell, the nearer object kept where two share a cell, and a
mirrored image's targets equal to those of the mirrored world."""

import numpy as np

from drivesim.perception.categories import CLASSES
from drivesim.perception.targets import (REGRESSION, STRIDE, boxes_in_frame, encode_camera, flip_targets,
                                         visible_in_any)
from perception_helpers import camera

WIDTH, HEIGHT = 256, 128


def _car(x, y, yaw=0.3, velocity=(4.0, -1.0)):
    return np.array([x, y, 0.8, 1.9, 4.5, 1.6, yaw, *velocity])


def test_each_object_peaks_at_one_on_its_class_map_at_its_centre_cell():
    intrinsics, ego_from_cam = camera(0.0)
    boxes = np.stack([_car(20, 2), _car(12, -3)])
    heatmap, regression, mask = encode_camera(boxes, np.array([0, 4]), intrinsics, ego_from_cam, WIDTH, HEIGHT,
                                              len(CLASSES))
    assert heatmap.shape == (len(CLASSES), HEIGHT // STRIDE, WIDTH // STRIDE)
    assert regression.shape == (len(REGRESSION), HEIGHT // STRIDE, WIDTH // STRIDE)
    assert mask.sum() == 2 and (heatmap == 1).sum() == 2
    assert heatmap[0].max() == 1 and heatmap[4].max() == 1 and heatmap[1:4].max() == 0
    assert (np.abs(regression[:2][:, mask > 0]) <= 0.5).all()  # sub-cell offsets


def test_boxes_behind_out_of_view_too_far_or_of_no_class_give_no_target():
    intrinsics, ego_from_cam = camera(0.0)
    boxes = np.stack([_car(-10, 0), _car(5, 30), _car(80, 0), _car(20, 0)])
    heatmap, _, mask = encode_camera(boxes, np.array([0, 0, 0, -1]), intrinsics, ego_from_cam, WIDTH, HEIGHT,
                                     len(CLASSES))
    assert mask.sum() == 0 and heatmap.max() == 0


def test_where_two_centres_share_a_cell_the_nearer_objects_values_stay():
    intrinsics, ego_from_cam = camera(0.0)
    near, far = _car(10, 0), _car(30, 0)
    near[2] = far[2] = 1.5  # at the camera's height: both centres on the horizon, on one pixel
    _, regression, mask = encode_camera(np.stack([near, far]), np.array([0, 0]), intrinsics, ego_from_cam, WIDTH,
                                        HEIGHT, len(CLASSES))
    assert mask.sum() == 1
    depth_channel = REGRESSION.index("log_depth")
    only_near = encode_camera(near[None], np.array([0]), intrinsics, ego_from_cam, WIDTH, HEIGHT, len(CLASSES))[1]
    assert regression[depth_channel][mask > 0] == only_near[depth_channel][mask > 0]


def test_the_targets_of_a_mirrored_image_are_those_of_the_mirrored_world():
    intrinsics, ego_from_cam = camera(0.0)  # principal point at the image centre, camera on the ego's x axis
    boxes = np.stack([_car(18, 3.0, yaw=0.7, velocity=(3.0, 2.0)), _car(30, -6.0, yaw=-2.0, velocity=(-1.0, 5.0))])
    labels = np.array([0, 1])
    mirror = np.diag([1.0, -1.0, 1.0, 1.0])  # y -> -y: the ego's x-z plane, which the camera looks along
    mirrored = boxes.copy()
    mirrored[:, 1] *= -1
    mirrored[:, 6] *= -1
    mirrored[:, 8] *= -1
    targets = dict(zip(("heatmap", "regression", "mask"),
                       encode_camera(boxes, labels, intrinsics, ego_from_cam, WIDTH, HEIGHT, len(CLASSES))))
    expected = encode_camera(mirrored, labels, intrinsics, mirror @ ego_from_cam @ np.diag([-1.0, 1, 1, 1]), WIDTH,
                             HEIGHT, len(CLASSES))
    flipped = flip_targets({name: value[None] for name, value in targets.items()})
    np.testing.assert_allclose(flipped["heatmap"][0], expected[0], atol=1e-6)
    np.testing.assert_allclose(flipped["regression"][0], expected[1], atol=1e-5)
    np.testing.assert_array_equal(flipped["mask"][0], expected[2])


def test_boxes_move_between_frames_with_their_heading_and_velocity():
    world_from_ego = np.eye(4)
    world_from_ego[:3, :3] = [[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]  # the ego heads along world +y
    world_from_ego[:3, 3] = [100.0, 200.0, 0.0]
    box = _car(10, 2, yaw=0.0, velocity=(5.0, 0.0))[None]
    in_world = boxes_in_frame(box, world_from_ego)
    np.testing.assert_allclose(in_world[0, :3], [98.0, 210.0, 0.8])
    np.testing.assert_allclose([in_world[0, 6], *in_world[0, 7:9]], [np.pi / 2, 0.0, 5.0], atol=1e-12)
    np.testing.assert_allclose(boxes_in_frame(in_world, np.linalg.inv(world_from_ego)), box, atol=1e-12)


def test_a_box_counts_as_seen_when_some_camera_has_its_centre_in_view():
    cameras = [camera(0.0), camera(np.pi)]
    intrinsics = np.stack([k for k, _ in cameras])
    ego_from_cam = np.stack([e for _, e in cameras])
    boxes = np.stack([_car(20, 0), _car(-20, 0), _car(0.5, 20)])  # ahead, behind, to the side (unseen)
    assert visible_in_any(boxes, intrinsics, ego_from_cam, WIDTH, HEIGHT).tolist() == [True, True, False]
