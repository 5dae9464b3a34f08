"""The demo dataset on disk: real/, fake/, masks/ and manifest.csv, written in parallel, deterministically, and
only ever replacing files this generator wrote itself."""

from __future__ import annotations

import csv
import multiprocessing
import io
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fakelib.atomic import TEMPORARY_SUFFIX, temporary_target, write_bytes, write_text
from fakelib.checks import check_integer, check_number
from fakelib.images import encode_jpeg
from fakelib.demo.artifacts import render_face


LABELS: tuple[str, ...] = ("real", "fake")
SPLITS: tuple[tuple[str, float], ...] = (("train", 0.70), ("val", 0.15), ("test", 0.15))
MANIFEST_COLUMNS: tuple[str, ...] = (
    "relpath", "label", "split", "artifacts", "mask_relpath", "seed", "index", "strength", "mask_fraction",
)
MIN_SIZE, MAX_SIZE = 32, 1024
# The record of every file this generator wrote in a folder: only those may ever be replaced or removed.
MARKER = ".fakelib-demo.json"
MANIFEST = "manifest.csv"


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
    write_bytes(out_dir / relpath, encode_jpeg(image, job.jpeg_quality))
    mask_relpath, mask_fraction = "", 0.0
    if mask is not None:
        mask_relpath = f"masks/{stem}.png"
        write_bytes(out_dir / mask_relpath, _png(mask))
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
                         "folder, or set force to add the demo beside its files")
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
    write_bytes(out_dir / MARKER, json.dumps({"written": sorted(written)}, indent=0).encode())


def _remove_stale(out_dir: Path, before: set[str], planned: set[str]) -> int:
    """Delete files an earlier run of this generator wrote and this one did not (and temporaries of a killed run)."""
    ours = before | planned
    stale = [out_dir / relpath for relpath in before - planned]
    for folder in {(out_dir / relpath).parent for relpath in ours}:
        leftovers = [(path, temporary_target(path)) for path in folder.glob(f".*{TEMPORARY_SUFFIX}")]
        stale += [path for path, target in leftovers if target and target.relative_to(out_dir).as_posix() in ours]
    stale = [path for path in stale if path.is_file() and not path.is_symlink()]
    for path in stale:
        path.unlink()
    return len(stale)


def _write_manifest(out_dir: Path, rows: list[dict[str, object]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(out_dir / MANIFEST, buffer.getvalue())


def validate(count: int, size: int, seed: int, strength: float, workers: int, jpeg_quality: int) -> None:
    """Raise ValueError naming the first argument outside its allowed range."""
    checks = (
        ("count", count, 2, None), ("size", size, MIN_SIZE, MAX_SIZE), ("seed", seed, 0, None),
        ("strength", strength, 0.0, 1.0), ("workers", workers, 0, None), ("jpeg_quality", jpeg_quality, 1, 95),
    )
    for name, value, low, high in checks:
        if name == "strength":
            check_number(name, value, low, high)
        else:
            check_integer(name, value, low, high)


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
