"""Residual statistics (`fakelib.residuals`): the features, the model file, the choice of C, the pooled evidence."""

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from fakelib import expert as expertlib
from fakelib import residuals


def _noise(side: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(128, 20, (side, side, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shape", [(64, 64, 3), (37, 51, 3), (3, 3, 3), (1, 1, 3)])
def test_features_of_any_side_are_finite_and_of_one_length(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    row = residuals.features(pixels)
    assert row.shape == (residuals.N_FEATURES,) and row.dtype == np.float32 and np.isfinite(row).all()


def test_a_two_times_up_sampling_trace_shows_in_the_column_grid_profile():
    """Nearest-neighbour up-sampling by 2 makes every other horizontal first difference zero: the 8-column grid
    profile (per channel, after the three 125-bin co-occurrences and the 2 x 2 profile) is flat without it and
    alternates with it."""
    plain, upsampled = _noise(128, 2), _noise(64, 1).repeat(2, 0).repeat(2, 1)
    start = 3 * 125 + 4  # the red channel's column profile
    profile = lambda pixels: np.exp(residuals.features(pixels)[start:start + 8]) - residuals._FLOOR
    assert np.ptp(profile(plain)) < 0.1
    np.testing.assert_allclose(profile(upsampled)[0::2], 0.0, atol=1e-3)  # within a 2 x 2 block: no change
    assert (profile(upsampled)[1::2] > 1.5).all()



def test_the_colour_joint_histograms_read_how_the_channels_move_together():
    """The two colour blocks (second- and first-order vertical residuals of R, G and B at one pixel, followed by
    the grey diagonals' block and seven min/max blocks) hold mass only on their diagonal (r = g = b) when the three channels are
    the same noise, and off it when each channel has its own."""
    grey = np.repeat(_noise(64, 3)[..., :1], 3, axis=2)
    independent = _noise(64, 4)
    end = residuals.N_FEATURES - 8 * 125
    blocks = lambda pixels: (np.exp(residuals.features(pixels)[end - 250:end]) - residuals._FLOOR).reshape(2, 125)
    diagonal = np.zeros(125, dtype=bool)
    diagonal[[31 * i for i in range(5)]] = True  # (i * 5 + i) * 5 + i
    np.testing.assert_allclose(blocks(grey)[:, ~diagonal], 0.0, atol=1e-6)
    np.testing.assert_allclose(blocks(grey).sum(axis=1), 1.0, atol=1e-4)
    assert (blocks(independent)[:, ~diagonal].sum(axis=1) > 0.5).all()

def test_view_never_up_samples_and_never_pads():
    pixels = np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    square = residuals.view(Image.fromarray(pixels), side=256)
    np.testing.assert_array_equal(square, pixels[10:80])  # the centre square at its own pixels
    assert residuals.view(Image.fromarray(pixels), side=35).shape == (35, 35, 3)  # down-sampled


def test_fit_chooses_c_on_validation_and_the_saved_model_scores_the_same(tmp_path):
    rng = np.random.default_rng(0)
    n = 120
    labels = np.arange(n) % 2
    rows = rng.normal(0, 1, (n, residuals.N_FEATURES)).astype(np.float32)
    rows[:, :100] += labels[:, None] * 1.0  # a hundred informative features among N_FEATURES
    model, scores = residuals.fit(rows[:80], labels[:80], rows[80:], labels[80:], grid=(0.001, 1.0))
    assert set(scores) == {0.001, 1.0} and model.c == max(scores, key=scores.get)
    assert scores[model.c] > 0.8
    model.save(tmp_path / "r.npz")
    loaded = residuals.ResidualModel.load(tmp_path / "r.npz")
    np.testing.assert_allclose(loaded.probabilities(rows[80:]), model.probabilities(rows[80:]), rtol=1e-12)
    assert loaded.c == model.c and loaded.side == residuals.SIDE
    assert (loaded.platt_scale, loaded.platt_bias) == (model.platt_scale, model.platt_bias)


def test_fit_platt_scales_the_chosen_model_on_validation():
    """The regression's raw log-odds are over-confident on held-out rows (it fits 80 rows with thousands of
    features); Platt scaling on validation shrinks them, so the validation log loss falls."""
    rng = np.random.default_rng(1)
    n = 200
    labels = np.arange(n) % 2
    rows = rng.normal(0, 1, (n, residuals.N_FEATURES)).astype(np.float32)
    rows[:, :100] += labels[:, None] * 0.3
    model, _ = residuals.fit(rows[:80], labels[:80], rows[80:], labels[80:], grid=(1.0,))
    raw = replace(model, platt_scale=1.0, platt_bias=0.0)
    loss = lambda m: -np.mean(np.log(np.where(labels[80:] == 1, m.probabilities(rows[80:]),
                                              1 - m.probabilities(rows[80:]))))
    assert 0 < model.platt_scale < 1 and loss(model) < loss(raw)
    np.testing.assert_array_equal(np.argsort(model.logits(rows[80:])), np.argsort(raw.logits(rows[80:])))


def test_a_residual_file_of_another_version_or_shape_is_a_one_line_error(tmp_path):
    np.savez(tmp_path / "old.npz", mean=np.zeros(3), scale=np.ones(3), coef=np.zeros(3), intercept=0.0, side=256,
             c=0.03, n_features=3)
    with pytest.raises(ValueError, match="it has 3 features, this fakelib reads"):
        residuals.ResidualModel.load(tmp_path / "old.npz")
    np.savez(tmp_path / "short.npz", mean=np.zeros(3), scale=np.ones(3), coef=np.zeros(3), intercept=0.0, side=256,
             c=0.03, platt_scale=1.0, platt_bias=0.0, n_features=residuals.N_FEATURES)
    with pytest.raises(ValueError, match="arrays of the wrong shape"):
        residuals.ResidualModel.load(tmp_path / "short.npz")
    n = residuals.N_FEATURES  # a file without its Platt scaling (round 14 saved none)
    np.savez(tmp_path / "uncalibrated.npz", mean=np.zeros(n), scale=np.ones(n), coef=np.zeros(n), intercept=0.0,
             side=256, c=0.03, n_features=n)
    with pytest.raises(ValueError, match="uncalibrated.npz: not a residual-statistics model"):
        residuals.ResidualModel.load(tmp_path / "uncalibrated.npz")


def test_pooled_experts_add_their_excess_log_odds_and_never_subtract():
    combination = expertlib.Combination(weight=1.0, cutoff=0.0)
    p_robust = np.array([0.3, 0.3, 0.3, 0.3])
    trace = np.array([0.2, 0.8, 0.2, 0.8])
    residual = np.array([0.1, 0.1, 0.9, 0.9])
    logit = lambda p: np.log(p / (1 - p))
    expected = logit(p_robust) + np.maximum(0, logit(trace)) + np.maximum(0, logit(residual))
    np.testing.assert_allclose(combination.logits(p_robust, expertlib.pooled([trace, residual])), expected, rtol=1e-6)
    # with one expert, pooling is the identity on its evidence
    np.testing.assert_allclose(combination.logits(p_robust, expertlib.pooled([trace])),
                               combination.logits(p_robust, trace), rtol=1e-6)


def test_file_features_with_a_memo_read_each_file_once_and_give_the_same_rows(tmp_path, monkeypatch):
    paths = []
    for index in range(3):
        paths.append(tmp_path / f"face{index}.png")
        Image.fromarray(_noise(32, index)).save(paths[-1])
    plain = residuals.file_features(paths)
    calls = []
    original = residuals.features
    monkeypatch.setattr(residuals, "features", lambda square: calls.append(1) or original(square))
    memo = {}
    first = residuals.file_features(paths[:2], memo=memo)
    again = residuals.file_features([paths[2], paths[1], paths[2]], memo=memo)
    assert len(calls) == 3  # every file once, however often and in whatever order it is asked for
    np.testing.assert_array_equal(first, plain[:2])
    np.testing.assert_array_equal(again, plain[[2, 1, 2]])
