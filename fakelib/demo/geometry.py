"""Geometry of the synthetic faces: coordinate grids and soft-edged shapes, all in fractions of the image side
(x right, y down), and the painting and colour helpers built on them."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image


Colour = np.ndarray  # (3,) float32 RGB in [0, 1]


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of a square image as fractions of its side."""

    size: int
    x: np.ndarray  # (size, size) float32
    y: np.ndarray  # (size, size) float32


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int) -> Grid:
    line = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(line, line)
    x.flags.writeable = y.flags.writeable = False
    return Grid(size, x, y)


def ellipse_radius(grid: Grid, centre, radii, angle: float = 0.0, bend: float = 0.0) -> np.ndarray:
    """(size, size) normalized elliptical radius: 1 on the outline; `bend` lowers the ends by bend * (x / rx)^2."""
    dx, dy = grid.x - np.float32(centre[0]), grid.y - np.float32(centre[1])
    if angle:
        cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        dx, dy = dx * cos + dy * sin, dy * cos - dx * sin
    u = dx / np.float32(radii[0])
    if bend:
        dy = dy - np.float32(bend) * u * u
    v = dy / np.float32(radii[1])
    return np.sqrt(u * u + v * v)


def _bounding_box(grid: Grid, centre, reach: float) -> tuple[slice, slice]:
    """Row and column slices of the pixels within `reach` (fraction of the side) of `centre`, clipped to the image."""
    low = np.floor((np.asarray(centre) - reach) * grid.size).astype(int).clip(0, grid.size)
    high = np.ceil((np.asarray(centre) + reach) * grid.size).astype(int).clip(0, grid.size)
    return slice(low[1], high[1]), slice(low[0], high[0])


def soft_ellipse(grid: Grid, centre, radii, angle: float = 0.0, bend: float = 0.0, soft: float = 0.8) -> np.ndarray:
    """(size, size) float32 coverage in [0, 1] of an ellipse whose edge is anti-aliased over `soft` pixels."""
    edge_width = soft / (grid.size * min(radii))  # radius units per `soft` pixels on the short axis
    # Only the bounding box is computed (most shapes are small): coverage ends at radius 1 + edge_width / 2.
    outer = 1 + edge_width / 2
    window = _bounding_box(grid, centre, (max(radii) + abs(bend) * outer) * outer + 1 / grid.size)
    local = Grid(grid.size, grid.x[window], grid.y[window])
    radius = ellipse_radius(local, centre, radii, angle, bend)
    coverage = np.zeros((grid.size, grid.size), dtype=np.float32)
    coverage[window] = np.clip((1.0 - radius) / np.float32(edge_width) + 0.5, 0.0, 1.0)
    return coverage


def soft_step(values: np.ndarray, edge: float, width: float) -> np.ndarray:
    """Soft step from 0 below `edge` to 1 above it over `width` (same units as `values`)."""
    return np.clip((values - np.float32(edge)) / np.float32(width) + 0.5, 0.0, 1.0)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 smooth noise of unit-ish amplitude with about `cells` blobs across the side."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    resized = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def support_box(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices bounding the non-zero part of `alpha` (size, size), or None when it is empty."""
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    if rows.size == 0:
        return None
    band = alpha[rows[0]:rows[-1] + 1]
    cols = np.flatnonzero(band.max(axis=0) > 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def paint_over(canvas: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Alpha-blend `colour` ((3,), (size, size) or (size, size, 3)) over `canvas` of the same size, in place.

    Only the bounding box of `alpha` is touched: most shapes cover a small part of the image.
    """
    window = support_box(alpha)
    if window is None:
        return
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim >= 2:
        colour = colour[window]
    weight = alpha[window] if canvas.ndim == 2 else alpha[window][..., None]
    canvas[window] += weight * (colour - canvas[window])


def hsv(hue: float, saturation: float, value: float) -> Colour:
    """One RGB colour from HSV components in [0, 1]."""
    channel = (np.array([0.0, 2.0 / 3.0, 1.0 / 3.0]) + hue) % 1.0
    ramp = np.clip(np.abs(channel * 6.0 - 3.0) - 1.0, 0.0, 1.0)
    return (value * (1.0 - saturation + saturation * ramp)).astype(np.float32)


def palette_colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> Colour:
    """A colour between two neighbouring palette entries, with a little per-channel jitter."""
    position = rng.uniform(0, len(palette) - 1)
    low = int(position)
    high = min(low + 1, len(palette) - 1)
    colour = palette[low] + (palette[high] - palette[low]) * (position - low)
    return np.clip(colour * np.exp(rng.normal(0, jitter, 3)), 0, 1).astype(np.float32)
