"""Triangle meshes of the town and of every agent, with a material, an albedo and
an instance id per triangle, ready for the ray-cast renderer.

Agent meshes are built in the box frame (x forward, y left, z up, origin at the
bottom centre) and fill their nuScenes box exactly, so the annotated box is
the tight box of what the cameras see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from drivesim.data.synth.town import CURB_HEIGHT, Town
from drivesim.data.synth.traffic import Agent


class Material(IntEnum):
    ASPHALT = 1
    PAINT = 2
    SIDEWALK = 3
    CURB = 4
    GRASS = 5
    WALL = 6
    ROOF = 7
    BODY = 8
    CABIN = 9  # glass sides, painted roof
    TYRE = 10
    HEADLIGHT = 11
    TAILLIGHT = 12
    CLOTH = 13
    SKIN = 14
    BARK = 15
    FOLIAGE = 16
    METAL = 17
    LAMP = 18
    CONE = 19
    TERRAIN = 20


@dataclass
class Mesh:
    vertices: np.ndarray  # (N, 3) float32
    triangles: np.ndarray  # (M, 3) int32
    material: np.ndarray  # (M,) int16
    albedo: np.ndarray  # (M, 3) float32, linear RGB
    instance: np.ndarray  # (M,) int32, agent id or 0 for the static world

    @staticmethod
    def empty() -> "Mesh":
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32), np.zeros(0, np.int16),
                    np.zeros((0, 3), np.float32), np.zeros(0, np.int32))

    def transformed(self, x: float, y: float, z: float, yaw: float, instance: int) -> "Mesh":
        c, s = np.cos(yaw), np.sin(yaw)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float32)
        vertices = self.vertices @ rotation.T + np.array([x, y, z], np.float32)
        instances = np.full(len(self.triangles), instance, np.int32)
        return Mesh(vertices, self.triangles, self.material, self.albedo, instances)


def merge(meshes: list[Mesh]) -> Mesh:
    meshes = [m for m in meshes if len(m.triangles)]
    if not meshes:
        return Mesh.empty()
    offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
    return Mesh(np.concatenate([m.vertices for m in meshes]).astype(np.float32),
                np.concatenate([m.triangles + o for m, o in zip(meshes, offsets)]).astype(np.int32),
                np.concatenate([m.material for m in meshes]).astype(np.int16),
                np.concatenate([m.albedo for m in meshes]).astype(np.float32),
                np.concatenate([m.instance for m in meshes]).astype(np.int32))


def _part(vertices, triangles, material, albedo) -> Mesh:
    vertices = np.asarray(vertices, np.float32)
    triangles = np.asarray(triangles, np.int32)
    n = len(triangles)
    materials = np.broadcast_to(np.asarray(material, np.int16), (n,)).copy()
    return Mesh(vertices, triangles, materials, np.broadcast_to(np.asarray(albedo, np.float32), (n, 3)).copy(),
                np.zeros(n, np.int32))


def hexahedron(bottom, top, material, albedo, side_material=None) -> Mesh:
    """A solid from a bottom and a top quad, both counter-clockwise seen from above."""
    vertices = np.concatenate([np.asarray(bottom, float), np.asarray(top, float)])
    triangles = [[4, 5, 6], [4, 6, 7], [0, 2, 1], [0, 3, 2]]
    for i in range(4):
        j = (i + 1) % 4
        triangles += [[i, j, 4 + j], [i, 4 + j, 4 + i]]
    mesh = _part(vertices, triangles, material, albedo)
    if side_material is not None:
        mesh.material[4:] = side_material
    return mesh


def box(x0, x1, y0, y1, z0, z1, material, albedo) -> Mesh:
    quad = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return hexahedron([(x, y, z0) for x, y in quad], [(x, y, z1) for x, y in quad], material, albedo)


def prism(polygon: np.ndarray, z0: float, z1: float, material, albedo, side_material=None) -> Mesh:
    """A convex polygon (counter-clockwise) extruded from z0 to z1: top fan plus side quads."""
    n = len(polygon)
    bottom = np.column_stack([polygon, np.full(n, z0)])
    top = np.column_stack([polygon, np.full(n, z1)])
    triangles = [[n, n + i, n + i + 1] for i in range(1, n - 1)]
    for i in range(n):
        j = (i + 1) % n
        triangles += [[i, j, n + j], [i, n + j, n + i]]
    mesh = _part(np.concatenate([bottom, top]), triangles, material, albedo)
    if side_material is not None:
        mesh.material[n - 2:] = side_material
    return mesh


def _circle(cx, cy, radius, segments=8, phase=0.0) -> np.ndarray:
    a = phase + np.linspace(0, 2 * np.pi, segments, endpoint=False)
    return np.column_stack([cx + radius * np.cos(a), cy + radius * np.sin(a)])


def wheel(x, y_inner, y_outer, radius, material, albedo, segments=12) -> Mesh:
    """A cylinder with its axis along y, standing on z = 0. A multiple of 4 sides puts vertices
    at its bottom, top, front and back, so it spans exactly x +- radius and z in [0, 2 radius]."""
    ring = _circle(x, radius, radius, segments, phase=-np.pi / 2)  # in the xz plane, touching z = 0
    mesh = prism(ring, y_inner, y_outer, material, albedo)
    mesh.vertices = mesh.vertices[:, [0, 2, 1]].copy()  # (x, z, y) -> (x, y, z)
    return mesh


def icosphere(centre, radius, material, albedo) -> Mesh:
    t = (1 + 5**0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t], [0, 1, -t],
                  [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], float)
    f = [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2], [10, 7, 6],
         [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10],
         [8, 6, 7], [9, 8, 1]]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return _part(np.asarray(centre) + v * np.asarray(radius), f, material, albedo)


def strip(points: np.ndarray, width: float, z: float, material, albedo) -> Mesh:
    """A flat ribbon along a 2D polyline (painted lines)."""
    points = np.asarray(points, float)
    tangent = np.gradient(points, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-9)
    normal = np.column_stack([-tangent[:, 1], tangent[:, 0]]) * width / 2
    left, right = points + normal, points - normal
    n = len(points)
    vertices = np.column_stack([np.concatenate([right, left]), np.full(2 * n, z)])
    triangles = [[i, i + 1, n + i + 1] for i in range(n - 1)] + [[i, n + i + 1, n + i] for i in range(n - 1)]
    return _part(vertices, triangles, material, albedo)


# ---- the town ---------------------------------------------------------------

PAINT_WHITE = (0.75, 0.75, 0.72)
PAINT_YELLOW = (0.75, 0.5, 0.08)
FACADES = [(0.55, 0.42, 0.32), (0.62, 0.58, 0.5), (0.35, 0.2, 0.15), (0.7, 0.68, 0.62), (0.4, 0.42, 0.45),
           (0.55, 0.3, 0.2), (0.75, 0.7, 0.55), (0.3, 0.33, 0.38)]


def _dashes(points: np.ndarray, dash: float = 3.0, gap: float = 9.0) -> list[np.ndarray]:
    start, end = points[0], points[-1]
    length = np.linalg.norm(end - start)
    direction = (end - start) / max(length, 1e-9)
    return [np.array([start + direction * s, start + direction * min(s + dash, length)])
            for s in np.arange(0.0, length - 0.5, dash + gap)]


def town_mesh(town: Town) -> Mesh:
    """Ground, road paint, raised blocks with curbs, buildings, trees and lamp posts."""
    w, h = town.size
    margin = 400.0
    parts = [box(0, w, 0, h, -0.2, 0.0, Material.ASPHALT, (0.09, 0.09, 0.09))]
    for x0, x1, y0, y1 in ((-margin, 0, -margin, h + margin), (w, w + margin, -margin, h + margin),
                           (0, w, -margin, 0), (0, w, h, h + margin)):
        parts.append(box(x0, x1, y0, y1, -0.2, 0.0, Material.TERRAIN, (0.12, 0.14, 0.06)))
    for marking in town.markings:
        if marking.kind == "double_yellow":
            for offset in (-0.12, 0.12):
                d = marking.points[-1] - marking.points[0]
                normal = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-9)
                parts.append(strip(marking.points + normal * offset, 0.12, 0.01, Material.PAINT, PAINT_YELLOW))
        elif marking.kind == "dashed_white":
            parts += [strip(p, 0.15, 0.01, Material.PAINT, PAINT_WHITE) for p in _dashes(marking.points)]
        elif marking.kind == "stop_line":
            parts.append(strip(marking.points, 0.45, 0.01, Material.PAINT, PAINT_WHITE))
        else:
            parts.append(strip(marking.points, 0.15, 0.01, Material.PAINT, PAINT_WHITE))
    for crosswalk in town.crosswalks:
        long_axis = crosswalk[1] - crosswalk[0]
        length = np.linalg.norm(long_axis)
        long_axis /= length
        across = crosswalk[3] - crosswalk[0]
        for s in np.arange(0.4, length - 0.4, 1.2):
            p = crosswalk[0] + long_axis * s
            parts.append(strip(np.array([p + across * 0.05, p + across * 0.95]), 0.6, 0.01, Material.PAINT,
                               PAINT_WHITE))
    for block in town.blocks:
        parts.append(prism(block.outline, 0.0, CURB_HEIGHT, Material.SIDEWALK, (0.32, 0.31, 0.29),
                           side_material=Material.CURB))
        if block.park:
            parts.append(prism(block.inner, CURB_HEIGHT, CURB_HEIGHT + 0.03, Material.GRASS, (0.09, 0.2, 0.05)))
    for building in town.buildings:
        bottom = np.column_stack([building.footprint, np.full(4, CURB_HEIGHT)])
        top = np.column_stack([building.footprint, np.full(4, CURB_HEIGHT + building.height)])
        mesh = hexahedron(bottom, top, Material.ROOF, (0.12, 0.12, 0.12), side_material=Material.WALL)
        mesh.albedo[4:] = FACADES[building.style % len(FACADES)]
        parts.append(mesh)
    for x, y, height in town.trees:
        parts.append(prism(_circle(x, y, 0.18, 6), CURB_HEIGHT, height * 0.55, Material.BARK, (0.09, 0.06, 0.035)))
        radius = height * 0.28
        parts.append(icosphere((x, y, height - radius), (radius, radius, radius * 0.9), Material.FOLIAGE,
                               (0.06, 0.16, 0.04)))
    for x, y, yaw in town.poles:
        parts.append(prism(_circle(x, y, 0.1, 6), CURB_HEIGHT, 7.6, Material.METAL, (0.2, 0.2, 0.21)))
        arm_end = np.array([x, y]) + 2.2 * np.array([np.cos(yaw), np.sin(yaw)])
        parts.append(strip(np.array([[x, y], arm_end]), 0.12, 7.5, Material.METAL, (0.2, 0.2, 0.21)))
        parts.append(box(arm_end[0] - 0.35, arm_end[0] + 0.35, arm_end[1] - 0.35, arm_end[1] + 0.35, 7.3, 7.5,
                         Material.LAMP, (0.7, 0.68, 0.6)))
    return merge(parts)


def lamp_positions(town: Town) -> np.ndarray:
    """Where the street lamps shine from (for night scenes), (K, 3)."""
    out = [(x + 2.2 * np.cos(yaw), y + 2.2 * np.sin(yaw), 7.25) for x, y, yaw in town.poles]
    return np.array(out) if out else np.zeros((0, 3))


# ---- agents -----------------------------------------------------------------

CAR_PAINTS = [(0.8, 0.8, 0.8), (0.03, 0.03, 0.03), (0.45, 0.46, 0.48), (0.2, 0.2, 0.22), (0.55, 0.04, 0.03),
              (0.05, 0.12, 0.4), (0.1, 0.2, 0.12), (0.6, 0.55, 0.42), (0.75, 0.75, 0.72), (0.3, 0.05, 0.05)]
CLOTHES = [(0.05, 0.05, 0.06), (0.1, 0.12, 0.25), (0.45, 0.05, 0.05), (0.5, 0.5, 0.48), (0.15, 0.25, 0.12),
           (0.55, 0.4, 0.2), (0.02, 0.1, 0.3), (0.6, 0.6, 0.6)]
SKIN = [(0.55, 0.38, 0.28), (0.35, 0.22, 0.14), (0.6, 0.45, 0.35), (0.2, 0.12, 0.08)]


def _car(w, l, h, paint, style) -> list[Mesh]:
    """SUV, wagon or sedan by style: a body, a glass cabin, wheels and lamps, filling most of the box."""
    x0, x1 = -l / 2, l / 2
    # Cabin extent as fractions of the length: bottom rear, bottom front, top rear, top front.
    cabin = [(-0.49, 0.4, -0.47, 0.2), (-0.48, 0.36, -0.44, 0.14), (-0.44, 0.32, -0.34, 0.1)][style % 3]
    belt = [0.62, 0.6, 0.57][style % 3] * h
    floor = 0.1 * h
    parts = [hexahedron([(x0 + 0.03, -w / 2, floor), (x1 - 0.03, -w / 2, floor), (x1 - 0.03, w / 2, floor),
                         (x0 + 0.03, w / 2, floor)],
                        [(x0 + 0.05, -w / 2, belt), (x1 - 0.1, -w / 2, belt), (x1 - 0.1, w / 2, belt),
                         (x0 + 0.05, w / 2, belt)], Material.BODY, paint)]
    cb0, cb1, ct0, ct1 = (c * l for c in cabin)
    parts.append(hexahedron([(cb0, -0.48 * w, belt), (cb1, -0.48 * w, belt), (cb1, 0.48 * w, belt),
                             (cb0, 0.48 * w, belt)],
                            [(ct0, -0.43 * w, h), (ct1, -0.43 * w, h), (ct1, 0.43 * w, h), (ct0, 0.43 * w, h)],
                            Material.CABIN, paint))
    radius = min(0.33, 0.21 * h)
    for x in (x0 + 0.2 * l, x1 - 0.2 * l):
        for y_in, y_out in ((-w / 2 + 0.02, -0.26 * w), (0.26 * w, w / 2 - 0.02)):
            parts.append(wheel(x, y_in, y_out, radius, Material.TYRE, (0.02, 0.02, 0.02)))
    lamp_z = (0.38 * h, 0.47 * h)
    for side in (-1, 1):
        ya, yb = sorted((side * 0.3 * w, side * 0.46 * w))
        parts.append(box(x1 - 0.05, x1, ya, yb, *lamp_z, Material.HEADLIGHT, (0.7, 0.7, 0.65)))
        parts.append(box(x0, x0 + 0.05, ya, yb, *lamp_z, Material.TAILLIGHT, (0.45, 0.02, 0.02)))
    return parts


def _truck(w, l, h, paint, bus: bool) -> list[Mesh]:
    x0, x1 = -l / 2, l / 2
    radius = 0.5
    parts = []
    for x in ([x0 + 0.2 * l, x1 - 0.15 * l] if bus else [x0 + 0.15 * l, x0 + 0.28 * l, x1 - 0.12 * l]):
        for y_in, y_out in ((-w / 2 + 0.02, -w / 2 + 0.4), (w / 2 - 0.4, w / 2 - 0.02)):
            parts.append(wheel(x, y_in, y_out, radius, Material.TYRE, (0.02, 0.02, 0.02)))
    if bus:
        parts.append(box(x0, x1 - 0.03, -w / 2, w / 2, 0.3, 0.55 * h, Material.BODY, paint))
        parts.append(box(x0 + 0.05, x1 - 0.06, -w / 2 + 0.02, w / 2 - 0.02, 0.55 * h, 0.88 * h, Material.CABIN, paint))
        parts.append(box(x0, x1 - 0.03, -w / 2, w / 2, 0.88 * h, h, Material.BODY, paint))
    else:
        cab = 0.24 * l
        parts.append(box(x0, x1 - cab - 0.2, -w / 2, w / 2, 0.45, h, Material.BODY, (0.7, 0.7, 0.7)))
        parts.append(box(x1 - cab, x1 - 0.03, -w / 2, w / 2, 0.4, 0.62 * h, Material.BODY, paint))
        parts.append(box(x1 - cab, x1 - 0.35, -w / 2 + 0.05, w / 2 - 0.05, 0.62 * h, 0.9 * h, Material.CABIN, paint))
    for side in (-1, 1):
        ya, yb = sorted((side * 0.3 * w, side * 0.46 * w))
        parts.append(box(x1 - 0.05, x1, ya, yb, 0.55, 0.8, Material.HEADLIGHT, (0.7, 0.7, 0.65)))
        parts.append(box(x0 - 0.0, x0 + 0.05, ya, yb, 0.55, 0.8, Material.TAILLIGHT, (0.45, 0.02, 0.02)))
    return parts


def _person(w, l, h, shirt, trousers, skin, z0=0.0, seated=False) -> list[Mesh]:
    """A person filling a (w, l, h) box from z0: legs, torso with arms, head."""
    hh = h - z0
    parts = []
    if not seated:  # legs mid-stride set the box length, arms the width
        parts.append(box(-l / 2, l / 2, -0.36 * w, 0.36 * w, z0, z0 + 0.47 * hh, Material.CLOTH, trousers))
    parts.append(box(-0.38 * l, 0.38 * l, -w / 2, w / 2, z0 + 0.45 * hh, z0 + 0.84 * hh, Material.CLOTH, shirt))
    parts.append(box(-0.2 * l, 0.24 * l, -0.2 * w, 0.2 * w, z0 + 0.84 * hh, h, Material.SKIN, skin))
    return parts


def _cycle(w, l, h, paint, shirt, trousers, skin, motor: bool) -> list[Mesh]:
    radius = 0.3 if motor else 0.34
    parts = [wheel(x, -0.06, 0.06, radius, Material.TYRE, (0.02, 0.02, 0.02))
             for x in (-l / 2 + radius, l / 2 - radius)]
    frame_top = 0.75 if motor else 0.62
    parts.append(box(-l / 2 + radius, l / 2 - radius, -0.12 if motor else -0.03, 0.12 if motor else 0.03, 0.25,
                     frame_top, Material.BODY, paint))
    rider = _person(w, 0.55 * l, h, shirt, trousers, skin, z0=0.55 * h, seated=True)
    parts += rider
    parts.append(box(-0.12, 0.12, -w / 2, w / 2, frame_top - 0.1, 0.7 * h, Material.CLOTH, trousers))  # legs
    return parts


def agent_mesh(agent: Agent) -> Mesh:
    """The agent's mesh in its box frame; every category fills its box (w, l, h) tightly."""
    w, l, h = agent.size
    rng = np.random.default_rng(agent.style)
    paint = CAR_PAINTS[int(rng.integers(len(CAR_PAINTS)))]
    shirt, trousers = CLOTHES[int(rng.integers(len(CLOTHES)))], CLOTHES[int(rng.integers(len(CLOTHES)))]
    skin = SKIN[int(rng.integers(len(SKIN)))]
    category = agent.category
    if category == "vehicle.car":
        parts = _car(w, l, h, paint, agent.style)
    elif category in ("vehicle.truck", "vehicle.bus.rigid"):
        parts = _truck(w, l, h, paint, bus=category == "vehicle.bus.rigid")
    elif category in ("vehicle.bicycle", "vehicle.motorcycle"):
        parts = _cycle(w, l, h, paint, shirt, trousers, skin, motor=category == "vehicle.motorcycle")
    elif category.startswith("human.pedestrian"):
        parts = _person(w, l, h, shirt, trousers, skin)
    elif category == "movable_object.trafficcone":
        parts = [hexahedron([(-l / 2, -w / 2, 0), (l / 2, -w / 2, 0), (l / 2, w / 2, 0), (-l / 2, w / 2, 0)],
                            [(-0.04, -0.04, h), (0.04, -0.04, h), (0.04, 0.04, h), (-0.04, 0.04, h)],
                            Material.CONE, (0.8, 0.18, 0.02))]
    else:  # barrier: a jersey barrier with a sloped profile
        parts = [hexahedron([(-l / 2, -w / 2, 0), (l / 2, -w / 2, 0), (l / 2, w / 2, 0), (-l / 2, w / 2, 0)],
                            [(-l / 2, -0.15 * w, h), (l / 2, -0.15 * w, h), (l / 2, 0.15 * w, h),
                             (-l / 2, 0.15 * w, h)],
                            Material.CONE, (0.75, 0.72, 0.65))]
    return merge(parts)


def agents_mesh(agents: list[Agent], frame: int, cache: dict[int, Mesh]) -> Mesh:
    """Every agent present at `frame`, posed in the world; `cache` keeps each agent's local mesh."""
    parts = []
    for agent in agents:
        if not agent.present[frame]:
            continue
        if agent.id not in cache:
            cache[agent.id] = agent_mesh(agent)
        x, y, z, yaw = agent.poses[frame]
        parts.append(cache[agent.id].transformed(x, y, z, yaw, agent.id))
    return merge(parts)
