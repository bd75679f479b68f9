"""The synthetic classes, the materials they are made of, and what each modality sees of them.

The classes are designed so that the four modalities carry information of their own and some
information in common (issue #3): some pairs of classes differ only in a cue a single modality
perceives (colour: RGB; surface gloss: polarization; relief against the wall: depth;
temperature: thermal), many classes differ in several cues at once.

Every class is a set of *physical properties* (geometry family, paint, finish, temperature).
What a modality can perceive is a function of those properties (:func:`cue`), written once here
and used both by the renderer's design and by the information ceiling (``ceiling.py``), so the
ceiling follows from the physics of the generator instead of from a hand-written table.

Shape is a nuisance, not a class cue, for objects standing on the floor: each of them is drawn
as a box, a sphere or a cylinder with the same size distribution whatever its class, so no
class can be recognised from its silhouette alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmp_ros.modalities import MODALITIES

IGNORE_LABEL = 255


@dataclass(frozen=True)
class Material:
    """Optical and thermal properties of a surface.

    ``albedo`` is linear RGB diffuse reflectance; ``ior`` the refractive index in the visible
    (complex for metals: n + ik); ``smooth`` whether the specular reflection keeps its Fresnel
    polarization (a rough surface's microfacets scatter it with random orientation within a
    pixel, which depolarizes it while leaving the radiance under soft lighting almost unchanged);
    ``emissivity`` in the long-wave infrared.
    """

    name: str
    albedo: tuple[float, float, float]
    ior: complex
    smooth: bool
    emissivity: float
    metal: bool = False
    glass: bool = False
    printed: bool = False  # albedo replaced by a random print (posters, canvases)
    screen: bool = False  # emits linearly polarized light (LCD)

    @property
    def luminance(self) -> float:
        """Rec. 709 luminance of the albedo: what the monochrome polarization camera sees."""
        r, g, b = self.albedo
        return 0.2126 * r + 0.7152 * g + 0.0722 * b


# Red and green paints have the same luminance, so the monochrome polarization sensor, the
# depth camera and the thermal camera cannot tell them apart (only RGB can).
MATERIALS: dict[str, Material] = {
    m.name: m
    for m in (
        Material('floor_wood', (0.30, 0.19, 0.11), 1.5, False, 0.94),
        Material('wall_paint', (0.62, 0.60, 0.55), 1.5, False, 0.93),
        Material('red_paint', (0.55, 0.060, 0.045), 1.5, False, 0.93),
        Material('green_paint', (0.050, 0.206, 0.070), 1.5, False, 0.93),
        Material('red_lacquer', (0.55, 0.060, 0.045), 1.5, True, 0.93),
        Material('aluminium', (0.91, 0.92, 0.92), complex(1.2, 7.0), True, 0.08, metal=True),
        Material('white_plastic', (0.80, 0.80, 0.78), 1.5, False, 0.93),
        Material('black_rubber', (0.025, 0.025, 0.025), 1.55, False, 0.93),
        Material('paper_print', (0.5, 0.5, 0.5), 1.5, False, 0.93, printed=True),
        Material('window_glass', (0.0, 0.0, 0.0), 1.52, True, 0.85, glass=True),
        Material('radiator_enamel', (0.85, 0.85, 0.83), 1.5, False, 0.93),
        Material('lcd_screen', (0.03, 0.03, 0.035), 1.5, True, 0.93, screen=True),
    )
}


@dataclass(frozen=True)
class ObjectClass:
    """A class: its geometry family, its material, and the temperature it is kept at.

    ``geometry``: 'floor_object' (a box, sphere or cylinder on the floor; the shape is drawn
    at random per object), 'flush' (a rectangle lying on a wall), 'wall_box' (a box mounted on
    a wall). ``placement`` names the size/position distribution on the wall; two classes with
    the same placement cannot be told apart by where or how large they are. ``temperature``:
    'ambient', 'hot' (45-70 °C), 'warm' (32-40 °C), 'cold' (2-8 °C) or 'outside' (a window,
    near the outdoor temperature).
    """

    name: str
    geometry: str
    placement: str
    material: str
    temperature: str
    colour: tuple[int, int, int]  # palette colour for label images


CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass('floor', 'floor', 'room', 'floor_wood', 'floor', (128, 64, 128)),
    ObjectClass('wall', 'wall', 'room', 'wall_paint', 'ambient', (190, 190, 180)),
    ObjectClass('red_matte', 'floor_object', 'floor', 'red_paint', 'ambient', (220, 40, 40)),
    ObjectClass('green_matte', 'floor_object', 'floor', 'green_paint', 'ambient', (40, 170, 60)),
    ObjectClass('red_glossy', 'floor_object', 'floor', 'red_lacquer', 'ambient', (255, 140, 150)),
    ObjectClass('red_hot', 'floor_object', 'floor', 'red_paint', 'hot', (255, 200, 0)),
    ObjectClass('metal', 'floor_object', 'floor', 'aluminium', 'ambient', (110, 150, 200)),
    ObjectClass('cold_white', 'floor_object', 'floor', 'white_plastic', 'cold', (0, 220, 230)),
    ObjectClass('black_rubber', 'floor_object', 'floor', 'black_rubber', 'ambient', (70, 40, 20)),
    ObjectClass('poster', 'flush', 'wall_art', 'paper_print', 'ambient', (240, 120, 240)),
    ObjectClass('canvas', 'wall_box', 'wall_art', 'paper_print', 'ambient', (140, 60, 200)),
    ObjectClass('window', 'flush', 'window', 'window_glass', 'outside', (150, 220, 255)),
    ObjectClass('radiator', 'wall_box', 'radiator', 'radiator_enamel', 'hot', (255, 90, 0)),
    ObjectClass('tv', 'wall_box', 'tv', 'lcd_screen', 'warm', (20, 20, 90)),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
PALETTE: tuple[tuple[int, int, int], ...] = tuple(c.colour for c in CLASSES)
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASS_NAMES)}
OBJECT_CLASSES: tuple[int, ...] = tuple(
    i for i, c in enumerate(CLASSES) if c.geometry not in ('floor', 'wall')
)

DARK_LUMINANCE = 0.05  # below this the depth camera's IR pattern is too weak: holes


def _luminance_level(material: Material) -> str:
    """The monochrome brightness class that shifts the diffuse/specular balance of DoLP."""
    if material.printed:
        return 'print'
    if material.luminance < DARK_LUMINANCE:
        return 'dark'
    return 'bright' if material.luminance > 0.5 else 'mid'


def cue(class_index: int, modality: str) -> tuple:
    """What ``modality`` perceives of a class: two classes with equal cues look identical to it.

    Geometry, size and placement are seen by every modality (a silhouette, a relief, a normal
    field), except that only depth sees whether a wall object stands out from the wall. Colour
    is RGB's; brightness shifts the polarization camera's DoLP and dark or mirror-like
    surfaces leave holes in depth; finish (smooth, metal, glass, screen) is polarization's;
    temperature and emissivity are thermal's.
    """
    cls = CLASSES[class_index]
    mat = MATERIALS[cls.material]
    silhouette = 'wall_rect' if cls.geometry in ('flush', 'wall_box') else cls.geometry
    if modality == 'rgb':
        emits = 'window' if mat.glass else ('screen' if mat.screen else 'none')
        look = 'print' if mat.printed else mat.albedo
        return (silhouette, cls.placement, look, mat.metal, emits)
    if modality == 'depth':
        holes = mat.metal or mat.glass or mat.luminance < DARK_LUMINANCE
        return (cls.geometry, cls.placement, holes)
    if modality == 'polarization':
        finish = 'metal' if mat.metal else 'glass' if mat.glass else 'screen' if mat.screen else (
            'smooth' if mat.smooth else 'rough'
        )
        return (silhouette, cls.placement, finish, _luminance_level(mat))
    if modality == 'thermal':
        return (silhouette, cls.placement, cls.temperature, mat.emissivity)
    raise ValueError(f'unknown modality {modality!r}; known modalities are {list(MODALITIES)}')


CUES: dict[str, tuple[tuple, ...]] = {
    m: tuple(cue(i, m) for i in range(len(CLASSES))) for m in MODALITIES
}
