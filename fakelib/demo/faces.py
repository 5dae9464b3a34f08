"""The face description: every random choice of one face (head, hair, eyes, mouth, look), drawn once, then
rendered. Faces sit on the FFHQ alignment of `fakelib.regions.LANDMARKS`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fakelib.regions import LANDMARKS
from fakelib.demo.geometry import Colour, hsv, palette_colour


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


def jittered_landmark(name: str, jitter: tuple[float, float]) -> tuple[float, float]:
    x, y = LANDMARKS[name]
    return (x + jitter[0], y + jitter[1])


def _sample_head(rng: np.random.Generator) -> Head:
    yaw_shift = rng.normal(0, 0.012)  # a slightly turned head moves the outline, not the aligned features
    radii = (rng.uniform(0.235, 0.285), rng.uniform(0.325, 0.37))
    clothes = hsv(rng.uniform(), rng.uniform(0.1, 0.7), rng.uniform(0.15, 0.85))
    return Head(
        centre=(0.5 + yaw_shift, rng.uniform(0.515, 0.545)), radii=radii, jaw_taper=rng.uniform(0.08, 0.35),
        skin=palette_colour(rng, SKIN_TONES, 0.03), blush=rng.uniform(0.05, 0.3), ear_y=rng.uniform(0.50, 0.56),
        neck_half_width=rng.uniform(0.10, 0.14), clothes=clothes,
        clothes_radii=(rng.uniform(0.38, 0.5), rng.uniform(0.18, 0.24)), neckline_depth=rng.uniform(0.04, 0.09),
    )


def _sample_hair(rng: np.random.Generator, head: Head) -> Hair:
    style = str(rng.choice(["bald", "short", "long"], p=[0.06, 0.52, 0.42]))
    colour = palette_colour(rng, HAIR_COLOURS, 0.05)
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
        centres=(jittered_landmark("left_eye", jitter), jittered_landmark("right_eye", jitter)), radii=radii,
        tilt=rng.uniform(-0.05, 0.15), gaze=(rng.normal(0, 0.006), rng.normal(0, 0.002)), iris_radius=iris_radius,
        pupil_radius=iris_radius * rng.uniform(0.32, 0.5), iris_colour=palette_colour(rng, IRIS_COLOURS, 0.05),
        sclera=(np.array([0.93, 0.91, 0.88]) * rng.uniform(0.8, 1.0)).astype(np.float32),
        brow_gap=rng.uniform(0.045, 0.06), brow_thickness=rng.uniform(0.007, 0.013),
        brow_tilt=rng.uniform(-0.12, 0.12), brow_colour=brow_colour.astype(np.float32),
    )


def _sample_mouth(rng: np.random.Generator, head: Head, jitter: tuple[float, float]) -> Mouth:
    lip_tint = np.array([0.95, 0.60, 0.60]) * rng.uniform(0.8, 1.0)
    teeth = np.array([0.93, 0.90, 0.80]) * rng.uniform(0.8, 1.0)
    return Mouth(
        centre=jittered_landmark("mouth", jitter), half_width=rng.uniform(0.065, 0.088),
        open=bool(rng.uniform() < 0.55), opening=rng.uniform(0.014, 0.024), smile=rng.uniform(0.002, 0.014), upper_lip=rng.uniform(0.008, 0.013),
        lower_lip=rng.uniform(0.011, 0.018), lip_colour=(head.skin * lip_tint).astype(np.float32),
        teeth_colour=teeth.astype(np.float32), tooth_width=rng.uniform(0.02, 0.026),
    )


def _sample_look(rng: np.random.Generator, size: int) -> Look:
    background = tuple(hsv(rng.uniform(), rng.uniform(0.0, 0.5), rng.uniform(0.25, 0.95)) for _ in range(2))
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
