"""The trace expert that can only add evidence (`fakelib.expert`), and every path that scores with it."""

import json
import shutil

from pathlib import Path

import numpy as np
import pytest

from PIL import Image

from fakelib import expert as expertlib
from fakelib import pretrained, residuals
from fakelib.predict import Predictor, evaluate_folder, evaluate_groups

from conftest import check_folder_scores, copy_without


def _logit(p):
    return np.log(p / (1 - p))


def test_an_expert_at_or_below_its_cutoff_leaves_the_detectors_logit():
    rng = np.random.default_rng(0)
    combination = expertlib.Combination(weight=1.5, cutoff=0.3, scale=0.8, bias=-0.4, robust_threshold=0.37)
    p_robust = rng.uniform(0.01, 0.99, 500)
    p_expert = 1 / (1 + np.exp(-rng.uniform(-6, 0.3, 500)))  # logit at most the cutoff
    np.testing.assert_allclose(combination.logits(p_robust, p_expert), _logit(p_robust), rtol=1e-6)
    combined = combination.probabilities(p_robust, p_expert)
    np.testing.assert_allclose(combined, 1 / (1 + np.exp(-(0.8 * _logit(p_robust) - 0.4))), rtol=1e-6)


def test_an_expert_sure_of_a_trace_adds_its_excess_log_odds_and_never_subtracts():
    combination = expertlib.Combination(weight=2.0, cutoff=0.0)
    p_robust = np.array([0.2, 0.2, 0.9])
    p_expert = np.array([0.8, 0.01, 0.99])
    np.testing.assert_allclose(combination.logits(p_robust, p_expert),
                               _logit(p_robust) + 2.0 * np.array([_logit(0.8), 0.0, _logit(0.99)]), rtol=1e-6)
    assert (combination.probabilities(p_robust, p_expert) >= p_robust - 1e-9).all()


@pytest.mark.parametrize("payload, message", [
    ({"weight": 1}, "not a valid combination"),
    ({"weight": "x", "cutoff": 0, "scale": 1, "bias": 0, "robust_threshold": 0.5, "expert_image_size": 64},
     "not a valid combination"),
    ({"weight": 1, "cutoff": 0, "scale": -1, "bias": 0, "robust_threshold": 0.5, "threshold": 0.5,
      "expert_image_size": 64}, "scale must be > 0"),
    ({"weight": 1, "cutoff": 0, "scale": 1, "bias": 0, "robust_threshold": 0.5, "threshold": 1.5,
      "expert_image_size": 64}, "threshold in"),
    ({"weight": 1, "cutoff": 0, "scale": 1, "bias": 0, "robust_threshold": 0.5, "expert_image_size": 64},
     "not a valid combination"),  # no threshold
])
def test_a_broken_combination_is_a_one_line_error(payload, message):
    with pytest.raises(ValueError, match=message):
        expertlib.Combination.from_dict(payload)


def test_a_combination_names_its_expert_view_and_older_files_mean_the_resized_one():
    payload = {"weight": 1, "cutoff": 0, "scale": 1, "bias": 0, "robust_threshold": 0.5, "threshold": 0.4,
               "expert_image_size": 64}
    assert expertlib.Combination.from_dict(payload).expert_view == "resized"  # written before expert views existed
    assert expertlib.Combination.from_dict({**payload, "expert_view": "native"}).expert_view == "native"
    with pytest.raises(ValueError, match="expert_view 'crops' is not one of resized, native"):
        expertlib.Combination.from_dict({**payload, "expert_view": "crops"})


def test_a_native_window_is_the_centre_of_the_images_own_pixels_on_the_even_grid():
    from PIL import Image

    from fakelib.images import native_window

    pixels = np.random.default_rng(0).integers(0, 256, (70, 81, 3), dtype=np.uint8)  # height 70, width 81
    image = Image.fromarray(pixels)
    # larger than the side: the centred 64 x 64 window, offsets rounded down to even (8 and 2), never resampled
    np.testing.assert_array_equal(native_window(image, 64), pixels[2:66, 8:72])
    # smaller than the side: the whole centre square at its own (even) side, never padded
    np.testing.assert_array_equal(native_window(image, 128), pixels[0:70, 4:74])
    np.testing.assert_array_equal(native_window(Image.fromarray(pixels[:69, :69]), 128), pixels[:68, :68])


@pytest.fixture(scope="module")
def expert_run(tiny_config, tmp_path_factory):
    """A finished tiny trace expert: NPR at 64 px on the 32 px demo faces (so its views are padded, never
    up-sampled), as `expert_config` would make it but small."""
    from fakelib.train import run_experiment

    out = tmp_path_factory.mktemp("expert")
    config = expertlib.expert_config(tiny_config).replace(image_size=64, conv_filters=[8, 16], epochs=1,
                                                          train_crop=0)  # whole inputs: the resized view
    assert config.model.model == "npr" and config.data.data_dir == tiny_config.data.data_dir
    run_experiment(config, out, verbose=0)
    return out


@pytest.fixture(scope="module")
def combined(trained_experiment, expert_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("combined")
    payload = expertlib.assemble(trained_experiment, expert_run, out)
    return out, payload


def test_assemble_writes_a_detector_folder_fitted_on_validation(combined, trained_experiment, expert_run):
    out, payload = combined
    assert {"model.keras", "metrics.json", "params.yaml", "expert.keras", "combination.json", "residual.npz"} <= \
        {path.name for path in out.iterdir()}
    saved = json.loads((out / "combination.json").read_text())
    assert saved == json.loads(json.dumps(payload))
    combination = expertlib.Combination.from_dict(saved)
    robust = json.loads((trained_experiment / "metrics.json").read_text())
    assert combination.robust_threshold == pytest.approx(robust["threshold"])
    assert combination.expert_image_size == 64 and combination.scale > 0
    # every demo face (32 px) is below the expert's 64 px: no validation image is native, so one regime
    assert not combination.has_small_regime and saved["small_threshold"] is None and "small_n_val" not in saved
    assert saved["threshold"] == pytest.approx(combination.threshold)
    # the threshold is the combined detector's own, chosen on its validation p_fake (metrics.choose_threshold)
    from fakelib.config import load_experiment
    from fakelib.data import load_dataset
    from fakelib.metrics import choose_threshold
    from fakelib.predict import score_files

    config = load_experiment(trained_experiment / "params.yaml")
    prepared = load_dataset(config.data)
    val = prepared.splits == "val"
    p_val, _, errors = score_files(Predictor.from_path(out / "model.keras"), Path(config.data.data_dir),
                                list(prepared.relpaths[val]))
    assert not errors
    expected = choose_threshold(prepared.labels[val], p_val, prepared.split_groups("val"))
    assert combination.threshold == pytest.approx(expected, abs=1e-4)
    assert saved["train_seconds"] == pytest.approx(
        robust["train_seconds"] + json.loads((expert_run / "metrics.json").read_text())["train_seconds"]
        + saved["residual_train_seconds"], abs=0.02)
    # the residual model: C chosen on validation from the grid, its evidence pooled with the trace expert's
    assert saved["residual_file"] == "residual.npz" and saved["residual_c"] in (0.003, 0.01, 0.03, 0.1, 0.3)
    assert set(saved["residual_val_roc_auc_by_c"]) == {"0.003", "0.01", "0.03", "0.1", "0.3"}
    assert saved["residual_n_train"] == robust["n_train"]
    residual = residuals.ResidualModel.load(out / "residual.npz")  # Platt-scaled on validation, and says so
    assert (saved["residual_platt_scale"], saved["residual_platt_bias"]) == (residual.platt_scale, residual.platt_bias)
    assert saved["expert_epochs"] == json.loads((expert_run / "metrics.json").read_text())["epochs_run"]
    for member in ("trace", "residual"):
        assert 0.0 <= saved[f"{member}_fires_val_fakes"] <= 1.0 and 0.0 <= saved[f"{member}_test_roc_auc"] <= 1.0
    # the pooled expert fires where either member does
    assert saved["expert_fires_val_fakes"] >= max(saved["trace_fires_val_fakes"], saved["residual_fires_val_fakes"])
    assert saved["n_test"] == robust["n_test"] and 0.0 <= saved["test_roc_auc"] <= 1.0
    assert saved["n_val"] == robust["n_val"] and 0.0 <= saved["val_roc_auc"] <= 1.0
    assert 0.0 <= saved["expert_fires_val_fakes"] <= 1.0 and 0.0 <= saved["expert_fires_val_reals"] <= 1.0
    assert saved["expert_fires_val_other_reals"] is None  # one folder: no reals from elsewhere in validation


def test_every_scoring_path_uses_both_members(combined, trained_experiment, expert_run, demo_dataset):
    from fakelib.images import load_view
    from fakelib.models import load_model, predict_probabilities

    out, payload = combined
    predictor = Predictor.from_path(out / "model.keras")
    assert predictor.expert is not None and predictor.threshold == pytest.approx(payload["threshold"])
    assert predictor.model_threshold == pytest.approx(payload["robust_threshold"])
    files = sorted((demo_dataset / "fake").glob("*"))[:4] + sorted((demo_dataset / "real").glob("*"))[:4]
    robust, expert = load_model(trained_experiment / "model.keras"), load_model(expert_run / "model.keras")
    p_robust = predict_probabilities(robust, [load_view(str(path), 32)[0] for path in files])
    p_expert = predict_probabilities(expert, [load_view(str(path), 64)[0] for path in files])
    # the residual statistics read each file's own pixels (32 px demo faces: never padded, never resampled)
    residual = residuals.ResidualModel.load(out / "residual.npz")
    assert predictor.residual is not None and residual.side == residuals.SIDE
    p_residual = residual.probabilities(np.stack([residuals.features(np.asarray(Image.open(path).convert("RGB")))
                                                  for path in files]))
    expected = predictor.combination.probabilities(p_robust, expertlib.pooled([p_expert, p_residual]))
    rows = [predictor.predict_file(path) for path in files]
    np.testing.assert_allclose([row["p_fake"] for row in rows], expected, atol=2e-6)
    assert all(row["threshold"] == pytest.approx(payload["threshold"], abs=1e-6) for row in rows)
    # the explorer and the practice page get the model's probabilities from an explanation's forward pass
    expert_views = [predictor.prepare_inputs(path.read_bytes())[1] for path in files]
    np.testing.assert_allclose(predictor.combine(p_robust, predictor.expert_probabilities(expert_views)), expected,
                               atol=1e-6)
    with pytest.raises(ValueError, match="trace expert"):
        predictor.predict_arrays([predictor.prepare(files[0].read_bytes())])
    row = check_folder_scores(predictor, files, expected, out.parent / "shift", n_fake=4)
    assert row["threshold"] == pytest.approx(payload["threshold"])


@pytest.fixture(scope="module")
def native_combined(tiny_config, trained_experiment, tmp_path_factory):
    """A detector whose tiny expert trained on native 32 px windows (`train_crop`, below its 64 px side)."""
    from fakelib.train import run_experiment

    expert_out, out = tmp_path_factory.mktemp("native_expert"), tmp_path_factory.mktemp("native_combined")
    config = expertlib.expert_config(tiny_config).replace(image_size=64, conv_filters=[8, 16], epochs=1,
                                                          train_crop=32)
    assert expertlib.view_for(config) == "native"
    run_experiment(config, expert_out, verbose=0)
    # without the residual model: this also covers the detectors packaged before it existed
    return out, expertlib.assemble(trained_experiment, expert_out, out, residual=False), expert_out


def test_an_expert_trained_on_native_windows_scores_native_windows(native_combined, trained_experiment,
                                                                   demo_dataset, tmp_path):
    from PIL import Image

    from fakelib.images import load_view
    from fakelib.models import load_model

    out, payload, expert_run = native_combined
    assert payload["expert_view"] == "native" and payload["expert_image_size"] == 64
    assert "residual_file" not in payload and not (out / "residual.npz").exists()
    predictor = Predictor.from_path(out / "model.keras")
    assert predictor.combination.expert_view == "native" and predictor.residual is None
    # two demo faces (32 px: smaller than the expert's 64, so scored at their own side) and two larger photos
    rng = np.random.default_rng(3)
    large = [rng.integers(0, 256, (70, 81, 3), dtype=np.uint8), rng.integers(0, 256, (96, 90, 3), dtype=np.uint8)]
    files = sorted((demo_dataset / "fake").glob("*"))[:1] + sorted((demo_dataset / "real").glob("*"))[:1]
    for index, pixels in enumerate(large):
        files.append(tmp_path / f"large{index}.png")
        Image.fromarray(pixels).save(files[-1])
    windows = [np.asarray(Image.open(files[0]).convert("RGB")), np.asarray(Image.open(files[1]).convert("RGB")),
               large[0][2:66, 8:72], large[1][16:80, 12:76]]
    robust, expert = load_model(trained_experiment / "model.keras"), load_model(expert_run / "model.keras")
    p_expert = np.array([float(np.asarray(expert(window[None].astype("float32"), training=False))[0, 0])
                         for window in windows])
    p_robust = np.array([float(np.asarray(robust(load_view(str(path), 32)[0][None].astype("float32"),
                                                 training=False))[0, 0]) for path in files])
    expected = predictor.combination.probabilities(p_robust, p_expert)
    np.testing.assert_allclose([predictor.predict_file(path)["p_fake"] for path in files], expected, atol=2e-6)
    np.testing.assert_allclose(predictor.expert_probabilities([predictor.prepare_inputs(path)[1] for path in files]),
                               p_expert, rtol=1e-5, atol=1e-6)
    folder = tmp_path / "folder"
    for index, path in enumerate(files):
        (folder / ("fake" if index % 2 == 0 else "real")).mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, folder / ("fake" if index % 2 == 0 else "real") / path.name)
    groups = evaluate_groups(predictor, folder, common=False)["groups"]
    assert groups["fake"]["as_published_mean_p_fake"] == pytest.approx(expected[[0, 2]].mean(), abs=1e-5)
    assert groups["real"]["as_published_mean_p_fake"] == pytest.approx(expected[[1, 3]].mean(), abs=1e-5)
    from fakelib.metrics import binary_metrics

    wanted = binary_metrics(np.array([1, 0, 1, 0]), expected, predictor.threshold)
    row = evaluate_folder(predictor, folder)
    assert row["n"] == 4 and row["accuracy"] == pytest.approx(wanted["accuracy"])
    assert row["roc_auc"] == pytest.approx(wanted["roc_auc"])


def test_the_explorer_shows_the_combined_verdict_and_says_when_the_expert_added_to_it(combined, demo_dataset):
    from fakelib import explore

    out, payload = combined
    predictor = Predictor.from_path(out / "model.keras")
    explorer = explore.Explorer({"both": str(out / "model.keras")}, method="gradcam")
    files = sorted((demo_dataset / "fake").glob("*"))[:6] + sorted((demo_dataset / "real").glob("*"))[:6]
    fired = predictor.expert_fired(predictor.expert_probabilities(
        [predictor.prepare_inputs(path.read_bytes())[1] for path in files]))
    for path, expert_fired in zip(files, fired):
        verdict = explorer.set_upload(path.name, path.read_bytes())
        assert verdict.ok and verdict.threshold == pytest.approx(payload["threshold"])
        assert verdict.probability == pytest.approx(predictor.predict_file(path)["p_fake"], abs=1e-5)
        assert ("trace experts found" in verdict.message) == bool(expert_fired)  # two: the trace and the residual


def test_a_real_verdict_without_a_trace_says_how_often_web_copies_of_fakes_pass(combined, demo_dataset, tmp_path):
    """Where the experts are silent, a "real" verdict rests on the face alone; the explorer says what that is worth
    on the detector's own test fakes once a website removed their trace (web_test.json beside the model)."""
    from fakelib import explore

    out, _ = combined
    folder = tmp_path / "detector"
    shutil.copytree(out, folder)
    predictor = Predictor.from_path(folder / "model.keras")
    files = sorted((demo_dataset / "real").glob("*")) + sorted((demo_dataset / "fake").glob("*"))
    inputs = [predictor.prepare_inputs(path.read_bytes()) for path in files]
    p_fake = predictor.predict_inputs(inputs)
    fired = predictor.expert_fired(predictor.expert_probabilities([expert for _, expert in inputs]))
    silent_real = next(path for path, p, hit in zip(files, p_fake, fired) if p < predictor.threshold and not hit)
    fired_or_fake = next(path for path, p, hit in zip(files, p_fake, fired) if p >= predictor.threshold or hit)
    for caught, says in ((0.42, True), (0.85, False)):
        (folder / pretrained.WEB_TEST_FILE).write_text(json.dumps({"web": {"fake_rate": caught}}))
        explorer = explore.Explorer({"detector": str(folder / "model.keras")}, method="gradcam")
        verdict = explorer.set_upload(silent_real.name, silent_real.read_bytes())
        assert verdict.label == "real"
        assert ("this detector caught only 42% of the fakes" in verdict.message) == says
        other = explorer.set_upload(fired_or_fake.name, fired_or_fake.read_bytes())
        assert "rests on the face alone" not in other.message


def test_the_package_carries_the_expert_and_says_so(combined, trained_experiment, tmp_path):
    out, payload = combined
    package = tmp_path / "pretrained"
    facts = pretrained.package(out, package)
    assert (package / "expert.keras").is_file() and (package / "combination.json").is_file()
    assert (package / "residual.npz").is_file()
    card = (package / "MODEL_CARD.md").read_text()
    assert "Trace expert" in card and f"Threshold: {payload['threshold']:.3f}" in card
    assert "Residual statistics (`fakelib.residuals`)" in card and f"C {payload['residual_c']}" in card
    assert f"Platt-scaled on validation: scale {payload['residual_platt_scale']:.3f}" in card
    assert f"{payload['train_seconds']:.0f} s with its experts" in card
    assert f"in {payload['expert_epochs']} epochs, {payload['expert_train_seconds']:.0f} s" in card and "residual statistics" in facts["model"]
    assert f"| {payload['test_roc_auc']:.3f} |" in card
    assert "trace expert" in facts["model"] and facts["threshold"] == pytest.approx(payload["threshold"])
    assert Predictor.from_path(package / "model.keras").expert is not None
    (package / "shift.json").write_text("{}")  # as an earlier package with --shift would have left it
    pretrained.package(trained_experiment, package)  # a plain run packaged over it leaves no stale expert behind
    assert not (package / "shift.json").exists()
    assert not (package / "expert.keras").exists() and not (package / "combination.json").exists()
    assert not (package / "residual.npz").exists()
    assert Predictor.from_path(package / "model.keras").expert is None


def test_a_missing_expert_file_is_a_one_line_error(combined, tmp_path):
    model = copy_without(combined[0], tmp_path, "expert.keras")
    with pytest.raises(FileNotFoundError, match="names the trace expert expert.keras, which is not there"):
        Predictor.from_path(model)
    with pytest.raises(FileNotFoundError, match="has combination.json but no expert.keras"):
        pretrained.package(model.parent, tmp_path / "package")


def test_a_missing_or_broken_residual_file_is_a_one_line_error(combined, tmp_path):
    out, _ = combined
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "residual.npz").write_bytes(b"not an archive")
    with pytest.raises(ValueError, match="residual.npz: not a residual-statistics model"):
        Predictor.from_path(copy / "model.keras")
    (copy / "residual.npz").unlink()
    with pytest.raises(FileNotFoundError, match="names the residual model residual.npz, which is not there"):
        Predictor.from_path(copy / "model.keras")
    with pytest.raises(FileNotFoundError, match="has combination.json but no residual.npz"):
        pretrained.package(copy, tmp_path / "package")


def test_the_combine_command_writes_a_folder_that_predict_uses_and_refuses_a_bad_weight(
        trained_experiment, expert_run, demo_dataset, tmp_path, capsys):
    from fakelib.__main__ import main

    assert main(["combine", str(trained_experiment), str(expert_run), "--out", str(tmp_path / "c"),
                 "--weight", "0.5", "--no-residual"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["weight"] == 0.5 and (tmp_path / "c" / "combination.json").is_file()
    assert "residual_file" not in printed and not (tmp_path / "c" / "residual.npz").exists()
    image = sorted((demo_dataset / "fake").glob("*"))[0]
    assert main(["predict", "--model", str(tmp_path / "c" / "model.keras"), str(image)]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)
    assert "with its trace expert" in captured.err and row["threshold"] == pytest.approx(printed["threshold"], abs=1e-6)
    assert main(["combine", str(trained_experiment), str(expert_run), "--out", str(tmp_path / "d"),
                 "--weight", "-1"]) != 0
    assert main(["combine", str(tmp_path / "nothing"), str(expert_run), "--out", str(tmp_path / "e")]) != 0
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 2 and "not a finished run" in error[-1]


def test_extreme_combined_logits_give_0_and_1_without_an_overflow_warning():
    import warnings

    combination = expertlib.Combination(scale=50.0, bias=-3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.exp(-x) of a logit far below zero overflowed before
        probabilities = combination.probabilities(np.array([1e-7, 0.5, 1 - 1e-7]), np.array([0.01, 0.5, 0.99]))
    assert probabilities[0] == 0.0 and probabilities[2] == 1.0
    assert probabilities[1] == pytest.approx(1 / (1 + np.exp(3.0)))


def test_the_experts_are_single_models_whatever_the_detectors_members(tiny_config, tmp_path):
    from fakelib.eyes import eye_config

    pair = tiny_config.replace(members=2)
    assert expertlib.expert_config(pair).train.members == 1
    assert eye_config(pair, [tmp_path]).train.members == 1
