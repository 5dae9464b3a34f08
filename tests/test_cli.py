"""`python -m fakelib`: help, evaluate, predict, and one-line errors (run as a user would, in a subprocess)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from fakelib import paths


def fakelib_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fakelib", *args], capture_output=True, text=True,
                          cwd=paths.ROOT, timeout=600)


def test_help_lists_every_command():
    result = fakelib_cli("--help")
    assert result.returncode == 0
    for command in ("demo", "prepare", "train", "evaluate", "predict", "scrape", "dedup", "audit", "explain-quality"):
        assert command in result.stdout


@pytest.mark.slow
def test_evaluate_prints_one_json_line_per_folder(trained_experiment, demo_dataset, tmp_path):
    only_real = tmp_path / "only_real"
    shutil.copytree(demo_dataset / "real", only_real / "real")
    result = fakelib_cli("evaluate", "--model", str(trained_experiment / "model.keras"), str(demo_dataset),
                         str(only_real))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 2
    both, real = rows
    for key in ("data", "n", "n_real", "n_fake", "accuracy", "precision", "recall", "f1", "roc_auc",
                "average_precision", "threshold"):
        assert key in both and key in real
    assert both["n"] == 120 and both["n_real"] == both["n_fake"] == 60
    assert 0 <= both["roc_auc"] <= 1
    assert real["n_fake"] == 0 and real["roc_auc"] is None and real["f1"] is None
    assert real["accuracy"] == pytest.approx(real["real_rate"])
    threshold = json.loads((trained_experiment / "metrics.json").read_text())["threshold"]
    assert both["threshold"] == pytest.approx(threshold)


@pytest.mark.slow
def test_predict_reports_probability_or_error_per_image(trained_experiment, demo_dataset, tmp_path):
    image = next((demo_dataset / "fake").glob("*.jpg"))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff garbage")
    result = fakelib_cli("predict", "--model", str(trained_experiment / "model.keras"), str(image), str(broken),
                         str(tmp_path / "missing.png"))
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert set(rows[0]) == {"path", "p_fake", "label", "threshold"} and 0 <= rows[0]["p_fake"] <= 1
    assert rows[0]["label"] in {"real", "fake"}
    assert "error" in rows[1] and "error" in rows[2]


@pytest.mark.parametrize("args, fragment", [
    (["evaluate", "--model", "nope.keras", "data"], "model file not found"),
    (["train", "--params", "missing.yaml"], "missing.yaml"),
    (["train", "--set", "dropout=7"], "model.dropout = 7"),
    (["train", "--set", "epochs"], "--set 'epochs': expected KEY=VALUE"),
    (["pretrained", "--from-run", "run", "--set", "members=2"], "--from-run packages a finished run as it is"),
])
def test_errors_are_one_line_without_traceback(args, fragment):
    result = fakelib_cli(*args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_evaluate_bad_folder_is_a_json_error_row(trained_experiment, tmp_path):
    result = fakelib_cli("evaluate", "--model", str(trained_experiment / "model.keras"), str(tmp_path / "nowhere"))
    assert result.returncode == 1
    row = json.loads(result.stdout)
    assert row["data"].endswith("nowhere") and "not found" in row["error"]
