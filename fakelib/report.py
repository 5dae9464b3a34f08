"""Reading a finished sweep back for the report: results.csv and sweep.json as tables, ranked and ready to plot.

`fakelib.sweep` writes both files and imports their names and the results.csv parameter columns from here, so
the writer and the reader cannot drift apart; this module never imports the tracker (it only reads its files).
"""

from __future__ import annotations

import html
import json
import math
import re
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


# Columns of the leaderboard besides the id, the swept parameters and the ranking metric, in this order.
BOARD_COLUMNS = ("test_f1_at_threshold", "param_count", "train_seconds", "best_epoch", "epochs_run")
# The executed training notebook in each experiment folder (the tracker writes it there).
EXPERIMENT_NOTEBOOK = "02_train.ipynb"


def leaderboard(results: pd.DataFrame, summary: Mapping[str, Any]) -> pd.DataFrame:
    """Finished experiments of the latest sweep, best first: id, swept parameters, the ranking metric, its test
    counterpart, F1 at the threshold, size, time, and the best epoch against the epochs run (each column once)."""
    metric, test_metric = summary["metric"], summary.get("test_metric", test_metric_for(summary["metric"]))
    done = current_results(results, summary)
    done = done[done["status"] == "done"]
    if metric not in done:  # no experiment ever finished: results.csv has no metric columns at all
        return done[["experiment_id"]].assign(**{metric: []}).set_axis(range(1, len(done) + 1))
    wanted = ["experiment_id", *swept_parameters(done, summary), metric, test_metric, *BOARD_COLUMNS]
    columns = [key for key in dict.fromkeys(wanted) if key in done]  # dict: a metric named twice shows once
    board = done.sort_values(metric, ascending=not summary.get("higher_is_better", True), kind="stable")[columns]
    for key in ("param_count", "best_epoch", "epochs_run"):  # integers, read as floats when a failed row left them empty
        if key in board and board[key].notna().all():
            board[key] = board[key].astype(int)
    board.index = range(1, len(board) + 1)
    return board


def source_table(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """A run's figures per source (`metrics.source_rows`: reals kept and fakes caught at the threshold, per folder
    and class) as a table, intervals as "low-high"; empty for runs from before they were recorded."""
    import pandas as pd

    from fakelib.metrics import source_rows

    rows = source_rows(metrics)
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows).set_index("group")
    for name in ("validation", "test"):
        table[f"{name}_ci95"] = table[f"{name}_ci95"].map(lambda ci: f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "")
    return table.round(3)


def not_converged(board: pd.DataFrame) -> list[str]:
    """Ids of the experiments whose best validation epoch was their last: they might have gained from more."""
    if "best_epoch" not in board or "epochs_run" not in board:
        return []
    last = board["best_epoch"].notna() & (board["best_epoch"] == board["epochs_run"])
    return board.loc[last, "experiment_id"].tolist()


def leaderboard_html(board: pd.DataFrame, summary: Mapping[str, Any]) -> str:
    """The leaderboard as an HTML table for the report: each experiment links to its executed notebook and its
    folder (relative to the report, which sits in the reports folder), and a run whose best epoch was its last
    says so beside its epochs."""
    experiments = summary.get("experiments_dir", "experiments")
    late = set(not_converged(board))
    names = [name for name in board.columns if name not in ("best_epoch", "epochs_run")]
    head = "".join(f"<th>{html.escape(_heading(name))}</th>" for name in ["rank", *names])
    head += "<th>best epoch</th>" if "best_epoch" in board else ""
    rows = []
    for rank, row in board.iterrows():
        folder = f"{experiments}/{row['experiment_id']}"
        cells = [f"<td>{rank}</td>"]
        for name in names:
            if name == "experiment_id":
                cells.append(f'<td><a href="{html.escape(folder)}/{EXPERIMENT_NOTEBOOK}">'
                             f'{html.escape(str(row[name]))}</a> (<a href="{html.escape(folder)}/">folder</a>)</td>')
            else:
                value = round(row[name]) if name == "train_seconds" and row[name] == row[name] else row[name]
                cells.append(f"<td>{html.escape(_cell(value))}</td>")  # whole seconds: finer is noise on 2 cores
        if "best_epoch" in board:
            note = " (the last: not converged)" if row["experiment_id"] in late else ""
            cells.append(f"<td>{_text(row['best_epoch'])} of {_text(row.get('epochs_run'))}{note}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="leaderboard"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _heading(name: str) -> str:
    return {"experiment_id": "experiment", "test_f1_at_threshold": "test F1 at threshold",
            "param_count": "parameters", "train_seconds": "training s"}.get(name, name)


def _cell(value: Any) -> str:
    """A leaderboard cell: floats to 4 decimals, large integers with thousands separators."""
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return _text(value)


def offline_html(notebook) -> str:
    """An executed notebook as one HTML page that works offline and shows no code.

    Code cells and prompts are left out (the page is for reading results), figures are embedded as they are
    in the notebook, and every script or stylesheet that nbconvert's template loads from the network is
    removed: the report has no widget or formula that needs them, and a page that waits on a CDN breaks offline.
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    body = _SCRIPT.sub(lambda match: "" if _NETWORK_SOURCE.search(match.group(0)) else match.group(0), body)
    return _NETWORK_LINK.sub("", body)


_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.IGNORECASE | re.DOTALL)
# A script that loads code from the network: `src="https://..."`, or a module that imports from a URL (mermaid).
_NETWORK_SOURCE = re.compile(r"""(?:\bsrc\s*=\s*|\bimport\b[^;]*?|\bfrom\s*)["'](?:https?:)?//""", re.IGNORECASE)
_NETWORK_LINK = re.compile(r"""<link\b[^>]*\bhref\s*=\s*["'](?:https?:)?//[^>]*>""", re.IGNORECASE)


# A layer's heatmaps are trusted (03_explain.ipynb's conclusion) when they hit the artifact more often than a
# random pixel does, when deleting their top pixels lowers the score more than deleting random ones on most images
# (the win rate, defined whenever there is an image, where the ratio of mean drops can be undefined), and when
# they do not look like the maps of the same model with randomized weights (rank correlation below this).
SANITY_MAX_CORRELATION = 0.5


def explanation_checks(quality: Mapping[str, Any] | None) -> list[dict[str, str]]:
    """One row per (method, layer) of an explain.json `quality` record: each check as "pass", "fail" or "n/a"."""
    rows = []
    for method, layers in ((quality or {}).get("methods") or {}).items():
        for layer, figures in layers.items():
            rows.append({
                "method": method, "layer": layer,
                "pointing game above chance": _check(figures.get("pointing_game"), figures.get("pointing_game_random")),
                "deletion hurts more than random": _check(figures.get("deletion_win_rate"), 0.5),
                "unlike a randomized model": _check(SANITY_MAX_CORRELATION, figures.get("sanity_rank_correlation")),
            })
    return rows


def _check(value: float | None, bound: float | None) -> str:
    """"pass" when value > bound, "n/a" when either is unknown."""
    if value is None or bound is None:
        return "n/a"
    return "pass" if value > bound else "fail"


def at_a_glance(reports_dir: str | Path, summary: Mapping[str, Any]) -> str:
    """Markdown for the report's top: the data (with a warning for the demo faces), the best experiment, the
    advice sentence of the explanations and the field guide's first one, from best/params.yaml, sweep.json,
    explain/explain.json and field_guide/field_guide.json."""
    import yaml

    from fakelib.pretrained import trained_on_demo

    reports_dir = Path(reports_dir)
    lines = []
    params_path = reports_dir / "best" / "params.yaml"
    if params_path.is_file():
        data_dir = (yaml.safe_load(params_path.read_text()).get("data") or {}).get("data_dir", "")
        folders = [data_dir] if isinstance(data_dir, str) else list(data_dir)
        line = f"- **Data**: {', '.join(Path(str(folder)).name for folder in folders)}."
        if trained_on_demo(data_dir):
            line += (" **Warning: these are the synthetic demo faces**, drawn with obvious artifacts; scores and "
                     "advice here say nothing about real photos.")
        lines.append(line)
    best = summary.get("best_experiment_id")
    metric = summary["metric"]
    lines.append(f"- **Best experiment**: {best}, {metric} = {summary['best_score']:.4f}." if best is not None
                 else "- **Best experiment**: none finished.")
    explained = _read_json(reports_dir / (summary.get("explain") or {}).get("output_dir", "explain") / "explain.json")
    if explained.get("advice"):
        lines.append(f"- **Where to look**: {explained['advice']}")
    guide = _read_json(reports_dir / "field_guide" / "field_guide.json")
    if guide.get("advice") and (reports_dir / "field_guide.html").is_file():
        lines.append(f"- **Field guide** ([field_guide.html](field_guide.html), fakes against real faces): "
                     f"{guide['advice'][0]}")
    return "\n".join(lines)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


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
