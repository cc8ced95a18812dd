"""Timed trajectories of the ego and the other road users, and what road users can physically do.

Trajectories are shape-preserving cubic splines (PCHIP) through the waypoints: continuous velocity, and no
overshoot, so a car that stops at a waypoint does not roll back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from drivesim.geometry import matrix_from_quaternion, matrix_from_yaw

CHECK_HZ = 50.0  # kinematic limits are checked on this grid, not only at the frames
MOVING = 0.3  # m/s: below this, a heading taken from the direction of travel holds its last value


@dataclass(frozen=True)
class Limits:
    """What a road user can physically do."""

    speed: float         # m/s
    acceleration: float  # m/s^2, magnitude: braking, accelerating and cornering together
    yaw_rate: float      # rad/s


VEHICLE_LIMITS = Limits(speed=70.0, acceleration=12.0, yaw_rate=2.0)
PEDESTRIAN_LIMITS = Limits(speed=12.0, acceleration=8.0, yaw_rate=2 * math.pi)
ANIMAL_LIMITS = Limits(speed=25.0, acceleration=15.0, yaw_rate=2 * math.pi)


def limits_for(category: str | None) -> Limits:
    """The ego (None) and vehicles get car limits; people and animals their own."""
    if category is not None and category.startswith("human."):
        return PEDESTRIAN_LIMITS
    return ANIMAL_LIMITS if category == "animal" else VEHICLE_LIMITS


def _frozen(array, dtype=np.float64) -> np.ndarray:
    array = np.array(array, dtype=dtype)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Timed poses. Positions are the ego's rear axle or an agent's box bottom centre, world frame.

    Orientation: `yaws` [K], or `rotations` [K, 4] (w, x, y, z; full poses, as logs give), or
    neither: the heading then follows the direction of travel.
    """

    times: np.ndarray                    # float64 [K], strictly increasing
    positions: np.ndarray                # float64 [K, 3]
    yaws: np.ndarray | None = None       # float64 [K] radians
    rotations: np.ndarray | None = None  # float64 [K, 4]

    def __post_init__(self):
        object.__setattr__(self, "times", _frozen(self.times).reshape(-1))
        object.__setattr__(self, "positions", _frozen(self.positions).reshape(-1, 3))
        if self.yaws is not None:
            object.__setattr__(self, "yaws", _frozen(self.yaws).reshape(-1))
        if self.rotations is not None:
            object.__setattr__(self, "rotations", _frozen(self.rotations).reshape(-1, 4))

    @classmethod
    def from_xy(cls, times, xy, yaws=None, z=0.0) -> Trajectory:
        """Waypoints on the ground: times [K], xy [K, 2], optional yaws [K]."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return cls(times, np.column_stack([xy, np.full(len(xy), z)]), yaws)

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong) for malformed arrays, else None."""
        count = len(self.times)
        if count < 1 or len(self.positions) != count:
            return "waypoints", f"needs matching times and positions, got {count} and {len(self.positions)}"
        for name in ("yaws", "rotations"):
            value = getattr(self, name)
            if value is not None and len(value) != count:
                return name, f"has {len(value)} entries for {count} waypoints"
        if self.yaws is not None and self.rotations is not None:
            return "waypoints", "gives both yaw and full rotations; give one"
        for name in ("times", "positions", "yaws", "rotations"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                index = int(np.flatnonzero(~np.isfinite(value.reshape(count, -1)).all(axis=1))[0])
                return f"waypoints[{index}]", f"has a value that is not a finite number ({name})"
        steps = np.diff(self.times)
        if (steps <= 0).any():
            index = int(np.flatnonzero(steps <= 0)[0]) + 1
            return (f"waypoints[{index}].t", f"times must increase: {self.times[index]:g} s follows "
                                             f"{self.times[index - 1]:g} s")
        if self.rotations is not None and (np.abs(np.linalg.norm(self.rotations, axis=1) - 1) > 1e-2).any():
            return "rotations", "must be unit quaternions (w, x, y, z)"
        return None

    @cached_property
    def _position_spline(self):
        from scipy.interpolate import PchipInterpolator

        return PchipInterpolator(self.times, self.positions, axis=0, extrapolate=False)

    @cached_property
    def _yaw_spline(self):
        from scipy.interpolate import PchipInterpolator

        return PchipInterpolator(self.times, np.unwrap(self.yaws), extrapolate=False)

    @cached_property
    def _rotation_spline(self):
        from scipy.spatial.transform import Rotation, RotationSpline

        return RotationSpline(self.times, Rotation.from_quat(self.rotations[:, [1, 2, 3, 0]]))

    def _clamped(self, times) -> np.ndarray:
        # Before its first waypoint and after its last, a trajectory holds its pose.
        return np.clip(np.asarray(times, dtype=np.float64), self.start, self.end)

    def position(self, times) -> np.ndarray:
        """[F] seconds -> [F, 3]."""
        times = self._clamped(times)
        if len(self.times) == 1:
            return np.repeat(self.positions, len(times), axis=0)
        return self._position_spline(times)

    def velocity(self, times) -> np.ndarray:
        """[F] -> [F, 3] m/s (zero outside the waypoints' span)."""
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros((len(times), 3))
        inside = (times >= self.start) & (times <= self.end)
        return self._position_spline.derivative(1)(self._clamped(times)) * inside[:, None]

    def acceleration(self, times) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros((len(times), 3))
        inside = (times >= self.start) & (times <= self.end)
        return self._position_spline.derivative(2)(self._clamped(times)) * inside[:, None]

    @cached_property
    def _travel_headings(self) -> tuple[np.ndarray, np.ndarray]:
        """Headings of travel on a fixed grid, slow samples filled from their neighbours."""
        grid = np.linspace(self.start, self.end, max(2, math.ceil((self.end - self.start) * CHECK_HZ) + 1))
        velocity = self.velocity(grid)
        moving = np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING
        if not moving.any():
            return grid, np.zeros(len(grid))
        heading = np.arctan2(velocity[:, 1], velocity[:, 0])
        index = np.flatnonzero(moving)
        nearest = index[np.clip(np.searchsorted(index, np.arange(len(grid))), 0, len(index) - 1)]
        heading = np.where(moving, heading, heading[nearest])
        return grid, np.unwrap(heading)

    def moves(self) -> bool:
        if len(self.times) == 1:
            return False
        grid = np.linspace(self.start, self.end, max(2, math.ceil((self.end - self.start) * CHECK_HZ) + 1))
        velocity = self.velocity(grid)
        return bool((np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING).any())

    def rotation(self, times) -> np.ndarray:
        """[F] -> [F, 3, 3] world_from_body rotations."""
        times = self._clamped(times)
        if self.rotations is not None:
            if len(self.times) == 1:
                return np.repeat(matrix_from_quaternion(self.rotations), len(times), axis=0)
            return self._rotation_spline(times).as_matrix()
        return matrix_from_yaw(self.yaw(times))

    def yaw(self, times) -> np.ndarray:
        """[F] -> [F] heading in radians (unwrapped)."""
        times = self._clamped(times)
        if self.rotations is not None:
            rotation = self.rotation(times)
            return np.arctan2(rotation[:, 1, 0], rotation[:, 0, 0])
        if self.yaws is not None:
            return np.repeat(self.yaws, len(times)) if len(self.times) == 1 else self._yaw_spline(times)
        if len(self.times) == 1:
            return np.zeros(len(times))
        grid, heading = self._travel_headings
        velocity = self.velocity(times)
        # Interpolating the grid everywhere keeps headings continuous; exact tangents where moving.
        interpolated = np.interp(times, grid, heading)
        exact = np.arctan2(velocity[:, 1], velocity[:, 0])
        exact = interpolated + (exact - interpolated + math.pi) % (2 * math.pi) - math.pi
        return np.where(np.hypot(velocity[:, 0], velocity[:, 1]) > MOVING, exact, interpolated)

    def yaw_rate(self, times) -> np.ndarray:
        times = np.asarray(times, dtype=np.float64)
        if len(self.times) == 1:
            return np.zeros(len(times))
        inside = (times >= self.start) & (times <= self.end)
        if self.rotations is not None:
            rate = np.linalg.norm(self._rotation_spline(self._clamped(times), 1), axis=1)
        elif self.yaws is not None:
            rate = self._yaw_spline.derivative(1)(self._clamped(times))
        else:
            grid, heading = self._travel_headings
            rate = np.interp(self._clamped(times), grid, np.gradient(heading, grid))
        return rate * inside

    def mapped(self, positions=None, yaws=None, rotations=None, times=None) -> Trajectory:
        """A copy with some arrays replaced (edits)."""
        return Trajectory(self.times if times is None else times,
                          self.positions if positions is None else positions,
                          self.yaws if yaws is None else yaws,
                          self.rotations if rotations is None else rotations)
