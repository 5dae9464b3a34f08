"""Reading a finished sweep back for the report: results.csv and sweep.json as tables, ranked and ready to plot.

`fakelib.sweep` writes both files and imports their names and the results.csv parameter columns from here, so
the writer and the reader cannot drift apart; this module never imports the tracker (it only reads its files).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fakelib.config import KEY_SECTIONS, NON_RESULT_KEYS

if TYPE_CHECKING:  # pandas is imported where used: the tracker imports this module on every Dask worker
    import pandas as pd

RESULTS_FILE = "results.csv"
SUMMARY_FILE = "sweep.json"
# Result-relevant parameters, in config order: the parameter columns of results.csv.
PARAMETER_KEYS = tuple(key for key in KEY_SECTIONS if key not in NON_RESULT_KEYS)


def test_metric_for(metric: str) -> str:
    """The test-set counterpart of a validation metric (the loss has none: ROC-AUC stands in)."""
    candidate = "test_" + metric.removeprefix("val_")
    return "test_roc_auc" if candidate == "test_loss" else candidate


def load_summary(reports_dir: str | Path) -> dict[str, Any]:
    """The sweep.json of a reports folder."""
    return json.loads((Path(reports_dir) / SUMMARY_FILE).read_text())


def load_results(reports_dir: str | Path) -> pd.DataFrame:
    """results.csv as a pandas DataFrame (list-valued parameters stay JSON strings, handy as categories)."""
    import pandas as pd

    return pd.read_csv(Path(reports_dir) / RESULTS_FILE, dtype={"experiment_id": str, "error": str},
                       keep_default_na=False, na_values=[""])


def current_results(results: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """The rows of the latest sweep, in sweep order (results.csv may also hold older experiments)."""
    order = {experiment_id: index for index, experiment_id in enumerate(summary["experiment_ids"])}
    current = results[results["experiment_id"].isin(order)]
    return current.sort_values("experiment_id", key=lambda column: column.map(order)).reset_index(drop=True)


def swept_parameters(results: pd.DataFrame, summary: Mapping[str, Any]) -> list[str]:
    """Parameters that take more than one value in these rows: the swept keys first, then any other that varies."""
    candidates = list(summary.get("swept", [])) + [key for key in PARAMETER_KEYS if key not in summary.get("swept", [])]
    return [key for key in candidates if key in results and results[key].astype(str).nunique() > 1]


def leaderboard(results: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """Finished experiments of the latest sweep, best first, with the swept parameters and test metrics beside."""
    metric, test_metric = summary["metric"], summary.get("test_metric", test_metric_for(summary["metric"]))
    done = current_results(results, summary)
    done = done[done["status"] == "done"]
    if metric not in done:  # no experiment ever finished: results.csv has no metric columns at all
        return done[["experiment_id"]].assign(**{metric: []}).set_axis(range(1, len(done) + 1))
    columns = ["experiment_id", *swept_parameters(done, summary), metric]
    columns += [key for key in ("val_roc_auc", "val_average_precision", "val_f1", "val_accuracy", "val_loss",
                                test_metric, "test_roc_auc", "test_average_precision", "test_accuracy", "test_f1",
                                "test_f1_at_threshold", "param_count", "train_seconds", "epochs_run")
                if key in done and key not in columns]
    board = done.sort_values(metric, ascending=not summary.get("higher_is_better", True), kind="stable")[columns]
    for key in ("param_count", "epochs_run"):  # integers, read as floats when a failed row left them empty
        if key in board and board[key].notna().all():
            board[key] = board[key].astype(int)
    board.index = range(1, len(board) + 1)
    return board


def failures_html(current: pd.DataFrame, parameters: Sequence[str]) -> str:
    """The experiments of `current` that did not finish, as an HTML table with each error whole.

    pandas would cut the error at 50 characters; here every cell is HTML-escaped (errors quote user input and
    model output) and the error column wraps instead of running off the page.
    """
    failed = current[current["status"] != "done"]
    columns = ["experiment_id", *parameters, "status"]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in [*columns, "error"])
    rows = []
    for _, row in failed.iterrows():
        cells = "".join(f"<td>{html.escape(_text(row.get(name)))}</td>" for name in columns)
        error = html.escape(_text(row.get("error")))
        rows.append(f'<tr>{cells}<td style="text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; '
                    f'max-width: 60em">{error}</td></tr>')
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _text(value: Any) -> str:
    """A cell as text: empty for a missing value (NaN or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def ordinal_codes(frame: pd.DataFrame, columns: Sequence[str]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Each column's values as positions in [0, 1] (numbers in numeric order, others as text), with the labels.

    Returns:
        (DataFrame of floats with the same index and columns, {column: labels in order}) for parallel coordinates.
    """
    import pandas as pd

    codes, labels = pd.DataFrame(index=frame.index), {}
    for column in columns:
        values = frame[column].astype(str)
        unique = sorted(values.unique(), key=_natural_key)
        position = {value: (index / (len(unique) - 1) if len(unique) > 1 else 0.5) for index, value in enumerate(unique)}
        codes[column] = values.map(position).astype(float)
        labels[column] = unique
    return codes, labels


def _natural_key(text: str) -> tuple:
    """Sort numbers numerically and JSON lists element-wise ([8, 16] before [16, 32] before [16, 32, 64])."""
    try:
        value = json.loads(text.lower() if text in ("True", "False") else text)
    except ValueError:
        return (2, 0, text)
    if isinstance(value, list):
        return (1, len(value), [float(item) if isinstance(item, (int, float)) else 0.0 for item in value])
    if isinstance(value, (int, float)):
        return (0, float(value), text)
    return (2, 0, text)
