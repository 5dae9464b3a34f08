"""Shared fixtures: an isolated prepared-data cache, and tiny demo datasets generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import pytest

from fakelib.quiet import tensorflow_environment

os.environ.setdefault("MPLBACKEND", "Agg")
tensorflow_environment()  # as the entry points do: oneDNN on where TensorFlow would leave it off


def executed_dir() -> Path:
    """Where notebook smoke tests keep executed copies for the nbval pass (`make test` sets the variable)."""
    from fakelib import paths

    return Path(os.environ.get("FAKELIB_EXECUTED_DIR", paths.ROOT / "build" / "executed"))


def execute_notebook(name: str, parameters: dict, output: Path | None = None):
    """Run notebooks/<name> through papermill with `parameters` into `output` (default: the executed dir).

    Returns the executed notebook (nbformat). Copies kept in the executed dir are re-run by
    `pytest --nbval-lax` afterwards, with the tiny parameters papermill injected.
    """
    import nbformat

    from fakelib import paths
    from fakelib.sweep import execute_notebook as run  # the tracker's one papermill call: notebooks run as it runs them

    output = output or executed_dir() / name
    output.parent.mkdir(parents=True, exist_ok=True)
    run(paths.NOTEBOOKS / name, output, parameters)
    return nbformat.read(str(output), as_version=4)


def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (benchmarks are scripts, not a package), registered in sys.modules so that
    its dataclasses resolve their module."""
    import importlib.util
    import sys

    from fakelib import paths

    spec = importlib.util.spec_from_file_location(name, paths.ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep prepared caches out of the repository's data/cache during tests."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["FAKELIB_CACHE"] = str(cache)
    return cache


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 demo faces (60 real, 60 fake) at 32 px with masks and a manifest split; strong artifacts."""
    from fakelib.demo import generate

    out = tmp_path_factory.mktemp("demo32")
    generate(out, count=120, size=32, seed=0, strength=1.0, workers=1)
    return out


@pytest.fixture(scope="session")
def tiny_config(demo_dataset: Path):
    """An experiment that trains in a few seconds on the tiny demo dataset."""
    from fakelib.config import ExperimentConfig

    return ExperimentConfig.from_flat(dict(
        data_dir=str(demo_dataset), image_size=32, conv_filters=[8, 16], dense_units=[8], epochs=2,
        batch_size=16, patience=0, blur_prob=0.3, jpeg_prob=0.3, threads=2))


@pytest.fixture(scope="session")
def trained_experiment(tiny_config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished tiny experiment folder (model.keras, metrics.json, ...), trained once per session."""
    from fakelib.train import run_experiment

    out = tmp_path_factory.mktemp("experiment")
    run_experiment(tiny_config, out, verbose=0)
    return out


EXPLAIN_DEMO_SIZE = 48


def _paired_faces(pairs: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Real and fake renders of the same face side by side: they differ only inside the artifact footprints."""
    from fakelib.demo import render_face

    images, labels = [], []
    for index in range(pairs):
        for fake in (False, True):
            image, _, _ = render_face(np.random.default_rng([seed, index]), size, fake, 1.0)
            images.append(image)
            labels.append(int(fake))
    return np.stack(images), np.array(labels)


@pytest.fixture(scope="session")
def explain_demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with `model.keras` (a tiny demo detector that uses the artifacts) and `data/` (unseen demo faces).

    Real/fake pairs from `fakelib.demo.render_face` make the artifacts the only difference, so a 3-layer CNN
    learns to use them in ~8 epochs (a few seconds). The dataset on disk has another seed, so localization
    is measured on fakes the model never saw.
    """
    import keras

    from fakelib.demo import generate
    from fakelib.models import create_model

    folder = tmp_path_factory.mktemp("explain-demo")
    generate(folder / "data", count=60, size=EXPLAIN_DEMO_SIZE, seed=3, strength=1.0, workers=1)
    images, labels = _paired_faces(400, EXPLAIN_DEMO_SIZE, seed=7)
    keras.utils.set_random_seed(0)
    model = create_model("cnn", EXPLAIN_DEMO_SIZE, conv_filters=[16, 32, 32], dense_units=[16], dropout=0.0,
                         batch_norm=False, l2=0.0)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
    model.fit(images.astype("float32"), labels, epochs=8, batch_size=32, shuffle=False, verbose=0)
    model.save(folder / "model.keras")
    return folder


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs `explain_demo_dir` (an 8-epoch training, directly or through another fixture) is slow,
    so `make test-fast` (`-m "not slow and not notebook"`) never trains it."""
    for item in items:
        if "explain_demo_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def write_tiny_params(path: Path, model: str | None = None, batch_size: int = 16) -> Path:
    """A params.yaml whose base trains in seconds on 32 px images (one epoch, 4-8 filters)."""
    import yaml

    path.write_text(yaml.safe_dump({
        "data": {"image_size": 32},
        "model": {**({"model": model} if model else {}), "conv_filters": [4, 8], "dense_units": [4]},
        "train": {"epochs": 1, "batch_size": batch_size, "patience": 0, "threads": 2}}))
    return path


@pytest.fixture
def fixed_landmarks(monkeypatch):
    """FaceMesh finds no face in tiny generated images: fixed landmarks stand in (eyes at 15% and 85% of the
    width and 45% of the height, so a 32 px image's eye square is 36 px), for cutting and scoring alike."""
    from fakelib import landmarks

    points = np.full((468, 2), 0.5, dtype=np.float32)
    for contour, x in zip(landmarks.EYES, (0.15, 0.85)):
        points[list(contour)] = (x, 0.45)
    monkeypatch.setattr(landmarks, "available", lambda: True)
    monkeypatch.setattr(landmarks, "landmarks", lambda image, cache_dir=None: points)
    return points


def check_folder_scores(predictor, files: list[Path], expected: np.ndarray, folder: Path, n_fake: int) -> dict:
    """Copy `files` (the first `n_fake` fakes) into folder/<real|fake>/demo/ and check that `evaluate_groups` and
    `evaluate_folder` give the mean `expected` p_fake per class; returns evaluate_folder's row."""
    import shutil

    from fakelib.predict import evaluate_folder, evaluate_groups

    for path in files:
        target = folder / path.parent.name / "demo" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    groups = evaluate_groups(predictor, folder, common=False)["groups"]
    assert groups["fake/demo"]["as_published_mean_p_fake"] == pytest.approx(expected[:n_fake].mean(), abs=1e-5)
    assert groups["real/demo"]["as_published_mean_p_fake"] == pytest.approx(expected[n_fake:].mean(), abs=1e-5)
    row = evaluate_folder(predictor, folder)
    assert row["n"] == len(files)
    for group in ("fake/demo", "real/demo"):  # the same figures per group, one way
        assert row["groups"][group]["mean_p_fake"] == pytest.approx(groups[group]["as_published_mean_p_fake"])
        share = "caught" if group.startswith("fake") else "kept_real"
        assert row["groups"][group][share] == pytest.approx(groups[group][f"as_published_{share}"])
    return row


def copy_without(folder: Path, tmp_path: Path, name: str) -> Path:
    """A copy of a detector folder without its file `name`; returns the copy's model.keras."""
    import shutil

    copy = tmp_path / f"without-{name}"
    shutil.copytree(folder, copy)
    (copy / name).unlink()
    return copy / "model.keras"
