"""Camera geometry: poses, projection, per-pixel (Plücker) rays, epipolar geometry, 3D boxes. Camera rigs
are in rigs.py.

Functions take numpy arrays or torch tensors with any leading batch dims and return the type given.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

__all__ = [
    "box_corners", "box_rotation_matrices", "camera_rays", "compose", "crop_intrinsics", "fundamental_matrix",
    "invert", "matrix_from_quaternion", "matrix_from_yaw", "pixel_grid", "plucker_rays", "project",
    "quaternion_from_matrix", "resize_intrinsics", "slerp", "transform_from", "transform_points",
    "translation_rotation_from", "unproject", "yaw_from_matrix",
]


# ---------------------------------------------------------------- numpy / torch in, same out


def _torch_dtype(value: np.ndarray | np.generic | torch.Tensor) -> torch.dtype:
    return value.dtype if isinstance(value, torch.Tensor) else torch.from_numpy(np.empty(0, value.dtype)).dtype


def _float_dtype(values: list[np.ndarray | torch.Tensor]) -> torch.dtype:
    """The floating dtype the caller's arrays promote to; integers promote to the default float."""
    dtype = functools.reduce(torch.promote_types, map(_torch_dtype, values), torch.bool)
    if dtype.is_floating_point:
        return dtype
    # numpy's default float is float64, torch's is float32: follow the caller's library.
    return torch.get_default_dtype() if any(isinstance(v, torch.Tensor) for v in values) else torch.float64


def _to_tensor(value, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    array = np.asarray(value)
    # torch refuses flipped views and warns on read-only arrays (such as a Camera's): copy those.
    if not array.flags.writeable or (array.ndim and min(array.strides) < 0):
        array = array.copy()
    return torch.as_tensor(array, device=device).to(dtype)


def _numpy_or_torch(num_arrays: int | None = None):
    """Run a torch implementation on numpy or torch inputs and answer in the caller's type.

    The first `num_arrays` positional arguments (all when None) are arrays; the rest pass through.
    Torch wins if any array is a tensor (its device is used). Half precision is computed in
    float32, because linalg.inv and friends have no half kernels, and cast back.
    """

    def decorate(implementation):
        @functools.wraps(implementation)
        def wrapper(*args, **kwargs):
            count = len(args) if num_arrays is None else num_arrays
            arrays, rest = args[:count], args[count:]
            tensors = [a for a in arrays if isinstance(a, torch.Tensor)]
            typed = tensors + [a for a in arrays if isinstance(a, (np.ndarray, np.generic))]
            out_dtype = _float_dtype(typed)
            compute_dtype = out_dtype if out_dtype in (torch.float32, torch.float64) else torch.float32
            device = tensors[0].device if tensors else torch.device("cpu")
            converted = [_to_tensor(a, compute_dtype, device) for a in arrays]
            result = implementation(*converted, *rest, **kwargs)

            def back(tensor: torch.Tensor):
                tensor = tensor.to(out_dtype)
                return tensor if tensors else tensor.detach().cpu().numpy()

            return tuple(back(r) for r in result) if isinstance(result, tuple) else back(result)

        return wrapper

    return decorate


# ---------------------------------------------------------------- rotations and rigid transforms


@_numpy_or_torch()
def matrix_from_quaternion(q):
    """(..., 4) quaternion (w, x, y, z), normalised here -> (..., 3, 3) rotation matrix."""
    w, x, y, z = (q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


@_numpy_or_torch()
def quaternion_from_matrix(rotation):
    """(..., 3, 3) rotation -> (..., 4) unit quaternion (w, x, y, z) with w >= 0.

    Shepperd's method: of the four ways to read the quaternion off the matrix, use the one
    dividing by the largest of |w|, |x|, |y|, |z|, so no branch divides by a value near zero.
    """
    m = rotation
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Each name holds 4 times that product of quaternion components: ww = 4 w^2, wx = 4 w x, ...
    ww, xx, yy, zz = 1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22
    wx, wy, wz = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    xy, xz, yz = m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2]
    # Row i is 4 q_i q: the quaternion up to a scale, read off with q_i as the pivot.
    rows = [[ww, wx, wy, wz], [wx, xx, xy, xz], [wy, xy, yy, yz], [wz, xz, yz, zz]]
    candidates = torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)
    best = torch.stack([ww, xx, yy, zz], dim=-1).argmax(dim=-1, keepdim=True)  # >= 1: the 4 sum to 4
    q = torch.take_along_dim(candidates, best[..., None], dim=-2).squeeze(-2)
    q = q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


@_numpy_or_torch()
def slerp(q0, q1, amount):
    """(..., 4) quaternions (w, x, y, z), amount (...,) in [0, 1] -> (..., 4) unit quaternion turning at a
    constant rate from q0 (amount 0) to q1 (amount 1, up to sign) along the shorter arc (q and -q are one
    rotation)."""
    q0 = q0 / torch.linalg.vector_norm(q0, dim=-1, keepdim=True)
    q1 = q1 / torch.linalg.vector_norm(q1, dim=-1, keepdim=True)
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)
    # The angle between the two as 4-vectors, from atan2: acos of their dot product loses small angles.
    angle = 2 * torch.atan2(torch.linalg.vector_norm(q0 - q1, dim=-1, keepdim=True),
                            torch.linalg.vector_norm(q0 + q1, dim=-1, keepdim=True))
    amount = amount[..., None]
    sin = torch.sin(angle)
    tiny = sin < 1e-9  # (nearly) the same rotation: the straight line is exact to rounding
    w0 = torch.where(tiny, 1 - amount, torch.sin((1 - amount) * angle) / torch.where(tiny, 1.0, sin))
    w1 = torch.where(tiny, amount, torch.sin(amount * angle) / torch.where(tiny, 1.0, sin))
    q = w0 * q0 + w1 * q1
    return q / torch.linalg.vector_norm(q, dim=-1, keepdim=True)


@_numpy_or_torch()
def transform_from(translation, rotation_wxyz):
    """(..., 3) translation, (..., 4) quaternion -> (..., 4, 4) rigid transform."""
    rotation = matrix_from_quaternion(rotation_wxyz)
    batch = torch.broadcast_shapes(translation.shape[:-1], rotation.shape[:-2])
    top = torch.cat([rotation.expand(*batch, 3, 3), translation.expand(*batch, 3)[..., None]], dim=-1)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=top.dtype, device=top.device).expand(*batch, 1, 4)
    return torch.cat([top, bottom], dim=-2)


@_numpy_or_torch()
def translation_rotation_from(transform):
    """(..., 4, 4) rigid transform -> (translation (..., 3), quaternion (..., 4) wxyz, w >= 0)."""
    return transform[..., :3, 3].clone(), quaternion_from_matrix(transform[..., :3, :3])


@_numpy_or_torch()
def matrix_from_yaw(yaw):
    """(...,) yaw in radians -> (..., 3, 3) rotation about +z (counter-clockwise seen from above)."""
    cos, sin = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    rows = [cos, -sin, zero, sin, cos, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


@_numpy_or_torch()
def yaw_from_matrix(rotation):
    """(..., 3, 3) rotation -> (...,) heading of its x axis in (-pi, pi]."""
    return torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])


@_numpy_or_torch()
def compose(*transforms):
    """compose(a_from_b, b_from_c, ...) -> a_from_c (matrix product, batch dims broadcast)."""
    if not transforms:
        raise ValueError("compose needs at least one transform")
    # Start from a copy: with one transform, numpy callers would otherwise get their own array back.
    return functools.reduce(torch.matmul, transforms[1:], transforms[0].clone())


@_numpy_or_torch()
def invert(a_from_b):
    """Rigid (..., 4, 4) a_from_b -> b_from_a, as [R^T, -R^T t]: exact for rotations, unlike inv."""
    rotation_t = a_from_b[..., :3, :3].transpose(-1, -2)
    translation = -(rotation_t @ a_from_b[..., :3, 3:])
    bottom = a_from_b[..., 3:, :].new_tensor([0.0, 0.0, 0.0, 1.0]).expand_as(a_from_b[..., 3:, :])
    return torch.cat([torch.cat([rotation_t, translation], dim=-1), bottom], dim=-2)


@_numpy_or_torch()
def transform_points(a_from_b, points_b):
    """(..., 4, 4) a_from_b, (..., N, 3) points in b -> (..., N, 3) points in a."""
    return points_b @ a_from_b[..., :3, :3].transpose(-1, -2) + a_from_b[..., None, :3, 3]


# ---------------------------------------------------------------- pinhole cameras


@_numpy_or_torch()
def project(intrinsics, points_cam):
    """(..., 3, 3) K, (..., N, 3) camera-frame points -> (pixels (..., N, 2), depth (..., N)).

    Depth is the z coordinate. Points with depth <= 0 are behind the camera and get meaningless
    pixels: mask them with `depth > 0`.
    """
    homogeneous = points_cam @ intrinsics.transpose(-1, -2)
    return homogeneous[..., :2] / homogeneous[..., 2:], points_cam[..., 2]


@_numpy_or_torch()
def unproject(intrinsics, pixels, depth):
    """(..., 3, 3) K, (..., N, 2) pixels, (..., N) depth (z) -> (..., N, 3) camera-frame points."""
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)
    return (homogeneous @ torch.linalg.inv(intrinsics).transpose(-1, -2)) * depth[..., None]


def pixel_grid(width: int, height: int, like: np.ndarray | torch.Tensor | None = None):
    """(H, W, 2) pixel centres (u, v) = (column, row), OpenCV convention (first centre at 0, 0).

    Returns a float32 CPU torch tensor, or, given `like`, the type of `like`: a numpy array, or a
    tensor on like's device; like's dtype when it is floating.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"pixel_grid needs a positive size, got {width}x{height}")
    dtype = _torch_dtype(like) if like is not None else torch.float32
    dtype = dtype if dtype.is_floating_point else torch.float32
    device = like.device if isinstance(like, torch.Tensor) else torch.device("cpu")
    rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    grid = torch.stack([cols, rows], dim=-1).to(device=device, dtype=dtype)
    return grid.numpy() if isinstance(like, np.ndarray) else grid


@_numpy_or_torch(num_arrays=1)
def camera_rays(intrinsics, width: int, height: int):
    """(..., 3, 3) K -> (..., H, W, 3) unit ray directions through pixel centres, camera frame."""
    pixels = pixel_grid(width, height, like=intrinsics)
    homogeneous = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)  # (H, W, 3)
    # (H, W, 3) @ (..., 1, 3, 3) broadcasts to (..., H, W, 3) without a copy of the grid per view.
    directions = homogeneous @ torch.linalg.inv(intrinsics).transpose(-1, -2)[..., None, :, :]
    return directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True)


@_numpy_or_torch(num_arrays=2)
def plucker_rays(intrinsics, world_from_cam, width: int, height: int):
    """(..., 3, 3) K, (..., 4, 4) world_from_cam -> (..., H, W, 6) Plücker rays per pixel.

    Channels: unit direction in the world frame (3), then moment = origin x direction (3), the
    same for any point of the ray taken as origin. Rays carry intrinsics and pose per pixel, so
    the world model conditions on any rig the same way.
    """
    directions_cam = camera_rays(intrinsics, width, height)  # (..., H, W, 3)
    # (..., H, W, 3) @ (..., 1, 3, 3): rotate every pixel's ray into the world frame.
    directions = directions_cam @ world_from_cam[..., None, :3, :3].transpose(-1, -2)
    origin = world_from_cam[..., None, None, :3, 3]
    moments = torch.linalg.cross(origin.expand_as(directions), directions, dim=-1)
    return torch.cat([directions, moments], dim=-1)


def _skew(vector: torch.Tensor) -> torch.Tensor:
    """(..., 3) t -> (..., 3, 3) [t]x, so that [t]x v = t x v."""
    x, y, z = vector.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


@_numpy_or_torch()
def fundamental_matrix(intrinsics1, intrinsics2, cam2_from_cam1):
    """F (..., 3, 3) with x2^T F x1 = 0 for homogeneous pixels x1 in camera 1, x2 in camera 2."""
    essential = _skew(cam2_from_cam1[..., :3, 3]) @ cam2_from_cam1[..., :3, :3]
    return torch.linalg.inv(intrinsics2).transpose(-1, -2) @ essential @ torch.linalg.inv(intrinsics1)


def _remap_pixels(intrinsics, scale_x, scale_y, offset_x, offset_y):
    """K for the image whose pixels are u' = scale_x u + offset_x, v' = scale_y v + offset_y."""
    last = intrinsics[..., 2, :]  # (0, 0, 1): adds the offsets to the cx, cy column
    row_u = intrinsics[..., 0, :] * scale_x[..., None] + offset_x[..., None] * last
    row_v = intrinsics[..., 1, :] * scale_y[..., None] + offset_y[..., None] * last
    return torch.stack(torch.broadcast_tensors(row_u, row_v, last), dim=-2)


@_numpy_or_torch()
def resize_intrinsics(intrinsics, scale_x, scale_y):
    """K of the image resized by (scale_x, scale_y) (scalars or (...,)).

    Pixel centres map as u' = (u + 0.5) * scale_x - 0.5, because pixel edges, not centres, scale.
    """
    return _remap_pixels(intrinsics, scale_x, scale_y, 0.5 * scale_x - 0.5, 0.5 * scale_y - 0.5)


@_numpy_or_torch()
def crop_intrinsics(intrinsics, left, top):
    """K of the crop whose top-left pixel is (left, top) of the original image."""
    return _remap_pixels(intrinsics, torch.ones_like(left), torch.ones_like(top), -left, -top)


# ---------------------------------------------------------------- 3D boxes


def box_rotation_matrices(boxes: np.ndarray, rotations: np.ndarray | None = None) -> np.ndarray:
    """[N, 3, 3] world_from_box rotations: from quaternions [N, 4] (w, x, y, z) when given, else from
    the yaw column of boxes [N, >=7]."""
    if rotations is not None:
        return matrix_from_quaternion(np.asarray(rotations, np.float64))
    return matrix_from_yaw(np.asarray(boxes[:, 6], np.float64))


def box_corners(boxes: np.ndarray, rotations: np.ndarray | None = None) -> np.ndarray:
    """[N, 8, 3] corners in the world frame of boxes [N, >=7] (centre, wlh, yaw), turned by `rotations`
    [N, 4] (w, x, y, z) when given, else by the yaw; 0-3 the front face."""
    w, l, h = boxes[:, 3:4], boxes[:, 4:5], boxes[:, 5:6]
    # The devkit's corner order (Box.corners), so drawings match nuScenes tools.
    x = l / 2 * np.array([1, 1, 1, 1, -1, -1, -1, -1])
    y = w / 2 * np.array([1, -1, -1, 1, 1, -1, -1, 1])
    z = h / 2 * np.array([1, 1, -1, -1, 1, 1, -1, -1])
    local = np.stack([x, y, z], axis=-1)  # [N, 8, 3] in the box frame
    rotation = box_rotation_matrices(boxes, rotations)
    return np.einsum("nij,nkj->nki", rotation, local) + np.asarray(boxes[:, None, :3], np.float64)
