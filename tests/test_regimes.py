"""The combined detector's two regimes (`fakelib.expert`, round 17): an image smaller than the trace expert's side is
calibrated and judged apart, since no generator's trace survives the shrink that made it small."""

import json
import shutil

from pathlib import Path

import numpy as np
import pytest

from fakelib import expert as expertlib
from fakelib.images import open_image, read_image_bytes
from fakelib.metrics import binary_metrics, choose_threshold, fit_platt
from fakelib.predict import Predictor, evaluate_folder, evaluate_groups, web_copy

PAYLOAD = {"weight": 1, "cutoff": 0, "scale": 2.0, "bias": -1.0, "robust_threshold": 0.5, "threshold": 0.4,
           "expert_image_size": 64}


def test_the_side_chooses_the_calibration_and_the_threshold():
    combination = expertlib.Combination.from_dict({**PAYLOAD, "small_scale": 0.5, "small_bias": 0.25,
                                                   "small_threshold": 0.7})
    p_robust, p_expert, sides = np.array([0.6, 0.6, 0.2]), np.array([0.3, 0.3, 0.9]), np.array([64, 63, 20])
    logits = combination.logits(p_robust, p_expert)
    expected = 1 / (1 + np.exp(-np.array([2.0 * logits[0] - 1.0, 0.5 * logits[1] + 0.25, 0.5 * logits[2] + 0.25])))
    np.testing.assert_allclose(combination.probabilities(p_robust, p_expert, sides), expected, rtol=1e-12)
    np.testing.assert_array_equal(combination.small(sides), [False, True, True])
    np.testing.assert_allclose(combination.thresholds(sides), [0.4, 0.7, 0.7])
    with pytest.raises(ValueError, match="give each image's side"):
        combination.probabilities(p_robust, p_expert)
    # a file from before round 17 has one regime: every side is calibrated and judged alike
    single = expertlib.Combination.from_dict(PAYLOAD)
    assert not single.has_small_regime and not single.small(sides).any()
    np.testing.assert_allclose(single.probabilities(p_robust, p_expert, sides),
                               single.probabilities(p_robust, p_expert))
    np.testing.assert_allclose(single.thresholds(sides), 0.4)


@pytest.mark.parametrize("small, message", [
    ({"small_scale": 1.0, "small_bias": 0.0}, "small-image regime"),
    ({"small_scale": 0.0, "small_bias": 0.0, "small_threshold": 0.5}, "small-image regime"),
    ({"small_scale": 1.0, "small_bias": 0.0, "small_threshold": 1.5}, "small-image regime"),
    ({"small_scale": "x", "small_bias": 0.0, "small_threshold": 0.5}, "not a valid combination"),
])
def test_a_broken_small_regime_is_a_one_line_error(small, message):
    with pytest.raises(ValueError, match=message) as error:
        expertlib.Combination.from_dict({**PAYLOAD, **small})
    assert "\n" not in str(error.value)


def test_per_face_thresholds_in_the_metrics():
    labels, p = np.array([0, 0, 1, 1]), np.array([0.5, 0.3, 0.5, 0.8])
    scores = binary_metrics(labels, p, np.array([0.6, 0.2, 0.4, 0.9]))
    assert scores["confusion_matrix"] == [[1, 1], [1, 1]] and scores["threshold"] == [0.2, 0.4, 0.6, 0.9]
    assert binary_metrics(labels, p, np.full(4, 0.45))["threshold"] == 0.45


@pytest.fixture(scope="module")
def regimes(tiny_config, tmp_path_factory):
    """A detector on 64 px demo faces whose trace expert reads 64 px, the faces' own side: the files are in the
    native regime, and web copies of them (32-50 px: 112-200 px for 256, never under MIN_SIDE) in the small one.
    Returns (folder, payload, robust run)."""
    from fakelib.demo import generate
    from fakelib.train import run_experiment

    data = tmp_path_factory.mktemp("demo64")
    generate(data, count=120, size=64, seed=1, strength=1.0, workers=1)
    robust_config = tiny_config.replace(data_dir=str(data))
    robust_run, expert_run = tmp_path_factory.mktemp("robust64"), tmp_path_factory.mktemp("expert64")
    run_experiment(robust_config, robust_run, verbose=0)
    config = expertlib.expert_config(robust_config).replace(image_size=64, conv_filters=[8, 16], epochs=1,
                                                            train_crop=0)
    run_experiment(config, expert_run, verbose=0)
    out = tmp_path_factory.mktemp("regimes")
    return out, expertlib.assemble(robust_run, expert_run, out), robust_run


def _validation(robust_run):
    from fakelib.config import load_experiment
    from fakelib.data import load_dataset

    config = load_experiment(robust_run / "params.yaml")
    prepared = load_dataset(config.data)
    val = prepared.splits == "val"
    root = config.data.data_dir
    return root, list(prepared.relpaths[val]), prepared.labels[val], prepared.split_groups("val")


def test_the_small_regime_is_fitted_on_web_copies_of_validation_through_the_predictor(regimes):
    out, payload, robust_run = regimes
    predictor = Predictor.from_path(out / "model.keras")
    combination = predictor.combination
    assert combination.has_small_regime and payload["small_copy_sides"] == [32, 50]
    assert predictor.small_threshold == pytest.approx(payload["small_threshold"])
    root, relpaths, labels, groups = _validation(robust_run)
    copies = [web_copy(read_image_bytes(f"{root}/{relpath}"), (32, 50)) for relpath in relpaths]
    assert all(32 <= min(open_image(copy).size) <= 50 for copy in copies)
    inputs = [predictor.prepare_inputs(copy) for copy in copies]
    assert all(expert.side < 64 for _, expert in inputs)
    p_robust, p_expert = predictor.member_probabilities(inputs)
    scale, bias = fit_platt(labels, combination.logits(p_robust, p_expert))
    assert (combination.small_scale, combination.small_bias) == pytest.approx((scale, bias), abs=2e-3)
    p_small = predictor.predict_inputs(inputs)
    webs = np.array([f"{group}-web" for group in groups])
    assert combination.small_threshold == pytest.approx(choose_threshold(labels, p_small, webs), abs=1e-4)
    # the files themselves (64 px) stay in the native regime, at the native threshold chosen on them alone
    files = [predictor.prepare_inputs(read_image_bytes(f"{root}/{relpath}")) for relpath in relpaths]
    assert all(expert.side == 64 for _, expert in files)
    assert combination.threshold == pytest.approx(choose_threshold(labels, predictor.predict_inputs(files), groups),
                                                  abs=1e-4)
    assert payload["small_n_val"] == payload["small_n_val_web_copies"] == len(relpaths)
    assert payload["small_val_roc_auc"] == pytest.approx(binary_metrics(labels, p_small)["roc_auc"], abs=0.02)


def test_every_verdict_uses_the_threshold_of_its_images_regime(regimes, tmp_path):
    from fakelib import explore
    from fakelib.config import load_experiment

    out, _, robust_run = regimes
    demo_dataset = Path(load_experiment(robust_run / "params.yaml").data.data_dir)
    predictor = Predictor.from_path(out / "model.keras")
    source = sorted((demo_dataset / "fake").glob("*"))[0]
    small = tmp_path / "small.jpg"
    small.write_bytes(web_copy(source.read_bytes(), (40, 40)))  # loadable everywhere (>= 32 px), below 64
    rows = {path.name: predictor.predict_file(path) for path in (source, small)}
    assert rows[source.name]["threshold"] == pytest.approx(predictor.threshold, abs=1e-6)
    assert rows[small.name]["threshold"] == pytest.approx(predictor.small_threshold, abs=1e-6)
    for row in rows.values():
        assert row["label"] == ("fake" if row["p_fake"] >= row["threshold"] else "real")
    # evaluate_groups and evaluate_folder judge each file at its own regime's threshold
    folder = tmp_path / "mixed"
    for index, path in enumerate(sorted((demo_dataset / "real").glob("*"))[:6]):
        target = folder / "real" / "demo" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        target.write_bytes(web_copy(data, (40, 40)) if index % 2 else data)
    files = sorted((folder / "real" / "demo").glob("*"))
    expected = [predictor.predict_file(path) for path in files]
    kept = np.mean([row["label"] == "real" for row in expected])
    assert evaluate_groups(predictor, folder, common=False)["groups"]["real/demo"]["as_published_kept_real"] == \
        pytest.approx(kept)
    # a fake group of small copies is ranked against all reals, and against the small reals of its own regime
    for path in sorted((demo_dataset / "fake").glob("*"))[:3]:
        target = folder / "fake" / "small" / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(web_copy(path.read_bytes(), (40, 40)))
    fakes = [predictor.predict_file(path)["p_fake"] for path in sorted((folder / "fake" / "small").glob("*"))]
    small_reals = [row["p_fake"] for index, row in enumerate(expected) if index % 2]
    group = evaluate_groups(predictor, folder, common=False)["groups"]["fake/small"]
    assert group["as_published_roc_auc_vs_reals_same_regime"] == pytest.approx(
        binary_metrics(np.r_[np.ones(3), np.zeros(3)], np.r_[fakes, small_reals])["roc_auc"])
    assert group["as_published_roc_auc_vs_all_reals"] == pytest.approx(binary_metrics(
        np.r_[np.ones(3), np.zeros(6)], np.r_[fakes, [row["p_fake"] for row in expected]])["roc_auc"])
    shutil.rmtree(folder / "fake")
    row = evaluate_folder(predictor, folder)
    assert row["n"] == 6 and row["real_rate"] == pytest.approx(kept)
    assert row["threshold"] == pytest.approx(sorted([predictor.threshold, predictor.small_threshold]))
    # a threshold the user gives applies to every image
    assert Predictor.from_path(out / "model.keras", threshold=0.3).thresholds([10, 40]).tolist() == [0.3, 0.3]
    # the explorer judges a small upload at the small regime's threshold, and says why
    explorer = explore.Explorer({"detector": str(out / "model.keras")}, method="gradcam")
    verdict = explorer.set_upload(small.name, small.read_bytes())
    assert verdict.ok and verdict.threshold == pytest.approx(predictor.small_threshold)
    assert verdict.probability == pytest.approx(rows[small.name]["p_fake"], abs=1e-5)
    assert "images under 64 px" in verdict.message
    other = explorer.set_upload(source.name, source.read_bytes())
    assert other.threshold == pytest.approx(predictor.threshold) and "images under" not in other.message


def test_a_detector_without_native_validation_keeps_one_regime(tmp_path, regimes):
    """A combination.json whose small-regime fields are null (what `fit` writes when validation has no image at the
    expert's side: test_expert's 64 px expert on 32 px faces) reads as one regime."""
    out, payload, _ = regimes
    copy = tmp_path / "single"
    shutil.copytree(out, copy)
    saved = json.loads((copy / "combination.json").read_text())
    for name in ("small_scale", "small_bias", "small_threshold"):
        saved[name] = None
    (copy / "combination.json").write_text(json.dumps(saved))
    predictor = Predictor.from_path(copy / "model.keras")
    assert predictor.small_threshold is None and not predictor.combination.has_small_regime
    assert predictor.thresholds([5, 50]).tolist() == [predictor.threshold] * 2


def test_the_package_card_and_the_explorer_line_give_the_small_regime(regimes, tmp_path):
    from fakelib import pretrained

    out, payload, _ = regimes
    facts = pretrained.package(out, tmp_path / "pretrained")
    card = (tmp_path / "pretrained" / "MODEL_CARD.md").read_text()
    assert "Images under 64 px (their centre square) are judged apart" in card
    assert f"judged at {payload['small_threshold']:.3f}" in card and f"scale {payload['small_scale']:.3f}" in card
    assert f"each of {payload['small_n_val_web_copies']} validation images" in card and "shrunk to 32-50 px" in card
    assert facts["small_threshold"] == pytest.approx(payload["small_threshold"])
    assert f"({payload['small_threshold']:.2f} for images under 64 px)" in pretrained.card_line(facts)
