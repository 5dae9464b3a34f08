"""fakelib.pretrained: the default model, packaging a finished run with its model card, and the card's facts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from fakelib import pretrained
from fakelib.models import conv_layer_names
from fakelib.predict import Predictor

from conftest import write_tiny_params


def _touch_model(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"placeholder")
    return folder / "model.keras"


def test_default_model_is_the_last_sweeps_best_then_the_pretrained_one(tmp_path):
    best, shipped = tmp_path / "best", tmp_path / "shipped"
    with pytest.raises(FileNotFoundError, match="no model given") as error:
        pretrained.default_model(best, shipped)
    assert "\n" not in str(error.value)
    shipped_model = _touch_model(shipped)
    assert pretrained.default_model(best, shipped) == shipped_model
    best_model = _touch_model(best)
    assert pretrained.default_model(best, shipped) == best_model


def test_demo_folders_are_recognised(tmp_path, demo_dataset):
    plain = tmp_path / "faces"
    (plain / "real").mkdir(parents=True)
    assert pretrained.trained_on_demo(str(demo_dataset))  # the generator's masks/ and marker
    assert not pretrained.trained_on_demo(str(plain))
    assert not pretrained.trained_on_demo([str(demo_dataset), str(plain)])


@pytest.mark.slow
def test_package_writes_model_card_from_measured_numbers(trained_experiment, tmp_path):
    shift = tmp_path / "shift"
    for group, size in (("real/phone", 40), ("fake/gan", 36)):
        (shift / group).mkdir(parents=True)
        for index in range(3):
            pixels = np.random.default_rng(index).integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(shift / group / f"{index}.jpg", quality=80)
    out = tmp_path / "pretrained"
    facts = pretrained.package(trained_experiment, out, shift)
    metrics = json.loads((trained_experiment / "metrics.json").read_text())
    card = (out / "MODEL_CARD.md").read_text()
    assert f"Threshold: {metrics['threshold']:.3f}" in card
    assert f"| {metrics['test_roc_auc']:.3f} |" in card
    assert "| real/phone | 3 |" in card and "| fake/gan | 3 |" in card
    gan = json.loads((out / "shift.json").read_text())["groups"]["fake/gan"]
    low, high = gan["as_published_caught_ci95"]  # 3 faces: the card shows how little a share of 3 says
    assert f"| fake/gan | 3 | {100 * gan['as_published_caught']:.1f}% ({100 * low:.0f}-{100 * high:.0f}) |" in card
    assert "non-commercial research" in card
    params = yaml.safe_load((out / "params.yaml").read_text())
    assert "/" not in str(params["data"]["data_dir"])  # no path of the training machine is shipped
    assert facts["demo_data"] and "synthetic demo" in pretrained.card_line(facts)
    predictor = Predictor.from_path(out / "model.keras")
    assert predictor.threshold == pytest.approx(metrics["threshold"])
    assert json.loads((out / "shift.json").read_text())["groups"]["fake/gan"]["n"] == 3
    # the test split again as the files are (the run's own figures) and as web copies, in the card
    web = json.loads((out / "web_test.json").read_text())
    assert web["data"] == Path(str(params["data"]["data_dir"])).name and not web["errors"]
    assert web["as_files"]["roc_auc"] == pytest.approx(metrics["test_roc_auc"], abs=1e-6)
    assert web["as_files"]["n"] == web["web"]["n"] == metrics["n_test"]
    assert "## Its own test faces after a website's processing" in card
    assert f"| web copies | {web['web']['n']} | {web['web']['roc_auc']:.3f} |" in card


def test_package_refuses_an_unfinished_run(tmp_path):
    _touch_model(tmp_path / "run")
    with pytest.raises(FileNotFoundError, match="missing metrics.json, params.yaml"):
        pretrained.package(tmp_path / "run", tmp_path / "out")


def test_the_shipped_model_loads_with_its_card_and_scores_a_small_image(tmp_path):
    path = pretrained.default_model(best_dir=tmp_path / "no-sweep")
    assert path == pretrained.PRETRAINED_DIR / "model.keras"
    weights = [path, path.parent / "expert.keras"]
    assert sum(item.stat().st_size for item in weights if item.is_file()) < pretrained.MAX_MODEL_BYTES
    predictor = Predictor.from_path(path)
    assert 0.05 <= predictor.threshold <= 0.95 and 0.05 <= predictor.model_threshold <= 0.95
    assert predictor.expert is not None  # the shipped detector carries its trace expert (docs/results.md, round 9)
    facts = pretrained.model_card_facts(path)
    assert not facts["demo_data"] and facts["card"] and "Known failures" in Path(facts["card"]).read_text()
    small = tmp_path / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(small)
    row = predictor.predict_file(small)  # smaller than the input side: padded as in training, never up-sampled
    assert 0.0 <= row["p_fake"] <= 1.0 and row["label"] in ("real", "fake")
    side = predictor.image_size
    view = predictor.prepare(small.read_bytes())
    assert view.shape == (side, side, 3) and (view[0] == 128).all()  # a grey frame around the 70 px centre square


@pytest.mark.slow
def test_rebuild_trains_the_detector_and_its_trace_expert_and_packages_both(demo_dataset, tmp_path):
    params = write_tiny_params(tmp_path / "params.yaml")
    out = tmp_path / "pretrained"
    facts = pretrained.build_pretrained(out, [demo_dataset], params_path=params,
                                        expert_overrides={"image_size": 48, "conv_filters": [4, 8], "epochs": 1,
                                                          "train_crop": 32})
    combination = json.loads((out / "combination.json").read_text())
    assert combination["expert_image_size"] == 48 and combination["expert_model"] == "npr"
    assert combination["expert_view"] == "native" and combination["expert_train_crop"] == 32  # as it trained
    assert "trace expert" in facts["model"] and facts["threshold"] == pytest.approx(combination["threshold"])
    assert "Trace expert" in (out / "MODEL_CARD.md").read_text()
    assert Predictor.from_path(out / "model.keras").expert is not None
    # alone, and as a deep ensemble of two draws (`--set members=2`)
    plain = pretrained.build_pretrained(tmp_path / "plain", [demo_dataset], params_path=params, expert=False,
                                        overrides={"members": 2})
    assert plain["model"] == "cnn" and not (tmp_path / "plain" / "expert.keras").exists()
    assert [member["seed"] for member in json.loads((tmp_path / "plain" / "metrics.json").read_text())["members"]] \
        == [0, 1]
    assert "a deep ensemble of 2 `cnn` draws" in (tmp_path / "plain" / "MODEL_CARD.md").read_text()
    ensemble = Predictor.from_path(tmp_path / "plain" / "model.keras")
    assert sorted(conv_layer_names(ensemble.model)) == ["m1_conv1", "m1_conv2", "m2_conv1", "m2_conv2"]


@pytest.mark.slow
def test_rebuild_with_eye_trains_an_eye_member_on_every_folders_eye_squares(demo_dataset, tmp_path,
                                                                              fixed_landmarks):
    """The eye squares are 36 px (`fixed_landmarks`), above the 32 px the data loader reads."""
    params = write_tiny_params(tmp_path / "params.yaml")
    out = tmp_path / "pretrained"
    facts = pretrained.build_pretrained(out, [demo_dataset], params_path=params,
                                        expert_overrides={"image_size": 48, "conv_filters": [4, 8], "epochs": 1},
                                        eye=True, eye_overrides={"image_size": 32, "conv_filters": [4, 8], "epochs": 1})
    combination = json.loads((out / "combination.json").read_text())
    assert combination["eye_file"] == "eye.keras" and (out / "eye.keras").is_file()
    assert combination["eye_found_val"] == 1.0 and combination["eye_epochs"] == 1
    assert "Eye-region model" in (out / "MODEL_CARD.md").read_text() and facts["model"].endswith("+ eye-region model")
    predictor = Predictor.from_path(out / "model.keras")
    assert predictor.eye is not None
    assert predictor.expert_view(sorted((demo_dataset / "fake").glob("*"))[0].read_bytes()).eye.shape == (36, 36, 3)


def test_predict_evaluate_and_explain_refuse_the_images_training_skips(tmp_path):
    """An image under `images.MIN_SIDE` px is skipped by training and evaluation, so predict and explain refuse
    it too, in one line: all of them count the same files."""
    from fakelib import explain
    from fakelib.images import MIN_SIDE, ImageError
    from fakelib.predict import evaluate_folder

    predictor = Predictor.from_path(pretrained.default_model(best_dir=tmp_path / "no-sweep"))
    rng = np.random.default_rng(0)
    for label in ("real", "fake"):
        (tmp_path / "data" / label).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "data" / label / "a.png")
    tiny = tmp_path / "data" / "fake" / "tiny.png"
    Image.fromarray(rng.integers(0, 255, (MIN_SIDE - 1, 60, 3), dtype=np.uint8)).save(tiny)
    row = predictor.predict_file(tiny)
    assert "p_fake" not in row and row["error"].startswith("too_small:") and "\n" not in row["error"]
    assert evaluate_folder(predictor, tmp_path / "data")["n"] == 2
    with pytest.raises(ImageError, match=f"smaller than {MIN_SIDE} px"):
        explain.load_images(predictor.model, tiny)
    edge = tmp_path / "edge.png"
    Image.fromarray(rng.integers(0, 255, (MIN_SIDE, 60, 3), dtype=np.uint8)).save(edge)
    assert "p_fake" in predictor.predict_file(edge)


def test_the_card_says_when_the_detector_is_an_ensemble_of_draws(trained_experiment, tmp_path):
    import shutil

    folder = tmp_path / "pair"
    shutil.copytree(trained_experiment, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert "deep ensemble" not in pretrained.write_card(folder).read_text()
    members = [{"seed": seed, "epochs_run": 2, "best_epoch": best} for seed, best in ((0, 2), (1, 1))]
    (folder / "metrics.json").write_text(json.dumps({**metrics, "members": members}))
    card = pretrained.write_card(folder).read_text()
    assert (f"a deep ensemble of 2 `cnn` draws (seeds 0, 1) whose logits are averaged, then calibrated once "
            f"({metrics['param_count']:,} parameters in all)") in card
    assert "per draw 2 epochs (best 2), 2 epochs (best 1)" in card


def test_the_cards_rebuild_line_repeats_the_settings_that_differ_from_params_yaml(trained_experiment, tmp_path):
    import shlex
    import shutil

    from fakelib.config import load_params, parse_overrides

    folder = tmp_path / "changed"
    shutil.copytree(trained_experiment, folder)
    base = load_params().base
    (folder / "params.yaml").write_text(yaml.safe_dump(base.replace(
        data_dir=["faces-dev", "faces-extra-real"], threads=1).to_sections()))
    line = next(row for row in pretrained.write_card(folder).read_text().splitlines() if row.startswith("Rebuild"))
    assert line.endswith("[MORE ...]`.")  # the folders and the thread count are not part of the recipe
    changed = base.replace(data_dir="elsewhere", members=2, conv_filters=[8, 16], lr_schedule="constant")
    (folder / "params.yaml").write_text(yaml.safe_dump(changed.to_sections()))
    line = next(row for row in pretrained.write_card(folder).read_text().splitlines() if row.startswith("Rebuild"))
    assert line.endswith("[MORE ...] --set 'conv_filters=[8, 16]' --set lr_schedule=constant --set members=2`.")
    items = [word for word in shlex.split(line.split("`")[1]) if "=" in word]
    assert base.replace(**parse_overrides(items)).replace(data_dir="elsewhere") == changed  # the same recipe
