"""fakelib.report for the shared page: the leaderboard (each column once, links, convergence note) and the
offline HTML export (no code, nothing loaded from the network)."""

from __future__ import annotations

import base64
import re

import pandas as pd

from fakelib import report

SUMMARY = {"metric": "val_roc_auc", "test_metric": "test_roc_auc", "higher_is_better": True,
           "experiment_ids": ["a1", "b2"], "swept": ["dropout"], "experiments_dir": "experiments"}


def _results() -> pd.DataFrame:
    return pd.DataFrame({
        "experiment_id": ["a1", "b2"], "status": ["done", "done"], "dropout": [0.0, 0.4],
        "val_roc_auc": [0.91, 0.95], "test_roc_auc": [0.90, 0.93], "val_loss": [0.3, 0.2],
        "test_f1_at_threshold": [0.8, 0.85], "param_count": [1_234_567.0, 1_238_000.0],
        "train_seconds": [100.0, 120.0], "best_epoch": [7.0, 10.0], "epochs_run": [10.0, 10.0]})


def test_the_leaderboard_names_each_column_once_best_first():
    board = report.leaderboard(_results(), SUMMARY)
    assert list(board.columns) == ["experiment_id", "dropout", "val_roc_auc", "test_roc_auc", "test_f1_at_threshold",
                                   "param_count", "train_seconds", "best_epoch", "epochs_run"]
    assert board["experiment_id"].tolist() == ["b2", "a1"] and board["best_epoch"].tolist() == [10, 7]


def test_a_run_whose_best_epoch_was_its_last_is_marked_not_converged():
    board = report.leaderboard(_results(), SUMMARY)
    assert report.not_converged(board) == ["b2"]
    page = report.leaderboard_html(board, SUMMARY)
    rows = re.findall(r"<tr>.*?</tr>", page)
    assert len(rows) == 3 and "10 of 10 (the last: not converged)" in rows[1] and "7 of 10</td>" in rows[2]
    assert '<a href="experiments/b2/02_train.ipynb">b2</a> (<a href="experiments/b2/">folder</a>)' in rows[1]
    assert "<td>1,238,000</td>" in rows[1] and "<td>0.9500</td>" in rows[1] and "<td>120</td>" in rows[1]
    headings = re.findall(r"<th>(.*?)</th>", rows[0])
    assert headings == ["rank", "experiment", "dropout", "val_roc_auc", "test_roc_auc", "test F1 at threshold",
                        "parameters", "training s", "best epoch"]


def test_the_exported_report_shows_outputs_but_no_code_and_loads_nothing_from_the_network():
    import nbformat

    pixel = base64.b64encode(bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c63f8ffff3f0005fe02fea7d6a4b00000000049454e44ae426082")).decode()
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Sweep report"),
        nbformat.v4.new_code_cell("hidden_variable = compute()\nprint('shown result')", outputs=[
            nbformat.v4.new_output("stream", name="stdout", text="shown result\n"),
            nbformat.v4.new_output("display_data", data={"image/png": pixel})]),
    ])
    page = report.offline_html(notebook)
    assert "Sweep report" in page and "shown result" in page and f"data:image/png;base64,{pixel}" in page
    assert "hidden_variable" not in page and "In&nbsp;[" not in page
    assert not re.search(r"""<script\b[^>]*\bsrc\s*=\s*["'](https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""<link\b[^>]*\bhref\s*=\s*["'](https?:)?//""", page, re.IGNORECASE)
    assert not re.search(r"""(import|from)\s*[^;<]*["']https?://""", page)  # no module imported from a CDN


def test_explanation_checks_pass_fail_or_say_nothing_is_known():
    quality = {"methods": {"layercam": {
        "conv3": {"pointing_game": 0.6, "pointing_game_random": 0.1, "deletion_win_rate": 0.9,
                  "deletion_ratio": None, "sanity_rank_correlation": 0.1},  # a null ratio no longer hides a pass
        "conv6": {"pointing_game": 0.05, "pointing_game_random": 0.1, "deletion_win_rate": 0.4,
                  "deletion_ratio": 5.0, "sanity_rank_correlation": 0.8},
        "conv7": {"pointing_game": None, "pointing_game_random": 0.1, "deletion_win_rate": 0.6}}}}
    rows = report.explanation_checks(quality)
    assert [list(row.values()) for row in rows] == [
        ["layercam", "conv3", "pass", "pass", "pass"],
        ["layercam", "conv6", "fail", "fail", "fail"],
        ["layercam", "conv7", "n/a", "pass", "n/a"]]
    assert report.explanation_checks(None) == []


def test_at_a_glance_warns_about_demo_data_and_gives_the_best_run_and_the_advice(tmp_path):
    import json

    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "params.yaml").write_text("data:\n  data_dir: data/demo\n")
    (tmp_path / "explain").mkdir()
    (tmp_path / "explain" / "explain.json").write_text(json.dumps({"advice": "Look first at the eyes."}))
    summary = {**SUMMARY, "best_experiment_id": "b2", "best_score": 0.95, "explain": {"output_dir": "explain"}}
    lines = report.at_a_glance(tmp_path, summary).splitlines()
    assert lines[0].startswith("- **Data**: demo. **Warning: these are the synthetic demo faces**")
    assert lines[1:] == ["- **Best experiment**: b2, val_roc_auc = 0.9500.", "- **Where to look**: Look first at the eyes."]
    (tmp_path / "best" / "params.yaml").write_text("data:\n  data_dir: [/data/faces-dev, /data/ffhq-extra]\n")
    assert report.at_a_glance(tmp_path, summary).splitlines()[0] == "- **Data**: faces-dev, ffhq-extra."
    (tmp_path / "field_guide").mkdir()
    (tmp_path / "field_guide" / "field_guide.json").write_text(json.dumps({"advice": ["Look at the eyes: 1.12x."]}))
    assert len(report.at_a_glance(tmp_path, summary).splitlines()) == 3  # no page, no line
    (tmp_path / "field_guide.html").write_text("<html></html>")
    assert report.at_a_glance(tmp_path, summary).splitlines()[-1] == (
        "- **Field guide** ([field_guide.html](field_guide.html), fakes against real faces): Look at the eyes: 1.12x.")
    nothing = {**SUMMARY, "best_experiment_id": None, "best_score": None, "explain": {"output_dir": "explain"}}
    assert report.at_a_glance(tmp_path / "absent", nothing) == "- **Best experiment**: none finished."
