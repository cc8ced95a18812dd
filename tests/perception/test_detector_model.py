"""The detector network: any rig (each camera's output depends on that camera alone), within its size budget."""

import numpy as np
import pytest
import torch

from drivesim.errors import ConfigError
from drivesim.perception.model import CameraDetector, DetectorConfig
from perception_helpers import camera

TINY = DetectorConfig(channels=(8, 16, 16, 32), blocks=(1, 1, 1, 1), neck=16, head=16)


def _rig(azimuths, pitch=0.0):
    cameras = [camera(a, pitch, width=64, height_px=32, focal=40) for a in azimuths]
    return (torch.tensor(np.stack([k for k, _ in cameras]), dtype=torch.float32)[None],
            torch.tensor(np.stack([e for _, e in cameras]), dtype=torch.float32)[None])


def test_a_cameras_output_depends_on_its_own_image_and_rays_alone():
    torch.manual_seed(0)
    model = CameraDetector(TINY).eval()
    images = torch.rand(1, 3, 3, 32, 64) * 2 - 1
    intrinsics, ego_from_cam = _rig([0.0, 1.0, -1.0])
    with torch.no_grad():
        three = model(images, intrinsics, ego_from_cam)
        one = model(images[:, 1:2], intrinsics[:, 1:2], ego_from_cam[:, 1:2])
    torch.testing.assert_close(one["heatmap"][:, 0], three["heatmap"][:, 1])
    torch.testing.assert_close(one["regression"][:, 0], three["regression"][:, 1])


def test_cameras_that_differ_only_in_azimuth_look_alike_to_it():
    torch.manual_seed(0)
    model = CameraDetector(TINY).eval()
    image = torch.rand(1, 1, 3, 32, 64) * 2 - 1
    with torch.no_grad():
        front = model(image, *_rig([0.0]))
        back = model(image, *_rig([np.pi]))
        tilted = model(image, *_rig([0.0], pitch=0.2))
    torch.testing.assert_close(front["regression"], back["regression"], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(front["regression"], tilted["regression"], atol=1e-3)


def test_the_default_network_has_1_to_3_million_weights_under_10_mb():
    count = sum(p.numel() for p in CameraDetector(DetectorConfig()).parameters())
    assert 1e6 <= count <= 3e6 and count * 4 < 10 * 2**20


def test_images_whose_sides_are_not_multiples_of_32_are_refused():
    with pytest.raises(ConfigError, match="multiples of 32"):
        CameraDetector(TINY)(torch.zeros(1, 1, 3, 30, 64), *_rig([0.0]))
