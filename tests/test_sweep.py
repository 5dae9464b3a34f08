"""The experiment tracker (fakelib.sweep, run_all.py) and the reading back of its results (fakelib.report).

Fast tests drive the tracker with a fake runner (no kernel, no training); the slow ones run real tiny
experiments through papermill: a sweep killed mid-experiment and resumed, a failing experiment among good ones,
the report and best/, and `--workers 2` on a LocalCluster against `--workers 1`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fakelib import paths, report, sweep
from fakelib.config import ConfigError

RUN_ALL = paths.ROOT / "run_all.py"
# Columns that describe how and when a run happened, not what it found.
RUN_TIME_COLUMNS = ["start", "duration", "threads", "train_seconds"]


def write_params(path: Path, sweep_values: dict, **sections) -> Path:
    """A params.yaml with the given sections (merged over tiny defaults) and sweep."""
    raw = {
        "data": {"data_dir": "data/not-used", "image_size": 32},
        "model": {"conv_filters": [4], "dense_units": [4]},
        "train": {"epochs": 1, "batch_size": 16, "patience": 0},
        "tracker": {"metric": "val_roc_auc"},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    raw["sweep"] = sweep_values
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def read_rows(reports: Path) -> dict[str, dict[str, str]]:
    with (reports / report.RESULTS_FILE).open(newline="") as handle:
        return {row["experiment_id"]: row for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------- fake runner


def fake_runner(job: sweep.Job) -> dict:
    """Stands in for `run_job`: writes metrics.json and run.json; dropout >= 0.5 'fails', 0.4 is 'interrupted'."""
    out = Path(job.output_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    dropout = job.parameters["dropout"]
    if dropout == 0.4:
        raise KeyboardInterrupt
    record = {"experiment_id": job.experiment_id, "status": "done", "error": "", "start": "now", "duration": 1.0,
              "threads": job.threads, "metrics": {}}
    if dropout >= 0.5:
        record.update(status="failed", error="ValueError: bad combination")
    else:
        record["metrics"] = {"experiment_id": job.experiment_id, "model": "cnn", "val_roc_auc": 0.9 - dropout,
                             "val_loss": 0.1 + dropout, "test_roc_auc": 0.8, "param_count": 100,
                             "confusion_matrix": [[1, 0], [0, 1]]}
        (out / "metrics.json").write_text(json.dumps(record["metrics"]))
        (out / "model.keras").write_text("not a model")
    (out / sweep.RUN_FILE).write_text(json.dumps(record))
    return record


def fake_sweep(tmp_path: Path, dropouts, **kwargs) -> tuple[sweep.SweepPlan, sweep.SweepOutcome]:
    params = write_params(tmp_path / "params.yaml", {"dropout": list(dropouts)})
    plan = sweep.prepare_sweep(params, tmp_path / "reports", **kwargs)
    return plan, sweep.execute(plan, runner=fake_runner, progress=False)


def test_sweep_records_every_experiment_and_keeps_going_after_a_failure(tmp_path):
    plan, outcome = fake_sweep(tmp_path, [0.0, 0.6, 0.2])
    rows = read_rows(plan.reports_dir)
    assert [row["status"] for row in rows.values()] == ["done", "failed", "done"]
    failed = next(row for row in rows.values() if row["status"] == "failed")
    assert failed["error"] == "ValueError: bad combination" and failed["dropout"] == "0.6"
    assert outcome.failures == 1 and not outcome.stopped_early
    first = rows[plan.experiments[0].experiment_id]
    assert float(first["val_roc_auc"]) == pytest.approx(0.9) and first["param_count"] == "100"
    assert first["conv_filters"] == "[4]" and "model" in first  # the parameter column, not a duplicate metric
    assert not list(plan.reports_dir.glob(".*tmp*")), "no temporary file left behind"


def test_rerun_skips_done_reruns_failed_and_force_reruns_all(tmp_path):
    plan, _ = fake_sweep(tmp_path, [0.0, 0.6])
    done_id, failed_id = (config.experiment_id for config in plan.experiments)
    again = sweep.prepare_sweep(plan.params_path, plan.reports_dir)
    assert again.skipped == [done_id] and [config.experiment_id for config in again.selected] == [failed_id]
    forced = sweep.prepare_sweep(plan.params_path, plan.reports_dir, force=True)
    assert len(forced.selected) == 2


def test_interrupt_marks_the_running_experiment_and_resume_finishes_it(tmp_path):
    params = write_params(tmp_path / "params.yaml", {"dropout": [0.0, 0.4, 0.2]})
    plan = sweep.prepare_sweep(params, tmp_path / "reports")
    with pytest.raises(KeyboardInterrupt):
        sweep.execute(plan, runner=fake_runner, progress=False)
    first, interrupted, never = (config.experiment_id for config in plan.experiments)
    rows = read_rows(plan.reports_dir)
    assert rows[first]["status"] == "done" and rows[interrupted]["status"] == "failed"
    assert "interrupted" in rows[interrupted]["error"] and never not in rows
    finished_at = (plan.experiments_dir / first / "metrics.json").stat().st_mtime_ns

    resumed = sweep.prepare_sweep(params, plan.reports_dir)
    assert [config.experiment_id for config in resumed.selected] == [interrupted, never]
    assert (plan.experiments_dir / first / "metrics.json").stat().st_mtime_ns == finished_at


def test_running_row_from_a_killed_process_is_rerun_and_lost_row_is_recovered(tmp_path):
    plan, _ = fake_sweep(tmp_path, [0.0, 0.2])
    first, second = (config.experiment_id for config in plan.experiments)
    table = sweep.ResultsTable(plan.table.path)
    table.rows[first]["status"] = "running"  # killed while running: no run.json finished it
    (plan.experiments_dir / first / sweep.RUN_FILE).unlink()
    del table.rows[second]  # killed between writing run.json and results.csv
    table.save(merge=False)
    resumed = sweep.prepare_sweep(plan.params_path, plan.reports_dir)
    assert [config.experiment_id for config in resumed.selected] == [first]
    assert resumed.skipped == [second] and resumed.table.get(second)["status"] == "done"


def test_max_failures_stops_starting_new_experiments(tmp_path):
    params = write_params(tmp_path / "params.yaml", {"dropout": [0.5, 0.6, 0.7, 0.0]})
    plan = sweep.prepare_sweep(params, tmp_path / "reports")
    outcome = sweep.execute(plan, runner=fake_runner, progress=False, max_failures=2)
    assert outcome.failures == 2 and outcome.stopped_early and outcome.not_run == 2
    assert len(read_rows(plan.reports_dir)) == 2


def test_only_selects_by_unique_prefix_and_rejects_unknown_ids(tmp_path):
    params = write_params(tmp_path / "params.yaml", {"dropout": [0.0, 0.2]})
    target = sweep.prepare_sweep(params, tmp_path / "reports").experiments[1].experiment_id
    plan = sweep.prepare_sweep(params, tmp_path / "reports", only=[target[:6]])
    assert [config.experiment_id for config in plan.selected] == [target]
    with pytest.raises(ConfigError, match="matches no experiment"):
        sweep.prepare_sweep(params, tmp_path / "reports", only=["zzzz"])


def test_unknown_key_in_a_sweep_is_rejected_before_anything_is_written(tmp_path):
    params = write_params(tmp_path / "params.yaml", {"dropuot": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="dropuot"):
        sweep.prepare_sweep(params, tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


def test_run_all_rejects_a_misspelled_key_with_one_line_and_exit_2(tmp_path):
    params = write_params(tmp_path / "params.yaml", {"dropout": [0.1]}, model={"conv_filtres": [8]})
    result = subprocess.run([sys.executable, str(RUN_ALL), "--params", str(params), "--reports", str(tmp_path / "r")],
                            capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stderr.splitlines() if line.startswith("run_all.py")]
    assert result.returncode == 2 and len(errors) == 1 and "conv_filtres" in errors[0]
    assert not (tmp_path / "r").exists() and "experiment" not in result.stdout


def test_every_experiment_key_must_be_a_notebook_parameter(tmp_path):
    import nbformat

    notebook = nbformat.read(str(sweep.TRAIN_NOTEBOOK), as_version=4)
    cell = next(cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", []))
    cell.source = "\n".join(line for line in cell.source.splitlines() if not line.startswith("patience ="))
    stale = tmp_path / "02_train.ipynb"
    nbformat.write(notebook, str(stale))
    params = write_params(tmp_path / "params.yaml", {"dropout": [0.1]})
    with pytest.raises(ConfigError, match="no parameter.*patience"):
        sweep.prepare_sweep(params, tmp_path / "reports", notebook=stale)
    sweep.prepare_sweep(params, tmp_path / "reports")  # the real notebook takes every key


# ----------------------------------------------------------------------------------------- small pieces


def test_one_line_error_reports_the_kernel_exception():
    from papermill.exceptions import PapermillExecutionError

    keras_style = PapermillExecutionError(
        3, 3, "model = ...", "ValueError", "Exception encountered when calling MaxPooling2D.call().\n\n"
        "\x1b[1mComputed output size would be zero or negative.\x1b[0m\n\nArguments received: ...", ["tb"])
    assert sweep.one_line_error(keras_style) == (
        "ValueError: Exception encountered when calling MaxPooling2D.call(). "
        "Computed output size would be zero or negative.")
    assert sweep.one_line_error(RuntimeError("x" * 1000)).endswith("...")
    assert len(sweep.one_line_error(RuntimeError("x" * 1000))) == sweep.ERROR_LIMIT
    assert "\n" not in sweep.one_line_error(OSError("first\nsecond"))


def test_results_table_round_trips_and_orders_columns(tmp_path):
    table = sweep.ResultsTable(tmp_path / "results.csv")
    table.put({"experiment_id": "b", "val_roc_auc": 0.25, "status": "done", "dropout": 0.1, "dense_units": [4]})
    table.put({"experiment_id": "a", "status": "failed", "error": "E: x, \"quoted\"\nline"})
    again = sweep.ResultsTable(tmp_path / "results.csv")
    assert list(again.rows) == ["b", "a"] and again.get("b")["dense_units"] == "[4]"
    assert again.get("a")["error"] == "E: x, \"quoted\"\nline" and again.get("a")["val_roc_auc"] == ""
    assert again.columns()[:4] == ["experiment_id", "dropout", "dense_units", "status"]


def test_best_respects_metric_direction_and_ignores_failed(tmp_path):
    table = sweep.ResultsTable(tmp_path / "results.csv")
    for experiment_id, status, auc, loss in (("a", "done", 0.7, 0.5), ("b", "failed", "", ""),
                                             ("c", "done", 0.9, 0.6), ("d", "done", 0.9, 0.4)):
        table.put({"experiment_id": experiment_id, "status": status, "val_roc_auc": auc, "val_loss": loss}, save=False)
    assert sweep.select_best(table, ["a", "b", "c", "d"], "val_roc_auc")["experiment_id"] == "c"  # tie: first
    assert sweep.select_best(table, ["a", "b", "c", "d"], "val_loss")["experiment_id"] == "d"
    assert sweep.select_best(table, ["b"], "val_roc_auc") is None


def test_publish_best_links_files_and_replaces_the_old_best(tmp_path):
    first, second = tmp_path / "experiments" / "one", tmp_path / "experiments" / "two"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "model.keras").write_text(folder.name)
        (folder / "metrics.json").write_text("{}")
    best = tmp_path / "best"
    sweep.publish_best(first, best)
    sweep.publish_best(second, best)
    assert (best / "model.keras").read_text() == "two" and (best / "metrics.json").exists()
    assert not (best / "curves.png").exists()
    sweep.publish_best(None, best)
    assert not best.exists()


def test_leaderboard_and_ordinal_codes(tmp_path):
    results = pd.DataFrame({
        "experiment_id": ["a", "b", "c", "old"], "status": ["done", "done", "failed", "done"],
        "conv_filters": ["[16, 32]", "[8, 16]", "[8, 16]", "[4]"], "dropout": [0.3, 0.3, 0.0, 0.1],
        "val_roc_auc": [0.7, 0.8, None, 0.99], "param_count": [10.0, 5.0, None, 1.0]})
    summary = {"metric": "val_roc_auc", "higher_is_better": True, "experiment_ids": ["a", "b", "c"],
               "swept": ["conv_filters", "dropout"]}
    board = report.leaderboard(results, summary)
    assert board["experiment_id"].tolist() == ["b", "a"]  # older experiments outside the sweep are left out
    assert "conv_filters" in board and "dropout" not in board  # dropout does not vary among finished ones
    assert board["param_count"].tolist() == [5, 10]
    codes, labels = report.ordinal_codes(results, ["conv_filters", "dropout"])
    assert labels["conv_filters"] == ["[4]", "[8, 16]", "[16, 32]"] and labels["dropout"] == ["0.0", "0.1", "0.3"]
    assert codes["conv_filters"].tolist() == [1.0, 0.5, 0.5, 0.0]


def test_threads_by_worker_shares_each_machines_cores():
    class FakeClient:
        def scheduler_info(self, n_workers=-1):
            return {"workers": {"tcp://a:1": {"host": "a", "nthreads": 1}, "tcp://a:2": {"host": "a", "nthreads": 1},
                                "tcp://b:1": {"host": "b", "nthreads": 2}}}

        def run(self, function):
            return {"tcp://a:1": 8, "tcp://a:2": 8, "tcp://b:1": 3}

    assert sweep.threads_by_worker(FakeClient()) == {"tcp://a:1": 4, "tcp://a:2": 4, "tcp://b:1": 1}


# ------------------------------------------------------------------------------- real tiny experiments


@pytest.fixture(scope="module")
def tiny_sweep_params(tmp_path_factory) -> Path:
    """Three tiny experiments on an 80-image demo set: two that train, one capped at one image per class, which
    leaves a split without both classes (a run-time ValueError: the configuration itself is valid)."""
    from fakelib.demo import generate

    root = tmp_path_factory.mktemp("tiny_sweep")
    generate(root / "demo", count=80, size=32, seed=1, strength=1.0, workers=1)
    # One thread everywhere: TensorFlow's float results depend (in the last bits) on the thread count, and the
    # comparison of --workers 2 with --workers 1 is about the execution path, not about thread counts.
    return write_params(root / "params.yaml", {"max_images_per_class": [0, 30, 1]},
                        data={"data_dir": str(root / "demo")}, train={"threads": 1})


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def statuses(reports: Path) -> dict[str, str]:
    try:
        return {key: row["status"] for key, row in read_rows(reports).items()}
    except (OSError, KeyError):
        return {}


@pytest.fixture(scope="module")
def resumed_sweep(tiny_sweep_params: Path, tmp_path_factory):
    """run_all.py killed (SIGKILL) during the second experiment, then the sweep resumed and reported in-process."""
    reports = tmp_path_factory.mktemp("resumed") / "reports"
    first, second, _ = (config.experiment_id for config in sweep.prepare_sweep(tiny_sweep_params).experiments)
    process = subprocess.Popen([sys.executable, str(RUN_ALL), "--params", str(tiny_sweep_params), "--reports",
                                str(reports), "--no-report", "--quiet"], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: statuses(reports).get(second) == "running" or process.poll() is not None, 240,
                 "the first experiment to finish")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group: run_all.py and anything it started
        process.wait()
    killed = {"statuses": statuses(reports), "first_mtime": (reports / "experiments" / first / "model.keras")
              .stat().st_mtime_ns, "first_row": read_rows(reports)[first]}
    plan = sweep.prepare_sweep(tiny_sweep_params, reports)
    outcome = sweep.execute(plan, progress=False)
    summary = sweep.finalize(plan, outcome, explain_overrides={"n_images": 4, "quality_limit": 4})
    return {"reports": reports, "killed": killed, "plan": plan, "outcome": outcome, "summary": summary,
            "ids": (first, second, plan.experiments[2].experiment_id)}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(400)
def test_killed_sweep_resumes_without_retraining_or_losing_finished_work(resumed_sweep):
    first, second, third = resumed_sweep["ids"]
    assert resumed_sweep["killed"]["statuses"] == {first: "done", second: "running"}
    reports = resumed_sweep["reports"]
    rows = read_rows(reports)
    assert rows[first] == resumed_sweep["killed"]["first_row"], "the finished row is untouched"
    assert (reports / "experiments" / first / "model.keras").stat().st_mtime_ns == resumed_sweep["killed"]["first_mtime"]
    assert [record["experiment_id"] for record in resumed_sweep["outcome"].records] == [second, third]
    assert rows[second]["status"] == "done" and (reports / "experiments" / second / "02_train.ipynb").is_file()
    metrics = json.loads((reports / "experiments" / second / "metrics.json").read_text())
    assert float(rows[second]["val_roc_auc"]) == pytest.approx(metrics["val_roc_auc"])


@pytest.mark.slow
@pytest.mark.notebook
def test_failing_experiment_is_recorded_while_the_others_finish(resumed_sweep):
    first, second, third = resumed_sweep["ids"]
    rows = read_rows(resumed_sweep["reports"])
    assert [rows[key]["status"] for key in (first, second, third)] == ["done", "done", "failed"]
    assert rows[third]["error"].startswith("ValueError:") and "needs both real and fake" in rows[third]["error"]
    assert "\n" not in rows[third]["error"] and rows[third]["val_roc_auc"] == ""
    assert (resumed_sweep["reports"] / "experiments" / third / "02_train.ipynb").is_file()  # full traceback there


@pytest.mark.slow
@pytest.mark.notebook
def test_best_explain_and_report_follow_the_sweep(resumed_sweep):
    reports, summary = resumed_sweep["reports"], resumed_sweep["summary"]
    rows = read_rows(reports)
    done = {key: float(row["val_roc_auc"]) for key, row in rows.items() if row["status"] == "done"}
    best_id = max(done, key=done.get)
    assert summary["best_experiment_id"] == best_id and summary["report"] == "done"
    assert json.loads((reports / "best" / "metrics.json").read_text())["experiment_id"] == best_id
    assert (reports / "best" / "model.keras").is_file() and (reports / "report.html").stat().st_size > 10_000
    recorded = json.loads((reports / "report.json").read_text())
    assert recorded["best_experiment_id"] == best_id and recorded["n_done"] == 2 and recorded["n_failed"] == 1
    assert recorded["leaderboard"][0] == best_id
    explain = json.loads((reports / report.SUMMARY_FILE).read_text())["explain"]
    assert explain["status"] == "done", explain["error"]
    assert recorded["explanations_shown"]
    # the field guide follows the explanation, on the same model and folder (issue 11)
    guide = json.loads((reports / report.SUMMARY_FILE).read_text())["field_guide"]
    assert guide["status"] == "done", guide["error"]
    assert (reports / "field_guide.html").is_file() and (reports / "field_guide" / "field_guide.json").is_file()


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(300)
def test_two_workers_on_a_local_cluster_give_the_same_table_as_one(resumed_sweep, tiny_sweep_params, tmp_path):
    plan = sweep.prepare_sweep(tiny_sweep_params, tmp_path / "reports")
    outcome = sweep.execute(plan, workers=2, progress=False, echo=False)
    assert {record["threads"] for record in outcome.records} == {1}

    def table(reports: Path) -> pd.DataFrame:
        frame = report.load_results(reports).drop(columns=RUN_TIME_COLUMNS)
        return frame.sort_values("experiment_id").reset_index(drop=True)

    parallel, sequential = table(plan.reports_dir), table(resumed_sweep["reports"])
    numeric = parallel.select_dtypes("number").columns
    pd.testing.assert_frame_equal(parallel.drop(columns=numeric), sequential.drop(columns=numeric))
    pd.testing.assert_frame_equal(parallel[numeric], sequential[numeric], check_exact=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_each_local_cluster_worker_gets_its_share_of_the_cores(tmp_path):
    with sweep.open_executor(workers=2) as executor:
        assert executor.slots == 2
        share = max(1, sweep.available_cores() // 2)
        assert set(executor.layout.values()) == {share}
        job = sweep.Job(experiment_id="x", parameters={}, output_dir=str(tmp_path), threads_by_worker=executor.layout)
        assert executor.client.submit(sweep.runs._threads_here, job, pure=False).result(timeout=60) == share
