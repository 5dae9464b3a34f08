"""Dataset discovery (`real/`, `fake/`, manifest or hash split), a prepared uint8 cache, and the tf.data pipeline.

A dataset is a folder holding `real/` and `fake/` (any letter case, nested sub-folders allowed), optionally with
a `manifest.csv` whose `relpath` and `split` columns fix the split; `data_dir` may list several such folders
(one may hold a single class, e.g. extra real photos), which are used together. Images are decoded once per
(folder contents, size, equalization) into `data/cache/<key>/` as a (n, size, size, 3) uint8 `.npy` that every
experiment of a sweep memory-maps; a changed file, size or setting gives a new key. Every image goes through
`fakelib.images.load_view`: never up-sampled, padded when smaller than the input, and its own side is kept in
the cache so augmentation works on the image, not on its padding.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fakelib import images as imagelib
from fakelib import paths
from fakelib.config import AugmentConfig, DataConfig
from fakelib.layout import LABELS, dataset_files

CACHE_VERSION = 2  # 2: views padded, never up-sampled; per-image side in index.csv
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SourceFile:
    """One candidate image: its path relative to the dataset root, label and split."""

    relpath: str
    label: int
    split: str


@dataclass
class PreparedData:
    """Decoded images of a dataset at one size, with labels, splits and the data report.

    Attributes:
        images: (n, size, size, 3) uint8, memory-mapped from the cache.
        labels: (n,) int64, 0 = real, 1 = fake.
        splits: (n,) str, one of train / val / test.
        relpaths: (n,) paths relative to the dataset root.
        report: counts, skipped files with reasons, converted modes.
        cache_dir: where the prepared arrays live.
        sides: (n,) int, side of the image inside its (size, size) input (smaller images are padded).
        paired: (n,) bool, the image's folder holds both classes (one source, two classes: where probabilities
            are calibrated); None when the dataset is one folder.
    """

    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    relpaths: np.ndarray
    report: dict
    cache_dir: Path
    sides: np.ndarray | None = None
    paired: np.ndarray | None = None

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels) of one split; images stay memory-mapped until indexed."""
        mask = self.splits == split
        return self.images[mask], self.labels[mask]

    def split_sides(self, split: str) -> np.ndarray:
        """(n,) image sides of one split (the full input side where unknown)."""
        sides = self.sides if self.sides is not None else np.full(len(self.labels), self.image_size)
        return sides[self.splits == split]

    def split_groups(self, split: str) -> np.ndarray:
        """(n_split,) str: each image's source group (`groups_of`), what a threshold must keep the reals of
        (`metrics.choose_threshold`)."""
        return groups_of(self.relpaths[self.splits == split], several=self.paired is not None)

    def paired_mask(self, split: str) -> np.ndarray:
        """(n_split,) bool: which images of one split come from a folder holding both classes."""
        paired = self.paired if self.paired is not None else np.ones(len(self.labels), dtype=bool)
        return paired[self.splits == split]

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])


def groups_of(relpaths, several: bool) -> np.ndarray:
    """(n,) str: each image's group, its class folder and the first folder below it (`layout.group_of`), after
    its data folder's name when the dataset joins `several` (relpaths of `_join` carry it first): `real/lfw` of
    one folder, `faces-extra-real/real/lfw` of several."""
    from fakelib.layout import group_of

    def one(relpath: str) -> str:
        if not several:
            return group_of(relpath)
        folder, rest = relpath.split("/", 1)
        return f"{folder}/{group_of(rest)}"

    return np.array([one(str(relpath)) for relpath in relpaths])


def read_manifest_splits(root: Path) -> dict[str, str]:
    """`relpath -> split` from `root/manifest.csv` when it has `relpath` and `split` columns, else empty."""
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return {}
    with manifest.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"relpath", "split"} <= set(reader.fieldnames):
            return {}
        return {Path(row["relpath"]).as_posix(): row["split"].strip().lower() for row in reader
                if row.get("split", "").strip().lower() in SPLITS}


def hash_split(digest: str, val_ratio: float, test_ratio: float) -> str:
    """Deterministic split from a content hash: the same bytes land in the same split on every machine."""
    fraction = int(digest[:8], 16) / 0xFFFFFFFF
    if fraction < test_ratio:
        return "test"
    if fraction < test_ratio + val_ratio:
        return "val"
    return "train"


def cache_key(root: Path, files: list[tuple[str, int]], config: DataConfig) -> str:
    """Key of the prepared cache: file list with sizes and mtimes, manifest, size and the settings that matter."""
    hasher = hashlib.sha256()
    settings = [CACHE_VERSION, str(root.resolve()), config.image_size, config.equalize_quality,
                config.val_ratio, config.test_ratio, config.max_images_per_class]
    hasher.update(json.dumps(settings).encode())
    manifest = root / "manifest.csv"
    if manifest.is_file():
        hasher.update(manifest.read_bytes())
    for relpath, label in files:
        # ctime and mode too: a file that was unreadable (skipped) and is made readable by chmod keeps its size
        # and mtime, and must not stay skipped.
        stat = (root / relpath).stat()
        line = f"{relpath}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0{stat.st_mode}\n"
        hasher.update(line.encode("utf-8", "surrogateescape"))
    return hasher.hexdigest()[:16]


def _decode(root: Path, relpath: str, size: int, quality: int) -> tuple[np.ndarray | None, int, str, str]:
    """Decode one file to (size, size, 3) uint8; returns (array or None, side, sha256 or '', error reason or '')."""
    try:
        data = imagelib.read_image_bytes(root / relpath)
        array, side = imagelib.load_view(data, size, min_size=imagelib.MIN_SIDE, equalize_quality=quality)
        return array, side, imagelib.sha256_bytes(data), ""
    except imagelib.ImageError as error:
        return None, 0, "", f"{error.reason}: {error}"
    except OSError as error:
        return None, 0, "", f"unreadable: {error}"


def printable(relpath: str) -> str:
    """`relpath` as valid UTF-8 for CSV and JSON: bytes of a file name that is not UTF-8 become `\\xff` escapes.

    Python keeps such names as lone surrogates (PEP 383), which open the file but cannot be written as text.
    """
    return os.fsencode(relpath).decode("utf-8", "backslashreplace")


def _cap_per_class(files: list[tuple[str, int]], limit: int) -> list[tuple[str, int]]:
    """Keep at most `limit` files per class, chosen by a hash of the path so the choice is stable."""
    if limit <= 0:
        return files
    kept = []
    for label in LABELS.values():
        members = [item for item in files if item[1] == label]
        members.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
        kept.extend(members[:limit])
    return sorted(kept)


def _build_cache(root: Path, files: list[tuple[str, int]], config: DataConfig, target: Path) -> None:
    """Decode every file in parallel and write the cache atomically (temporary folder, then rename)."""
    size, quality = config.image_size, config.equalize_quality
    manifest_splits = read_manifest_splits(root)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        decoded = list(pool.map(lambda item: _decode(root, item[0], size, quality), files))
    arrays, rows, skipped = [], [], []
    for (relpath, label), (array, side, digest, error) in zip(files, decoded):
        if array is None:
            skipped.append({"path": printable(relpath), "reason": error})
            continue
        split = manifest_splits.get(relpath) or hash_split(digest, config.val_ratio, config.test_ratio)
        arrays.append(array)
        rows.append({"relpath": printable(relpath), "label": label, "split": split, "sha256": digest, "side": side})
    report = _report(root, rows, skipped, bool(manifest_splits), config)
    report["escaped_names"] = [printable(relpath) for relpath, _ in files if printable(relpath) != relpath]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
        np.save(staging / "images.npy", stacked)
        _write_rows(staging / "index.csv", rows)
        (staging / "report.json").write_text(json.dumps(report, indent=2))
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not (target / "report.json").is_file():  # another process may have won the race; that is fine
            raise


def _write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["relpath", "label", "split", "sha256", "side"])
        writer.writeheader()
        writer.writerows(rows)


def _report(root: Path, rows: list[dict], skipped: list[dict], from_manifest: bool, config: DataConfig) -> dict:
    counts = Counter((row["split"], row["label"]) for row in rows)
    return {
        "data_dir": str(root),
        "image_size": config.image_size,
        "equalize_quality": config.equalize_quality,
        "split_source": "manifest" if from_manifest else "content hash",
        "n_images": len(rows),
        "n_real": sum(1 for row in rows if row["label"] == 0),
        "n_fake": sum(1 for row in rows if row["label"] == 1),
        "per_split": {split: {"real": counts[(split, 0)], "fake": counts[(split, 1)]} for split in SPLITS},
        "n_skipped": len(skipped),
        "skipped": skipped,
    }


def data_dirs(config: DataConfig) -> tuple[str, ...]:
    """The folders of `config.data_dir` (one string or a list of them)."""
    return (config.data_dir,) if isinstance(config.data_dir, str) else tuple(config.data_dir)


def load_dataset(config: DataConfig, cache_root: str | Path | None = None, base: Path | None = None) -> PreparedData:
    """Discover, decode (once) and memory-map a dataset at `config.image_size`.

    With several folders in `config.data_dir`, each is prepared (and cached) on its own and the results are
    joined in memory; a folder may then hold one class only, as long as the union holds both.

    Args:
        config: the data section of an experiment.
        cache_root: where prepared caches live (default: `default_cache_root`).
        base: folder relative `data_dir` values are taken from (default: the repository root).

    Raises:
        ValueError: missing class folder, or a class with no usable image (one line).
    """
    folders = data_dirs(config)
    if len(folders) == 1:
        root = paths.resolve(folders[0], base or paths.ROOT)
        files = _cap_per_class(dataset_files(root), config.max_images_per_class)
        for name, label in LABELS.items():
            if not any(item[1] == label for item in files):
                raise ValueError(f"{root}: the {name}/ folder holds no image files")
        return thin_training(_prepare(root, files, config, cache_root, require_both=True), config.train_fraction)
    parts = []
    for folder in folders:
        root = paths.resolve(folder, base or paths.ROOT)
        files = _cap_per_class(dataset_files(root, require_both=False), config.max_images_per_class)
        parts.append(_prepare(root, files, dataclasses.replace(config, data_dir=str(root)), cache_root,
                              require_both=False))
    return thin_training(_join(parts), config.train_fraction)


def thin_training(prepared: PreparedData, fraction: float) -> PreparedData:
    """Keep `fraction` of the training images (`data.train_fraction`, for learning curves: how a model improves
    with more faces), chosen by a hash of each path so the same images stay at every run and a smaller fraction's
    images are a subset of a larger one's; validation and test are untouched. The others are marked "unused"."""
    if fraction >= 1.0:
        return prepared
    draws = np.array([int(hashlib.sha256(str(relpath).encode()).hexdigest()[:8], 16) / 0x100000000
                      for relpath in prepared.relpaths])
    unused = (prepared.splits == "train") & (draws >= fraction)
    splits = np.where(unused, "unused", prepared.splits)
    per_split = {**prepared.report["per_split"], "train": {
        name: int(((splits == "train") & (prepared.labels == label)).sum()) for name, label in LABELS.items()}}
    report = {**prepared.report, "per_split": per_split, "train_fraction": fraction,
              "n_unused_train": int(unused.sum())}
    return dataclasses.replace(prepared, splits=splits, report=report)


def _join(parts: list[PreparedData]) -> PreparedData:
    """Several prepared folders as one dataset (in memory); relpaths keep their folder's name in front."""
    labels = np.concatenate([part.labels for part in parts])
    for name, label in LABELS.items():
        if not (labels == label).any():
            raise ValueError(f"no usable {name} image in any of {', '.join(part.report['data_dir'] for part in parts)}")
    counts = Counter()
    for part in parts:
        for split, per_class in part.report["per_split"].items():
            counts.update({(split, name): number for name, number in per_class.items()})
    report = {
        "data_dir": [part.report["data_dir"] for part in parts],
        "image_size": parts[0].report["image_size"], "equalize_quality": parts[0].report["equalize_quality"],
        "split_source": sorted({part.report["split_source"] for part in parts}),
        "n_images": int(len(labels)), "n_real": int((labels == 0).sum()), "n_fake": int((labels == 1).sum()),
        "per_split": {split: {name: counts[(split, name)] for name in LABELS} for split in SPLITS},
        "n_skipped": sum(part.report["n_skipped"] for part in parts),
        "skipped": [item for part in parts for item in part.report["skipped"]],
        "sources": [{key: value for key, value in part.report.items() if key != "skipped"} for part in parts],
    }
    return PreparedData(
        images=np.concatenate([np.asarray(part.images) for part in parts]),
        labels=labels,
        splits=np.concatenate([part.splits for part in parts]),
        relpaths=np.concatenate([[f"{Path(part.report['data_dir']).name}/{relpath}" for relpath in part.relpaths]
                                 for part in parts]),
        report=report,
        cache_dir=parts[0].cache_dir,
        sides=np.concatenate([part.sides for part in parts]),
        paired=np.concatenate([np.full(len(part.labels), len(np.unique(part.labels)) == 2) for part in parts]),
    )


def load_folder_images(data_dir: str | Path, image_size: int, equalize_quality: int = 0,
                       cache_root: str | Path | None = None) -> PreparedData:
    """Every image of a folder at `image_size`, for evaluation: `real/` or `fake/` alone is accepted."""
    root = paths.resolve(data_dir, Path.cwd())
    config = DataConfig(data_dir=str(root), image_size=image_size, equalize_quality=equalize_quality)
    return _prepare(root, dataset_files(root, require_both=False), config, cache_root, require_both=False)


def default_cache_root(root: Path) -> Path:
    """Where the prepared cache of the dataset at `root` goes: `$FAKELIB_CACHE` when set; `data/cache/` for a
    dataset inside the repository; else the user's cache folder (`$XDG_CACHE_HOME/fakelib`, by default
    `~/.cache/fakelib`), so that preparing a folder elsewhere never writes gigabytes into the project silently."""
    if os.environ.get("FAKELIB_CACHE"):
        return Path(os.environ["FAKELIB_CACHE"])
    try:
        root.resolve().relative_to(paths.ROOT)
        return paths.CACHE
    except ValueError:
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fakelib"


def _prepare(root: Path, files: list[tuple[str, int]], config: DataConfig, cache_root: str | Path | None,
             require_both: bool) -> PreparedData:
    """Build the cache for `files` unless it exists, then memory-map it."""
    target = Path(cache_root or default_cache_root(root)) / cache_key(root, files, config)
    if not (target / "report.json").is_file():
        _build_cache(root, files, config, target)
    report = json.loads((target / "report.json").read_text())
    with (target / "index.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(row["label"]) for row in rows], dtype=np.int64)
    required = LABELS.items() if require_both else []
    for name, label in required:
        if not (labels == label).any():
            raise ValueError(f"{root}: no usable {name} image ({report['n_skipped']} files skipped; "
                             f"see {target / 'report.json'})")
    if not rows:
        raise ValueError(f"{root}: no usable image ({report['n_skipped']} files skipped)")
    return PreparedData(
        images=np.load(target / "images.npy", mmap_mode="r"),
        labels=labels,
        splits=np.array([row["split"] for row in rows]),
        relpaths=np.array([row["relpath"] for row in rows]),
        report=report,
        cache_dir=target,
        sides=np.array([int(row.get("side") or report["image_size"]) for row in rows], dtype=np.int64),
    )


# ----------------------------------------------------------------------------------------------- tf.data pipeline


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, augment: AugmentConfig | None = None,
                 shuffle: bool = False, seed: int = 0, sides: np.ndarray | None = None, crop: int = 0):
    """A batched, prefetched `tf.data.Dataset` of (float32 pixels in [0, 255], float32 labels).

    Indices are shuffled and batched first, then each batch is gathered from the (memory-mapped) uint8
    array in one slice, so memory stays at a few batches whatever the dataset size. Augmentation runs per
    batch with random generators seeded from `seed`, so a run is reproducible: the photo degradations of
    `fakelib.augment` (which need each image's own side, `sides`) while gathering, then flip, crop-and-resize
    and colour jitter vectorized over the batch; size matching (`augment.match_sizes`, see
    `augment.SizeMatcher`) draws each image's side from `sides`. With `crop` > 0 (training a fully convolutional
    model), every sample is a random native-resolution `crop` x `crop` window of its image.
    """
    import tensorflow as tf

    from fakelib import augment as augmentlib

    count = len(images)
    size = images.shape[1]
    sides = np.full(count, size, np.int64) if sides is None else np.asarray(sides, np.int64)
    out_side = crop if 0 < crop < size else size
    degrade = augment is not None and (augmentlib.degrades(augment) or out_side < size)
    matcher = augmentlib.SizeMatcher(labels, sides, augment.match_sizes) if degrade and augment.match_sizes else None
    indices = tf.data.Dataset.range(count)
    if shuffle:
        indices = indices.shuffle(count, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    batches = tf.data.Dataset.zip((indices.batch(batch_size), seeds))

    def gather(index_batch, seed_pair):
        sorted_indices = np.sort(index_batch)  # sorted reads are sequential on a memory map
        order = np.argsort(np.argsort(index_batch))
        pixels = images[sorted_indices][order]
        if degrade:
            limits = None if matcher is None else matcher.limits(
                sides[index_batch], augmentlib.rng_from((*np.ravel(seed_pair), 2)))
            pixels = augmentlib.degrade_batch(pixels, sides[index_batch], augment, seed_pair, out_side, limits)
        return pixels, labels[index_batch].astype(np.float32)

    def load(index_batch, seed_pair):
        pixels, batch_labels = tf.numpy_function(gather, [index_batch, seed_pair], [tf.uint8, tf.float32])
        pixels.set_shape([None, out_side if degrade else size, out_side if degrade else size, 3])
        batch_labels.set_shape([None])
        if augment is not None:
            images = augment_batch(pixels, seed_pair, augment)
            if augment.mixup > 0:
                return mix_batch(images, batch_labels, seed_pair, augment.mixup)
            return images, batch_labels
        return tf.cast(pixels, tf.float32), batch_labels

    return batches.map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE).with_options(
        pipeline_options())


def pipeline_options():
    """tf.data options for `make_dataset`: the model-based autotuner off (map parallelism stays at the core count).

    Keras makes a new iterator for every epoch (and precise batch norm one more), and deleting the old one waits
    for the autotuner's thread, which sleeps between optimizations for up to 10 s. On the demo sweep's CNN
    (2 cores) 3-5 of every 10 epochs began with a 7-11 s pause with no CPU in use (py-spy: the main thread in
    `~IteratorResource`), so an epoch took 17-20 s instead of 8-10; with the autotuner off, none of 10 did, at the
    same throughput otherwise (`benchmarks/bench_train.py` measures both).
    """
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return options


def augment_batch(pixels, seed_pair, augment: AugmentConfig):
    """Flip, crop-and-resize, colour jitter and random erasing of a (batch, size, size, 3) uint8 batch,
    vectorized; float32 out.

    The per-image photo degradations (scale, blur, sharpening, noise, JPEG) live in `fakelib.augment`.
    """
    import tensorflow as tf

    seed = tf.cast(seed_pair, tf.int64)
    keys = tf.random.experimental.stateless_split(seed, num=8)
    batch = tf.shape(pixels)[0]
    size = tf.shape(pixels)[1]
    images = tf.cast(pixels, tf.float32)
    if augment.flip > 0:
        flip = tf.random.stateless_uniform([batch, 1, 1, 1], keys[2]) < augment.flip
        images = tf.where(flip, tf.reverse(images, axis=[2]), images)
    if augment.crop > 0:
        images = _random_crop(images, keys[3], augment.crop, size)
    if augment.color_jitter > 0:
        images = _color_jitter(images, keys[4], augment.color_jitter)
    if augment.erase > 0:
        images = _random_erase(images, keys[5], augment.erase)
    return tf.clip_by_value(images, 0.0, 255.0)


def mix_batch(images, labels, seed_pair, alpha: float):
    """Mixup (Zhang et al. 2018): each image and its label blended with the batch's image and label in the mirrored
    position (the last with the first, ...), with a weight lambda ~ Beta(`alpha`, `alpha`) drawn per image from
    `seed_pair`; a small `alpha` keeps most blends close to one of the two. A regularizer against memorizing the
    training faces (docs/results.md, rounds 12 and 17). Returns (images, labels), float32."""
    import tensorflow as tf

    keys = tf.random.experimental.stateless_split(tf.cast(seed_pair, tf.int64), num=8)  # 6, 7: unused by augment_batch
    batch = tf.shape(images)[0]
    draws = [tf.random.stateless_gamma([batch], key, alpha=alpha) for key in (keys[6], keys[7])]
    weight = draws[0] / tf.maximum(draws[0] + draws[1], 1e-12)
    mixed = weight[:, None, None, None] * images + (1.0 - weight[:, None, None, None]) * tf.reverse(images, axis=[0])
    labels = tf.cast(labels, tf.float32)
    return mixed, weight * labels + (1.0 - weight) * tf.reverse(labels, axis=[0])


def _random_crop(images, key, max_fraction: float, size):
    import tensorflow as tf

    batch = tf.shape(images)[0]
    keys = tf.random.experimental.stateless_split(key, num=2)
    side = 1.0 - tf.random.stateless_uniform([batch], keys[0], 0.0, max_fraction)
    offset = tf.random.stateless_uniform([batch, 2], keys[1]) * (1.0 - side)[:, None]
    boxes = tf.stack([offset[:, 0], offset[:, 1], offset[:, 0] + side, offset[:, 1] + side], axis=1)
    return tf.image.crop_and_resize(images, boxes, tf.range(batch), tf.stack([size, size]))


# Random erasing (Zhong et al. 2017): the rectangle's share of the input's area and its aspect (height / width).
ERASE_AREA = (0.02, 0.25)
ERASE_ASPECT = (0.3, 3.3)


def _random_erase(images, key, probability: float):
    """With `probability` per image, one rectangle (`ERASE_AREA` of the area, log-uniform `ERASE_ASPECT`, at even
    offsets and of even sides) filled with the padding grey, so no face region can carry a verdict alone.

    It moves no pixel (no resampling, no trace planted), and its edges fall on the 2 x 2 grid like a padded photo's.
    """
    import tensorflow as tf

    from fakelib.images import PAD_VALUE

    batch, size = tf.shape(images)[0], tf.shape(images)[1]
    keys = tf.random.experimental.stateless_split(key, num=5)
    sizef = tf.cast(size, tf.float32)
    area = tf.random.stateless_uniform([batch], keys[0], *ERASE_AREA) * sizef * sizef
    aspect = tf.exp(tf.random.stateless_uniform([batch], keys[1], *np.log(ERASE_ASPECT)))
    height = tf.minimum(2.0 * tf.round(tf.sqrt(area * aspect) / 2.0), sizef)
    width = tf.minimum(2.0 * tf.round(tf.sqrt(area / aspect) / 2.0), sizef)
    top = 2.0 * tf.floor(tf.random.stateless_uniform([batch], keys[2]) * ((sizef - height) / 2.0 + 1.0))
    left = 2.0 * tf.floor(tf.random.stateless_uniform([batch], keys[3]) * ((sizef - width) / 2.0 + 1.0))
    grid = tf.range(sizef)
    rows = (grid[None, :] >= top[:, None]) & (grid[None, :] < (top + height)[:, None])
    cols = (grid[None, :] >= left[:, None]) & (grid[None, :] < (left + width)[:, None])
    chosen = tf.random.stateless_uniform([batch], keys[4]) < probability
    mask = rows[:, :, None] & cols[:, None, :] & chosen[:, None, None]
    return tf.where(mask[..., None], tf.constant(float(PAD_VALUE)), images)


def _color_jitter(images, key, strength: float):
    import tensorflow as tf

    batch = tf.shape(images)[0]
    keys = tf.random.experimental.stateless_split(key, num=3)
    brightness = tf.random.stateless_uniform([batch, 1, 1, 1], keys[0], -strength, strength) * 255.0
    contrast = 1.0 + tf.random.stateless_uniform([batch, 1, 1, 1], keys[1], -strength, strength)
    saturation = 1.0 + tf.random.stateless_uniform([batch, 1, 1, 1], keys[2], -strength, strength)
    mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
    images = (images - mean) * contrast + mean + brightness
    gray = tf.reduce_mean(images, axis=3, keepdims=True)
    return gray + (images - gray) * saturation


def prepare_report(data_dir: str | Path, image_size: int, params_path: str | Path | None = None) -> dict:
    """Build (or reuse) the cache of `data_dir` with params.yaml's data settings; the data report (first 20 skips)."""
    from fakelib.config import load_params

    params = load_params(params_path)
    config = DataConfig(**{**params.base.to_sections()["data"], "data_dir": str(Path(data_dir).resolve()),
                           "image_size": image_size})
    prepared = load_dataset(config)
    return ({key: value for key, value in prepared.report.items() if key != "skipped"}
            | {"skipped": prepared.report["skipped"][:20], "cache": str(prepared.cache_dir)})
