"""benchmarks/bench_train.py on a tiny generated dataset: one JSON object whose figures are consistent."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import load_benchmark


@pytest.mark.slow
def test_bench_train_times_whole_epochs_with_and_without_the_autotuner(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["bench_train.py", "--count", "96", "--size", "32", "--steps", "2",
                                      "--rounds", "3", "--epochs", "2", "--onednn-steps", "2"])
    load_benchmark("bench_train").main()
    record = json.loads(capsys.readouterr().out)
    assert record["image_size"] == 32 and record["steps"] == 2
    assert record["pipeline_over_bound"] == pytest.approx(
        record["pipeline_images_per_s"] / record["bound_images_per_s"], abs=2e-3)
    for name in ("pipeline", "bound"):  # three alternating rounds each, the median reported
        assert len(record["rounds"][name]) == 3 and min(record["rounds"][name]) > 0
        assert record[f"{name}_images_per_s"] == pytest.approx(sorted(record["rounds"][name])[1], abs=0.051)
    epochs = record["epochs"]
    for name in ("library", "autotuned"):
        seconds = epochs[name]["epoch_s"]
        assert len(seconds) == 2 and min(seconds) > 0
        assert epochs[name]["total_s"] == pytest.approx(sum(seconds), abs=0.02)
        assert epochs[name]["slowest_over_median"] >= 1.0
    assert epochs["autotuned_over_library"] == pytest.approx(
        epochs["autotuned"]["total_s"] / epochs["library"]["total_s"], abs=2e-3)
    assert epochs["goal_met"] == (epochs["library"]["slowest_over_median"] <= 1.5)
    onednn = record["onednn"]
    assert onednn["off"]["onednn_on"] is False and onednn["on"]["onednn_on"] is True  # each process as told
    assert onednn["on_over_off_speedup"] == pytest.approx(onednn["off"]["step_s"] / onednn["on"]["step_s"], abs=0.01)
