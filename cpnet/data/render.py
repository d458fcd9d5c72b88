"""Pure numpy drawing for the synthetic motion set: textured shapes composited over textured backgrounds.

Everything is evaluated analytically at pixel centres, vectorised over frames: a shape is a signed-distance-like
function of its local coordinates, anti-aliased by one pixel, and its texture is a function of the same local
coordinates, so the texture moves, scales and turns with the shape (the correspondence CPNet has to find).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("square", "triangle", "ellipse", "cross", "half_disk")
_TRIANGLE_NORMALS = np.array([[np.cos(a), np.sin(a)] for a in np.deg2rad([90.0, 210.0, 330.0])])  # (3, 2)


@dataclass(frozen=True)
class Plaid:
    """Texture: two sinusoidal gratings (angles in radians, periods in texture units, phases) mixing two colours."""

    angles: tuple[float, float]
    periods: tuple[float, float]
    phases: tuple[float, float]
    color0: tuple[float, float, float]
    color1: tuple[float, float, float]

    def __call__(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """RGB at coordinates u, v of any shape S -> (*S, 3) in [0, 1]."""
        mix = 0.5
        for angle, period, phase in zip(self.angles, self.periods, self.phases):
            mix = mix + 0.25 * np.sin(2 * np.pi * (u * np.cos(angle) + v * np.sin(angle)) / period + phase)
        c0, c1 = np.asarray(self.color0), np.asarray(self.color1)
        return c0 + (c1 - c0) * mix[..., None]  # (*S, 1) blend of two (3,) colours -> (*S, 3)


def shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed distance-like function of a unit-radius shape at local coordinates (negative inside)."""
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.8
    if shape == "triangle":
        # Half-planes of an equilateral triangle: the max of three signed distances to its edges.
        proj = u[..., None] * _TRIANGLE_NORMALS[:, 0] + v[..., None] * _TRIANGLE_NORMALS[:, 1]  # (*S, 3)
        return proj.max(axis=-1) - 0.5
    if shape == "ellipse":
        return 0.55 * (np.sqrt(u * u + (v / 0.55) ** 2) - 1)
    if shape == "cross":
        bar_h = np.maximum(np.abs(u) - 1, np.abs(v) - 0.35)
        bar_v = np.maximum(np.abs(u) - 0.35, np.abs(v) - 1)
        return np.minimum(bar_h, bar_v)
    if shape == "half_disk":
        return np.maximum(np.sqrt(u * u + v * v) - 1, v - 0.15)
    raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")


def draw_shape(
    canvas: np.ndarray,
    shape: str,
    texture: Plaid,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    angle: np.ndarray,
    texture_scale: float,
) -> np.ndarray:
    """Composite a textured shape over ``canvas`` (T, H, W, 3) in place; per-frame state arrays have shape (T,).

    ``angle`` turns the shape clockwise on screen as it grows (image y points down). The texture is laid out in
    local units times ``texture_scale`` pixels, so it scales with the shape as well as moving and turning with it.
    """
    _, height, width, _ = canvas.shape
    yy, xx = np.mgrid[0:height, 0:width] + 0.5  # pixel centres, (H, W) each
    dx = xx[None] - cx[:, None, None]  # (T, H, W)
    dy = yy[None] - cy[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    r = radius[:, None, None]
    u = (dx * cos + dy * sin) / r  # local coordinates: the inverse rotation of the offset, in radii
    v = (-dx * sin + dy * cos) / r
    alpha = np.clip(0.5 - shape_distance(shape, u, v) * r, 0.0, 1.0)[..., None]  # (T, H, W, 1), 1-pixel ramp
    canvas *= 1 - alpha
    canvas += alpha * texture(u * texture_scale, v * texture_scale)
    return canvas


def random_plaid(rng: np.random.Generator, lightness: float, contrast: float, periods: tuple[float, float]) -> Plaid:
    """A plaid with mean ``lightness``, colour spread ``contrast`` and grating periods drawn from ``periods``."""
    base = lightness + rng.uniform(-0.12, 0.12, size=3)  # a random hue around the lightness
    delta = rng.choice([-1.0, 1.0]) * contrast * rng.uniform(0.6, 1.0, size=3)
    c0 = np.clip(base - delta / 2, 0, 1)
    c1 = np.clip(base + delta / 2, 0, 1)
    return Plaid(
        angles=tuple(rng.uniform(0, np.pi, size=2)),
        periods=tuple(rng.uniform(*periods, size=2)),
        phases=tuple(rng.uniform(0, 2 * np.pi, size=2)),
        color0=tuple(c0),
        color1=tuple(c1),
    )
