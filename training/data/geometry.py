"""Vectorised ray casting of the room and its analytic primitives.

Every pixel's ray is intersected with every object whose projected bounds cover it (a box,
sphere or vertical cylinder, in float32), the nearest hit wins, exactly as a z-buffer. The
result is per-pixel geometry the sensor models need: instance, class, distance, axial depth,
world normal and the cosine of the viewing angle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.scene import Camera, Scene, SceneObject

FLOOR, WALL = 0, 1  # instance ids of the room; objects are 2.. in scene order


@dataclass
class GeometryBuffers:
    """Per-pixel geometry of one view, all (H, W)."""

    instance: np.ndarray  # int16: 0 floor, 1 walls and ceiling, 2 + k object k
    distance: np.ndarray  # float32 metres along the ray
    depth: np.ndarray  # float32 metres along the optical axis (what a depth camera reports)
    normal: np.ndarray  # (3, H, W) float32 world unit normal facing the camera
    cos_view: np.ndarray  # float32 cosine between the normal and the direction to the camera
    point: np.ndarray  # (3, H, W) float32 world hit point
    local: np.ndarray  # (3, H, W) float32 hit point in its object's frame (0 for the room)
    ray: np.ndarray  # (3, H, W) float32 world unit ray directions
    normal_camera: np.ndarray  # (2, H, W) float32 x (right) and y (down) of the normal

    @property
    def incidence(self) -> np.ndarray:
        """Viewing (incidence) angle in radians."""
        return np.arccos(np.clip(self.cos_view, 0.0, 1.0))


def camera_rays(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """World unit ray directions (3, H, W) and the axial-depth factor z / distance (H, W)."""
    u = (np.arange(camera.width, dtype=np.float32) - camera.cx) / camera.fx
    v = (np.arange(camera.height, dtype=np.float32) - camera.cy) / camera.fy
    inv_norm = 1.0 / np.sqrt(u[None, :] ** 2 + v[:, None] ** 2 + 1.0)
    r = camera.rotation.astype(np.float32)
    rays = np.empty((3, camera.height, camera.width), dtype=np.float32)
    for axis in range(3):
        rays[axis] = (r[axis, 0] * u[None, :] + r[axis, 1] * v[:, None] + r[axis, 2]) * inv_norm
    return rays, inv_norm.astype(np.float32)


def _screen_bounds(camera: Camera, obj: SceneObject) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (r0, r1, c0, c1) covering the object, None when it is out of view."""
    radius = float(np.linalg.norm(obj.half_size))
    corners = obj.center[None, :] + radius * np.array(
        [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64
    )
    cam = (corners - camera.position) @ camera.rotation  # (8, 3) in camera coordinates
    if np.all(cam[:, 2] <= 0.05):
        return None
    if np.any(cam[:, 2] <= 0.05):  # straddles the camera plane: test every pixel
        return 0, camera.height, 0, camera.width
    u = camera.fx * cam[:, 0] / cam[:, 2] + camera.cx
    v = camera.fy * cam[:, 1] / cam[:, 2] + camera.cy
    c0, c1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, camera.width)
    r0, r1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, camera.height)
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def _to_local(obj: SceneObject, origin: np.ndarray, dx, dy, dz):
    """Ray origin and directions in the object's frame (rotation about y by -yaw)."""
    c, s = np.float32(np.cos(obj.yaw)), np.float32(np.sin(obj.yaw))
    o = (origin - obj.center).astype(np.float32)
    ox, oy, oz = c * o[0] - s * o[2], o[1], s * o[0] + c * o[2]
    lx = c * dx - s * dz
    lz = s * dx + c * dz
    return (ox, oy, oz), (lx, dy, lz)


def _hit_box(o, d, half):
    """Slab test; returns t (inf on a miss) and the local normal axis index (0, 1, 2)."""
    tnear = None
    tfar = None
    axis = None
    for k in range(3):
        with np.errstate(divide='ignore', invalid='ignore'):
            inv = np.float32(1.0) / d[k]
            t1 = (-half[k] - o[k]) * inv
            t2 = (half[k] - o[k]) * inv
        lo = np.minimum(t1, t2)
        hi = np.maximum(t1, t2)
        if tnear is None:
            tnear, tfar, axis = lo, hi, np.zeros(lo.shape, dtype=np.int8)
        else:
            better = lo > tnear
            tnear = np.where(better, lo, tnear)
            axis[better] = k
            tfar = np.minimum(tfar, hi)
    hit = (tnear <= tfar) & (tnear > 0)
    return np.where(hit, tnear, np.float32(np.inf)), axis


def _hit_sphere(o, d, radius):
    b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
    c = np.float32(o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - radius * radius)
    disc = b * b - c
    with np.errstate(invalid='ignore'):
        t = -b - np.sqrt(disc)
    return np.where((disc >= 0) & (t > 0), t, np.float32(np.inf))


def _hit_cylinder(o, d, radius, half_height):
    """Vertical cylinder with a top cap (it stands on the floor); returns t and a cap flag."""
    a = d[0] * d[0] + d[2] * d[2]
    b = o[0] * d[0] + o[2] * d[2]
    c = np.float32(o[0] * o[0] + o[2] * o[2] - radius * radius)
    disc = b * b - a * c
    with np.errstate(invalid='ignore', divide='ignore'):
        t_side = (-b - np.sqrt(disc)) / a
        y_side = o[1] + t_side * d[1]
        side_ok = (disc >= 0) & (t_side > 0) & (np.abs(y_side) <= half_height)
        t_cap = (half_height - o[1]) / d[1]
        xc = o[0] + t_cap * d[0]
        zc = o[2] + t_cap * d[2]
    cap_ok = (t_cap > 0) & (xc * xc + zc * zc <= radius * radius)
    t_side = np.where(side_ok, t_side, np.float32(np.inf))
    t_cap = np.where(cap_ok, t_cap, np.float32(np.inf))
    return np.minimum(t_side, t_cap), t_cap < t_side


def cast(scene: Scene) -> GeometryBuffers:
    """Ray-cast ``scene`` from its camera."""
    camera = scene.camera
    rays, axial = camera_rays(camera)
    dx, dy, dz = rays[0], rays[1], rays[2]
    origin = camera.position.astype(np.float32)
    room = scene.room.astype(np.float32)

    # The room is the inside of a box: the nearest exit plane along each axis.
    with np.errstate(divide='ignore'):
        tx = np.where(dx > 0, room[0] - origin[0], -origin[0]) / dx
        ty = np.where(dy > 0, room[1] - origin[1], -origin[1]) / dy
        tz = np.where(dz > 0, room[2] - origin[2], -origin[2]) / dz
    tx = np.where(np.isfinite(tx), tx, np.inf)
    ty = np.where(np.isfinite(ty), ty, np.inf)
    tz = np.where(np.isfinite(tz), tz, np.inf)
    t = np.minimum(np.minimum(tx, ty), tz).astype(np.float32)
    on_y = ty <= np.minimum(tx, tz)
    on_x = (~on_y) & (tx <= tz)
    nx = np.where(on_x, -np.sign(dx), 0).astype(np.float32)
    ny = np.where(on_y, -np.sign(dy), 0).astype(np.float32)
    nz = np.where(~(on_x | on_y), -np.sign(dz), 0).astype(np.float32)
    instance = np.where(on_y & (dy < 0), FLOOR, WALL).astype(np.int16)
    local = np.zeros((3,) + t.shape, dtype=np.float32)

    for k, obj in enumerate(scene.objects):
        bounds = _screen_bounds(camera, obj)
        if bounds is None:
            continue
        r0, r1, c0, c1 = bounds
        sub = (slice(r0, r1), slice(c0, c1))
        o, d = _to_local(obj, origin, dx[sub], dy[sub], dz[sub])
        half = obj.half_size.astype(np.float32)
        if obj.shape == 'box':
            t_obj, axis = _hit_box(o, d, half)
        elif obj.shape == 'sphere':
            t_obj = _hit_sphere(o, d, half[0])
        else:
            t_obj, cap = _hit_cylinder(o, d, half[0], half[1])
        closer = t_obj < t[sub]
        if not closer.any():
            continue
        t_c = t_obj[closer]
        lp = [o[i] + t_c * d[i][closer] for i in range(3)]
        if obj.shape == 'box':
            ax = axis[closer]
            ln = [np.where(ax == i, np.sign(lp[i]), 0).astype(np.float32) for i in range(3)]
        elif obj.shape == 'sphere':
            ln = [lp[i] / half[0] for i in range(3)]
        else:
            top = cap[closer]
            ln = [
                np.where(top, 0, lp[0] / half[0]),
                np.where(top, 1, 0).astype(np.float32),
                np.where(top, 0, lp[2] / half[0]),
            ]
        # local normal -> world (rotate by +yaw about y)
        c, s = np.float32(np.cos(obj.yaw)), np.float32(np.sin(obj.yaw))
        t[sub][closer] = t_c
        nx[sub][closer] = c * ln[0] + s * ln[2]
        ny[sub][closer] = ln[1]
        nz[sub][closer] = -s * ln[0] + c * ln[2]
        instance[sub][closer] = 2 + k
        for i in range(3):
            local[i][sub][closer] = lp[i]

    point = np.stack([origin[i] + t * rays[i] for i in range(3)])
    normal = np.stack([nx, ny, nz])
    cos_view = np.clip(-(nx * dx + ny * dy + nz * dz), 0.0, 1.0)
    r = camera.rotation.astype(np.float32)
    normal_camera = np.stack(
        [r[0, j] * nx + r[1, j] * ny + r[2, j] * nz for j in (0, 1)]
    )
    return GeometryBuffers(
        instance=instance,
        distance=t,
        depth=t * axial,
        normal=normal,
        cos_view=cos_view,
        point=point,
        local=local,
        ray=rays,
        normal_camera=normal_camera,
    )
