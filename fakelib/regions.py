"""FFHQ-aligned face-region template; heatmap mass per region; "where to look first" rankings."""

from __future__ import annotations

# Landmarks of an FFHQ-aligned face as fractions of the image side (x right, y down).
# Derived from the FFHQ alignment recipe (crop side = 3.6 x eye-to-mouth distance, centre 0.1 x eye-to-mouth
# below the eye midpoint): eyes sit at y ~ 0.47, the mouth at y ~ 0.75, eyes ~0.26 of the side apart.
# StyleGAN / thispersondoesnotexist faces share this alignment; fakelib.demo draws its faces on it.
LANDMARKS: dict[str, tuple[float, float]] = {
    "left_eye": (0.37, 0.47),   # the eye on the image's left
    "right_eye": (0.63, 0.47),
    "nose_tip": (0.50, 0.62),
    "mouth": (0.50, 0.75),
}
