"""Random scenes: a room, a camera, lighting, temperatures and 4-14 objects, drawn from a seed.

A scene is a plain description (dataclasses of floats and small arrays); ``render.py`` turns
it into sensor images. Splits own disjoint seed ranges, so no scene can fall into two splits,
and the out-of-distribution split draws its lighting, ambient temperature and object count
from ranges the other splits never use.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from training.data.classes import CLASSES, MATERIALS, OBJECT_CLASSES
from training.data.physics import KELVIN

SPLITS: tuple[str, ...] = ('train', 'val', 'test', 'ood')
SPLIT_CAPACITY = 10_000_000  # scenes per split; split k owns seeds [k * cap, (k + 1) * cap)
MAX_SIDE = 4096  # a rendered frame's largest side: beyond any camera the node serves
GENERATOR_VERSION = 1  # bump when a change alters the images a seed produces

CONDITIONS: tuple[str, ...] = ('normal', 'dark', 'glare', 'haze')


class SceneError(ValueError):
    """A scene request that cannot be met (unknown split, index out of range)."""


def frame_size_problem(height, width) -> str:
    """What keeps the generator from rendering a ``height`` x ``width`` frame, as words that
    follow the option's name, or '': sides are whole pixel counts from 8 to ``MAX_SIDE``."""
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool)
               for s in (height, width)):
        return f'must be whole numbers of pixels, got {height}x{width}'
    if min(height, width) < 8 or max(height, width) > MAX_SIDE:
        return f'must be at least 8x8 and at most {MAX_SIDE} a side, got {height}x{width}'
    return ''


def make_split(split: str, index: int) -> int:
    """The seed of scene ``index`` of ``split``: disjoint ranges, so splits never share one."""
    if split not in SPLITS:
        raise SceneError(f'unknown split {split!r}; known splits are {list(SPLITS)}')
    if not 0 <= index < SPLIT_CAPACITY:
        raise SceneError(f'scene index {index} outside [0, {SPLIT_CAPACITY}) of split {split!r}')
    return SPLITS.index(split) * SPLIT_CAPACITY + index


def split_of_seed(seed: int) -> str:
    """The split a seed belongs to (the inverse of :func:`make_split`)."""
    k = seed // SPLIT_CAPACITY
    if not 0 <= k < len(SPLITS):
        raise SceneError(f'seed {seed} belongs to no split')
    return SPLITS[k]


@dataclass(frozen=True)
class Camera:
    """Pinhole camera: intrinsics in pixels and a world pose (rotation camera->world)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray  # (3,) world, metres
    rotation: np.ndarray  # (3, 3) columns: camera x (right), y (down), z (forward) in world

    @property
    def intrinsics(self) -> np.ndarray:
        return np.array(
            [[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]], dtype=np.float64
        )


@dataclass(frozen=True)
class SceneObject:
    """One object: a box (yaw about the vertical), a sphere or a vertical cylinder."""

    class_index: int
    shape: str  # 'box' | 'sphere' | 'cylinder'
    center: np.ndarray  # (3,) world
    half_size: np.ndarray  # (3,) box half extents in its own frame; sphere/cylinder: (r, h/2, r)
    yaw: float  # radians about world y; a wall object's local +z points out of the wall
    temperature_k: float
    texture: np.ndarray | None = None  # (h, w, 3) linear albedo or emission for prints/screens

    @property
    def material(self):
        return MATERIALS[CLASSES[self.class_index].material]


@dataclass(frozen=True)
class Lighting:
    """Soft indoor light: a sky/ground hemisphere, a large overhead key light, and a condition.

    Radiances are linear and relative; the camera's auto-exposure maps them to pixel values.
    """

    tint: np.ndarray  # (3,) colour of all room lights
    sky: float  # radiance of the upper hemisphere (ceiling bounce)
    ground: float  # radiance of the lower hemisphere (floor bounce)
    key: float  # irradiance of the key light on a surface facing it
    key_direction: np.ndarray  # (3,) unit vector towards the key light
    outdoor: np.ndarray  # (3,) radiance seen through windows
    condition: str  # one of CONDITIONS
    haze_density: float = 0.0  # 1/m, extinction of visible light (haze)
    glare_center: tuple[float, float] = (0.5, 0.5)  # normalized image coordinates (glare)
    glare_strength: float = 0.0  # veiling radiance at the glare centre, relative to the key


@dataclass(frozen=True)
class Thermal:
    """Temperatures in kelvin: air, the radiative surroundings surfaces reflect, outdoors."""

    ambient_k: float
    reflected_k: float
    floor_k: float
    outdoor_k: float


@dataclass(frozen=True)
class Scene:
    seed: int
    split: str
    room: np.ndarray  # (3,) width (x), height (y), depth (z); the room spans [0, room]
    camera: Camera
    lighting: Lighting
    thermal: Thermal
    objects: tuple[SceneObject, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class SplitRanges:
    """The distributions a split draws from; the OOD split's lie outside the others'."""

    object_count: tuple[int, int]  # inclusive
    ambient_c: tuple[tuple[float, float], ...]  # one or more intervals, drawn uniformly
    condition_probability: tuple[float, float, float, float]  # normal, dark, glare, haze
    tint_saturation: tuple[float, float]


IN_DISTRIBUTION = SplitRanges((4, 10), ((18.0, 26.0),), (0.55, 0.15, 0.15, 0.15), (0.0, 0.5))
OUT_OF_DISTRIBUTION = SplitRanges(
    (11, 14), ((6.0, 12.0), (30.0, 35.0)), (0.25, 0.25, 0.25, 0.25), (0.6, 1.0)
)

# Wall placements: (width range, height range, centre height range, thickness range) in metres.
# Poster and canvas share 'wall_art', so their size and position say nothing about which one
# it is; only the canvas's relief (depth) does.
WALL_PLACEMENTS: dict[str, tuple[tuple[float, float], ...]] = {
    'wall_art': ((0.5, 1.1), (0.4, 0.9), (1.2, 1.8), (0.04, 0.12)),
    'window': ((0.8, 1.6), (0.8, 1.3), (1.3, 1.7), (0.0, 0.0)),
    'radiator': ((0.7, 1.4), (0.4, 0.6), (0.35, 0.45), (0.08, 0.12)),
    'tv': ((0.8, 1.3), (0.45, 0.75), (1.0, 1.5), (0.05, 0.08)),
}
FLUSH_OFFSET = 0.003  # posters and windows sit this far in front of the wall (paper, frame)
PLACEMENT_ATTEMPTS = 30  # tries to find a free, visible spot for one object
FLOOR_OBJECT_SIZE = (0.15, 0.35)  # half-width range of floor objects, every class alike
FLOOR_OBJECT_HALF_HEIGHT = (0.12, 0.35)


def _interval(rng: np.random.Generator, intervals: tuple[tuple[float, float], ...]) -> float:
    lo, hi = intervals[int(rng.integers(len(intervals)))]
    return float(rng.uniform(lo, hi))


def _rotation(yaw: float, pitch: float) -> np.ndarray:
    """Camera->world rotation: looking along world +z, pitched down, then yawed."""
    cp, sp = np.cos(pitch), np.sin(pitch)
    # camera axes before yaw: x right, y down (tilted by pitch), z forward (tilted down);
    # right-handed, so with world y up and the view along +z, the image's right is world -x
    x = np.array([-1.0, 0.0, 0.0])
    y = np.array([0.0, -cp, -sp])
    z = np.array([0.0, -sp, cp])
    cy, sy = np.cos(yaw), np.sin(yaw)
    yaw_m = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return yaw_m @ np.stack([x, y, z], axis=1)


def _tint(rng: np.random.Generator, saturation: tuple[float, float]) -> np.ndarray:
    """Light colour: a black-body-like warm/cool white, pushed towards a hue out of range."""
    warmth = rng.uniform(0.0, 1.0)  # 0: 6500 K daylight, 1: 2700 K incandescent
    base = np.array([1.0, 1.0 - 0.22 * warmth, 1.0 - 0.5 * warmth])
    s = rng.uniform(*saturation)
    hue = rng.uniform(0.3, 1.0, size=3)
    tint = (1 - s) * base + s * hue * base
    return (tint / tint.max()).astype(np.float64)


def _texture(rng: np.random.Generator, kind: str) -> np.ndarray:
    """A small random image: a poster print, or what a TV shows (linear RGB)."""
    if kind == 'print':
        h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
        palette = rng.uniform(0.04, 0.85, size=(4, 3)) ** 1.5
        return palette[rng.integers(0, 4, size=(h, w))]
    h, w = int(rng.integers(4, 9)), int(rng.integers(6, 12))
    return rng.uniform(0.05, 1.0, size=(h, w, 3)) * rng.uniform(0.4, 1.0)


def sample_scene(
    seed: int, width: int, height: int, split: str | None = None
) -> Scene:
    """Draw the scene of ``seed`` for a camera of ``width`` x ``height`` pixels.

    The room, camera pose, lighting and temperatures are the same at any resolution; the
    objects are placed along rays through pixels and differ a little (docs/generator.md,
    "Splits and determinism").
    """
    split = split_of_seed(seed) if split is None else split
    ranges = OUT_OF_DISTRIBUTION if split == 'ood' else IN_DISTRIBUTION
    rng = np.random.default_rng(np.random.SeedSequence([GENERATOR_VERSION, seed]))

    room = np.array([rng.uniform(4.0, 6.5), rng.uniform(2.6, 3.2), rng.uniform(4.0, 6.0)])
    hfov = np.deg2rad(rng.uniform(58.0, 70.0))
    fx = 0.5 * width / np.tan(hfov / 2)
    position = np.array(
        [rng.uniform(0.35, 0.65) * room[0], rng.uniform(1.0, 1.6), rng.uniform(0.2, 0.6)]
    )
    rotation = _rotation(np.deg2rad(rng.uniform(-20, 20)), np.deg2rad(rng.uniform(10, 25)))
    camera = Camera(width, height, fx, fx, (width - 1) / 2, (height - 1) / 2, position, rotation)

    # --- lighting and temperatures ---------------------------------------------------------
    condition = CONDITIONS[int(rng.choice(4, p=ranges.condition_probability))]
    tint = _tint(rng, ranges.tint_saturation)
    level = rng.uniform(0.02, 0.05) if condition == 'dark' else 1.0
    sky = rng.uniform(0.25, 0.45) * level
    key_dir = np.array([rng.uniform(-0.4, 0.4), 1.0, rng.uniform(-0.4, 0.4)])
    daylight = 0.0 if condition == 'dark' else rng.uniform(1.5, 4.0)
    lighting = Lighting(
        tint=tint,
        sky=sky,
        ground=sky * rng.uniform(0.25, 0.45),
        key=rng.uniform(0.8, 2.0) * level,
        key_direction=key_dir / np.linalg.norm(key_dir),
        outdoor=daylight * np.array([0.85, 0.92, 1.0]) + 0.01,
        condition=condition,
        haze_density=rng.uniform(0.2, 0.5) if condition == 'haze' else 0.0,
        glare_center=(rng.uniform(0.1, 0.9), rng.uniform(0.0, 0.5)),
        glare_strength=rng.uniform(1.5, 4.0) if condition == 'glare' else 0.0,
    )
    ambient = _interval(rng, ranges.ambient_c) + KELVIN
    outdoor = ambient - rng.uniform(8.0, 25.0)
    thermal = Thermal(
        ambient_k=ambient,
        reflected_k=ambient - rng.uniform(1.0, 5.0),
        floor_k=ambient - rng.uniform(0.5, 2.0),
        outdoor_k=outdoor,
    )

    # --- objects -------------------------------------------------------------------------
    count = int(rng.integers(ranges.object_count[0], ranges.object_count[1] + 1))
    objects: list[SceneObject] = []
    floor_spots: list[tuple[float, float, float]] = []
    wall_spots: list[tuple[int, float, float, float, float]] = []
    for _ in range(count):
        # The class is drawn first and kept while its placement is retried, so classes that
        # are harder to place (large wall objects) are not under-represented.
        class_index = int(rng.choice(OBJECT_CLASSES))
        cls = CLASSES[class_index]
        place = _floor_object if cls.geometry == 'floor_object' else _wall_object
        spots = floor_spots if cls.geometry == 'floor_object' else wall_spots
        for _attempt in range(PLACEMENT_ATTEMPTS):
            obj = place(rng, class_index, camera, room, spots)
            if obj is not None and _in_view(camera, obj[1]):
                break
            if obj is not None:
                spots.pop()  # placed out of view: free the spot again
        else:
            continue
        temperature = _temperature(rng, cls.temperature, thermal)
        texture = None
        mat = MATERIALS[cls.material]
        if mat.printed:
            texture = _texture(rng, 'print')
        elif mat.screen:
            texture = _texture(rng, 'screen')
        objects.append(
            SceneObject(class_index, obj[0], obj[1], obj[2], obj[3], temperature, texture)
        )
    return Scene(seed, split, room, camera, lighting, thermal, tuple(objects))


def _temperature(rng: np.random.Generator, profile: str, thermal: Thermal) -> float:
    if profile == 'ambient':
        return thermal.ambient_k + rng.normal(0.0, 0.15)
    if profile == 'hot':
        return rng.uniform(45.0, 70.0) + KELVIN
    if profile == 'warm':
        return rng.uniform(32.0, 40.0) + KELVIN
    if profile == 'cold':
        return rng.uniform(2.0, 8.0) + KELVIN
    if profile == 'outside':  # inner pane of a double-glazed window
        return thermal.ambient_k - 0.35 * (thermal.ambient_k - thermal.outdoor_k)
    raise SceneError(f'unknown temperature profile {profile!r}')


def _ray(camera: Camera, u: float, v: float) -> np.ndarray:
    d = np.array([(u - camera.cx) / camera.fx, (v - camera.cy) / camera.fy, 1.0])
    d = camera.rotation @ d
    return d / np.linalg.norm(d)


def _in_view(camera: Camera, point: np.ndarray) -> bool:
    """Whether ``point`` projects inside the image (so that no object is drawn in vain)."""
    x, y, z = (point - camera.position) @ camera.rotation
    if z <= 0.1:
        return False
    u, v = camera.fx * x / z + camera.cx, camera.fy * y / z + camera.cy
    return 0 <= u < camera.width and 0 <= v < camera.height


def _floor_object(rng, class_index, camera, room, spots):
    """A box, sphere or cylinder standing on a floor spot the camera sees."""
    d = _ray(camera, rng.uniform(0.05, 0.95) * camera.width, rng.uniform(0.5, 1.0) * camera.height)
    if d[1] >= -1e-3:
        return None
    t = -camera.position[1] / d[1]
    x, z = camera.position[0] + t * d[0], camera.position[2] + t * d[2]
    half = rng.uniform(*FLOOR_OBJECT_SIZE)
    if not (half + 0.05 < x < room[0] - half - 0.05 and 1.0 < z < room[2] - half - 0.3):
        return None
    if any((x - sx) ** 2 + (z - sz) ** 2 < (half + sr + 0.05) ** 2 for sx, sz, sr in spots):
        return None
    shape = ('box', 'sphere', 'cylinder')[int(rng.integers(3))]
    if shape == 'sphere':
        size = np.array([half, half, half])
    else:
        hh = rng.uniform(*FLOOR_OBJECT_HALF_HEIGHT)
        size = np.array([half * rng.uniform(0.7, 1.0), hh, half]) if shape == 'box' else (
            np.array([half, hh, half])
        )
    spots.append((x, z, half * 1.42))
    center = np.array([x, size[1], z])
    return shape, center, size, float(rng.uniform(0, np.pi))


def _wall_object(rng, class_index, camera, room, spots):
    """A box on a wall the camera sees, aligned with that wall (poster, window, canvas, ...)."""
    cls = CLASSES[class_index]
    widths, heights, centre_heights, thickness = WALL_PLACEMENTS[cls.placement]
    w = rng.uniform(*widths) / 2
    h = rng.uniform(*heights) / 2
    cy = rng.uniform(*centre_heights)
    depth = rng.uniform(*thickness) / 2 if cls.geometry == 'wall_box' else 0.0015
    d = _ray(camera, rng.uniform(0.05, 0.95) * camera.width, rng.uniform(0.0, 0.5) * camera.height)
    # first wall (x = 0, x = W, z = D) the ray meets, on the horizontal plane
    hits = []
    if d[0] < -1e-6:
        hits.append(((0.0 - camera.position[0]) / d[0], 0))
    if d[0] > 1e-6:
        hits.append(((room[0] - camera.position[0]) / d[0], 1))
    if d[2] > 1e-6:
        hits.append(((room[2] - camera.position[2]) / d[2], 2))
    if not hits:
        return None
    t, wall = min(hits)
    p = camera.position + t * d
    along = p[2] if wall < 2 else p[0]
    extent = room[2] if wall < 2 else room[0]
    if not (w + 0.1 < along < extent - w - 0.1) or cy + h > room[1] - 0.1 or cy - h < 0.05:
        return None
    for other_wall, a, ow, c, oh in spots:
        if other_wall == wall and abs(a - along) < w + ow + 0.05 and abs(c - cy) < h + oh + 0.05:
            return None
    spots.append((wall, along, w, cy, h))
    offset = depth + (FLUSH_OFFSET if cls.geometry == 'flush' else 0.0)
    if wall == 0:
        center, yaw = np.array([offset, cy, along]), np.pi / 2  # local +z -> world +x
    elif wall == 1:
        center, yaw = np.array([room[0] - offset, cy, along]), -np.pi / 2
    else:
        center, yaw = np.array([along, cy, room[2] - offset]), np.pi  # local +z -> world -z
    return 'box', center, np.array([w, h, depth]), yaw
