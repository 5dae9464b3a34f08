"""fakelib.metrics: values against hand-computed cases, one-class sets, threshold choice."""

from __future__ import annotations

import numpy as np
import pytest

from fakelib.metrics import binary_metrics, choose_threshold, curves


def test_hand_computed_case():
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    probabilities = np.array([0.1, 0.6, 0.3, 0.8, 0.4, 0.9, 0.7])
    result = binary_metrics(labels, probabilities)
    # predicted fake: 0.6, 0.8, 0.9, 0.7 -> tp 3, fp 1, fn 1, tn 2
    assert result["confusion_matrix"] == [[2, 1], [1, 3]]
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["precision"] == pytest.approx(3 / 4)
    assert result["recall"] == pytest.approx(3 / 4)
    assert result["f1"] == pytest.approx(3 / 4)
    assert result["roc_auc"] == pytest.approx(11 / 12)  # 11 of 12 (fake, real) pairs ordered
    assert result["real_rate"] == pytest.approx(2 / 3)


def test_one_class_gives_accuracy_rate_and_nulls():
    result = binary_metrics(np.ones(4), np.array([0.9, 0.2, 0.8, 0.7]))
    assert result["accuracy"] == pytest.approx(0.75) and result["fake_rate"] == pytest.approx(0.75)
    assert result["real_rate"] is None
    for key in ("precision", "recall", "f1", "roc_auc", "average_precision"):
        assert result[key] is None
    assert curves(np.ones(4), np.ones(4)) is None


def test_threshold_separates_shifted_scores():
    # A detector whose scores are all shifted down (a new generator): 0.5 calls everything real.
    labels = np.array([0] * 50 + [1] * 50)
    probabilities = np.concatenate([np.linspace(0.01, 0.2, 50), np.linspace(0.25, 0.45, 50)])
    threshold = choose_threshold(labels, probabilities)
    assert 0.2 < threshold <= 0.25
    assert binary_metrics(labels, probabilities, threshold)["accuracy"] == 1.0
    assert binary_metrics(labels, probabilities)["accuracy"] == 0.5
    assert choose_threshold(np.zeros(5), np.linspace(0, 1, 5)) == 0.5


def test_without_groups_the_threshold_maximizes_youdens_j():
    from sklearn.metrics import roc_curve

    rng = np.random.default_rng(3)
    for _ in range(30):
        labels = rng.integers(0, 2, 200)
        probabilities = np.round(rng.random(200) * (1 + labels) / 2, 2)  # ties, as saturated scores give
        fpr, tpr, _ = roc_curve(labels, probabilities)
        threshold = choose_threshold(labels, probabilities)
        j = (probabilities[labels == 1] >= threshold).mean() - (probabilities[labels == 0] >= threshold).mean()
        assert j == pytest.approx((tpr - fpr).max())
        assert choose_threshold(labels, probabilities, np.full(200, "real/one")) == threshold


def test_the_threshold_keeps_the_reals_of_its_worst_group():
    """Easy reals of an extra folder must not buy a threshold that calls the hard source's reals fake: pooled,
    the 300 easy reals make 30% of the hard group's false alarms look like 7.5% (the shipped detector's 67% of
    its own test reals kept, round 16)."""
    hard = np.linspace(0.05, 0.55, 100)  # the fakes' own source: 30 of 100 above 0.4
    easy = np.linspace(0.0, 0.1, 300)
    fakes = np.linspace(0.35, 0.95, 100)
    labels = np.array([0] * 400 + [1] * 100)
    probabilities = np.concatenate([hard, easy, fakes])
    groups = np.array(["dev/real"] * 100 + ["extra/real/lfw"] * 300 + ["dev/fake"] * 100)
    pooled = choose_threshold(labels, probabilities)
    worst = choose_threshold(labels, probabilities, groups)
    assert pooled < 0.4 < worst
    kept = {name: (hard < t).mean() for name, t in (("pooled", pooled), ("worst", worst))}
    assert kept["worst"] > kept["pooled"] + 0.2
    # a group too small to measure its false alarms counts only in the pooled rate
    tiny = groups.copy()
    tiny[:100] = [f"dev/real/{index % 4}" for index in range(100)]  # four groups of 25 (< MIN_GROUP_REALS)
    assert choose_threshold(labels, probabilities, tiny) == pooled


def test_platt_scaling_recovers_a_known_miscalibration():
    from fakelib.metrics import fit_platt

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, 20000)
    labels = rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits + 1.0)))  # true p = sigmoid(0.5 z + 1)
    scale, bias = fit_platt(labels, logits, balanced=False)  # the data's own class shares
    assert scale == pytest.approx(0.5, abs=0.05) and bias == pytest.approx(1.0, abs=0.1)
    assert fit_platt(np.zeros(5), logits[:5]) == (1.0, 0.0)  # one class: identity


def test_expected_calibration_error_and_brier():
    from fakelib.metrics import calibration_errors

    rng = np.random.default_rng(1)
    probabilities = np.repeat([0.2, 0.8], 5000)
    labels = rng.random(10000) < probabilities  # calibrated by construction
    calibrated = calibration_errors(labels, probabilities)
    assert calibrated["ece"] < 0.02
    overconfident = calibration_errors(labels, np.where(probabilities > 0.5, 0.999, 0.001))
    assert overconfident["ece"] > 0.15 and overconfident["brier"] > calibrated["brier"]


def test_ece_floor_is_the_sampling_noise_of_a_calibrated_model():
    from fakelib.metrics import calibration_errors, ece_floor

    rng = np.random.default_rng(2)
    small, large = rng.random(300), rng.random(30000)
    floor_small, floor_large = ece_floor(small), ece_floor(large)
    assert floor_small["p95"] >= floor_small["mean"] > 3 * floor_large["mean"]  # noise shrinks with more faces
    calibrated = calibration_errors(rng.random(300) < small, small)["ece"]
    assert calibrated < 2 * floor_small["p95"]
    assert ece_floor(np.array([]))["mean"] is None


def test_balanced_platt_scaling_assumes_even_odds():
    from fakelib.metrics import fit_platt

    rng = np.random.default_rng(2)
    labels = np.r_[np.ones(300), np.zeros(900)]  # a validation split three-quarters real
    logits = np.r_[rng.normal(1.0, 1.0, 300), rng.normal(-1.0, 1.0, 900)]
    _, plain_bias = fit_platt(labels, logits, balanced=False)
    _, balanced_bias = fit_platt(labels, logits, balanced=True)
    # Re-weighting the classes to even odds moves the bias by the log of the prior ratio, log(900 / 300).
    assert balanced_bias - plain_bias == pytest.approx(np.log(3.0), abs=0.15)


def test_share_interval_is_wilsons_and_narrows_with_the_group_size():
    from fakelib.metrics import share_interval

    assert share_interval(17, 25) == pytest.approx((0.484, 0.828), abs=1e-3)  # Wilson, z = 1.96, by hand
    assert share_interval(0, 0) is None
    low, high = share_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and 0.2 < high < 0.35  # no fake caught of 10 is not "never"
    small, large = share_interval(6, 10), share_interval(240, 400)
    assert small[0] < 0.6 < small[1] and large[0] < 0.6 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 4
