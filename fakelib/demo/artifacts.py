"""The GAN artifacts a fake carries, and `render_face`, one face rendered as real or as fake with its mask.

Each artifact changes the image inside a footprint ((size, size) float32, 1 at full effect) by an amount scaled by
`strength`; the footprint itself does not depend on strength, so masks mark where to look."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from fakelib.demo.drawing import (blur_image, colour_grade, draw_face, ellipsoid_shading, eye_geometry, iris_field,
                                  sclera_mask, sensor_noise)
from fakelib.demo.faces import IRIS_COLOURS, Face, sample_face
from fakelib.demo.geometry import ellipse_radius, hsv, paint_over, pixel_grid, soft_ellipse, support_box


ARTIFACTS: tuple[str, ...] = ("checkerboard", "iris_mismatch", "droplet", "teeth_smear", "hair_warp")
# A pixel belongs to the ground-truth mask where an artifact's footprint reaches this fraction of its peak.
MASK_THRESHOLD = 0.25
# How many artifacts a fake carries (1, 2 or 3) and how often.
ARTIFACT_COUNT_PROBABILITIES = (0.4, 0.4, 0.2)


SceneArtifact = Callable[[np.ndarray, Face, np.random.Generator, float], np.ndarray]


def _iris_mismatch(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Give one iris a vivid, clearly different colour, a slightly larger rim and an oval, shrunken pupil
    (GAN eyes often disagree in colour and pupil shape)."""
    grid, eyes = pixel_grid(image.shape[0]), face.eyes
    side = int(rng.integers(2))
    distances = np.abs(IRIS_COLOURS - eyes.iris_colour).sum(axis=1)
    colour = IRIS_COLOURS[rng.choice(np.argsort(distances)[-2:])]
    colour = np.clip((colour.mean() + (colour - colour.mean()) * 1.8) * rng.uniform(1.1, 1.4), 0, 1)
    _, iris, _ = eye_geometry(eyes, side)
    radius = eyes.iris_radius * rng.uniform(1.0, 1.2)
    footprint = soft_ellipse(grid, iris, (radius, radius)) * sclera_mask(grid, eyes, side)
    pupil_radii = eyes.pupil_radius * np.array([rng.uniform(0.35, 0.6), rng.uniform(0.7, 1.0)])
    pupil = soft_ellipse(grid, iris, pupil_radii, angle=rng.uniform(0, np.pi))
    field = iris_field(grid, iris, radius, colour)
    paint_over(field, pupil, np.float32([0.03, 0.025, 0.03]))
    shading = ellipsoid_shading(grid, face.head.centre, face.head.radii, face.look)
    paint_over(image, footprint * np.float32(strength), field * shading[..., None])
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
    grid = pixel_grid(image.shape[0])
    centre, radius = _avoiding_features(rng, face, 0.12, 0.88), rng.uniform(0.035, 0.06)
    radii, angle = (radius, radius * rng.uniform(0.65, 1.0)), rng.uniform(0, np.pi)
    distance = ellipse_radius(grid, centre, radii, angle)
    dome = np.clip(1 - distance ** 2, 0, 1) ** 0.6
    colour = hsv(rng.uniform(), rng.uniform(0.25, 0.7), rng.uniform(0.75, 1.0))
    glint_centre = centre + np.float32([-0.35, -0.35]) * radius
    glint = np.exp(-(((grid.x - glint_centre[0]) ** 2 + (grid.y - glint_centre[1]) ** 2) / (0.3 * radius) ** 2))
    field = colour * (0.8 + 0.2 * dome)[..., None] + (0.5 * glint)[..., None]
    rim = np.clip(1 - np.abs(distance - 1.0) / 0.3, 0, 1) ** 2  # a dark halo, zero beyond 1.3 radii
    image *= (1 - np.float32(0.45 * strength) * rim)[..., None]
    paint_over(image, dome * np.float32(0.95 * strength), np.clip(field, 0, 1))
    return np.maximum(dome, rim)


def _teeth_smear(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Teeth merged into one smeared band that spills over the lips, with irregular, wrongly spaced gaps."""
    grid, mouth = pixel_grid(image.shape[0]), face.mouth
    centre = (mouth.centre[0] + rng.uniform(-0.25, 0.25) * mouth.half_width,
              mouth.centre[1] + rng.uniform(-0.004, 0.006))
    radii = (mouth.half_width * rng.uniform(0.55, 0.95), (mouth.opening + mouth.lower_lip) * rng.uniform(0.9, 1.25))
    wobble = 1 + 0.12 * np.sin(grid.x * rng.uniform(90, 160) + rng.uniform(0, 2 * np.pi))
    distance = ellipse_radius(grid, centre, radii, bend=-mouth.smile) * wobble
    footprint = np.clip((1 - distance) / 0.25, 0, 1)
    period = mouth.tooth_width * rng.uniform(0.55, 1.6)
    cosine = np.cos(2 * np.pi * (grid.x - centre[0]) / period + 1.5 * np.sin(grid.x * 70))
    streaks = np.clip((cosine - 0.6) / 0.4, 0, 1) * rng.uniform(0.45, 0.75)
    tint = mouth.teeth_colour * np.float32([1.0, 0.93, 0.9]) * rng.uniform(0.8, 1.0)
    shading = ellipsoid_shading(grid, face.head.centre, face.head.radii, face.look)
    target = tint * ((1 - streaks) * (1 - 0.25 * (grid.y - centre[1]) / radii[1]) * shading)[..., None]
    paint_over(image, footprint * np.float32(strength), np.clip(target, 0, 1))
    return footprint


def _hair_warp(image: np.ndarray, face: Face, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Swirl a disc on the hair outline and streak it with spiral strands: bent, stringy hair merging into the
    background, with a boundary that wobbles."""
    grid, hair = pixel_grid(image.shape[0]), face.hair
    centre_xy, radii = (hair.cap_centre, hair.cap_radii) if hair.style != "bald" else \
        (face.head.centre, face.head.radii)
    around = rng.uniform(-np.pi + 0.35, -0.35)  # somewhere on the upper arc of the outline
    centre = np.array([centre_xy[0] + radii[0] * np.cos(around), centre_xy[1] + radii[1] * np.sin(around)])
    reach = rng.uniform(0.07, 0.11)
    dx, dy = grid.x - centre[0], grid.y - centre[1]
    distance = np.sqrt(dx * dx + dy * dy) / reach
    window = np.clip(1 - distance ** 2, 0, 1) ** 2  # compact: nothing changes beyond `reach`
    crop = support_box(window)
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
    grid = pixel_grid(size)
    period = int(rng.choice([2, 4] if size < 512 else [2, 4, 8]))
    tile = rng.standard_normal((period, period)).astype(np.float32)
    tile[::2, ::2] += 1.0  # keep a checkerboard component so no tile is degenerate
    tile[1::2, 1::2] += 1.0
    tile = (tile - tile.mean()) / (tile.std() + 1e-6)
    repeats = -(-size // period)
    pattern = np.tile(tile, (repeats, repeats))[:size, :size]
    centre = rng.uniform([0.2, 0.2], [0.8, 0.85])
    radii = rng.uniform(0.08, 0.14, 2)
    footprint = np.clip((1 - ellipse_radius(grid, centre, radii)) / 0.2, 0, 1)
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
    image = blur_image(colour_grade(image, face.look), face.look.blur_sigma)
    # The camera blur spreads scene artifacts too, so their footprints go through the same optics.
    footprints = [blur_image(footprint[..., None], face.look.blur_sigma)[..., 0] for footprint in footprints]
    if "checkerboard" in kinds:
        footprints.append(_checkerboard(image, face, artifact_rng, strength))
    image = sensor_noise(image, face.look, face_rng)
    if not fake:
        return image, None, []
    mask = np.max(footprints, axis=0) >= MASK_THRESHOLD
    return image, mask.astype(np.uint8) * 255, kinds
