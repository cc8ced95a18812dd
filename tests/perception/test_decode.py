"""Boxes projected into cameras as targets and lifted back by the decoder land where they were."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivesim.perception.categories import CLASSES
from drivesim.perception.decode import Detections, decode_frame, merge
from drivesim.perception.targets import encode_frame
from perception_helpers import camera, perfect_maps

WIDTH, HEIGHT = 256, 128
angles = st.floats(-np.pi, np.pi, allow_nan=False)


def _box_in_view(azimuth, bearing, distance, yaw, size, velocity, height):
    """A box [9] (ego frame) `distance` m along `bearing` (radians off the camera's axis), on the ground."""
    direction = azimuth + bearing
    centre = [0.5 + distance * np.cos(direction), distance * np.sin(direction), height / 2 + size[2] / 2 - 1.0]
    return np.array([*centre, *size, yaw, *velocity])


@settings(max_examples=60, deadline=None)
@given(azimuth=angles, pitch=st.floats(-0.1, 0.15), focal=st.floats(80, 200), bearing=st.floats(-0.5, 0.5),
       distance=st.floats(4, 50), yaw=angles, label=st.integers(0, len(CLASSES) - 1),
       size=st.tuples(st.floats(0.4, 3), st.floats(0.4, 12), st.floats(0.7, 4)),
       velocity=st.tuples(st.floats(-15, 15), st.floats(-15, 15)))
def test_a_box_projected_into_a_camera_and_lifted_back_lands_where_it_was(azimuth, pitch, focal, bearing, distance,
                                                                          yaw, label, size, velocity):
    intrinsics, ego_from_cam = camera(azimuth, pitch, focal=focal)
    box = _box_in_view(azimuth, bearing * 60 / focal, distance, yaw, size, velocity, 1.5)
    targets = encode_frame(box[None], np.array([label]), intrinsics[None], ego_from_cam[None], WIDTH, HEIGHT,
                           len(CLASSES))
    if targets["mask"].sum() == 0:  # centre outside the image (a steep pitch): nothing to lift
        return
    maps = perfect_maps(targets)
    found = decode_frame(maps["heatmap"][0], maps["regression"][0], intrinsics[None], ego_from_cam[None])
    assert len(found) == 1 and found.labels[0] == label
    lifted = found.boxes[0]
    np.testing.assert_allclose(lifted[:3], box[:3], atol=2e-3 * distance)   # float32 regression, metres
    np.testing.assert_allclose(lifted[3:6], box[3:6], rtol=1e-4)
    assert abs(np.angle(np.exp(1j * (lifted[6] - box[6])))) < 1e-4
    np.testing.assert_allclose(lifted[7:9], box[7:9], atol=1e-4)


def test_boxes_seen_by_two_cameras_come_out_once():
    """Cameras 60 degrees apart overlap; a box in the overlap is decoded from both and merged."""
    cameras = [camera(0.0, focal=100), camera(np.radians(60), focal=100)]
    intrinsics = np.stack([k for k, _ in cameras])
    ego_from_cam = np.stack([e for _, e in cameras])
    boxes = np.array([[15 * np.cos(0.5), 15 * np.sin(0.5), 0.3, 1.9, 4.5, 1.6, 0.3, 5.0, 0.0],
                      [20.0, -3.0, 0.3, 1.9, 4.5, 1.6, 0.0, 0.0, 0.0]])
    targets = encode_frame(boxes, np.array([0, 0]), intrinsics, ego_from_cam, WIDTH, HEIGHT, len(CLASSES))
    assert targets["mask"][0].sum() == 2 and targets["mask"][1].sum() == 1  # the first is in both images
    maps = perfect_maps(targets)
    found = decode_frame(maps["heatmap"][0], maps["regression"][0], intrinsics, ego_from_cam)
    assert len(found) == 2
    order = np.argsort(found.boxes[:, 1])[::-1]
    np.testing.assert_allclose(found.boxes[order, :3], boxes[:, :3], atol=0.05)


def test_merging_keeps_the_best_of_near_boxes_of_a_class_and_every_class_apart():
    boxes = np.zeros((4, 9))
    boxes[:, :2] = [[10, 0], [10.3, 0], [10.3, 0], [30, 0]]
    found = merge(Detections(boxes, np.array([0.5, 0.9, 0.4, 0.3]), np.array([0, 0, 4, 0])))
    assert found.scores.tolist() == [0.9, 0.4, 0.3]
    assert found.labels.tolist() == [0, 4, 0]
