"""Synthetic "shapes" images: one geometric object on a textured background, with its mask.

Why: a data set where the evidence for the class is known exactly (the object's mask), so
saliency maps can be scored for localisation, that trains a small CNN in seconds on a CPU. The
class depends on the outline only: colour, position, scale, rotation and background are drawn
independently of the label.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")

_MIN_CONTRAST = 0.3  # luminance gap between object colour and background mean, in [0, 1]


def _polygon(name: str) -> np.ndarray:
    """Vertices (K, 2) of the unit shape ``name`` (circumradius about 1, centred on 0)."""
    def ring(k: int, start_deg: float, radii: np.ndarray | float = 1.0) -> np.ndarray:
        a = np.deg2rad(start_deg + 360.0 / k * np.arange(k))
        return np.stack([radii * np.cos(a), radii * np.sin(a)], 1)

    if name == "square":
        return ring(4, 45)
    if name == "triangle":
        return ring(3, 90)
    if name == "star":
        return ring(10, 90, np.where(np.arange(10) % 2 == 0, 1.0, 0.42))
    if name == "cross":
        w, arm = 0.3, 0.95
        return np.array([(w, w), (arm, w), (arm, -w), (w, -w), (w, -arm), (-w, -arm),
                         (-w, -w), (-arm, -w), (-arm, w), (-w, w), (-w, arm), (w, arm)])
    raise ValueError(f"no polygon for shape {name!r}")


_POLYGONS = {name: _polygon(name) for name in SHAPE_CLASSES if name != "circle"}


def signed_distance(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Exact signed distance (< 0 inside) of points (u, v) to the unit shape ``name``.

    Polygons: distance to the nearest edge segment, negative where the even-odd rule says the
    point is inside.
    """
    if name == "circle":
        return np.sqrt(u * u + v * v) - 1.0
    verts = _POLYGONS[name]
    dist2 = np.full(np.shape(u), np.inf)
    inside = np.zeros(np.shape(u), dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, np.roll(verts, -1, axis=0), strict=True):
        ex, ey = x2 - x1, y2 - y1
        t = np.clip(((u - x1) * ex + (v - y1) * ey) / (ex * ex + ey * ey), 0.0, 1.0)
        dx, dy = u - x1 - t * ex, v - y1 - t * ey
        np.minimum(dist2, dx * dx + dy * dy, out=dist2)
        if y1 != y2:
            crosses = (y1 > v) != (y2 > v)
            inside ^= crosses & (u < x1 + (v - y1) * ex / ey)
    return np.where(inside, -1.0, 1.0) * np.sqrt(dist2)


def _coverage(name: str, size: int, cx: np.ndarray | float, cy: np.ndarray | float,
              radius: np.ndarray | float, angle: np.ndarray | float) -> np.ndarray:
    """Approximate fraction of each pixel covered by the shape, ``(B, size, size)`` or
    ``(size, size)`` for scalar parameters: ``clip(0.5 - signed distance in pixels, 0, 1)``."""
    scalar = np.ndim(cx) == 0
    cx, cy, radius, angle = (np.atleast_1d(np.asarray(a, dtype=np.float64))[:, None, None]
                             for a in (cx, cy, radius, angle))
    centres = np.arange(size, dtype=np.float64) + 0.5
    dx, dy = (centres[None, None, :] - cx) / radius, (centres[None, :, None] - cy) / radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # the shape's own frame, in units of its radius
    cov = np.clip(0.5 - signed_distance(name, u, v) * radius, 0.0, 1.0)
    return cov[0] if scalar else cov


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114])


def render_shapes(n: int, size: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` shape images.

    Returns ``(images uint8 (n, size, size, 3), labels int64 (n,), masks uint8 (n, size, size))``;
    labels index :data:`SHAPE_CLASSES` and are balanced (counts differ by at most one); masks are
    255 where the pixel centre lies on the object, else 0. The object lies fully inside the
    frame (its circumscribed circle does). Its colour differs in luminance from the background's
    mean by at least 0.3; the background is a tinted grey with low-contrast stripes, a gradient
    and noise.
    """
    k = len(SHAPE_CLASSES)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    # Object geometry.
    radius = np.minimum(rng.uniform(0.25, 0.45, n) * size, size / 2 - 1.0)
    cx = rng.uniform(radius + 0.5, size - radius - 0.5)
    cy = rng.uniform(radius + 0.5, size - radius - 0.5)
    angle = rng.uniform(0, 2 * np.pi, n)
    cov = np.empty((n, size, size))
    for label, name in enumerate(SHAPE_CLASSES):
        sel = labels == label
        if sel.any():
            cov[sel] = _coverage(name, size, cx[sel], cy[sel], radius[sel], angle[sel])
    # Background texture.
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    col = lambda a: a[:, None, None]  # noqa: E731 - (n,) -> (n, 1, 1) for broadcasting
    grey = rng.uniform(0.15, 0.85, n)
    base = np.clip(grey[:, None] + rng.uniform(-0.08, 0.08, (n, 3)), 0.0, 1.0)
    theta, freq = rng.uniform(0, np.pi, n), rng.uniform(1.5, 5.0, n)
    phase, stripe_amp = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.03, 0.10, n)
    stripes = col(stripe_amp) * np.sin(
        2 * np.pi * col(freq) * (xx * col(np.cos(theta)) + yy * col(np.sin(theta))) + col(phase))
    g_theta, g_amp = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.0, 0.10, n)
    gradient = col(g_amp) * (xx * col(np.cos(g_theta)) + yy * col(np.sin(g_theta)) - 0.5)
    tone = (stripes + gradient)[..., None] * rng.uniform(0.6, 1.0, (n, 1, 1, 3))
    noise = rng.standard_normal((n, size, size, 3), dtype=np.float32)
    noise *= rng.uniform(0.01, 0.035, (n, 1, 1, 1)).astype(np.float32)
    background = noise + (base[:, None, None, :] + tone).astype(np.float32)
    # Object colour: uniform RGB, redrawn until it stands out from the background's mean.
    bg_lum = _luminance(base)
    colour = rng.uniform(0.0, 1.0, (n, 3))
    bad = np.abs(_luminance(colour) - bg_lum) < _MIN_CONTRAST
    while bad.any():
        colour[bad] = rng.uniform(0.0, 1.0, (int(bad.sum()), 3))
        bad = np.abs(_luminance(colour) - bg_lum) < _MIN_CONTRAST
    s_theta, s_amp = rng.uniform(0, 2 * np.pi, n), rng.uniform(0.0, 0.06, n)
    shade = col(s_amp) * ((xx * size - col(cx)) * col(np.cos(s_theta))
                          + (yy * size - col(cy)) * col(np.sin(s_theta))) / col(radius)
    obj = rng.standard_normal((n, size, size, 3), dtype=np.float32)
    obj *= np.float32(0.015)
    obj += (colour[:, None, None, :] + shade[..., None]).astype(np.float32)
    # Blend: background + coverage * (object - background), in place on float32 buffers.
    obj -= background
    obj *= cov[..., None].astype(np.float32)
    background += obj
    np.clip(background, 0.0, 1.0, out=background)
    background *= np.float32(255.0)
    images = np.rint(background).astype(np.uint8)
    masks = np.where(cov >= 0.5, 255, 0).astype(np.uint8)
    return images, labels, masks
