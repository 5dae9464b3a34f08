"""fakelib.explore (the explore notebook's callback logic, without a browser) and a smoke test of explore.ipynb."""

from __future__ import annotations

import datetime
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from fakelib import explore


@pytest.fixture(scope="module")
def demo_dir(explain_demo_dir: Path) -> Path:
    return explain_demo_dir


@pytest.fixture(scope="module")
def experiment(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment folder as fakelib.train writes it: model.keras plus metrics.json with a chosen threshold."""
    folder = tmp_path_factory.mktemp("experiments") / "abc123"
    folder.mkdir()
    shutil.copy(demo_dir / "model.keras", folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps({"threshold": 0.4}))
    return folder


@pytest.fixture
def explorer(experiment: Path) -> explore.Explorer:
    return explore.Explorer({"demo": str(experiment / "model.keras")}, method="gradcam")


def _encoded(demo_dir: Path, fmt: str) -> bytes:
    image = Image.open(next((demo_dir / "data" / "fake").glob("*.jpg")))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("name,fmt", [("face.jpg", "JPEG"), ("face.PNG", "PNG"), ("face.webp", "WEBP")])
def test_upload_gives_a_verdict_with_probability_and_per_layer_heatmaps(explorer, demo_dir, name, fmt):
    verdict = explorer.set_upload(name, _encoded(demo_dir, fmt))
    assert verdict.ok and verdict.filename == name
    assert 0.0 <= verdict.probability <= 1.0
    assert verdict.threshold == pytest.approx(0.4)  # read from metrics.json beside the model
    assert verdict.label in ("fake", "real") and f"{verdict.probability:.2f}" in verdict.message
    assert verdict.result.layers == ["conv1", "conv2", "conv3"] and verdict.image.shape == (48, 48, 3)
    figure = explorer.figure()
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles[0].startswith(f"p(fake) = {verdict.probability:.2f}") and titles[1].startswith("conv1 gradcam")
    json.dumps(verdict.to_json(), allow_nan=False)
    assert "threshold 0.40" in verdict.model_card


def test_the_model_card_line_warns_about_demo_training(experiment, demo_dir):
    (experiment / "params.yaml").write_text(f"data:\n  data_dir: {demo_dir / 'data'}\n")
    try:
        explorer = explore.Explorer({"demo": str(experiment / "model.keras")}, method="gradcam")
        verdict = explorer.set_upload("face.png", _encoded(demo_dir, "PNG"))
    finally:
        (experiment / "params.yaml").unlink()
    assert "synthetic demo faces" in verdict.model_card and "trained on data" in verdict.model_card
    # the demo faces are JPEG files: a PNG upload is a format the model never saw
    assert verdict.warnings == ["The model never saw a PNG file in training (only JPEG): the file format alone can "
                                "sway its verdict."]


def test_a_file_that_is_not_an_image_gets_a_friendly_message(explorer, demo_dir):
    verdict = explorer.set_upload("notes.txt", b"shopping list")
    assert not verdict.ok and "JPG, PNG or WebP" in verdict.message and "notes.txt" in verdict.message
    assert explorer.figure() is None
    broken = explorer.set_upload("photo.jpg", b"\xff\xd8 this is not really a jpeg")
    assert not broken.ok and "could not be read as an image" in broken.message and "Traceback" not in broken.message
    empty = explorer.set_upload("empty.png", b"")
    assert not empty.ok and "empty.png" in empty.message


def test_the_verdict_follows_the_saved_threshold(experiment, demo_dir, tmp_path):
    """The same upload is called fake by a model whose saved threshold sits just below its probability (with three
    regions to look at) and real by one whose threshold sits just above (with none)."""
    upload = _encoded(demo_dir, "PNG")
    probability = explore.Explorer({"demo": str(experiment / "model.keras")}).set_upload("face.png", upload).probability
    verdicts = {}
    for name, threshold in (("below", max(probability - 0.01, 0.0)), ("above", min(probability + 0.01, 1.0))):
        folder = tmp_path / name
        folder.mkdir()
        shutil.copy(experiment / "model.keras", folder / "model.keras")
        (folder / "metrics.json").write_text(json.dumps({"threshold": threshold}))
        verdicts[name] = explore.Explorer({name: str(folder / "model.keras")}).set_upload("face.png", upload)
    assert 0.01 < probability < 0.99  # else one side of the boundary cannot be tried
    below, above = verdicts["below"], verdicts["above"]
    assert (below.label, below.message[:4], len(below.look_at)) == ("fake", "FAKE", 3)
    assert (above.label, above.message[:4], len(above.look_at)) == ("real", "REAL", 0)


def test_colormap_and_opacity_redraw_without_recomputing_but_method_recomputes(explorer, demo_dir):
    first = explorer.set_upload("face.jpg", _encoded(demo_dir, "JPEG"))
    explorer.set_colormap("magma")
    explorer.set_opacity(0.8)
    assert explorer.verdict is first and explorer.figure() is not None
    with pytest.raises(ValueError):
        explorer.set_opacity(2.0)
    second = explorer.choose_method("layercam")
    assert second is not first and second.result.method == "layercam"
    assert second.probability == pytest.approx(first.probability, abs=1e-6)


def test_without_any_model_the_message_says_what_to_do():
    verdict = explore.Explorer({}).set_upload("face.png", b"whatever")
    assert not verdict.ok and "No trained model" in verdict.message


def test_model_choices_lists_best_and_experiments(experiment, tmp_path):
    best = tmp_path / "best"
    best.mkdir()
    shutil.copy(experiment / "model.keras", best / "model.keras")
    choices = explore.model_choices(experiment.parent, best, pretrained_dir=tmp_path / "none")
    assert choices == {"best model": str(best / "model.keras"),
                       "model in abc123": str(experiment / "model.keras")}  # no params.yaml: only its folder
    label, path = list(explore.model_choices(experiment.parent, best).items())[-1]  # the shipped model comes last
    from fakelib.config import load_experiment
    from fakelib.pretrained import PRETRAINED_DIR

    shipped = load_experiment(PRETRAINED_DIR / "params.yaml")
    assert re.fullmatch(rf"pretrained: {shipped.model.model}, {shipped.data.image_size} px, val ROC-AUC 0\.\d{{3}}", label)
    assert path.endswith("pretrained/model.keras")
    assert explore.model_choices(tmp_path / "none", tmp_path / "none", pretrained_dir=tmp_path / "none") == {}


def test_uploaded_files_reads_ipywidgets_8_and_7_values():
    version_8 = ({"name": "a.png", "type": "image/png", "size": 2, "content": memoryview(b"ab")},)
    version_7 = {"b.jpg": {"metadata": {"name": "b.jpg"}, "content": b"cd"}}
    assert explore.uploaded_files(version_8) == [("a.png", b"ab")]
    assert explore.uploaded_files(version_7) == [("b.jpg", b"cd")]
    assert explore.uploaded_files(()) == []


def test_widgets_call_the_explorer(explorer, demo_dir):
    app = explore.build_app(explorer)
    handles = app.widgets
    handles["upload"].value = ({"name": "face.png", "type": "image/png", "size": 1,
                                "content": memoryview(_encoded(demo_dir, "PNG")),
                                "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert explorer.verdict.ok and "p(fake)" in handles["message"].value
    handles["method"].value = "hirescam"
    assert explorer.verdict.result.method == "hirescam"
    handles["opacity"].value = 0.25
    handles["colormap"].value = "viridis"
    assert (explorer.opacity, explorer.colormap) == (0.25, "viridis")
    handles["upload"].value = ({"name": "readme.md", "type": "text/plain", "size": 1, "content": memoryview(b"x"),
                                "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert "JPG, PNG or WebP" in handles["message"].value
    assert handles["output"].outputs == ()  # the last face's heatmaps are gone with it


def test_a_model_without_any_file_beside_it_says_it_has_no_card(experiment, demo_dir, tmp_path):
    shutil.copy(experiment / "model.keras", tmp_path / "model.keras")
    verdict = explore.Explorer({"bare": str(tmp_path / "model.keras")}).set_upload("face.jpg", _encoded(demo_dir, "JPEG"))
    assert verdict.ok and verdict.model_card.startswith("This model has no card")


@pytest.mark.slow
@pytest.mark.notebook
def test_explore_notebook_renders_the_verdict_for_an_example_image(experiment, demo_dir, tmp_path, monkeypatch):
    from conftest import execute_notebook

    # ipykernel forwards native stderr (where TensorFlow's start-up lines go) into the notebook, as it does for a
    # person, only when it does not see this variable: without deleting it the check below could not fail.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)

    example = next((demo_dir / "data" / "fake").glob("*.jpg"))
    executed = execute_notebook("explore.ipynb", {
        "model_path": str(experiment / "model.keras"), "experiments_dir": str(tmp_path / "none"),
        "example_image": str(example), "output_dir": str(tmp_path / "explore"), "method": "layercam",
        "opacity": 0.6})
    record = json.loads((tmp_path / "explore" / "explore.json").read_text(), parse_constant=pytest.fail)
    assert record["ok"] and record["filename"] == example.name and record["method"] == "layercam"
    assert 0.0 <= record["probability"] <= 1.0 and record["threshold"] == pytest.approx(0.4)
    assert record["layers"] == ["conv1", "conv2", "conv3"]
    assert (tmp_path / "explore" / "example.png").is_file()
    shown = [output for cell in executed.cells for output in cell.get("outputs", [])]
    assert any("image/png" in output.get("data", {}) for output in shown)
    assert any(record["message"] in output.get("text", "") for output in shown)
    from fakelib.quiet import NATIVE_CHATTER

    printed = "".join(output.get("text", "") for output in shown).splitlines()
    assert not [line for line in printed if NATIVE_CHATTER.match(line) or "oneDNN" in line]  # TensorFlow kept quiet


def _run_folder(root: Path, name: str, dropout: float, seed: int, val_roc_auc: float, source: Path) -> Path:
    """An experiment folder with params.yaml (sections, as config.save writes them) and metrics.json."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(source, folder / "model.keras")
    (folder / "params.yaml").write_text(
        f"data:\n  data_dir: /nowhere/{name}\n  image_size: 48\nmodel:\n  model: cnn\n  dropout: {dropout}\n"
        f"  conv_filters: [16, 32]\ntrain:\n  seed: {seed}\n")
    (folder / "metrics.json").write_text(json.dumps({"model": "cnn", "val_roc_auc": val_roc_auc, "threshold": 0.5}))
    return folder


def test_models_are_labelled_by_the_parameters_that_differ_and_their_validation_score(experiment, tmp_path):
    runs = tmp_path / "experiments"
    first = _run_folder(runs, "0f3a9c", 0.0, 1, 0.91234, experiment / "model.keras")
    second = _run_folder(runs, "77be01", 0.4, 2, 0.95, experiment / "model.keras")
    best = tmp_path / "best"
    best.mkdir()
    for name in ("model.keras", "params.yaml", "metrics.json"):
        shutil.copy(second / name, best / name)
    choices = explore.model_choices(runs, best, pretrained_dir=tmp_path / "none")
    # seed and data_dir differ too, but say nothing about the model; conv_filters is the same everywhere
    assert choices == {"best: cnn, 48 px, dropout 0.4, val ROC-AUC 0.950": str(best / "model.keras"),
                       "cnn, 48 px, dropout 0.0, val ROC-AUC 0.912": str(first / "model.keras"),
                       "cnn, 48 px, dropout 0.4, val ROC-AUC 0.950": str(second / "model.keras")}


def test_two_models_alike_in_every_shown_parameter_keep_an_entry_each(experiment, tmp_path):
    runs = tmp_path / "experiments"
    _run_folder(runs, "aaa", 0.1, 1, 0.9, experiment / "model.keras")
    _run_folder(runs, "bbb", 0.1, 2, 0.9, experiment / "model.keras")
    (runs / "ccc").mkdir()
    (runs / "ccc" / "model.keras").write_bytes(b"")
    (runs / "ccc" / "params.yaml").write_text("data: [unclosed")  # a damaged run folder takes nothing down
    assert list(explore.model_choices(runs, tmp_path / "none", pretrained_dir=tmp_path / "none")) == [
        "cnn, 48 px, val ROC-AUC 0.900", "cnn, 48 px, val ROC-AUC 0.900 (2)", "model in ccc"]


def _image_bytes(side: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side + 10), (120, 90, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


def test_upload_warnings_for_a_much_smaller_photo_and_an_unseen_format():
    facts = explore.TrainingFacts(input_side=256, formats=frozenset({"JPEG"}))
    assert explore.upload_warnings(_image_bytes(256, "JPEG"), facts) == []
    assert explore.upload_warnings(_image_bytes(128, "JPEG"), facts) == []  # half the side is still close
    small, unseen = explore.upload_warnings(_image_bytes(100, "PNG"), facts)
    assert small.startswith("This photo is 100 px across, far smaller than the 256 px faces")
    assert unseen.startswith("The model never saw a PNG file in training (only JPEG)")
    equalized = explore.TrainingFacts(256, frozenset({"JPEG"}), equalize_quality=90)  # every input re-encoded
    assert explore.upload_warnings(_image_bytes(256, "PNG"), equalized) == []
    unknown = explore.TrainingFacts(256)  # training folders not on this machine: no guess about formats
    assert explore.upload_warnings(_image_bytes(256, "WEBP"), unknown) == []
    assert explore.upload_warnings(b"not an image", facts) == []


def test_training_facts_read_the_data_folders_of_the_report_else_of_the_params(experiment, demo_dir, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "params.yaml").write_text(f"data:\n  data_dir: {tmp_path / 'absent'}\n  equalize_quality: 0\n")
    assert explore.training_facts(folder / "model.keras", 48) == explore.TrainingFacts(48, frozenset())
    (folder / "data_report.json").write_text(json.dumps({"data_dir": [str(demo_dir / "data")]}))
    assert explore.training_facts(folder / "model.keras", 48).formats == {"JPEG"}
    mixed = tmp_path / "mixed"
    (mixed / "real" / "camera").mkdir(parents=True)
    (mixed / "fake").mkdir()
    (mixed / "real" / "camera" / "a.PNG").write_bytes(b"")
    (mixed / "fake" / "b.webp").write_bytes(b"")
    (mixed / "fake" / "notes.txt").write_bytes(b"")
    (folder / "data_report.json").write_text(json.dumps({"data_dir": str(mixed)}))
    assert explore.training_facts(folder / "model.keras", 48).formats == {"PNG", "WEBP"}


def test_verdict_html_shows_the_card_beside_the_verdict_and_each_warning_escaped():
    verdict = explore.Verdict(True, "FAKE: p(fake) = 0.91 (threshold 0.50)", "a.png", model_card="Model <x> card.",
                              warnings=["one & two", "three"])
    page = explore.verdict_html(verdict)
    assert page.index("fakelib-verdict") < page.index("fakelib-card") < page.index("fakelib-warning")
    assert "Model &lt;x&gt; card." in page and "one &amp; two" in page and page.count("fakelib-warning") == 2
    assert explore.verdict_html(None) == ""
