"""Shared fixtures: an isolated prepared-data cache, and tiny demo datasets generated once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


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
