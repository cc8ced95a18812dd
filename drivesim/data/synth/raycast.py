"""CPU camera renderer for the synthetic world: open3d ray casting (no display), procedural
textures, sun and shadows, sky, night lights and weather; also instance masks, depth,
per-object visibility and a spinning lidar.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from drivesim import geometry
from drivesim.data.synth.meshes import Material, Mesh

TIMES_OF_DAY = ("day", "dusk", "night")
# Ray-casting threads per process (0: all cores). Worker processes that render scenes side by
# side set 1, so they do not fight over the cores.
THREADS = 0
WEATHERS = ("clear", "overcast", "rain", "fog")


@dataclass(frozen=True)
class Look:
    """Time of day and weather: what the scene description records."""

    time_of_day: str = "day"
    weather: str = "clear"

    @staticmethod
    def sample(rng: np.random.Generator) -> "Look":
        time_of_day = str(rng.choice(TIMES_OF_DAY, p=[0.6, 0.15, 0.25]))
        weather = str(rng.choice(WEATHERS, p=[0.5, 0.2, 0.2, 0.1]))
        return Look(time_of_day, weather)

    def describe(self) -> str:
        return f"{self.time_of_day}, {self.weather}"


@dataclass(frozen=True)
class Lighting:
    sun_direction: np.ndarray  # unit vector toward the sun
    sun: np.ndarray  # irradiance, linear RGB; zero when overcast or at night
    sky_zenith: np.ndarray
    sky_horizon: np.ndarray
    ambient_sky: np.ndarray
    ambient_ground: np.ndarray
    fog_colour: np.ndarray
    fog_density: float  # per metre
    exposure: float
    lights_on: bool  # head, tail, street lamps and windows glow
    wet: bool
    noise: float

    @staticmethod
    def for_look(look: Look, rng: np.random.Generator) -> "Lighting":
        azimuth = rng.uniform(0, 2 * np.pi)
        elevation = {"day": rng.uniform(0.6, 1.1), "dusk": rng.uniform(0.06, 0.18), "night": -0.5}[look.time_of_day]
        sun_dir = np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                            np.sin(elevation)])
        a = np.array
        if look.time_of_day == "day":
            sun, zenith, horizon = a([3.0, 2.85, 2.6]), a([0.18, 0.32, 0.75]), a([0.65, 0.75, 0.9])
            amb_sky, amb_ground, exposure = a([0.45, 0.52, 0.65]), a([0.14, 0.13, 0.12]), 1.0
        elif look.time_of_day == "dusk":
            sun, zenith, horizon = a([2.4, 1.2, 0.5]), a([0.12, 0.14, 0.35]), a([0.95, 0.5, 0.25])
            amb_sky, amb_ground, exposure = a([0.28, 0.25, 0.35]), a([0.1, 0.07, 0.05]), 1.3
        else:
            sun, zenith, horizon = a([0.0, 0.0, 0.0]), a([0.004, 0.006, 0.015]), a([0.035, 0.03, 0.03])
            amb_sky, amb_ground, exposure = a([0.012, 0.014, 0.022]), a([0.006, 0.006, 0.006]), 1.8
        fog_density, wet, noise = 0.0015, False, 0.008 if look.time_of_day != "night" else 0.02
        if look.weather in ("overcast", "rain", "fog"):
            grey = float(np.mean(horizon)) * (0.85 if look.weather == "overcast" else 0.7)
            flat = np.array([grey, grey, grey * 1.04])
            zenith, horizon = flat * 0.8, flat
            amb_sky = amb_sky * 0.6 + np.mean(sun) * 0.35
            sun = sun * 0.0
        if look.weather == "rain":
            fog_density, wet = 0.012, True
        if look.weather == "fog":
            fog_density = 0.035
        fog = horizon * (1.0 if look.weather != "clear" else 0.9)
        f32 = [np.asarray(v, np.float32) for v in (sun_dir, sun, zenith, horizon, amb_sky, amb_ground, fog)]
        return Lighting(*f32, fog_density, exposure, look.time_of_day != "day" or look.weather == "rain", wet, noise)


@dataclass
class Frame:
    images: np.ndarray  # (V, H, W, 3) uint8
    instance: np.ndarray  # (V, H, W) int32: agent id, 0 for the static world or sky
    depth: np.ndarray  # (V, H, W) float32: z in the camera frame, inf for sky


# ---- noise ------------------------------------------------------------------

# A fixed table of random values: a gather is much cheaper than integer hashing per pixel.
_NOISE_TABLE = np.random.default_rng(20261121).random((256, 256)).astype(np.float32)


def _hash(ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
    """A pseudo-random value in [0, 1) per integer lattice point (period 256)."""
    return _NOISE_TABLE[ix.astype(np.int32) & 255, iy.astype(np.int32) & 255]


def _value_noise(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(ix, iy), _hash(ix + 1, iy)
    c, d = _hash(ix, iy + 1), _hash(ix + 1, iy + 1)
    return (a + (b - a) * fx) + ((c + (d - c) * fx) - (a + (b - a) * fx)) * fy


def _fbm(x, y) -> np.ndarray:
    return 0.6 * _value_noise(x, y) + 0.4 * _value_noise(x * 2.7 + 13.1, y * 2.7 - 7.3)


# ---- the renderer -----------------------------------------------------------

class Renderer:
    """Renders a rig's cameras of one scene: the static town once, agents per frame."""

    def __init__(self, static: Mesh, look: Look, lamps: np.ndarray, seed: int):
        self.static = static
        self.look = look
        self.light = Lighting.for_look(look, np.random.default_rng(seed))
        self.lamps = lamps
        self.seed = seed
        self._rays_in_camera: dict[tuple, np.ndarray] = {}
        self._static_vertices = o3d.core.Tensor(static.vertices)
        self._static_triangles = o3d.core.Tensor(static.triangles.astype(np.uint32))

    def _scene(self, dynamic: Mesh) -> tuple[o3d.t.geometry.RaycastingScene, Mesh]:
        """A ray-casting scene of the town (geometry 0) and the agents (geometry 1), and the
        per-triangle attributes of both, indexed by `primitive + (geometry == 1) * len(static)`."""
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(self._static_vertices, self._static_triangles)
        if len(dynamic.triangles):
            scene.add_triangles(o3d.core.Tensor(dynamic.vertices),
                                o3d.core.Tensor(dynamic.triangles.astype(np.uint32)))
        static = self.static
        attributes = Mesh(dynamic.vertices, dynamic.triangles,
                          np.concatenate([static.material, dynamic.material]),
                          np.concatenate([static.albedo, dynamic.albedo]),
                          np.concatenate([static.instance, dynamic.instance]))
        return scene, attributes

    def render(self, dynamic: Mesh, world_from_cams: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
               frame_index: int) -> Frame:
        """All cameras at one instant; `frame_index` seeds the sensor noise."""
        scene, attributes = self._scene(dynamic)
        views = len(world_from_cams)
        images = np.zeros((views, height, width, 3), np.uint8)
        instance = np.zeros((views, height, width), np.int32)
        depth = np.full((views, height, width), np.inf, np.float32)
        for v in range(views):
            origins, directions = self._camera_rays(world_from_cams[v], intrinsics[v], width, height)
            colour, inst, t = self._shade(scene, attributes, origins, directions)
            forward = world_from_cams[v][:3, 2]
            depth[v] = (t * (directions @ forward)).reshape(height, width)
            instance[v] = inst.reshape(height, width)
            rng = np.random.default_rng([self.seed, frame_index, v])
            images[v] = self._finish(colour.reshape(height, width, 3), rng)
        return Frame(images, instance, depth)

    def _camera_rays(self, world_from_cam: np.ndarray, intrinsics: np.ndarray, width: int, height: int,
                     stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """World-frame ray origins and unit directions through pixel centres, row-major.
        Camera-frame directions are computed once per camera model and reused every frame."""
        key = (tuple(np.asarray(intrinsics, np.float64).ravel().round(6)), width, height, stride)
        if key not in self._rays_in_camera:
            rays = geometry.camera_rays(np.asarray(intrinsics, np.float64), width, height)[::stride, ::stride]
            self._rays_in_camera[key] = rays.reshape(-1, 3).astype(np.float32)
        directions = self._rays_in_camera[key] @ world_from_cam[:3, :3].T.astype(np.float32)
        origins = np.broadcast_to(world_from_cam[:3, 3].astype(np.float32), directions.shape)
        return origins, directions

    def _shade(self, scene, attributes: Mesh, origins: np.ndarray, directions: np.ndarray):
        light = self.light
        rays = np.concatenate([origins, directions], axis=1)
        hit = scene.cast_rays(o3d.core.Tensor(rays), nthreads=THREADS)
        t = hit["t_hit"].numpy()
        is_hit = np.isfinite(t)
        idx = np.nonzero(is_hit)[0]
        colour = np.empty((len(t), 3), np.float32)
        colour[~is_hit] = self._sky(directions[~is_hit])
        inst = np.zeros(len(t), np.int32)
        if not len(idx):
            return colour, inst, t
        triangle = hit["primitive_ids"].numpy()[idx].astype(np.int64)
        triangle += (hit["geometry_ids"].numpy()[idx] == 1) * len(self.static.triangles)
        material, albedo = attributes.material[triangle], attributes.albedo[triangle]
        inst[idx] = attributes.instance[triangle]
        d = directions[idx]
        n = hit["primitive_normals"].numpy()[idx]
        n = np.where((np.sum(n * d, axis=1) > 0)[:, None], -n, n)  # face the viewer
        p = origins[idx] + d * t[idx, None]
        albedo, emissive, gloss = self._surface(material, albedo, p, n)
        # Direct sun with shadows, then hemisphere ambient, then lamps and the ego's headlights.
        irradiance = light.ambient_sky * (0.5 + 0.5 * n[:, 2:3]) + light.ambient_ground * (0.5 - 0.5 * n[:, 2:3])
        if light.sun.any():
            cos = n @ light.sun_direction
            facing = np.nonzero(cos > 0)[0]
            lit = np.zeros(len(idx), bool)
            if len(facing):
                shadow_rays = np.concatenate([p[facing] + n[facing] * 0.03,
                                              np.broadcast_to(light.sun_direction, (len(facing), 3))], axis=1)
                occluded = scene.test_occlusions(o3d.core.Tensor(shadow_rays.astype(np.float32)),
                                                 nthreads=THREADS).numpy()
                lit[facing] = ~occluded
            irradiance = irradiance + light.sun * (np.clip(cos, 0, None) * lit)[:, None]
        if light.lights_on and len(self.lamps):
            irradiance = irradiance + self._lamps(p, n, origins[0])
        if self._headlights is not None:
            irradiance = irradiance + self._spot(p, n)
        shaded = albedo * irradiance + emissive
        # Glossy surfaces mirror the sky (Fresnel-weighted): car paint, glass, wet roads.
        if gloss.any():
            cos_v = np.abs(np.sum(n * d, axis=1))
            fresnel = gloss * (0.04 + 0.96 * (1 - cos_v) ** 5)
            reflected = d - 2 * np.sum(d * n, axis=1, keepdims=True) * n
            shiny = np.nonzero(gloss > 0)[0]
            env = np.broadcast_to(light.ambient_ground * 0.3, (len(shiny), 3)).copy()
            up = reflected[shiny, 2] > 0
            env[up] = self._sky(reflected[shiny][up])
            shaded[shiny] = shaded[shiny] * (1 - fresnel[shiny, None]) + env * fresnel[shiny, None]
        fog = 1.0 - np.exp(-light.fog_density * t[idx])
        shaded = shaded * (1 - fog[:, None]) + light.fog_colour * fog[:, None]
        colour[idx] = shaded
        return colour, inst, t

    def _surface(self, material, albedo, p, n):
        """Procedural textures: returns albedo, emitted light and glossiness per hit."""
        light = self.light
        albedo = albedo.astype(np.float32).copy()
        emissive = np.zeros_like(albedo)
        gloss = np.zeros(len(material), np.float32)
        x, y, z = p[:, 0], p[:, 1], p[:, 2]

        def where(kind):
            return material == kind

        m = where(Material.ASPHALT) | where(Material.TERRAIN)
        if m.any():
            grain = 0.88 + 0.24 * _hash(np.floor(x[m] * 7), np.floor(y[m] * 7))
            albedo[m] *= ((0.75 + 0.5 * _fbm(x[m] * 0.15, y[m] * 0.15)) * grain)[:, None]
        m = where(Material.SIDEWALK)
        if m.any():
            joints = (np.mod(x[m], 2.0) < 0.05) | (np.mod(y[m], 2.0) < 0.05)
            albedo[m] *= (np.where(joints, 0.6, 1.0) * (0.9 + 0.2 * _fbm(x[m] * 0.7, y[m] * 0.7)))[:, None]
        for kind, scale in ((Material.GRASS, 1.5), (Material.FOLIAGE, 1.1), (Material.ROOF, 0.3)):
            m = where(kind)
            if m.any():
                albedo[m] *= (0.55 + 0.9 * _fbm(x[m] * scale + z[m], y[m] * scale - z[m]))[:, None]
        m = where(Material.WALL)
        if m.any():
            tangent = np.stack([-n[m, 1], n[m, 0]], axis=1)
            u = np.sum(p[m, :2] * tangent, axis=1)
            v = z[m] - 0.15
            fu, fv = np.mod(u / 3.2, 1.0), np.mod(v / 3.4, 1.0)
            upper = (v > 4.0) & (fu > 0.18) & (fu < 0.82) & (fv > 0.28) & (fv < 0.82)
            shop = (v > 0.3) & (v < 3.0) & (np.mod(u / 6.0, 1.0) > 0.08) & (np.mod(u / 6.0, 1.0) < 0.92)
            glass = upper | shop
            albedo[m] *= (0.85 + 0.3 * _fbm(u * 0.4, v * 0.4))[:, None]
            albedo[np.nonzero(m)[0][glass]] = (0.02, 0.025, 0.035)
            gloss[np.nonzero(m)[0][glass]] = 0.8
            if self.look.time_of_day != "day":
                cell = _hash(np.floor(u / 3.2) + np.floor(v / 3.4) * 7919, np.floor(v / 3.4))
                glow = glass & (cell < (0.3 if self.look.time_of_day == "night" else 0.12))
                emissive[np.nonzero(m)[0][glow]] = (0.45, 0.32, 0.16)
        m = where(Material.BODY)
        gloss[m] = 0.6
        m = where(Material.CABIN)
        if m.any():
            roof = n[m, 2] > 0.6
            cabin = np.nonzero(m)[0]
            albedo[cabin[~roof]] = (0.015, 0.02, 0.025)
            gloss[cabin] = np.where(roof, 0.6, 1.0)
        m = where(Material.CONE)
        if m.any():
            band = (z[m] > 0.3) & (z[m] < 0.45)
            albedo[np.nonzero(m)[0][band]] = (0.8, 0.8, 0.78)
        if light.lights_on:
            emissive[where(Material.HEADLIGHT)] = (3.0, 2.85, 2.4)
            emissive[where(Material.TAILLIGHT)] = (1.6, 0.05, 0.03)
            emissive[where(Material.LAMP)] = (4.0, 3.4, 2.4)
        if light.wet:
            wet = where(Material.ASPHALT) | where(Material.PAINT) | where(Material.SIDEWALK)
            puddle = _fbm(x[wet] * 0.6, y[wet] * 0.6) > 0.68
            albedo[wet] *= 0.6
            gloss[wet] = np.where(puddle, 0.55, 0.2)
        return albedo, emissive, gloss

    def _sky(self, directions: np.ndarray) -> np.ndarray:
        light = self.light
        elevation = np.clip(directions[:, 2], 0.0, 1.0)[:, None]
        sky = light.sky_horizon + (light.sky_zenith - light.sky_horizon) * np.sqrt(elevation)
        below = directions[:, 2] < 0  # below the horizon past the world's edge: haze
        sky[below] = light.sky_horizon * 0.8
        if light.sun.any():
            cos = np.clip(directions @ light.sun_direction, 0.0, 1.0)
            sky = sky + light.sun[None] * (cos**600 * 6.0 + cos**12 * 0.15)[:, None]
            # Clouds: noise on the sky dome, the same for every camera.
            dome = directions[:, :2] / np.maximum(directions[:, 2:3], 0.05)
            cloud = np.clip((_fbm(dome[:, 0] * 1.2 + self.seed % 97, dome[:, 1] * 1.2) - 0.55) * 3.0, 0, 1)
            cloud *= np.clip(elevation[:, 0] * 6, 0, 1)
            sky = sky * (1 - cloud[:, None] * 0.8) + cloud[:, None] * light.sky_horizon * 1.15 * 0.8
        return sky.astype(np.float32)

    def _lamps(self, p: np.ndarray, n: np.ndarray, eye: np.ndarray) -> np.ndarray:
        """Warm street lamps near the camera: Lambert with inverse-square falloff, no shadows."""
        near = self.lamps[np.argsort(np.linalg.norm(self.lamps[:, :2] - eye[:2], axis=1))[:12]].astype(np.float32)
        # Every (point, lamp) pair at once through matrix products: (N, K).
        n_dot_l = n @ near.T - np.sum(n * p, axis=1, keepdims=True)
        dist2 = np.sum(p * p, axis=1, keepdims=True) - 2 * (p @ near.T) + np.sum(near * near, axis=1)
        dist2 = np.maximum(dist2, 1e-4)
        power = np.sum(np.maximum(n_dot_l, 0) / np.sqrt(dist2) * (9.0 / (dist2 + 2.0)), axis=1)
        return power[:, None] * np.array([1.0, 0.8, 0.55], np.float32)

    _headlights: tuple[np.ndarray, np.ndarray] | None = None

    def _spot(self, p: np.ndarray, n: np.ndarray) -> np.ndarray:
        """The ego's two headlights: spotlights along its heading."""
        lamps, forward = self._headlights
        power = np.zeros(len(p), np.float32)
        for lamp in lamps.astype(np.float32):
            to_p = p - lamp
            dist = np.sqrt(np.sum(to_p * to_p, axis=1)) + np.float32(1e-6)
            cone = np.clip(((to_p @ forward.astype(np.float32)) / dist - 0.8) / 0.15, 0, 1)
            cos = np.maximum(-np.sum(n * to_p, axis=1) / dist, 0)
            power += 22.0 * cone * cos / (dist * dist + 4.0)
        return power[:, None] * np.array([1.0, 0.97, 0.9], np.float32)

    def _finish(self, colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Exposure, filmic tone curve, sRGB, vignetting, sensor noise, rain streaks."""
        x = colour * np.float32(self.light.exposure)
        x = np.clip((x * (2.51 * x + 0.03)) / (x * (2.43 * x + 0.59) + 0.14), 0, 1)
        h, w = x.shape[:2]
        yy, xx = np.ogrid[0:h, 0:w]
        r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        x *= (1 - 0.18 * r2).astype(np.float32)[..., None]
        srgb = 1.055 * np.power(x, np.float32(1 / 2.4)) - 0.055  # sRGB (its linear toe is below 8-bit)
        srgb += np.float32(self.light.noise) * rng.standard_normal(srgb.shape, dtype=np.float32)
        if self.look.weather == "rain":
            _rain_streaks(srgb, rng)
        return (np.clip(srgb, 0, 1) * 255 + 0.5).astype(np.uint8)

    def set_headlights(self, headlights: tuple[np.ndarray, np.ndarray] | None) -> None:
        """The ego's headlights light the road at night: (lamp positions (2, 3), forward (3,))."""
        self._headlights = headlights if self.light.lights_on else None

    def visibility(self, dynamic: Mesh, world_from_cams, intrinsics, width: int, height: int,
                   stride: int = 1) -> list[dict[int, tuple[int, int]]]:
        """Per camera, per agent id: (pixels where it is the first hit, pixels whose ray meets it
        at all: its unoccluded silhouette), on a pixel grid subsampled by `stride`."""
        if not len(dynamic.triangles):
            return [{} for _ in world_from_cams]
        scene = self._scene(dynamic)[0]
        agents_only = o3d.t.geometry.RaycastingScene()
        agents_only.add_triangles(o3d.core.Tensor(dynamic.vertices),
                                  o3d.core.Tensor(dynamic.triangles.astype(np.uint32)))
        per_camera = []
        for v in range(len(world_from_cams)):
            visible: dict[int, int] = {}
            total: dict[int, int] = {}
            origins, directions = self._camera_rays(world_from_cams[v], intrinsics[v], width, height, stride)
            rays = o3d.core.Tensor(np.concatenate([origins, directions], axis=1).astype(np.float32))
            first = scene.cast_rays(rays, nthreads=THREADS)
            geometry = first["geometry_ids"].numpy()
            prim = first["primitive_ids"].numpy().astype(np.int64)
            ids = dynamic.instance[prim[geometry == 1]]
            for agent, count in zip(*np.unique(ids, return_counts=True)):
                visible[int(agent)] = visible.get(int(agent), 0) + int(count)
            every = agents_only.list_intersections(rays, nthreads=THREADS)
            pairs = np.unique(np.stack([every["ray_ids"].numpy().astype(np.int64),
                                        dynamic.instance[every["primitive_ids"].numpy().astype(np.int64)]]), axis=1)
            for agent, count in zip(*np.unique(pairs[1], return_counts=True)):
                total[int(agent)] = total.get(int(agent), 0) + int(count)
            per_camera.append({agent: (visible.get(agent, 0), count) for agent, count in total.items()})
        return per_camera

    def lidar(self, dynamic: Mesh, world_from_lidar: np.ndarray, beams: int = 32, azimuths: int = 1084,
              max_range: float = 70.0) -> tuple[np.ndarray, np.ndarray]:
        """A spinning lidar at one instant: points (N, 5) x, y, z, intensity, ring in the lidar
        frame, and the agent id each point hit (0 for the static world)."""
        scene = self._scene(dynamic)[0]
        elevation = np.radians(np.linspace(-30.67, 10.67, beams))
        azimuth = np.linspace(-np.pi, np.pi, azimuths, endpoint=False)
        el, az = np.meshgrid(elevation, azimuth, indexing="ij")
        local = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)
        directions = local @ world_from_lidar[:3, :3].T
        origins = np.broadcast_to(world_from_lidar[:3, 3], directions.shape)
        rays = o3d.core.Tensor(np.concatenate([origins, directions], 1).astype(np.float32))
        hit = scene.cast_rays(rays, nthreads=THREADS)
        t = hit["t_hit"].numpy()
        keep = t < max_range
        geometry = hit["geometry_ids"].numpy()[keep]
        prim = hit["primitive_ids"].numpy().astype(np.int64)[keep]
        ids = np.zeros(int(keep.sum()), np.int32)
        if len(dynamic.instance):
            ids[geometry == 1] = dynamic.instance[prim[geometry == 1]]
        material = np.where(geometry == 1, 0, self.static.material[np.where(geometry == 1, 0, prim)])
        intensity = np.where(material == Material.PAINT, 90.0, np.where(ids > 0, 30.0, 8.0))
        ring = np.broadcast_to(np.arange(beams)[:, None], el.shape).reshape(-1)[keep]
        points = np.column_stack([local[keep] * t[keep, None], intensity, ring]).astype(np.float32)
        return points, ids


def _rain_streaks(image: np.ndarray, rng: np.random.Generator) -> None:
    """Short bright slanted streaks, drawn in place on an sRGB float image."""
    h, w = image.shape[:2]
    count = int(w * h / 500)
    length = max(4, h // 25)
    x0 = rng.uniform(0, w, count)
    y0 = rng.uniform(-length, h, count)
    slant = 0.15
    steps = np.linspace(0, 1, length)
    xs = (x0[:, None] + steps[None] * length * slant).astype(int).ravel()
    ys = (y0[:, None] + steps[None] * length).astype(int).ravel()
    ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    image[ys[ok], xs[ok]] = image[ys[ok], xs[ok]] * 0.75 + 0.22
