"""benchmarks/bench_serve.py on the tiny demo detector: one JSON object whose parts add up, through the explorer."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from conftest import load_benchmark

from fakelib import paths


def load_bench():
    return load_benchmark("bench_serve")


@pytest.mark.slow
def test_bench_serve_prints_one_json_object_of_first_and_median_upload_times(explain_demo_dir, tmp_path, capsys,
                                                                             monkeypatch):
    shutil.copy(explain_demo_dir / "model.keras", tmp_path / "model.keras")
    monkeypatch.setattr(sys, "argv", ["bench_serve.py", "--model", str(tmp_path / "model.keras"), "--uploads", "3",
                                      "--upload-side", "48"])
    load_bench().main()
    record = json.loads(capsys.readouterr().out)
    assert record["benchmark"] == "serve_upload_to_verdict_and_heatmaps"
    assert (record["input_side"], record["upload_side"], record["layers"], record["uploads_timed"]) == (48, 48, 3, 3)
    # the medians of the parts need not add up to the median total, but neither part can exceed it by much
    assert 0 < record["median_verdict_seconds"] < record["median_seconds"] + 0.05
    assert 0 < record["median_picture_seconds"] < record["median_seconds"] + 0.05
    assert record["ratio_to_goal"] == pytest.approx(record["median_seconds"] / record["goal_seconds"], abs=2e-3)
    assert record["meets_goal"] == (record["median_seconds"] <= record["goal_seconds"])


def test_the_bench_times_the_notebooks_default_method():
    import papermill

    defaults = papermill.inspect_notebook(str(paths.NOTEBOOKS / "explore.ipynb"))
    assert load_bench().METHOD == defaults["method"]["default"].strip("\"'")
