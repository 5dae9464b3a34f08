"""Deterministic generator of aligned synthetic faces; fakes carry localized GAN artifacts and ground-truth masks.

Faces are drawn on the FFHQ alignment of `fakelib.regions.LANDMARKS` (eyes, nose tip and mouth at fixed fractions
of the side), so the face-region template and explanation scores line up with them. A face, its lighting, its
camera and its sensor noise come from one random stream and the artifacts from another: rendering the same
generator state as real and as fake gives the same pixels everywhere outside the fake's artifact footprints.
Artifacts are local, so both classes share size, JPEG settings and global colour statistics.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import functools
import io
import json
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from fakelib.images import encode_jpeg
from fakelib.regions import LANDMARKS

ARTIFACTS: tuple[str, ...] = ("checkerboard", "iris_mismatch", "droplet", "teeth_smear", "hair_warp")
LABELS: tuple[str, ...] = ("real", "fake")
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.70), ("val", 0.15), ("test", 0.15))
MANIFEST_COLUMNS: tuple[str, ...] = (
    "relpath", "label", "split", "artifacts", "mask_relpath", "seed", "index", "strength", "mask_fraction",
)
MIN_SIZE, MAX_SIZE = 32, 1024
# A pixel belongs to the ground-truth mask where an artifact's footprint reaches this fraction of its peak.
MASK_THRESHOLD = 0.25
# How many artifacts a fake carries (1, 2 or 3) and how often.
ARTIFACT_COUNT_PROBABILITIES = (0.4, 0.4, 0.2)
# The record of every file this generator wrote in a folder: only those may ever be replaced or removed.
MARKER = ".fakelib-demo.json"
MANIFEST = "manifest.csv"

Colour = np.ndarray  # (3,) float32 RGB in [0, 1]

SKIN_TONES = np.array([
    [0.96, 0.80, 0.69], [0.92, 0.72, 0.58], [0.85, 0.64, 0.50], [0.76, 0.55, 0.40],
    [0.62, 0.42, 0.30], [0.47, 0.31, 0.22], [0.34, 0.22, 0.16],
], dtype=np.float32)
HAIR_COLOURS = np.array([
    [0.07, 0.06, 0.05], [0.18, 0.12, 0.08], [0.33, 0.22, 0.13], [0.52, 0.38, 0.24],
    [0.78, 0.66, 0.44], [0.52, 0.24, 0.11], [0.60, 0.58, 0.56],
], dtype=np.float32)
IRIS_COLOURS = np.array([
    [0.22, 0.13, 0.07], [0.38, 0.23, 0.11], [0.48, 0.40, 0.19],  # dark brown, brown, hazel
    [0.30, 0.46, 0.28], [0.30, 0.48, 0.72], [0.46, 0.52, 0.58],  # green, blue, grey
], dtype=np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Geometry: coordinate grids and soft-edged shapes, all in fractions of the image side (x right, y down)


@dataclass(frozen=True)
class Grid:
    """Pixel-centre coordinates of a square image as fractions of its side."""

    size: int
    x: np.ndarray  # (size, size) float32
    y: np.ndarray  # (size, size) float32


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> Grid:
    line = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = np.meshgrid(line, line)
    x.flags.writeable = y.flags.writeable = False
    return Grid(size, x, y)


def _ellipse_radius(grid: Grid, centre, radii, angle: float = 0.0, bend: float = 0.0) -> np.ndarray:
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


def _ellipse(grid: Grid, centre, radii, angle: float = 0.0, bend: float = 0.0, soft: float = 0.8) -> np.ndarray:
    """(size, size) float32 coverage in [0, 1] of an ellipse whose edge is anti-aliased over `soft` pixels."""
    edge_width = soft / (grid.size * min(radii))  # radius units per `soft` pixels on the short axis
    # Only the bounding box is computed (most shapes are small): coverage ends at radius 1 + edge_width / 2.
    outer = 1 + edge_width / 2
    window = _bounding_box(grid, centre, (max(radii) + abs(bend) * outer) * outer + 1 / grid.size)
    local = Grid(grid.size, grid.x[window], grid.y[window])
    radius = _ellipse_radius(local, centre, radii, angle, bend)
    coverage = np.zeros((grid.size, grid.size), dtype=np.float32)
    coverage[window] = np.clip((1.0 - radius) / np.float32(edge_width) + 0.5, 0.0, 1.0)
    return coverage


def _step(values: np.ndarray, edge: float, width: float) -> np.ndarray:
    """Soft step from 0 below `edge` to 1 above it over `width` (same units as `values`)."""
    return np.clip((values - np.float32(edge)) / np.float32(width) + 0.5, 0.0, 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 smooth noise of unit-ish amplitude with about `cells` blobs across the side."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    resized = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.float32)


def _support(alpha: np.ndarray) -> tuple[slice, slice] | None:
    """Row and column slices bounding the non-zero part of `alpha` (size, size), or None when it is empty."""
    rows = np.flatnonzero(alpha.max(axis=1) > 0)
    if rows.size == 0:
        return None
    band = alpha[rows[0]:rows[-1] + 1]
    cols = np.flatnonzero(band.max(axis=0) > 0)
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Alpha-blend `colour` ((3,), (size, size) or (size, size, 3)) over `canvas` of the same size, in place.

    Only the bounding box of `alpha` is touched: most shapes cover a small part of the image.
    """
    window = _support(alpha)
    if window is None:
        return
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim >= 2:
        colour = colour[window]
    weight = alpha[window] if canvas.ndim == 2 else alpha[window][..., None]
    canvas[window] += weight * (colour - canvas[window])


def _hsv(hue: float, saturation: float, value: float) -> Colour:
    """One RGB colour from HSV components in [0, 1]."""
    channel = (np.array([0.0, 2.0 / 3.0, 1.0 / 3.0]) + hue) % 1.0
    ramp = np.clip(np.abs(channel * 6.0 - 3.0) - 1.0, 0.0, 1.0)
    return (value * (1.0 - saturation + saturation * ramp)).astype(np.float32)


def _palette_colour(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> Colour:
    """A colour between two neighbouring palette entries, with a little per-channel jitter."""
    position = rng.uniform(0, len(palette) - 1)
    low = int(position)
    high = min(low + 1, len(palette) - 1)
    colour = palette[low] + (palette[high] - palette[low]) * (position - low)
    return np.clip(colour * np.exp(rng.normal(0, jitter, 3)), 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# The face description: every random choice of one face, drawn once, then rendered


@dataclass(frozen=True)
class Head:
    centre: tuple[float, float]
    radii: tuple[float, float]
    jaw_taper: float  # how much narrower the chin is than the cheeks
    skin: Colour
    blush: float
    ear_y: float
    neck_half_width: float
    clothes: Colour
    clothes_radii: tuple[float, float]
    neckline_depth: float


@dataclass(frozen=True)
class Hair:
    style: str  # "bald", "short" or "long"
    colour: Colour
    cap_centre: tuple[float, float]
    cap_radii: tuple[float, float]
    hairline: float  # y of the hairline at the face's centre line
    hairline_curve: float
    hairline_skew: float
    strand_pivot: tuple[float, float]
    strand_frequency: float
    strand_phase: float
    waviness: float


@dataclass(frozen=True)
class Eyes:
    centres: tuple[tuple[float, float], tuple[float, float]]  # image-left, image-right
    radii: tuple[float, float]
    tilt: float
    gaze: tuple[float, float]
    iris_radius: float
    pupil_radius: float
    iris_colour: Colour
    sclera: Colour
    brow_gap: float
    brow_thickness: float
    brow_tilt: float
    brow_colour: Colour


@dataclass(frozen=True)
class Mouth:
    centre: tuple[float, float]
    half_width: float
    open: bool
    opening: float  # half-height of the open mouth's interior
    smile: float
    upper_lip: float
    lower_lip: float
    lip_colour: Colour
    teeth_colour: Colour
    tooth_width: float


@dataclass(frozen=True)
class Look:
    """Scene, light and camera: background, shading, grading, blur and sensor noise levels."""

    background: tuple[Colour, Colour]
    background_angle: float
    background_style: str  # "plain", "bokeh" or "edge"
    light: tuple[float, float, float]
    ambient: float
    exposure: float
    white_balance: Colour
    gamma: float
    vignette: float
    blur_sigma: float  # pixels
    read_noise: float
    shot_noise: float


@dataclass(frozen=True)
class Face:
    head: Head
    hair: Hair
    eyes: Eyes
    mouth: Mouth
    look: Look


def _landmark(name: str, jitter: tuple[float, float]) -> tuple[float, float]:
    x, y = LANDMARKS[name]
    return (x + jitter[0], y + jitter[1])


def _sample_head(rng: np.random.Generator) -> Head:
    yaw_shift = rng.normal(0, 0.012)  # a slightly turned head moves the outline, not the aligned features
    radii = (rng.uniform(0.235, 0.285), rng.uniform(0.325, 0.37))
    clothes = _hsv(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.85))
    return Head(
        centre=(0.5 + yaw_shift, rng.uniform(0.515, 0.545)), radii=radii, jaw_taper=rng.uniform(0.08, 0.35),
        skin=_palette_colour(rng, SKIN_TONES, 0.03), blush=rng.uniform(0.05, 0.3), ear_y=rng.uniform(0.50, 0.56),
        neck_half_width=rng.uniform(0.10, 0.14), clothes=clothes,
        clothes_radii=(rng.uniform(0.38, 0.5), rng.uniform(0.18, 0.24)), neckline_depth=rng.uniform(0.04, 0.09),
    )


def _sample_hair(rng: np.random.Generator, head: Head) -> Hair:
    style = str(rng.choice(["bald", "short", "long"], p=[0.06, 0.52, 0.42]))
    colour = _palette_colour(rng, HAIR_COLOURS, 0.05)
    volume_side, volume_top = rng.uniform(0.01, 0.06), rng.uniform(0.015, 0.08)
    cap_radii = (head.radii[0] + volume_side, head.radii[1] + volume_top)
    cap_centre = (head.centre[0] + rng.normal(0, 0.006), head.centre[1] + rng.uniform(-0.01, 0.01))
    top = cap_centre[1] - cap_radii[1]
    return Hair(
        style=style, colour=colour, cap_centre=cap_centre, cap_radii=cap_radii,
        hairline=0.13 if style == "bald" else rng.uniform(0.23, 0.33), hairline_curve=rng.uniform(0.05, 0.2),
        hairline_skew=rng.normal(0, 0.04), strand_pivot=(cap_centre[0] + rng.normal(0, 0.05), top - 0.12),
        strand_frequency=rng.uniform(70, 110), strand_phase=rng.uniform(0, 2 * np.pi),
        waviness=rng.choice([0.0, rng.uniform(0.5, 2.5)], p=[0.6, 0.4]),
    )


def _sample_eyes(rng: np.random.Generator, head: Head, hair: Hair, jitter: tuple[float, float]) -> Eyes:
    radii = (rng.uniform(0.048, 0.058), rng.uniform(0.019, 0.026))
    iris_radius = rng.uniform(0.020, 0.024)
    brow_colour = hair.colour * rng.uniform(0.6, 0.9) if hair.style != "bald" else head.skin * 0.45
    return Eyes(
        centres=(_landmark("left_eye", jitter), _landmark("right_eye", jitter)), radii=radii,
        tilt=rng.uniform(-0.05, 0.15), gaze=(rng.normal(0, 0.006), rng.normal(0, 0.002)), iris_radius=iris_radius,
        pupil_radius=iris_radius * rng.uniform(0.32, 0.5), iris_colour=_palette_colour(rng, IRIS_COLOURS, 0.05),
        sclera=(np.array([0.93, 0.91, 0.88]) * rng.uniform(0.8, 1.0)).astype(np.float32),
        brow_gap=rng.uniform(0.045, 0.06), brow_thickness=rng.uniform(0.007, 0.013),
        brow_tilt=rng.uniform(-0.12, 0.12), brow_colour=brow_colour.astype(np.float32),
    )


def _sample_mouth(rng: np.random.Generator, head: Head, jitter: tuple[float, float]) -> Mouth:
    lip_tint = np.array([0.95, 0.60, 0.60]) * rng.uniform(0.8, 1.0)
    teeth = np.array([0.93, 0.90, 0.80]) * rng.uniform(0.8, 1.0)
    return Mouth(
        centre=_landmark("mouth", jitter), half_width=rng.uniform(0.065, 0.088), open=bool(rng.uniform() < 0.55),
        opening=rng.uniform(0.014, 0.024), smile=rng.uniform(0.002, 0.014), upper_lip=rng.uniform(0.008, 0.013),
        lower_lip=rng.uniform(0.011, 0.018), lip_colour=(head.skin * lip_tint).astype(np.float32),
        teeth_colour=teeth.astype(np.float32), tooth_width=rng.uniform(0.02, 0.026),
    )


def _sample_look(rng: np.random.Generator, size: int) -> Look:
    background = tuple(_hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.25, 0.95)) for _ in range(2))
    light = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.6, 0.1), 1.0])
    return Look(
        background=background, background_angle=rng.uniform(0, 2 * np.pi),
        background_style=str(rng.choice(["plain", "bokeh", "edge"])),
        light=tuple(light / np.linalg.norm(light)), ambient=rng.uniform(0.35, 0.6), exposure=rng.uniform(0.88, 1.1),
        white_balance=np.exp(rng.normal(0, 0.035, 3)).astype(np.float32), gamma=rng.uniform(0.9, 1.1),
        vignette=rng.uniform(0.0, 0.25), blur_sigma=rng.uniform(0.4, 1.0) * (size / 128) ** 0.5,
        read_noise=rng.uniform(0.003, 0.012), shot_noise=rng.uniform(0.004, 0.02),
    )


def sample_face(rng: np.random.Generator, size: int) -> Face:
    """Draw every random choice of one face (geometry, colours, light, camera) from `rng`."""
    jitter = (rng.normal(0, 0.003), rng.normal(0, 0.003))  # alignment error, as in a real landmark-aligned crop
    head = _sample_head(rng)
    hair = _sample_hair(rng, head)
    return Face(head, hair, _sample_eyes(rng, head, hair, jitter), _sample_mouth(rng, head, jitter),
                _sample_look(rng, size))


# ---------------------------------------------------------------------------------------------------------------
# Drawing: albedo layers painted back to front, with a shading layer painted alongside


class _Canvas:
    """Albedo (size, size, 3) and shading (size, size), both float32, painted back to front."""

    def __init__(self, grid: Grid, background: np.ndarray):
        self.grid = grid
        self.albedo = background
        self.shading = np.ones((grid.size, grid.size), dtype=np.float32)

    def paint(self, alpha: np.ndarray, colour, shading=None) -> None:
        _paint(self.albedo, alpha, colour)
        if shading is not None:
            _paint(self.shading, alpha, shading)

    def image(self) -> np.ndarray:
        return self.albedo * self.shading[..., None]


def _background(grid: Grid, look: Look, rng: np.random.Generator) -> np.ndarray:
    along = (grid.x - 0.5) * np.cos(look.background_angle) + (grid.y - 0.5) * np.sin(look.background_angle) + 0.5
    first, second = look.background
    canvas = first + (second - first) * np.clip(along, 0, 1)[..., None]
    canvas *= (1 + 0.05 * _smooth_noise(rng, grid.size, 4))[..., None]
    if look.background_style == "bokeh":
        for _ in range(rng.integers(3, 7)):
            centre, radius = rng.uniform(0, 1, 2), rng.uniform(0.05, 0.16)
            colour = _hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.3, 1.0))
            blob = _ellipse(grid, centre, (radius, radius), soft=rng.uniform(3, 10) * grid.size / 128)
            _paint(canvas, blob * np.float32(rng.uniform(0.2, 0.5)), colour)
    elif look.background_style == "edge":  # a wall corner or door frame: a straight, slightly soft edge
        angle, offset = rng.uniform(-0.4, 0.4), rng.choice([-1, 1]) * rng.uniform(0.3, 0.45)
        across = (grid.x - 0.5 - offset) * np.cos(angle) + (grid.y - 0.5) * np.sin(angle)
        colour = _hsv(rng.uniform(), rng.uniform(0, 0.4), rng.uniform(0.2, 0.9))
        _paint(canvas, _step(across * grid.size * np.sign(offset), 0, 1.5), colour)
    return canvas.astype(np.float32)


def _ellipsoid_shading(grid: Grid, centre, radii, look: Look) -> np.ndarray:
    """(size, size) Lambert shading of an ellipsoid seen face-on, 1 where its normal faces the camera."""
    u = np.clip((grid.x - centre[0]) / radii[0], -1, 1)
    v = np.clip((grid.y - centre[1]) / radii[1], -1, 1)
    depth = np.sqrt(np.clip(1 - u * u - v * v, 0, 1))
    lx, ly, lz = look.light
    lambert = np.clip(u * lx + v * ly + depth * lz, 0, 1)
    return (look.ambient + (1 - look.ambient) * lambert) / (look.ambient + (1 - look.ambient) * lz)


def _hair_texture(grid: Grid, hair: Hair) -> np.ndarray:
    """(size, size, 3) hair colour with strands radiating from a crown above the head."""
    dx, dy = grid.x - hair.strand_pivot[0], grid.y - hair.strand_pivot[1]
    angle = np.arctan2(dx, dy)
    distance = np.sqrt(dx * dx + dy * dy)
    wave = hair.waviness * np.sin(distance * 60 + hair.strand_phase) if hair.waviness else 0
    strands = 0.6 * np.sin(angle * hair.strand_frequency + wave) \
        + 0.4 * np.sin(angle * hair.strand_frequency * 1.73 + hair.strand_phase + 2 * wave)
    sheen = np.exp(-((distance - 0.32) / 0.05) ** 2)
    tone = 1 + 0.16 * strands + 0.25 * sheen
    return hair.colour * tone[..., None]


def _head_coverage(grid: Grid, head: Head) -> np.ndarray:
    """(size, size) coverage of the head: an ellipse whose lower half narrows towards the chin."""
    dy = (grid.y - head.centre[1]) / head.radii[1]
    half_width = head.radii[0] * (1 - head.jaw_taper * np.clip(dy, 0, 1) ** 2)
    dx = (grid.x - head.centre[0]) / half_width
    radius = np.sqrt(dx * dx + dy * dy)
    return np.clip((1 - radius) * head.radii[0] * grid.size / 0.8 + 0.5, 0, 1)


def _hair_cap(grid: Grid, hair: Hair) -> np.ndarray:
    """(size, size) coverage of the hair on top of the head, above a curved hairline."""
    cap = _ellipse(grid, hair.cap_centre, hair.cap_radii)
    across = (grid.x - hair.cap_centre[0]) / hair.cap_radii[0]
    hairline = hair.hairline + hair.hairline_curve * across ** 2 + hair.hairline_skew * across
    return cap * _step((hairline - grid.y) * grid.size, 0, 1.5)


def _long_hair(grid: Grid, hair: Hair) -> np.ndarray:
    """(size, size) coverage of long hair falling to the shoulders, behind and beside the face."""
    centre = (hair.cap_centre[0], hair.cap_centre[1] + 0.08)
    return _ellipse(grid, centre, (hair.cap_radii[0] + 0.03, hair.cap_radii[1] + 0.1))


def _draw_body(canvas: _Canvas, face: Face, rng: np.random.Generator) -> None:
    """Long hair behind, neck, clothes, ears, head, hair cap, and long hair in front of the ears."""
    grid, head, hair, look = canvas.grid, face.head, face.hair, face.look
    long_hair = _long_hair(grid, hair) if hair.style == "long" else None
    hair_shading = _ellipsoid_shading(grid, hair.cap_centre, hair.cap_radii, look)
    strands = _hair_texture(grid, hair) if hair.style != "bald" else None
    if long_hair is not None:
        canvas.paint(long_hair, strands * 0.8, hair_shading)
    canvas.paint(_ellipse(grid, (head.centre[0], 1.02), (head.neck_half_width, 0.3)), head.skin * 0.9, 0.72)
    clothes = _ellipse(grid, (0.5, 1.13), head.clothes_radii)
    neckline = _ellipse(grid, (head.centre[0], 0.9), (head.neck_half_width * 1.1, head.neckline_depth))
    canvas.paint(clothes * (1 - neckline), head.clothes, 0.95)
    for side in (-1, 1):
        ear_x = head.centre[0] + side * head.radii[0] * 0.97
        canvas.paint(_ellipse(grid, (ear_x, head.ear_y), (0.032, 0.062)), head.skin * 0.93, 0.85)
        canvas.paint(_ellipse(grid, (ear_x + side * 0.006, head.ear_y), (0.014, 0.038), soft=2), head.skin * 0.75)
    skin = head.skin * (1 + 0.035 * _smooth_noise(rng, grid.size, 6))[..., None]
    canvas.paint(_head_coverage(grid, head), skin, _ellipsoid_shading(grid, head.centre, head.radii, look))
    if hair.style != "bald":
        canvas.paint(_hair_cap(grid, hair), strands, hair_shading)
    if long_hair is not None:  # the strands that fall in front of the ears and the sides of the face
        face_window = _ellipse(grid, head.centre, (head.radii[0] * 0.86, head.radii[1] * 1.1), soft=2)
        below_hairline = _step(grid.y * grid.size, hair.hairline * grid.size, 2)
        beside_neck = _step(np.abs(grid.x - head.centre[0]) * grid.size, head.neck_half_width * grid.size, 2)
        canvas.paint(long_hair * (1 - face_window) * below_hairline * beside_neck, strands, hair_shading)


def _iris_field(grid: Grid, centre, radius: float, colour: Colour) -> np.ndarray:
    """(size, size, 3) iris colour: lighter around the pupil, a dark limbal ring at the rim, faint radial fibres."""
    dx, dy = grid.x - centre[0], grid.y - centre[1]
    radial = np.clip(np.sqrt(dx * dx + dy * dy) / radius, 0, 1)
    fibres = 0.08 * np.sin(np.arctan2(dy, dx) * 14)
    tone = 1.25 - 0.65 * radial ** 2 + fibres
    return colour * tone[..., None]


def _eye_geometry(eyes: Eyes, side: int) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Centre, iris centre and tilt of the image-left (side 0) or image-right (side 1) eye."""
    centre = eyes.centres[side]
    iris = (centre[0] + eyes.gaze[0], centre[1] + eyes.gaze[1])
    return centre, iris, eyes.tilt if side == 0 else -eyes.tilt


def _sclera(grid: Grid, eyes: Eyes, side: int) -> np.ndarray:
    centre, _, tilt = _eye_geometry(eyes, side)
    return _ellipse(grid, centre, eyes.radii, angle=tilt, bend=-0.15 * eyes.radii[1])


def _draw_eye(canvas: _Canvas, face: Face, side: int) -> None:
    grid, eyes, skin = canvas.grid, face.eyes, face.head.skin
    centre, iris, tilt = _eye_geometry(eyes, side)
    canvas.paint(_ellipse(grid, centre, (eyes.radii[0] * 1.5, eyes.radii[1] * 2.2), soft=4), skin * 0.86)
    crease = (centre[0], centre[1] - eyes.radii[1] * 0.9)
    canvas.paint(_ellipse(grid, crease, (eyes.radii[0] * 1.05, eyes.radii[1] * 1.1), tilt, soft=1.5) * 0.5,
                 skin * 0.8)
    sclera = _sclera(grid, eyes, side)
    canvas.paint(sclera, eyes.sclera * (0.85 + 0.15 * _step(grid.y, centre[1], eyes.radii[1]))[..., None])
    canvas.paint(_ellipse(grid, iris, (eyes.iris_radius,) * 2) * sclera,
                 _iris_field(grid, iris, eyes.iris_radius, eyes.iris_colour))
    canvas.paint(_ellipse(grid, iris, (eyes.pupil_radius,) * 2) * sclera, np.float32([0.03, 0.025, 0.03]))
    light_x, light_y, _ = face.look.light
    glint = (iris[0] + light_x * eyes.iris_radius * 0.5, iris[1] + light_y * eyes.iris_radius * 0.5 - 0.004)
    canvas.paint(_ellipse(grid, glint, (eyes.iris_radius * 0.28,) * 2) * sclera * 0.9, np.float32([1, 1, 1]))
    lid = _ellipse(grid, centre, (eyes.radii[0] * 1.1, eyes.radii[1] * 1.45), tilt, bend=-0.15 * eyes.radii[1])
    upper = 1 - _step(grid.y, centre[1], eyes.radii[1] * 0.5)
    canvas.paint(np.clip(lid - sclera, 0, 1) * upper, np.float32([0.09, 0.06, 0.05]))
    brow = (centre[0] + (0.006 if side else -0.006), centre[1] - eyes.brow_gap)
    brow_tilt = eyes.brow_tilt if side == 0 else -eyes.brow_tilt
    canvas.paint(_ellipse(grid, brow, (0.056, eyes.brow_thickness), brow_tilt, bend=0.012, soft=1.2) * 0.92,
                 eyes.brow_colour)


def _draw_nose_and_cheeks(canvas: _Canvas, face: Face) -> None:
    grid, skin, look = canvas.grid, face.head.skin, face.look
    nose_x, nose_y = _landmark("nose_tip", (0.0, 0.0))
    nose_x += face.eyes.centres[0][0] - LANDMARKS["left_eye"][0]
    nose_y += face.eyes.centres[0][1] - LANDMARKS["left_eye"][1]
    for side in (-1, 1):
        blush = _ellipse(grid, (0.5 + side * 0.15, 0.64), (0.065, 0.05), soft=6) * np.float32(face.head.blush)
        canvas.paint(blush, skin * np.float32([1.04, 0.84, 0.84]))
    shadow_side = -1 if look.light[0] > 0 else 1
    bridge = _ellipse(grid, (nose_x + shadow_side * 0.028, nose_y - 0.06), (0.012, 0.07), soft=3)
    canvas.paint(bridge * 0.45, skin * 0.72)
    canvas.paint(_ellipse(grid, (nose_x, nose_y + 0.03), (0.034, 0.011), soft=2) * 0.4, skin * 0.8)
    for side in (-1, 1):
        wing = (nose_x + side * 0.027, nose_y + 0.004)
        canvas.paint(_ellipse(grid, wing, (0.015, 0.017), soft=2) * 0.5, skin * 0.84)
        nostril = (nose_x + side * 0.016, nose_y + 0.013)
        canvas.paint(_ellipse(grid, nostril, (0.01, 0.0055), side * 0.35) * 0.85, skin * 0.32)
    canvas.paint(_ellipse(grid, (nose_x, nose_y - 0.008), (0.02, 0.016), soft=3) * 0.35, skin * 1.12)


def _mouth_opening(grid: Grid, mouth: Mouth) -> np.ndarray:
    return _ellipse(grid, mouth.centre, (mouth.half_width * 0.88, mouth.opening), bend=-mouth.smile)


def _teeth(grid: Grid, mouth: Mouth, opening: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (size, size) of the upper teeth and their colour (size, size, 3), gaps included."""
    across = (grid.x - mouth.centre[0]) / mouth.half_width
    curve = mouth.centre[1] - mouth.smile * across ** 2 + mouth.opening * 0.15
    coverage = opening * (1 - _step((grid.y - curve) * grid.size, 0, 1.2))
    cosine = np.cos(2 * np.pi * (grid.x - mouth.centre[0]) / mouth.tooth_width)
    gaps = np.clip((cosine - 0.8) / 0.2, 0, 1) * 0.55
    tone = (1 - 0.5 * np.clip(across, -1, 1) ** 2) * (1 - gaps)
    return coverage, mouth.teeth_colour * tone[..., None]


def _draw_mouth(canvas: _Canvas, face: Face) -> None:
    grid, mouth = canvas.grid, face.mouth
    centre_x, centre_y = mouth.centre
    if mouth.open:
        lips = _ellipse(grid, (centre_x, centre_y - 0.002), (mouth.half_width, mouth.opening + mouth.lower_lip),
                        bend=-mouth.smile)
        canvas.paint(lips, mouth.lip_colour)
        opening = _mouth_opening(grid, mouth)
        canvas.paint(opening, np.float32([0.22, 0.07, 0.07]))
        teeth, colour = _teeth(grid, mouth, opening)
        canvas.paint(teeth, colour)
        return
    upper = _ellipse(grid, (centre_x, centre_y), (mouth.half_width, mouth.upper_lip), bend=-mouth.smile)
    lower = _ellipse(grid, (centre_x, centre_y), (mouth.half_width * 0.85, mouth.lower_lip), bend=-mouth.smile)
    split = _step(grid.y, centre_y, 0.002)
    canvas.paint(upper * (1 - split) + lower * split, mouth.lip_colour)
    line = _ellipse(grid, (centre_x, centre_y), (mouth.half_width * 0.97, 0.0035), bend=-mouth.smile, soft=1.0)
    canvas.paint(line * 0.85, mouth.lip_colour * 0.4)
    shine = _ellipse(grid, (centre_x, centre_y + mouth.lower_lip * 0.45), (mouth.half_width * 0.4, 0.004), soft=1.5)
    canvas.paint(shine * 0.35, np.minimum(mouth.lip_colour * 1.35, 1))


def draw_face(face: Face, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render `face` as linear-light (size, size, 3) float32 in about [0, 1], before grading, blur and noise.

    `rng` supplies the background's bokeh or edge and the low-frequency skin and background texture; the face's
    geometry, colours and light are already in `face`.
    """
    grid = _grid(size)
    canvas = _Canvas(grid, _background(grid, face.look, rng))
    _draw_body(canvas, face, rng)
    _draw_nose_and_cheeks(canvas, face)
    for side in (0, 1):
        _draw_eye(canvas, face, side)
    _draw_mouth(canvas, face)
    return canvas.image()


def _grade(image: np.ndarray, look: Look) -> np.ndarray:
    """Exposure, white balance, gamma and vignetting: the camera's colour rendering."""
    grid = _grid(image.shape[0])
    corner = (grid.x - 0.5) ** 2 + (grid.y - 0.5) ** 2
    image = image * (look.exposure * look.white_balance) * (1 - look.vignette * corner)[..., None]
    return np.clip(image, 0, 1) ** np.float32(look.gamma)


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), truncate=3.0)


def _sensor(image: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Add read and shot noise (mostly luminance) and quantize to (size, size, 3) uint8."""
    size = image.shape[0]
    sigma = np.sqrt(look.read_noise ** 2 + look.shot_noise ** 2 * np.clip(image, 0, 1))
    luminance = rng.standard_normal((size, size, 1), dtype=np.float32)
    chroma = rng.standard_normal((size, size, 3), dtype=np.float32)
    noisy = image + sigma * (0.8 * luminance + 0.45 * chroma)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# Artifacts: each changes the image inside a footprint ((size, size) float32, 1 at full effect) by an amount
# scaled by `strength`; the footprint itself does not depend on strength, so masks mark where to look.

SceneArtifact = Callable[[np.ndarray, Face, np.random.Generator, float], np.ndarray]


def _iris_mismatch(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Give one iris a vivid, clearly different colour, a slightly larger rim and an oval, shrunken pupil
    (GAN eyes often disagree in colour and pupil shape)."""
    grid, eyes = _grid(image.shape[0]), face.eyes
    side = int(rng.integers(2))
    distances = np.abs(IRIS_COLOURS - eyes.iris_colour).sum(axis=1)
    colour = IRIS_COLOURS[rng.choice(np.argsort(distances)[-2:])]
    colour = np.clip((colour.mean() + (colour - colour.mean()) * 1.8) * rng.uniform(1.1, 1.4), 0, 1)
    _, iris, _ = _eye_geometry(eyes, side)
    radius = eyes.iris_radius * rng.uniform(1.0, 1.2)
    footprint = _ellipse(grid, iris, (radius, radius)) * _sclera(grid, eyes, side)
    pupil_radii = eyes.pupil_radius * np.array([rng.uniform(0.35, 0.6), rng.uniform(0.7, 1.0)])
    pupil = _ellipse(grid, iris, pupil_radii, angle=rng.uniform(0, np.pi))
    field = _iris_field(grid, iris, radius, colour)
    _paint(field, pupil, np.float32([0.03, 0.025, 0.03]))
    shading = _ellipsoid_shading(grid, face.head.centre, face.head.radii, face.look)
    _paint(image, footprint * np.float32(strength), field * shading[..., None])
    return footprint


def _avoiding_features(rng: np.random.Generator, face: Face, low: float, high: float) -> np.ndarray:
    """A random centre in [low, high]^2 that is not on an eye or the mouth."""
    features = np.array([*face.eyes.centres, face.mouth.centre])
    for _ in range(100):
        centre = rng.uniform(low, high, 2)
        if np.min(np.hypot(*(features - centre).T)) > 0.11:
            return centre
    return np.array([0.5, 0.25])


def _droplet(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A smooth bright blob with a glint and a dark rim (StyleGAN's 'water droplet')."""
    grid = _grid(image.shape[0])
    centre, radius = _avoiding_features(rng, face, 0.12, 0.88), rng.uniform(0.035, 0.06)
    radii, angle = (radius, radius * rng.uniform(0.65, 1.0)), rng.uniform(0, np.pi)
    distance = _ellipse_radius(grid, centre, radii, angle)
    dome = np.clip(1 - distance ** 2, 0, 1) ** 0.6
    colour = _hsv(rng.uniform(), rng.uniform(0.25, 0.7), rng.uniform(0.75, 1.0))
    glint_centre = centre + np.float32([-0.35, -0.35]) * radius
    glint = np.exp(-(((grid.x - glint_centre[0]) ** 2 + (grid.y - glint_centre[1]) ** 2) / (0.3 * radius) ** 2))
    field = colour * (0.8 + 0.2 * dome)[..., None] + (0.5 * glint)[..., None]
    rim = np.clip(1 - np.abs(distance - 1.0) / 0.3, 0, 1) ** 2  # a dark halo, zero beyond 1.3 radii
    image *= (1 - np.float32(0.45 * strength) * rim)[..., None]
    _paint(image, dome * np.float32(0.95 * strength), np.clip(field, 0, 1))
    return np.maximum(dome, rim)


def _teeth_smear(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Teeth merged into one smeared band that spills over the lips, with irregular, wrongly spaced gaps."""
    grid, mouth = _grid(image.shape[0]), face.mouth
    centre = (mouth.centre[0] + rng.uniform(-0.25, 0.25) * mouth.half_width,
              mouth.centre[1] + rng.uniform(-0.004, 0.006))
    radii = (mouth.half_width * rng.uniform(0.55, 0.95), (mouth.opening + mouth.lower_lip) * rng.uniform(0.9, 1.25))
    wobble = 1 + 0.12 * np.sin(grid.x * rng.uniform(90, 160) + rng.uniform(0, 2 * np.pi))
    distance = _ellipse_radius(grid, centre, radii, bend=-mouth.smile) * wobble
    footprint = np.clip((1 - distance) / 0.25, 0, 1)
    period = mouth.tooth_width * rng.uniform(0.55, 1.6)
    cosine = np.cos(2 * np.pi * (grid.x - centre[0]) / period + 1.5 * np.sin(grid.x * 70))
    streaks = np.clip((cosine - 0.6) / 0.4, 0, 1) * rng.uniform(0.45, 0.75)
    tint = mouth.teeth_colour * np.float32([1.0, 0.93, 0.9]) * rng.uniform(0.8, 1.0)
    shading = _ellipsoid_shading(grid, face.head.centre, face.head.radii, face.look)
    target = tint * ((1 - streaks) * (1 - 0.25 * (grid.y - centre[1]) / radii[1]) * shading)[..., None]
    _paint(image, footprint * np.float32(strength), np.clip(target, 0, 1))
    return footprint


def _hair_warp(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Swirl a disc on the hair outline and streak it with spiral strands: bent, stringy hair merging into the
    background, with a boundary that wobbles."""
    grid, hair = _grid(image.shape[0]), face.hair
    centre_xy, radii = (hair.cap_centre, hair.cap_radii) if hair.style != "bald" else \
        (face.head.centre, face.head.radii)
    around = rng.uniform(-np.pi + 0.35, -0.35)  # somewhere on the upper arc of the outline
    centre = np.array([centre_xy[0] + radii[0] * np.cos(around), centre_xy[1] + radii[1] * np.sin(around)])
    reach = rng.uniform(0.07, 0.11)
    dx, dy = grid.x - centre[0], grid.y - centre[1]
    distance = np.sqrt(dx * dx + dy * dy) / reach
    window = np.clip(1 - distance ** 2, 0, 1) ** 2  # compact: nothing changes beyond `reach`
    crop = _support(window)
    if crop is None:
        return np.zeros_like(window)
    turn = np.float32(strength * rng.choice([-1, 1]) * rng.uniform(1.0, 1.6))
    _swirl(image, crop, centre, dx, dy, turn * window)
    spiral = np.sin(np.arctan2(dy, dx) * rng.integers(6, 11) + distance * np.sign(turn) * rng.uniform(6, 12))
    strands = np.float32(strength * rng.uniform(0.08, 0.14)) * window * spiral  # bright and dark, mean zero
    image[crop] += strands[crop][..., None]
    return np.clip((1 - distance) / 0.12, 0, 1)


def _swirl(image: np.ndarray, crop: tuple[slice, slice], centre, dx: np.ndarray, dy: np.ndarray,
           angle: np.ndarray) -> None:
    """Resample `image` inside `crop` from points rotated by `angle` (size, size) radians about `centre`."""
    size = image.shape[0]
    cos, sin = np.cos(angle[crop]), np.sin(angle[crop])
    x, y = dx[crop], dy[crop]
    source = [(centre[1] + x * sin + y * cos) * size - 0.5, (centre[0] + x * cos - y * sin) * size - 0.5]
    for channel in range(3):
        image[crop + (channel,)] = ndimage.map_coordinates(image[..., channel], source, order=1, mode="nearest")


def _checkerboard(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """A periodic up-sampling imprint (transposed-convolution tile) over a patch, added after the camera blur."""
    size = image.shape[0]
    grid = _grid(size)
    period = int(rng.choice([2, 4] if size < 512 else [2, 4, 8]))
    tile = rng.standard_normal((period, period)).astype(np.float32)
    tile[::2, ::2] += 1.0  # keep a checkerboard component so no tile is degenerate
    tile[1::2, 1::2] += 1.0
    tile = (tile - tile.mean()) / (tile.std() + 1e-6)
    repeats = -(-size // period)
    pattern = np.tile(tile, (repeats, repeats))[:size, :size]
    centre = rng.uniform([0.2, 0.2], [0.8, 0.85])
    radii = rng.uniform(0.08, 0.14, 2)
    footprint = np.clip((1 - _ellipse_radius(grid, centre, radii)) / 0.2, 0, 1)
    weights = (1 + 0.25 * rng.standard_normal(3)).astype(np.float32)
    amplitude = np.float32(strength * rng.uniform(0.07, 0.12))
    image += (amplitude * footprint * pattern)[..., None] * weights
    return footprint


SCENE_ARTIFACTS: dict[str, SceneArtifact] = {
    "iris_mismatch": _iris_mismatch, "droplet": _droplet, "teeth_smear": _teeth_smear, "hair_warp": _hair_warp,
}


def choose_artifacts(rng: np.random.Generator, face: Face) -> list[str]:
    """Pick 1-3 distinct artifact kinds that can appear on `face` (teeth only show in an open mouth)."""
    possible = [kind for kind in ARTIFACTS if kind != "teeth_smear" or face.mouth.open]
    count = int(rng.choice([1, 2, 3], p=ARTIFACT_COUNT_PROBABILITIES))
    chosen = set(rng.choice(possible, size=count, replace=False).tolist())
    return [kind for kind in ARTIFACTS if kind in chosen]


def render_face(rng: np.random.Generator, size: int, fake: bool, strength: float,
                ) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Render one aligned face, with GAN artifacts when `fake`.

    Args:
        rng: the only source of randomness; the same state gives the same face, real or fake.
        size: image side in pixels.
        fake: add 1-3 localized artifacts and return their mask.
        strength: artifact amplitude, 0 (none) .. 1 (obvious); it does not move the mask.

    Returns:
        (size, size, 3) uint8 image before JPEG encoding, (size, size) uint8 mask in {0, 255} of the artifact
        pixels (None for a real face), and the artifact kinds applied in `ARTIFACTS` order.
    """
    face_rng, artifact_rng = rng.spawn(2)
    face = sample_face(face_rng, size)
    image = draw_face(face, size, face_rng)
    kinds = choose_artifacts(artifact_rng, face) if fake else []
    footprints = [SCENE_ARTIFACTS[kind](image, face, artifact_rng, strength) for kind in kinds
                  if kind in SCENE_ARTIFACTS]
    image = _blur(_grade(image, face.look), face.look.blur_sigma)
    # The camera blur spreads scene artifacts too, so their footprints go through the same optics.
    footprints = [_blur(footprint[..., None], face.look.blur_sigma)[..., 0] for footprint in footprints]
    if "checkerboard" in kinds:
        footprints.append(_checkerboard(image, face, artifact_rng, strength))
    image = _sensor(image, face.look, face_rng)
    if not fake:
        return image, None, []
    mask = np.max(footprints, axis=0) >= MASK_THRESHOLD
    return image, mask.astype(np.uint8) * 255, kinds


# ---------------------------------------------------------------------------------------------------------------
# The dataset on disk


@dataclass(frozen=True)
class _Job:
    out_dir: str
    label: str
    index: int
    split: str
    size: int
    seed: int
    strength: float
    jpeg_quality: int


def image_rng(seed: int, label: str, index: int) -> np.random.Generator:
    """The generator of image `index` of class `label` in a dataset made with `seed` (independent of workers)."""
    return np.random.default_rng([seed, LABELS.index(label), index])


def image_name(label: str, index: int) -> str:
    """File stem of image `index` of class `label`, e.g. `fake_000042`."""
    return f"{label}_{index:06d}"


def assign_splits(count: int, seed: int, label: str) -> list[str]:
    """Train/val/test names for `count` images of one class: 70/15/15, shuffled by `seed`, same for any run."""
    sizes = [round(count * fraction) for _, fraction in SPLITS[:-1]]
    sizes.append(count - sum(sizes))
    names = np.repeat([name for name, _ in SPLITS], sizes)
    order = np.random.default_rng([seed, 1000 + LABELS.index(label)]).permutation(count)
    return [str(name) for name in names[np.argsort(order)]]


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _write_one(job: _Job) -> dict[str, object]:
    """Render, encode and write one image (and its mask); return its manifest row."""
    fake = job.label == "fake"
    image, mask, kinds = render_face(image_rng(job.seed, job.label, job.index), job.size, fake, job.strength)
    stem = image_name(job.label, job.index)
    out_dir = Path(job.out_dir)
    relpath = f"{job.label}/{stem}.jpg"
    _write_atomic(out_dir / relpath, encode_jpeg(image, job.jpeg_quality))
    mask_relpath, mask_fraction = "", 0.0
    if mask is not None:
        mask_relpath = f"masks/{stem}.png"
        _write_atomic(out_dir / mask_relpath, _png(mask))
        mask_fraction = float(np.count_nonzero(mask)) / mask.size
    return {"relpath": relpath, "label": job.label, "split": job.split, "artifacts": ";".join(kinds),
            "mask_relpath": mask_relpath, "seed": job.seed, "index": job.index, "strength": job.strength,
            "mask_fraction": round(mask_fraction, 5)}


def _plan(out_dir: Path, count: int, size: int, seed: int, strength: float, jpeg_quality: int) -> list[_Job]:
    per_class = {"fake": count // 2, "real": count - count // 2}
    jobs = []
    for label in LABELS:
        splits = assign_splits(per_class[label], seed, label)
        jobs += [_Job(str(out_dir), label, index, split, size, seed, strength, jpeg_quality)
                 for index, split in enumerate(splits)]
    return jobs


def _run_jobs(jobs: list[_Job], workers: int) -> list[dict[str, object]]:
    if workers <= 1 or len(jobs) < 8:
        return [_write_one(job) for job in jobs]
    chunk = max(1, min(32, len(jobs) // (workers * 4)))
    # forkserver, not fork: a caller such as a notebook may already run TensorFlow threads, and forking a
    # threaded process can deadlock the child.
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        return list(pool.map(_write_one, jobs, chunksize=chunk))


def _planned_paths(jobs: list[_Job]) -> set[str]:
    """Relative paths a run of `jobs` writes: images, masks of fakes, the manifest."""
    images = {f"{job.label}/{image_name(job.label, job.index)}.jpg" for job in jobs}
    masks = {f"masks/{image_name(job.label, job.index)}.png" for job in jobs if job.label == "fake"}
    return images | masks | {MANIFEST}


def _written_before(out_dir: Path, force: bool) -> set[str]:
    """What earlier runs of this generator wrote in `out_dir` (from its marker).

    Raises:
        ValueError: `out_dir` holds files but no marker (someone else's folder) and `force` is off.
    """
    marker = out_dir / MARKER
    if marker.is_file():
        try:
            return set(json.loads(marker.read_text())["written"])
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{marker} is damaged; remove it only if every file in {out_dir} is a demo file") from None
    if not force and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ValueError(f"{out_dir} is not empty and was not written by fakelib demo; choose an empty or new "
                         "folder, or force (--force) to add the demo beside its files")
    return set()


def _claim(out_dir: Path, planned: set[str], force: bool) -> set[str]:
    """Check that no planned path belongs to someone else, then record the planned paths as ours.

    The marker is written before any image so that a run killed half-way still knows which files were its own.

    Returns:
        What earlier runs wrote (the files this run may remove when it no longer writes them).

    Raises:
        ValueError: a refusal, in one line; nothing has been written.
    """
    before = _written_before(out_dir, force)
    foreign = sorted(path for path in planned if path not in before and (out_dir / path).exists())
    if foreign:
        raise ValueError(f"{out_dir / foreign[0]} was not written by fakelib demo and would be replaced "
                         f"({len(foreign)} such file(s)); move them away or choose another folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_marker(out_dir, before | planned)
    return before


def _write_marker(out_dir: Path, written: set[str]) -> None:
    _write_atomic(out_dir / MARKER, json.dumps({"written": sorted(written)}, indent=0).encode())


def _remove_stale(out_dir: Path, before: set[str], planned: set[str]) -> int:
    """Delete files an earlier run of this generator wrote and this one did not (and temporaries of a killed run)."""
    removed = 0
    for relpath in before | planned:
        path = out_dir / relpath
        stale = [path.with_name(f".{path.name}.tmp")] + ([path] if relpath not in planned else [])
        for candidate in stale:
            if candidate.is_file() and not candidate.is_symlink():
                candidate.unlink()
                removed += 1
    return removed


def _write_manifest(out_dir: Path, rows: list[dict[str, object]]) -> None:
    temporary = out_dir / ".manifest.csv.tmp"
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, out_dir / MANIFEST)


def validate(count: int, size: int, seed: int, strength: float, workers: int, jpeg_quality: int) -> None:
    """Raise ValueError naming the first argument outside its allowed range."""
    checks = (
        ("count", count, 2, None), ("size", size, MIN_SIZE, MAX_SIZE), ("seed", seed, 0, None),
        ("strength", strength, 0.0, 1.0), ("workers", workers, 0, None), ("jpeg_quality", jpeg_quality, 1, 95),
    )
    for name, value, low, high in checks:
        if not (low <= value and (high is None or value <= high)):  # also rejects NaN
            allowed = f"{low}..{high}" if high is not None else f">= {low}"
            raise ValueError(f"{name} must be {allowed}, got {value}")


def generate(out_dir: str | Path, count: int = 2000, size: int = 128, seed: int = 0, strength: float = 1.0,
             workers: int = 0, jpeg_quality: int = 90, force: bool = False) -> dict[str, object]:
    """Write the demo dataset: `real/`, `fake/`, `masks/` and, last, `manifest.csv`.

    Files written are listed in `.fakelib-demo.json`; only those are ever replaced or removed by a later run.

    Args:
        out_dir: output folder, created if needed; files from an earlier run of this generator are replaced.
            A non-empty folder this generator did not write is refused unless `force`.
        count: total number of images; fakes are `count // 2`, reals the rest.
        size: image side in pixels, 32..1024.
        seed: dataset seed; image `i` of a class depends only on (seed, class, i), not on `workers`.
        strength: artifact amplitude, 0..1.
        workers: processes; 0 means one per core.
        jpeg_quality: JPEG quality for both classes (4:2:0 subsampling).
        force: write into a non-empty folder this generator did not create; even then no file it did not
            write is replaced or removed.

    Returns:
        Summary: output folder, counts per class and split, settings, mean mask fraction and seconds taken.

    Raises:
        ValueError: an argument outside its allowed range, or a folder or file that belongs to someone else.
    """
    validate(count, size, seed, strength, workers, jpeg_quality)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    jobs = _plan(out_dir, count, size, seed, float(strength), jpeg_quality)
    planned = _planned_paths(jobs)
    before = _claim(out_dir, planned, force)
    for folder in ("real", "fake", "masks"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    # An old manifest would point at files this run is about to rewrite; a killed run must leave none.
    if MANIFEST in before:
        (out_dir / MANIFEST).unlink(missing_ok=True)
    workers = workers or os.cpu_count() or 1
    rows = _run_jobs(jobs, workers)
    _remove_stale(out_dir, before, planned)
    _write_manifest(out_dir, rows)
    _write_marker(out_dir, planned)
    fakes = [row for row in rows if row["label"] == "fake"]
    return {
        "out_dir": str(out_dir), "count": len(rows), "real": len(rows) - len(fakes), "fake": len(fakes),
        "splits": {name: sum(row["split"] == name for row in rows) for name, _ in SPLITS},
        "size": size, "seed": seed, "strength": float(strength), "jpeg_quality": jpeg_quality, "workers": workers,
        "mask_fraction_mean": round(float(np.mean([row["mask_fraction"] for row in fakes])), 4),
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_cli(args: argparse.Namespace) -> int:
    """`python -m fakelib demo`: generate the dataset and print the summary as one JSON line."""
    summary = generate(args.out, count=args.count, size=args.size, seed=args.seed, strength=args.strength,
                       workers=args.workers, jpeg_quality=getattr(args, "jpeg_quality", 90),
                       force=getattr(args, "force", False))
    print(json.dumps(summary))
    return 0
