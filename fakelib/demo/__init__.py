"""Deterministic generator of aligned synthetic faces; fakes carry localized GAN artifacts and ground-truth masks.

Faces are drawn on the FFHQ alignment of `fakelib.regions.LANDMARKS` (eyes, nose tip and mouth at fixed fractions
of the side), so the face-region template and explanation scores line up with them. A face, its lighting, its
camera and its sensor noise come from one random stream and the artifacts from another: rendering the same
generator state as real and as fake gives the same pixels everywhere outside the fake's artifact footprints.
Artifacts are local, so both classes share size, JPEG settings and global colour statistics.

The generator's modules, in the order a face is made:

    geometry   coordinate grids, soft-edged shapes, painting and colour helpers
    faces      the random description of one face (`sample_face`)
    drawing    the face painted, then the camera (`draw_face`)
    artifacts  the GAN artifacts, and `render_face`: one face as real or as fake, with its mask
    dataset    the dataset on disk (`generate`)
"""

from fakelib.demo.faces import Face, sample_face
from fakelib.demo.drawing import draw_face
from fakelib.demo.artifacts import ARTIFACTS, MASK_THRESHOLD, choose_artifacts, render_face
from fakelib.demo.dataset import (LABELS, MANIFEST, MANIFEST_COLUMNS, MARKER, MAX_SIZE, MIN_SIZE, SPLITS, assign_splits,
                                  generate, image_name, image_rng, validate)
