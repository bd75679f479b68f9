"""Closed-form optics and radiometry the sensor models are built from.

Every function works on numpy arrays (angles in radians, temperatures in kelvin) and is
checked against a textbook identity in ``test/test_generator_physics.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def fresnel_reflectance(theta: np.ndarray, n: complex) -> tuple[np.ndarray, np.ndarray]:
    """Power reflectances (R_s, R_p) from air onto a medium of (complex) refractive index n.

    Works for dielectrics (real n) and metals (n + ik) alike, which is why the complex form is
    used instead of the real-valued textbook one.
    """
    theta = np.asarray(theta, dtype=np.float64)
    cos_i = np.cos(theta)
    sin_i = np.sin(theta)
    n = complex(n)
    cos_t = np.sqrt(n * n - sin_i * sin_i + 0j) / n
    r_s = (cos_i - n * cos_t) / (cos_i + n * cos_t)
    r_p = (n * cos_i - cos_t) / (n * cos_i + cos_t)
    return np.abs(r_s) ** 2, np.abs(r_p) ** 2


def specular_dolp(theta: np.ndarray, n: complex) -> np.ndarray:
    """Degree of linear polarization of specularly reflected unpolarized light."""
    r_s, r_p = fresnel_reflectance(theta, n)
    total = r_s + r_p
    return np.where(total > 0, (r_s - r_p) / np.maximum(total, 1e-12), 0.0)


def specular_dolp_closed_form(theta: np.ndarray, n: float) -> np.ndarray:
    """The dielectric specular DoLP in closed form (Atkinson and Hancock 2006, eq. 7)."""
    s2 = np.sin(theta) ** 2
    c = np.cos(theta)
    return 2 * s2 * c * np.sqrt(n * n - s2) / (n * n - s2 - n * n * s2 + 2 * s2 * s2)


def diffuse_dolp(theta: np.ndarray, n: float) -> np.ndarray:
    """DoLP of light scattered below the surface and refracted out at emittance angle theta.

    Closed form of Atkinson and Hancock (2006), eq. 6; it equals (T_p - T_s) / (T_p + T_s) of
    the Fresnel transmission from inside the medium, which the tests check.
    """
    s2 = np.sin(theta) ** 2
    num = (n - 1 / n) ** 2 * s2
    den = 2 + 2 * n * n - (n + 1 / n) ** 2 * s2 + 4 * np.cos(theta) * np.sqrt(n * n - s2)
    return num / den


def schlick(cos_theta: np.ndarray, f0: np.ndarray | float) -> np.ndarray:
    """Schlick's approximation of the unpolarized Fresnel reflectance."""
    return f0 + (1.0 - f0) * (1.0 - cos_theta) ** 5


def schlick_f0(n: complex) -> float:
    """Normal-incidence reflectance for Schlick's approximation: |(n - 1) / (n + 1)|²."""
    n = complex(n)
    return float(abs((n - 1) / (n + 1)) ** 2)


def brewster_angle(n: float) -> float:
    return float(np.arctan(n))


@dataclass(frozen=True)
class PlanckCalibration:
    """FLIR-style radiometric calibration: counts S = R1 / (R2 (exp(B / T) - F)) - O.

    The constants are those a FLIR camera stores in its EXIF (PlanckR1, PlanckR2, PlanckB,
    PlanckF, PlanckO); the defaults are ExifTool's documented example values, which put room
    temperature near 18 700 counts and keep -30..150 °C inside 16 bits. Counts are linear in
    radiance, so a surface of emissivity e reads e S(T) + (1 - e) S(T_reflected) (offset O
    aside), which is how reflected ambient enters the thermal image.
    """

    r1: float = 21106.77
    r2: float = 0.012545258
    b: float = 1501.0
    f: float = 1.0
    o: float = -7340.0

    def counts_from_kelvin(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        return self.r1 / (self.r2 * (np.exp(self.b / t) - self.f)) - self.o

    def kelvin_from_counts(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, dtype=np.float64)
        return self.b / np.log(self.r1 / (self.r2 * (s + self.o)) + self.f)

    def radiance(self, t: np.ndarray) -> np.ndarray:
        """Counts without the offset: proportional to in-band radiance, so it mixes linearly."""
        return self.counts_from_kelvin(t) + self.o

    def kelvin_from_radiance(self, radiance: np.ndarray) -> np.ndarray:
        return self.kelvin_from_counts(np.asarray(radiance) - self.o)


KELVIN = 273.15


def kinect_depth_sigma(z: np.ndarray) -> np.ndarray:
    """Axial noise of a structured-light (Kinect v1) camera, metres, after Nguyen et al. (2012).

    sigma_z = 0.0012 + 0.0019 (z - 0.4)²: it grows with the square of the distance because
    depth is inverse disparity and the disparity error is roughly constant.
    """
    return 0.0012 + 0.0019 * (np.asarray(z) - 0.4) ** 2
