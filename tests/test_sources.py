"""Figures per source: `metrics.group_rates`, each run's `val_groups` / `test_groups`, the card's table, and a second
generator's faces collected by the scraper and added to training as a folder of one class."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from fakelib.metrics import group_rates, share_interval, source_rows


def test_group_rates_counts_kept_reals_and_caught_fakes_at_each_images_threshold():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 0])
    probabilities = np.array([0.1, 0.6, 0.3, np.nan, 0.7, 0.2, 0.55, 0.9])
    groups = np.array(["a/real", "a/real", "a/real", "a/real", "a/fake", "a/fake", "a/fake", "b/real"])
    thresholds = np.array([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.95])  # per image: two regimes
    rows = group_rates(labels, probabilities, groups, thresholds, prefix="val_")
    assert list(rows) == ["a/fake", "a/real", "b/real"]
    assert rows["a/real"]["label"] == "real" and rows["a/real"]["n"] == 3  # the NaN is not counted
    assert rows["a/real"]["val_kept_real"] == pytest.approx(2 / 3)
    assert rows["a/real"]["val_kept_real_ci95"] == pytest.approx(list(share_interval(2, 3)))
    assert rows["a/real"]["val_mean_p_fake"] == pytest.approx((0.1 + 0.6 + 0.3) / 3)
    assert rows["a/fake"]["label"] == "fake" and rows["a/fake"]["val_caught"] == pytest.approx(1 / 3)  # 0.55 < 0.6
    assert rows["b/real"]["val_kept_real"] == 1.0  # 0.9 is under its own threshold
    one = group_rates(labels, probabilities, groups, 0.5)
    assert one["a/fake"]["caught"] == pytest.approx(2 / 3) and one["b/real"]["kept_real"] == 0.0
    table = source_rows({"val_groups": group_rates(labels, probabilities, groups, thresholds),
                         "test_groups": {"a/fake": one["a/fake"]}})
    assert [row["group"] for row in table] == ["a/fake", "a/real", "b/real"]
    assert table[0] == {"group": "a/fake", "class": "fake", "validation_n": 3, "validation": pytest.approx(1 / 3),
                        "validation_ci95": pytest.approx(list(share_interval(1, 3))), "test_n": 3,
                        "test": pytest.approx(2 / 3), "test_ci95": pytest.approx(list(share_interval(2, 3)))}
    assert table[2]["test_n"] == 0 and table[2]["test"] is None and table[2]["validation"] == 1.0
    assert source_rows({"val_loss": 0.3}) == []
    empty = group_rates(np.array([0]), np.array([np.nan]), np.array(["c/real"]))
    assert empty["c/real"] == {"label": "real", "n": 0, "kept_real": None, "kept_real_ci95": None,
                               "mean_p_fake": None}


def _check_against_the_confusion_matrix(groups: dict, matrix: list[list[int]]) -> None:
    """The groups' kept and caught faces add up to the test confusion matrix at the threshold."""
    kept = sum(round(row["kept_real"] * row["n"]) for row in groups.values() if row["label"] == "real")
    caught = sum(round(row["caught"] * row["n"]) for row in groups.values() if row["label"] == "fake")
    assert (kept, caught) == (matrix[0][0], matrix[1][1])
    assert sum(row["n"] for row in groups.values()) == sum(map(sum, matrix))


def test_a_second_generator_collected_by_the_scraper_joins_training_and_is_reported_per_source(
        demo_dataset, tmp_path):
    """The README's recipe: scrape the generator's faces into FOLDER/fake/, add FOLDER to the training folders
    (`pretrained --data ...`); the detector, its experts and its card then report that generator's catch rate."""
    from conftest import write_tiny_params
    from scrape_server import ScrapeServer

    from fakelib.pretrained import build_pretrained
    from fakelib.scrape import ScrapeConfig, scrape

    second = tmp_path / "second-generator"
    with ScrapeServer() as server:
        summary = scrape(ScrapeConfig(source=server.url("/face"), output_dir=second / "fake", mode="endpoint",
                                      count=60, workers=4, rate=0.0, timeout=2.0, min_size=32, progress=False))
    assert summary["saved"] == 60
    out = tmp_path / "pretrained"
    build_pretrained(out, [demo_dataset, second], params_path=write_tiny_params(tmp_path / "params.yaml"),
                     expert_overrides={"image_size": 48, "conv_filters": [4, 8], "epochs": 1})
    name = second.name
    metrics = json.loads((out / "metrics.json").read_text())  # the detector's own run
    combination = json.loads((out / "combination.json").read_text())  # with its experts, at its thresholds
    for figures in (metrics, combination):
        for split in ("val", "test"):
            groups = figures[f"{split}_groups"]
            assert groups[f"{name}/fake"]["label"] == "fake" and groups[f"{name}/fake"]["n"] > 0
            assert {row["label"] for key, row in groups.items() if key.startswith(demo_dataset.name)} == {
                "real", "fake"}
        _check_against_the_confusion_matrix(figures["test_groups"], figures["confusion_matrix"])
    card = (out / "MODEL_CARD.md").read_text()
    val, test = combination["val_groups"][f"{name}/fake"], combination["test_groups"][f"{name}/fake"]
    assert (f"| {name}/fake | fake | {val['n']} | {100 * val['caught']:.1f}% (") in card
    assert f"| {test['n']} | {100 * test['caught']:.1f}% (" in card


def test_a_run_from_before_the_source_figures_has_no_source_table(trained_experiment, tmp_path):
    from fakelib.pretrained import write_card

    folder = tmp_path / "old"
    shutil.copytree(trained_experiment, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    _check_against_the_confusion_matrix(metrics["test_groups"], metrics["confusion_matrix"])
    assert "## Each source of its own data" in write_card(folder).read_text()
    old = {key: value for key, value in metrics.items() if key not in ("val_groups", "test_groups")}
    (folder / "metrics.json").write_text(json.dumps(old))
    assert "## Each source of its own data" not in write_card(folder).read_text()


def test_the_notebooks_source_table_formats_the_intervals_and_is_empty_for_old_runs():
    from fakelib.report import source_table

    groups = {"a/real": {"label": "real", "n": 4, "kept_real": 0.75, "kept_real_ci95": [0.3006, 0.9544]}}
    table = source_table({"val_groups": groups, "test_groups": {}})
    assert table.loc["a/real", "validation"] == 0.75 and table.loc["a/real", "validation_ci95"] == "0.30-0.95"
    assert table.loc["a/real", "test_n"] == 0 and table.loc["a/real", "test_ci95"] == ""
    assert source_table({"val_roc_auc": 0.9}).empty
