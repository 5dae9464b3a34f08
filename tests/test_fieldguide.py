"""fakelib.fieldguide and notebooks/05_field_guide.ipynb: layer choice, crops, and the notebook through papermill
(its executed copy goes to $FAKELIB_EXECUTED_DIR for nbval), exported as an HTML page without code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fakelib import fieldguide, regions


def test_advice_comes_from_the_method_with_most_passing_layers():
    faithfulness = {
        "gradcam": {"conv1": {"passes": True, "ratio_random": 9.0, "gain": 1.0},
                    "conv2": {"passes": False, "ratio_random": 1.1, "gain": 0.1}},
        "layercam": {"conv1": {"passes": True, "ratio_random": 4.0, "gain": 1.0},
                     "conv2": {"passes": True, "ratio_random": 3.5, "gain": 0.8}}}
    assert fieldguide.choose_layers(faithfulness) == ("layercam", ["conv1", "conv2"], True)
    failing = {"gradcam": {"conv1": {"passes": False, "ratio_random": None, "gain": 0.2},
                           "conv2": {"passes": False, "ratio_random": 1.5, "gain": 0.4}}}
    assert fieldguide.choose_layers(failing) == ("gradcam", ["conv2"], False)


def test_crop_box_is_a_square_around_the_region_inside_the_image():
    mask = np.zeros((40, 40), dtype=bool)
    mask[10:14, 20:30] = True
    top, bottom, left, right = fieldguide.crop_box(mask, margin=0.5)
    assert top <= 10 and bottom >= 14 and left <= 20 and right >= 30
    assert 0 <= top < bottom <= 40 and 0 <= left < right <= 40
    assert fieldguide.crop_box(np.zeros((40, 40), dtype=bool)) is None
    corner = np.zeros((40, 40), dtype=bool)
    corner[:3, :3] = True
    assert fieldguide.crop_box(corner)[0] == 0  # clipped to the image, never negative
    two = np.zeros((40, 40), dtype=bool)
    two[18:22, 4:10], two[18:22, 30:36] = True, True  # two eyes
    heat = np.zeros((40, 40))
    heat[20, 33] = 1.0  # the evidence sits in the right one
    top, bottom, left, right = fieldguide.crop_box(two, heat)
    assert left >= 20 and right >= 36  # zoomed on the hot eye only
    assert fieldguide.crop_box(two)[2] <= 4  # without a heatmap, both


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.timeout(300)
def test_field_guide_notebook_records_ranking_faithfulness_and_galleries(explain_demo_dir: Path, tmp_path):
    from conftest import execute_notebook

    from fakelib.report import offline_html

    output_dir = tmp_path / "field_guide"
    executed = execute_notebook("05_field_guide.ipynb", {
        "model_path": str(explain_demo_dir / "model.keras"), "data_dir": str(explain_demo_dir / "data"),
        "output_dir": str(output_dir), "split": "", "per_class": 20, "methods": ["layercam", "gradcam"],
        "gallery_size": 3, "landmark_cache": str(tmp_path / "landmarks"), "seed": 1})
    assert not [output for cell in executed.cells for output in cell.get("outputs", [])
                if output.output_type == "error"]
    record = json.loads((output_dir / "field_guide.json").read_text(), parse_constant=pytest.fail)
    assert record["n_images"] == 40 and 0 < record["n_caught_fakes"] <= 20 and 0 < record["n_correct_reals"] <= 20
    assert {row["region"] for row in record["ranking"]} == set(regions.REGIONS)
    assert sum(record["region_statuses"].values()) == 40 and 0.0 <= record["landmarks_found"] <= 1.0
    assert set(record["faithfulness"]) == {"layercam", "gradcam"}
    for per_layer in record["faithfulness"].values():
        assert set(per_layer) == {"conv1", "conv2", "conv3"}
        for figures in per_layer.values():
            assert figures["n_images"] == record["n_caught_fakes"] and isinstance(figures["passes"], bool)
            assert figures["gain"] == pytest.approx(figures["drop_top"] - figures["drop_random"])
            assert sum(figures["top_regions"].values()) == record["n_caught_fakes"]
    assert record["advice_method"] in ("layercam", "gradcam") and record["advice_layers"]
    for region in record["gallery_regions"]:
        assert (output_dir / f"gallery_{region}.png").is_file(), region
    assert 1 <= len(record["gallery_regions"]) <= 3
    assert (output_dir / "contrast.png").is_file() and (output_dir / "masks.png").is_file()  # demo fakes have masks
    for tip in record["tips"]:  # tips carry measured counts, never fixed prose
        assert f"of {record['n_caught_fakes']})" in tip
    page = offline_html(executed)
    assert "fieldguide.study" not in page and "Where fakes differ from real faces" in page
    assert "XNNPACK" not in page and "oneDNN" not in page  # no native start-up line from TensorFlow or TF Lite
    assert ("PASS for" in page) and page.count("data:image/png;base64,") >= 2


@pytest.mark.slow
def test_a_study_without_caught_fakes_says_so_instead_of_failing(explain_demo_dir: Path):
    from fakelib import contrast, quality
    from fakelib.models import load_model

    sample = quality.load_sample(explain_demo_dir / "data", 48, per_class=6, split=None)
    study = fieldguide.study(load_model(explain_demo_dir / "model.keras"), sample, threshold=1.01, sanity=False)
    assert not study.caught.any() and not study.trusted
    assert set(study.ranking["verdict"]) == {"too few"} and fieldguide.gallery_regions(study) == []
    assert contrast.advice(study.ranking)[0].startswith("No region carries reliably more evidence on fakes than on "
                                                        "real faces (0 caught fakes")
    assert "not to be trusted" in fieldguide.faithfulness_lines(study)[-1]
    with pytest.raises(ValueError, match="methods must name at least one CAM method"):
        fieldguide.study(load_model(explain_demo_dir / "model.keras"), sample, methods=[])


def test_field_guide_command_refuses_a_folder_without_classes_and_a_missing_model_in_one_line(tmp_path, capsys):
    from fakelib.__main__ import main

    assert main(["field-guide", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("fakelib field-guide: error: ") and "has no real/ and no fake/ folder" in error
    for name in ("real", "fake"):
        (tmp_path / name).mkdir()
    assert main(["field-guide", str(tmp_path), "--model", str(tmp_path / "absent.keras")]) == 2
    assert "model file not found" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["05_field_guide.ipynb", "practice.ipynb"])
def test_notebooks_are_committed_clean_with_the_parameters_their_callers_pass(name):
    import nbformat
    import papermill

    from fakelib import paths

    notebook = nbformat.read(str(paths.NOTEBOOKS / name), as_version=4)
    assert not [cell for cell in notebook.cells if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    declared = set(papermill.inspect_notebook(str(paths.NOTEBOOKS / name)))
    passed = {"model_path", "data_dir", "output_dir"} if name.startswith("05") else {"practice_dir", "model_path",
                                                                                      "stop_hint"}
    assert passed <= declared  # run_field_guide and fakelib serve --practice inject these


def test_the_sweep_step_replaces_only_its_own_files_and_returns_a_failure(tmp_path, monkeypatch):
    from fakelib.ownership import WrittenFiles

    reports = tmp_path / "reports"

    def fake_run(data_dir, model_path, reports_dir, overrides=None, fail=False):
        (reports_dir / "field_guide").mkdir(parents=True, exist_ok=True)
        (reports_dir / "field_guide" / "contrast.png").write_bytes(b"png")
        (reports_dir / "field_guide.html").write_text("<html></html>")
        if fail:
            raise RuntimeError("a cell failed")
        return reports_dir / "field_guide.html"

    monkeypatch.setattr(fieldguide, "run_field_guide", fake_run)
    assert fieldguide.run_stage(tmp_path / "model.keras", tmp_path, reports) == \
        {"status": "done", "error": "", "html": "field_guide.html"}
    written = WrittenFiles(reports)
    assert written.is_ours(reports / "field_guide.html") and written.is_ours(reports / "field_guide" / "contrast.png")
    (reports / "field_guide" / "mine.txt").write_text("a user's note")
    monkeypatch.setattr(fieldguide, "run_field_guide", lambda *args, **kwargs: fake_run(*args, fail=True))
    failed = fieldguide.run_stage(tmp_path / "model.keras", tmp_path, reports)
    assert failed["status"] == "failed" and "a cell failed" in failed["error"]
    assert (reports / "field_guide" / "mine.txt").read_text() == "a user's note"  # never removed, never recorded
    assert not WrittenFiles(reports).is_ours(reports / "field_guide" / "mine.txt")
    assert WrittenFiles(reports).is_ours(reports / "field_guide.html")  # the page of a failed run shows where it stopped
