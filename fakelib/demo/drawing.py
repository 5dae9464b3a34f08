"""Drawing a face: albedo layers painted back to front with a shading layer alongside, then the camera (colour
grade, blur, sensor noise)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from fakelib.regions import LANDMARKS
from fakelib.demo.faces import Eyes, Face, Hair, Head, Look, Mouth, jittered_landmark
from fakelib.demo.geometry import Colour, Grid, hsv, paint_over, pixel_grid, smooth_noise, soft_ellipse, soft_step


class _Canvas:
    """Albedo (size, size, 3) and shading (size, size), both float32, painted back to front."""

    def __init__(self, grid: Grid, background: np.ndarray):
        self.grid = grid
        self.albedo = background
        self.shading = np.ones((grid.size, grid.size), dtype=np.float32)

    def paint(self, alpha: np.ndarray, colour, shading=None) -> None:
        paint_over(self.albedo, alpha, colour)
        if shading is not None:
            paint_over(self.shading, alpha, shading)

    def image(self) -> np.ndarray:
        return self.albedo * self.shading[..., None]


def _background(grid: Grid, look: Look, rng: np.random.Generator) -> np.ndarray:
    along = (grid.x - 0.5) * np.cos(look.background_angle) + (grid.y - 0.5) * np.sin(look.background_angle) + 0.5
    first, second = look.background
    canvas = first + (second - first) * np.clip(along, 0, 1)[..., None]
    canvas *= (1 + 0.05 * smooth_noise(rng, grid.size, 4))[..., None]
    if look.background_style == "bokeh":
        for _ in range(rng.integers(3, 7)):
            centre, radius = rng.uniform(0, 1, 2), rng.uniform(0.05, 0.16)
            colour = hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.3, 1.0))
            blob = soft_ellipse(grid, centre, (radius, radius), soft=rng.uniform(3, 10) * grid.size / 128)
            paint_over(canvas, blob * np.float32(rng.uniform(0.2, 0.5)), colour)
    elif look.background_style == "edge":  # a wall corner or door frame: a straight, slightly soft edge
        angle, offset = rng.uniform(-0.4, 0.4), rng.choice([-1, 1]) * rng.uniform(0.3, 0.45)
        across = (grid.x - 0.5 - offset) * np.cos(angle) + (grid.y - 0.5) * np.sin(angle)
        colour = hsv(rng.uniform(), rng.uniform(0, 0.4), rng.uniform(0.2, 0.9))
        paint_over(canvas, soft_step(across * grid.size * np.sign(offset), 0, 1.5), colour)
    return canvas.astype(np.float32)


def ellipsoid_shading(grid: Grid, centre, radii, look: Look) -> np.ndarray:
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
    cap = soft_ellipse(grid, hair.cap_centre, hair.cap_radii)
    across = (grid.x - hair.cap_centre[0]) / hair.cap_radii[0]
    hairline = hair.hairline + hair.hairline_curve * across ** 2 + hair.hairline_skew * across
    return cap * soft_step((hairline - grid.y) * grid.size, 0, 1.5)


def _long_hair(grid: Grid, hair: Hair) -> np.ndarray:
    """(size, size) coverage of long hair falling to the shoulders, behind and beside the face."""
    centre = (hair.cap_centre[0], hair.cap_centre[1] + 0.08)
    return soft_ellipse(grid, centre, (hair.cap_radii[0] + 0.03, hair.cap_radii[1] + 0.1))


def _draw_body(canvas: _Canvas, face: Face, rng: np.random.Generator) -> None:
    """Long hair behind, neck, clothes, ears, head, hair cap, and long hair in front of the ears."""
    grid, head, hair, look = canvas.grid, face.head, face.hair, face.look
    long_hair = _long_hair(grid, hair) if hair.style == "long" else None
    hair_shading = ellipsoid_shading(grid, hair.cap_centre, hair.cap_radii, look)
    strands = _hair_texture(grid, hair) if hair.style != "bald" else None
    if long_hair is not None:
        canvas.paint(long_hair, strands * 0.8, hair_shading)
    canvas.paint(soft_ellipse(grid, (head.centre[0], 1.02), (head.neck_half_width, 0.3)), head.skin * 0.9, 0.72)
    clothes = soft_ellipse(grid, (0.5, 1.13), head.clothes_radii)
    neckline = soft_ellipse(grid, (head.centre[0], 0.9), (head.neck_half_width * 1.1, head.neckline_depth))
    canvas.paint(clothes * (1 - neckline), head.clothes, 0.95)
    for side in (-1, 1):
        ear_x = head.centre[0] + side * head.radii[0] * 0.97
        canvas.paint(soft_ellipse(grid, (ear_x, head.ear_y), (0.032, 0.062)), head.skin * 0.93, 0.85)
        canvas.paint(soft_ellipse(grid, (ear_x + side * 0.006, head.ear_y), (0.014, 0.038), soft=2), head.skin * 0.75)
    skin = head.skin * (1 + 0.035 * smooth_noise(rng, grid.size, 6))[..., None]
    canvas.paint(_head_coverage(grid, head), skin, ellipsoid_shading(grid, head.centre, head.radii, look))
    if hair.style != "bald":
        canvas.paint(_hair_cap(grid, hair), strands, hair_shading)
    if long_hair is not None:  # the strands that fall in front of the ears and the sides of the face
        face_window = soft_ellipse(grid, head.centre, (head.radii[0] * 0.86, head.radii[1] * 1.1), soft=2)
        below_hairline = soft_step(grid.y * grid.size, hair.hairline * grid.size, 2)
        beside_neck = soft_step(np.abs(grid.x - head.centre[0]) * grid.size, head.neck_half_width * grid.size, 2)
        canvas.paint(long_hair * (1 - face_window) * below_hairline * beside_neck, strands, hair_shading)


def iris_field(grid: Grid, centre, radius: float, colour: Colour) -> np.ndarray:
    """(size, size, 3) iris colour: lighter around the pupil, a dark limbal ring at the rim, faint radial fibres."""
    dx, dy = grid.x - centre[0], grid.y - centre[1]
    radial = np.clip(np.sqrt(dx * dx + dy * dy) / radius, 0, 1)
    fibres = 0.08 * np.sin(np.arctan2(dy, dx) * 14)
    tone = 1.25 - 0.65 * radial ** 2 + fibres
    return colour * tone[..., None]


def eye_geometry(eyes: Eyes, side: int) -> tuple[tuple[float, float], tuple[float, float], float]:
    """Centre, iris centre and tilt of the image-left (side 0) or image-right (side 1) eye."""
    centre = eyes.centres[side]
    iris = (centre[0] + eyes.gaze[0], centre[1] + eyes.gaze[1])
    return centre, iris, eyes.tilt if side == 0 else -eyes.tilt


def sclera_mask(grid: Grid, eyes: Eyes, side: int) -> np.ndarray:
    centre, _, tilt = eye_geometry(eyes, side)
    return soft_ellipse(grid, centre, eyes.radii, angle=tilt, bend=-0.15 * eyes.radii[1])


def _draw_eye(canvas: _Canvas, face: Face, side: int) -> None:
    grid, eyes, skin = canvas.grid, face.eyes, face.head.skin
    centre, iris, tilt = eye_geometry(eyes, side)
    canvas.paint(soft_ellipse(grid, centre, (eyes.radii[0] * 1.5, eyes.radii[1] * 2.2), soft=4), skin * 0.86)
    crease = (centre[0], centre[1] - eyes.radii[1] * 0.9)
    canvas.paint(soft_ellipse(grid, crease, (eyes.radii[0] * 1.05, eyes.radii[1] * 1.1), tilt, soft=1.5) * 0.5,
                 skin * 0.8)
    sclera = sclera_mask(grid, eyes, side)
    canvas.paint(sclera, eyes.sclera * (0.85 + 0.15 * soft_step(grid.y, centre[1], eyes.radii[1]))[..., None])
    canvas.paint(soft_ellipse(grid, iris, (eyes.iris_radius,) * 2) * sclera,
                 iris_field(grid, iris, eyes.iris_radius, eyes.iris_colour))
    canvas.paint(soft_ellipse(grid, iris, (eyes.pupil_radius,) * 2) * sclera, np.float32([0.03, 0.025, 0.03]))
    light_x, light_y, _ = face.look.light
    glint = (iris[0] + light_x * eyes.iris_radius * 0.5, iris[1] + light_y * eyes.iris_radius * 0.5 - 0.004)
    canvas.paint(soft_ellipse(grid, glint, (eyes.iris_radius * 0.28,) * 2) * sclera * 0.9, np.float32([1, 1, 1]))
    lid = soft_ellipse(grid, centre, (eyes.radii[0] * 1.1, eyes.radii[1] * 1.45), tilt, bend=-0.15 * eyes.radii[1])
    upper = 1 - soft_step(grid.y, centre[1], eyes.radii[1] * 0.5)
    canvas.paint(np.clip(lid - sclera, 0, 1) * upper, np.float32([0.09, 0.06, 0.05]))
    brow = (centre[0] + (0.006 if side else -0.006), centre[1] - eyes.brow_gap)
    brow_tilt = eyes.brow_tilt if side == 0 else -eyes.brow_tilt
    canvas.paint(soft_ellipse(grid, brow, (0.056, eyes.brow_thickness), brow_tilt, bend=0.012, soft=1.2) * 0.92,
                 eyes.brow_colour)


def _draw_nose_and_cheeks(canvas: _Canvas, face: Face) -> None:
    grid, skin, look = canvas.grid, face.head.skin, face.look
    nose_x, nose_y = jittered_landmark("nose_tip", (0.0, 0.0))
    nose_x += face.eyes.centres[0][0] - LANDMARKS["left_eye"][0]
    nose_y += face.eyes.centres[0][1] - LANDMARKS["left_eye"][1]
    for side in (-1, 1):
        blush = soft_ellipse(grid, (0.5 + side * 0.15, 0.64), (0.065, 0.05), soft=6) * np.float32(face.head.blush)
        canvas.paint(blush, skin * np.float32([1.04, 0.84, 0.84]))
    shadow_side = -1 if look.light[0] > 0 else 1
    bridge = soft_ellipse(grid, (nose_x + shadow_side * 0.028, nose_y - 0.06), (0.012, 0.07), soft=3)
    canvas.paint(bridge * 0.45, skin * 0.72)
    canvas.paint(soft_ellipse(grid, (nose_x, nose_y + 0.03), (0.034, 0.011), soft=2) * 0.4, skin * 0.8)
    for side in (-1, 1):
        wing = (nose_x + side * 0.027, nose_y + 0.004)
        canvas.paint(soft_ellipse(grid, wing, (0.015, 0.017), soft=2) * 0.5, skin * 0.84)
        nostril = (nose_x + side * 0.016, nose_y + 0.013)
        canvas.paint(soft_ellipse(grid, nostril, (0.01, 0.0055), side * 0.35) * 0.85, skin * 0.32)
    canvas.paint(soft_ellipse(grid, (nose_x, nose_y - 0.008), (0.02, 0.016), soft=3) * 0.35, skin * 1.12)


def _mouth_opening(grid: Grid, mouth: Mouth) -> np.ndarray:
    return soft_ellipse(grid, mouth.centre, (mouth.half_width * 0.88, mouth.opening), bend=-mouth.smile)


def _teeth(grid: Grid, mouth: Mouth, opening: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coverage (size, size) of the upper teeth and their colour (size, size, 3), gaps included."""
    across = (grid.x - mouth.centre[0]) / mouth.half_width
    curve = mouth.centre[1] - mouth.smile * across ** 2 + mouth.opening * 0.15
    coverage = opening * (1 - soft_step((grid.y - curve) * grid.size, 0, 1.2))
    cosine = np.cos(2 * np.pi * (grid.x - mouth.centre[0]) / mouth.tooth_width)
    gaps = np.clip((cosine - 0.8) / 0.2, 0, 1) * 0.55
    tone = (1 - 0.5 * np.clip(across, -1, 1) ** 2) * (1 - gaps)
    return coverage, mouth.teeth_colour * tone[..., None]


def _draw_mouth(canvas: _Canvas, face: Face) -> None:
    grid, mouth = canvas.grid, face.mouth
    centre_x, centre_y = mouth.centre
    if mouth.open:
        lips = soft_ellipse(grid, (centre_x, centre_y - 0.002), (mouth.half_width, mouth.opening + mouth.lower_lip),
                        bend=-mouth.smile)
        canvas.paint(lips, mouth.lip_colour)
        opening = _mouth_opening(grid, mouth)
        canvas.paint(opening, np.float32([0.22, 0.07, 0.07]))
        teeth, colour = _teeth(grid, mouth, opening)
        canvas.paint(teeth, colour)
        return
    upper = soft_ellipse(grid, (centre_x, centre_y), (mouth.half_width, mouth.upper_lip), bend=-mouth.smile)
    lower = soft_ellipse(grid, (centre_x, centre_y), (mouth.half_width * 0.85, mouth.lower_lip), bend=-mouth.smile)
    split = soft_step(grid.y, centre_y, 0.002)
    canvas.paint(upper * (1 - split) + lower * split, mouth.lip_colour)
    line = soft_ellipse(grid, (centre_x, centre_y), (mouth.half_width * 0.97, 0.0035), bend=-mouth.smile, soft=1.0)
    canvas.paint(line * 0.85, mouth.lip_colour * 0.4)
    shine = soft_ellipse(grid, (centre_x, centre_y + mouth.lower_lip * 0.45), (mouth.half_width * 0.4, 0.004), soft=1.5)
    canvas.paint(shine * 0.35, np.minimum(mouth.lip_colour * 1.35, 1))


def draw_face(face: Face, size: int, rng: np.random.Generator) -> np.ndarray:
    """Render `face` as linear-light (size, size, 3) float32 in about [0, 1], before grading, blur and noise.

    `rng` supplies the background's bokeh or edge and the low-frequency skin and background texture; the face's
    geometry, colours and light are already in `face`.
    """
    grid = pixel_grid(size)
    canvas = _Canvas(grid, _background(grid, face.look, rng))
    _draw_body(canvas, face, rng)
    _draw_nose_and_cheeks(canvas, face)
    for side in (0, 1):
        _draw_eye(canvas, face, side)
    _draw_mouth(canvas, face)
    return canvas.image()


def colour_grade(image: np.ndarray, look: Look) -> np.ndarray:
    """Exposure, white balance, gamma and vignetting: the camera's colour rendering."""
    grid = pixel_grid(image.shape[0])
    corner = (grid.x - 0.5) ** 2 + (grid.y - 0.5) ** 2
    image = image * (look.exposure * look.white_balance) * (1 - look.vignette * corner)[..., None]
    return np.clip(image, 0, 1) ** np.float32(look.gamma)


def blur_image(image: np.ndarray, sigma: float) -> np.ndarray:
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0), truncate=3.0)


def sensor_noise(image: np.ndarray, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Add read and shot noise (mostly luminance) and quantize to (size, size, 3) uint8."""
    size = image.shape[0]
    sigma = np.sqrt(look.read_noise ** 2 + look.shot_noise ** 2 * np.clip(image, 0, 1))
    luminance = rng.standard_normal((size, size, 1), dtype=np.float32)
    chroma = rng.standard_normal((size, size, 3), dtype=np.float32)
    noisy = image + sigma * (0.8 * luminance + 0.45 * chroma)
    return np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)
