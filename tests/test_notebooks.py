"""Smoke tests of notebooks/02_train.ipynb and notebooks/04_report.ipynb: each run through papermill with tiny
parameters, asserting on the JSON it records.

The executed notebooks (with their injected tiny parameters) are written to `$FAKELIB_EXECUTED_DIR`
(default `build/executed/`), and their data and outputs to `build/smoke/`, which outlive the test session, so
`pytest --nbval-lax build/executed/` can re-execute them afterwards (nbval runs a notebook's own parameters,
and the committed defaults need the full demo dataset and a finished sweep).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest

from fakelib import paths, sweep
from fakelib.config import ExperimentConfig

EXECUTED = Path(os.environ.get("FAKELIB_EXECUTED_DIR", paths.ROOT / "build" / "executed"))
SMOKE = paths.ROOT / "build" / "smoke"
TINY = dict(image_size=32, conv_filters=[4, 8], dense_units=[4], epochs=1, batch_size=16, patience=0)

pytestmark = [pytest.mark.slow, pytest.mark.notebook]


def execute(name: str, parameters: dict) -> nbformat.NotebookNode:
    """Run notebooks/<name> into EXECUTED/<name> with `parameters`; returns the executed notebook."""
    EXECUTED.mkdir(parents=True, exist_ok=True)
    output = EXECUTED / name
    sweep.execute_notebook(paths.NOTEBOOKS / name, output, parameters)
    return nbformat.read(str(output), as_version=4)


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    """Every text the notebook printed or displayed, as one string."""
    return json.dumps([output for cell in notebook.cells for output in cell.get("outputs", [])])


def images_shown(notebook: nbformat.NotebookNode) -> int:
    return sum("image/png" in output.get("data", {}) for cell in notebook.cells for output in cell.get("outputs", []))


@pytest.fixture(scope="module")
def smoke_data() -> Path:
    from fakelib.demo import generate

    data_dir = SMOKE / "demo"
    shutil.rmtree(data_dir, ignore_errors=True)  # a folder left by an older generator has no ownership marker
    generate(data_dir, count=80, size=32, seed=2, strength=1.0, workers=1)
    shutil.rmtree(SMOKE / "reports", ignore_errors=True)
    return data_dir


@pytest.fixture(scope="module")
def trained(smoke_data: Path) -> dict:
    """02_train.ipynb run once with tiny parameters into build/smoke/reports/experiments/<id>/."""
    config = ExperimentConfig.from_flat({"data_dir": str(smoke_data), **TINY})
    output_dir = SMOKE / "reports" / "experiments" / config.experiment_id
    notebook = execute("02_train.ipynb", {**config.to_flat(), "threads": sweep.available_cores(),
                                          "output_dir": str(output_dir)})
    return {"config": config, "output_dir": output_dir, "notebook": notebook,
            "metrics": json.loads((output_dir / "metrics.json").read_text())}


@pytest.mark.timeout(240)
def test_train_notebook_records_consistent_metrics(trained):
    metrics, output_dir = trained["metrics"], trained["output_dir"]
    assert metrics["experiment_id"] == trained["config"].experiment_id
    data_report = json.loads((output_dir / "data_report.json").read_text())
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == data_report["n_images"] == 80
    (true_negative, false_positive), (false_negative, true_positive) = metrics["confusion_matrix"]
    assert true_negative + false_positive + false_negative + true_positive == metrics["n_test"]
    assert metrics["test_accuracy_at_threshold"] == pytest.approx((true_negative + true_positive) / metrics["n_test"])
    assert metrics["epochs_run"] == 1 and metrics["best_epoch"] == 1
    for key in ("val_roc_auc", "val_average_precision", "test_roc_auc", "test_f1", "threshold"):
        assert 0.0 <= metrics[key] <= 1.0, key
    for name in ("model.keras", "params.yaml", "history.csv", "curves.png", "audit/audit.json"):
        assert (output_dir / name).is_file(), name


@pytest.mark.timeout(240)
def test_train_notebook_shows_samples_and_figures_without_errors(trained):
    notebook = trained["notebook"]
    assert not [output for cell in notebook.cells for output in cell.get("outputs", [])
                if output.output_type == "error"]
    assert images_shown(notebook) >= 4  # samples, curves, confusion matrix, ROC/PR
    assert "val_loss" in outputs_text(notebook)  # the per-epoch progress lines
    assert "validation_ci95" in outputs_text(notebook)  # the per-source table


@pytest.mark.timeout(240)
def test_report_notebook_records_leaderboard_and_failures(trained, tmp_path):
    reports = SMOKE / "reports"
    failed = trained["config"].replace(dropout=0.5)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({
        "data": {"data_dir": trained["config"].data.data_dir, "image_size": 32},
        "model": {key: trained["config"].to_flat()[key] for key in ("conv_filters", "dense_units")},
        "train": {key: TINY[key] for key in ("epochs", "batch_size", "patience")},
        "sweep": {"dropout": [trained["config"].model.dropout, 0.5]}}))
    plan = sweep.prepare_sweep(params, reports)
    assert [config.experiment_id for config in plan.experiments] == [trained["config"].experiment_id,
                                                                    failed.experiment_id]
    plan.table.put(sweep.make_row(trained["config"], {"status": "done", "metrics": trained["metrics"],
                                                      "duration": 9.0, "threads": 2}))
    plan.table.put(sweep.make_row(failed, {"status": "failed", "error": "ValueError: smoke failure"}))
    sweep.finalize(plan, report=False)

    notebook = execute("04_report.ipynb", {"reports_dir": str(reports)})
    recorded = json.loads((reports / "report.json").read_text())
    assert recorded["best_experiment_id"] == trained["config"].experiment_id
    assert recorded["best_score"] == pytest.approx(trained["metrics"]["val_roc_auc"])
    assert (recorded["n_experiments"], recorded["n_done"], recorded["n_failed"]) == (2, 1, 1)
    assert recorded["leaderboard"] == [trained["config"].experiment_id]
    assert "smoke failure" in outputs_text(notebook)  # the failed-experiments table
    assert images_shown(notebook) >= 3  # the best experiment's curves, confusion matrix, ROC/PR
    assert "Per source, at the threshold" in outputs_text(notebook) and "validation_ci95" in outputs_text(notebook)
