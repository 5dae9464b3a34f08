"""The stage after the experiments: best/ pointed at the winner, 03_explain.ipynb run on it, sweep.json written,
then 04_report.ipynb executed and exported to HTML."""

from __future__ import annotations

import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fakelib import paths
from fakelib.ownership import WrittenFiles
from fakelib.config import ConfigError
from fakelib.report import SUMMARY_FILE, test_metric_for
from fakelib.sweep.common import (BEST_FILES, Record, higher_is_better, locked, one_line_error, timestamp,
                                  write_json_record)
from fakelib.sweep.execution import SweepOutcome
from fakelib.sweep.plan import SweepPlan
from fakelib.sweep.runs import execute_notebook, kernel_log_path
from fakelib.sweep.table import ResultsTable


EXPLAIN_NOTEBOOK = paths.NOTEBOOKS / "03_explain.ipynb"
REPORT_NOTEBOOK = paths.NOTEBOOKS / "04_report.ipynb"


# ---------------------------------------------------------------------------------------- best, explain, report


def _score(row: Mapping[str, str], metric: str) -> float | None:
    try:
        value = float(row.get(metric, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def select_best(table: ResultsTable, experiment_ids: Sequence[str], metric: str) -> dict[str, str] | None:
    """The `done` row with the best `metric` among `experiment_ids` (ties: the earliest in the sweep)."""
    sign = 1.0 if higher_is_better(metric) else -1.0
    best, best_value = None, -math.inf
    for experiment_id in experiment_ids:
        row = table.get(experiment_id)
        value = _score(row, metric) if row and row.get("status") == "done" else None
        if value is not None and sign * value > best_value:
            best, best_value = row, sign * value
    return best


def _link_or_copy(source: Path, target: Path) -> None:
    """A relative symlink (cheap, always current), or a copy where the file system refuses links."""
    try:
        os.symlink(os.path.relpath(source, target.parent), target)
    except OSError:
        shutil.copy2(source, target)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def publish_best(experiment_dir: Path | None, best_dir: Path) -> None:
    """Make `best_dir` hold the best experiment's files (built beside it, then swapped in); None removes it.

    Only files the tracker recorded as its own are replaced or removed; a user's file in `best_dir` stays, and
    the new links are then placed beside it instead of swapping the folder.
    """
    written = WrittenFiles(best_dir.parent)
    if experiment_dir is None:
        written.remove(best_dir)
        return
    staging = best_dir.with_name(f".{best_dir.name}.tmp{os.getpid()}")
    _remove(staging)  # this process's own leftover
    staging.mkdir(parents=True)
    for name in BEST_FILES:
        if (experiment_dir / name).is_file():
            _link_or_copy(experiment_dir / name, staging / name)
    names = [item.name for item in staging.iterdir()]
    if written.remove(best_dir):
        os.replace(staging, best_dir)
    else:
        for name in names:
            if not (best_dir / name).exists() and not (best_dir / name).is_symlink():
                os.replace(staging / name, best_dir / name)
        _remove(staging)
    written.add([best_dir / name for name in names if (best_dir / name).is_symlink() or (best_dir / name).exists()])


def _explain_folder(best_row: Mapping[str, str], best_dir: Path) -> str:
    """The data folder to explain on: the best experiment's first `data_dir` folder (a list in results.csv is text,
    so its own params.yaml is read when present)."""
    from fakelib.config import load_experiment
    from fakelib.data import data_dirs

    if (best_dir / "params.yaml").is_file():
        return data_dirs(load_experiment(best_dir / "params.yaml").data)[0]
    return best_row["data_dir"]


def run_explain(best_row: Mapping[str, str], best_dir: Path, explain_dir: Path,
                overrides: Mapping[str, Any] | None = None, notebook: Path = EXPLAIN_NOTEBOOK) -> dict[str, str]:
    """Run the explanation notebook on the best model into `explain_dir`; a failure is returned, not raised.

    Returns:
        `{"status": "done" | "failed" | "absent", "error": str}`.
    """
    if not notebook.is_file():
        return {"status": "absent", "error": f"{notebook.name} not found"}
    import papermill

    known = papermill.inspect_notebook(str(notebook))
    parameters = {"model_path": str(best_dir / "model.keras"), "data_dir": _explain_folder(best_row, best_dir),
                  "output_dir": str(explain_dir), **(overrides or {})}
    written = WrittenFiles(explain_dir.parent)
    written.remove(explain_dir)
    foreign = {path for path in _tree(explain_dir)}  # a user's files, left where they are
    explain_dir.mkdir(parents=True, exist_ok=True)
    try:
        execute_notebook(notebook, explain_dir / notebook.name,
                          {key: value for key, value in parameters.items() if key in known})
    except Exception as error:  # the sweep's results stand without explanations; the report says why
        return {"status": "failed", "error": one_line_error(error)}
    finally:
        written.add([path for path in _tree(explain_dir) if path not in foreign])
    return {"status": "done", "error": ""}


def _tree(folder: Path) -> list[Path]:
    """Every file and link below `folder` (none when it does not exist)."""
    return [path for path in folder.rglob("*") if path.is_symlink() or not path.is_dir()] if folder.is_dir() else []


def export_html(notebook_path: Path, html_path: Path) -> None:
    """Export an executed notebook to a standalone HTML file: figures embedded, no code, nothing from a CDN."""
    import nbformat

    from fakelib.report import offline_html

    html_path.write_text(offline_html(nbformat.read(str(notebook_path), as_version=4)), encoding="utf-8")


def run_report(reports_dir: Path, notebook: Path = REPORT_NOTEBOOK) -> None:
    """Execute the report notebook into `report.ipynb` and export `report.html` (also after a failed cell)."""
    output, html, recorded = reports_dir / "report.ipynb", reports_dir / "report.html", reports_dir / "report.json"
    written = WrittenFiles(reports_dir)
    foreign = written.foreign([output, html, recorded])
    if foreign is not None:  # appeared during the sweep (prepare_sweep refuses one that was there before)
        raise ConfigError(f"{foreign} was not written by the tracker; not replacing it")
    try:
        execute_notebook(notebook, output, {"reports_dir": str(reports_dir)})
    finally:
        if output.is_file():
            export_html(output, html)
        written.add([output, html, recorded, kernel_log_path(output)])


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def finalize(plan: SweepPlan, outcome: SweepOutcome | None = None, report: bool = True,
             explain_overrides: Mapping[str, Any] | None = None, workers: int = 1,
             scheduler: str | None = None) -> Record:
    """After the sweep: best/, explanations of the best model, sweep.json, then the report (unless `report=False`).

    Returns:
        The summary written to sweep.json, plus `report` ("done", "failed: ..." or "skipped").
    """
    with locked(plan.reports_dir / ".finalize.lock"):  # one sweep at a time swaps best/ and writes the report
        return _finalize(plan, outcome, report, explain_overrides, workers, scheduler)


def _finalize(plan: SweepPlan, outcome: SweepOutcome | None, report: bool, explain_overrides: Mapping[str, Any] | None,
              workers: int, scheduler: str | None) -> Record:
    metric = plan.params.tracker.metric
    ids = [config.experiment_id for config in plan.experiments]
    plan.table.refresh()  # rows finished by another sweep on this folder count too
    best = select_best(plan.table, ids, metric)
    best_dir = plan.reports_dir / "best"
    publish_best(plan.experiments_dir / best["experiment_id"] if best else None, best_dir)
    explain = {"status": "skipped", "error": "no finished experiment" if best is None else "no report asked for"}
    if report and best is not None:
        explain = run_explain(best, best_dir, plan.reports_dir / "explain", explain_overrides)
    field_guide = {"status": "skipped", "error": "the explanation did not run", "html": ""}
    if explain["status"] == "done":  # the field guide (05_field_guide.ipynb) on the same model and folder
        from fakelib.fieldguide import run_stage  # here, not at the top: it imports TensorFlow

        field_guide = run_stage(best_dir / "model.keras", _explain_folder(best, best_dir), plan.reports_dir)
    rows = [plan.table.get(experiment_id) or {} for experiment_id in ids]
    summary: Record = {
        "metric": metric, "higher_is_better": higher_is_better(metric), "test_metric": test_metric_for(metric),
        "params_file": str(plan.params_path), "experiments_dir": _relative(plan.experiments_dir, plan.reports_dir),
        "experiment_ids": ids, "swept": list(plan.params.sweep),
        "counts": dict(Counter(row.get("status") or "not run" for row in rows)),
        "best_experiment_id": best["experiment_id"] if best else None,
        "best_score": _score(best, metric) if best else None,
        "explain": {**explain, "output_dir": "explain"},
        "field_guide": field_guide,
        "workers": workers, "scheduler": scheduler,
        "ran": len(outcome.records) if outcome else 0, "stopped_early": bool(outcome and outcome.stopped_early),
        "finished": timestamp(time.time()),
    }
    plan.reports_dir.mkdir(parents=True, exist_ok=True)
    write_json_record(plan.reports_dir / SUMMARY_FILE, summary)
    summary["report"] = "skipped"
    if report:
        try:
            run_report(plan.reports_dir)
            summary["report"] = "done"
        except Exception as error:  # the report is the last step; its failure must not hide the results
            summary["report"] = f"failed: {one_line_error(error)}"
    return summary
