"""Advice that contrasts fakes with reals: regions ranked by how much more evidence they carry on caught fakes than
on correctly classified real faces, with bootstrap intervals, and tips written from the measured numbers.

A region's *lift* on one image is its share of the heatmap's mass divided by its share of the image's area
(1 = no more evidence than its size; `fakelib.regions`). The ranking compares mean lifts on two groups of images:
caught fakes (label fake, p_fake >= threshold) and correctly classified reals (label real, p_fake < threshold).
The interval of the difference comes from resampling the images of each group with replacement (percentile
bootstrap), and decides each region's verdict:

- "fakes": the interval lies above 0. Advice is given only for these regions.
- "reals": the interval lies below 0 (the model looks there more on real faces).
- "every face": the interval holds 0 and the region's lift is above 1 in both groups: the model looks there on
  every face, so evidence there does not tell fakes apart.
- "no difference": the interval holds 0 and the region draws no more than its area in at least one group.
- "too few": fewer than `MIN_IMAGES` images in a group.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from fakelib import regions

VERDICTS = ("fakes", "reals", "every face", "no difference", "too few")
MIN_IMAGES = 3  # a bootstrap of one or two images is not an interval
BOOTSTRAP_SAMPLES = 1000
CONFIDENCE = 0.95


def image_lifts(heatmaps: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
    """(n, n_regions) lift of every region on every image; NaN where the map is all zero or the region is absent.

    Args:
        heatmaps: (n, size, size) non-negative maps.
        labels: (n, size, size) per-image region maps (`fakelib.landmarks`), None = the aligned template.
    """
    shares = regions.region_shares(heatmaps, labels)
    if labels is None:
        areas = np.broadcast_to(regions.area_shares(np.shape(heatmaps)[1]), shares.shape)
    else:
        areas = regions.image_area_shares(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(areas > 0, shares / areas, np.nan)


def top_regions(lifts: np.ndarray) -> np.ndarray:
    """(n,) index into `regions.REGIONS` of each image's highest-lift region (where its strongest evidence sits,
    for its size); -1 for an image whose lifts are all NaN (an all-zero map)."""
    lifts = np.asarray(lifts, dtype=np.float64)
    valid = ~np.isnan(lifts).all(axis=1)
    return np.where(valid, np.where(np.isnan(lifts), -np.inf, lifts).argmax(axis=1), -1).astype(np.int64)


def groups(classes: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (n,) selections: caught fakes (label 1, p >= threshold) and correct reals (label 0, p < threshold)."""
    classes, probabilities = np.asarray(classes), np.asarray(probabilities)
    return (classes == 1) & (probabilities >= threshold), (classes == 0) & (probabilities < threshold)


def _bootstrap_means(lifts: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """(samples, n_regions) means of `lifts` (n, n_regions) over images drawn with replacement (NaN ignored)."""
    draws = rng.integers(0, len(lifts), size=(samples, len(lifts)))
    resampled = lifts[draws]  # (samples, n, n_regions)
    counts = np.sum(~np.isnan(resampled), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nansum(resampled, axis=1) / np.where(counts > 0, counts, np.nan)


def _verdict(low: float, high: float, fake: float, real: float, enough: bool) -> str:
    if not enough or np.isnan(low) or np.isnan(high):
        return "too few"
    if low > 0:
        return "fakes"
    if high < 0:
        return "reals"
    return "every face" if min(fake, real) > 1.0 else "no difference"


def contrast_ranking(fake_lifts: np.ndarray, real_lifts: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                     confidence: float = CONFIDENCE, seed: int = 0) -> pd.DataFrame:
    """Regions ranked by the difference of mean lifts, caught fakes minus correct reals, with bootstrap intervals.

    Args:
        fake_lifts: (n_fakes, n_regions) `image_lifts` of caught fakes.
        real_lifts: (n_reals, n_regions) `image_lifts` of correctly classified reals.
        samples: bootstrap resamples.
        confidence: interval coverage, e.g. 0.95.
        seed: the resampling.

    Returns:
        One row per region, largest difference first: rank, region, label, lift_fake, lift_real, difference,
        ci_low, ci_high, ratio (lift_fake / lift_real), n_fakes, n_reals, verdict (one of `VERDICTS`).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence}")
    fake_lifts, real_lifts = (np.asarray(lifts, dtype=np.float64).reshape(-1, len(regions.REGIONS))
                              for lifts in (fake_lifts, real_lifts))
    enough = len(fake_lifts) >= MIN_IMAGES and len(real_lifts) >= MIN_IMAGES
    with warnings.catch_warnings():  # a region absent from every image of a group has a NaN mean
        warnings.simplefilter("ignore", RuntimeWarning)
        fake_mean, real_mean = np.nanmean(fake_lifts, axis=0), np.nanmean(real_lifts, axis=0)
        low = high = np.full(len(regions.REGIONS), np.nan)
        if enough:
            rng = np.random.default_rng(seed)
            differences = _bootstrap_means(fake_lifts, samples, rng) - _bootstrap_means(real_lifts, samples, rng)
            tail = 100 * (1 - confidence) / 2
            low, high = np.nanpercentile(differences, tail, axis=0), np.nanpercentile(differences, 100 - tail, axis=0)
    table = pd.DataFrame({
        "region": list(regions.REGIONS), "label": [regions.REGION_LABELS[name] for name in regions.REGIONS],
        "lift_fake": fake_mean, "lift_real": real_mean, "difference": fake_mean - real_mean,
        "ci_low": low, "ci_high": high, "ratio": fake_mean / real_mean,
        "n_fakes": len(fake_lifts), "n_reals": len(real_lifts)})
    table["verdict"] = [_verdict(*row, enough) for row in zip(low, high, fake_mean, real_mean)]
    table = table.sort_values("difference", ascending=False, kind="stable", na_position="last")
    table.insert(0, "rank", np.arange(1, len(table) + 1))
    return table.reset_index(drop=True)


def peak_shares(fake_peaks: np.ndarray, real_peaks: np.ndarray) -> pd.DataFrame:
    """Per region, the share of caught fakes and of correct reals whose top region (`top_regions`) it is.

    Returns:
        Columns region, label, peak_fake, peak_real, n_peak_fake, n_peak_real (counts), in `REGIONS` order.
    """
    rows = []
    for index, name in enumerate(regions.REGIONS):
        in_fakes, in_reals = int(np.sum(fake_peaks == index)), int(np.sum(real_peaks == index))
        rows.append({"region": name, "label": regions.REGION_LABELS[name],
                     "peak_fake": in_fakes / len(fake_peaks) if len(fake_peaks) else np.nan,
                     "peak_real": in_reals / len(real_peaks) if len(real_peaks) else np.nan,
                     "n_peak_fake": in_fakes, "n_peak_real": in_reals})
    return pd.DataFrame(rows)


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def advice(ranking: pd.DataFrame) -> list[str]:
    """Sentences of advice from a `contrast_ranking` table: where fakes differ, and where the model looks anyway."""
    lines = []
    for _, row in ranking[ranking["verdict"] == "fakes"].iterrows():
        lines.append(f"Look at the {row['label']}: on caught fakes it carries {row['ratio']:.2f}x the evidence it "
                     f"carries on real faces (lift {row['lift_fake']:.2f} against {row['lift_real']:.2f}; "
                     f"{_percent(CONFIDENCE)} interval of the difference {row['ci_low']:.2f} to {row['ci_high']:.2f}).")
    for _, row in ranking[ranking["verdict"] == "every face"].iterrows():
        lines.append(f"The model looks at the {row['label']} on every face (lift {row['lift_fake']:.2f} on fakes, "
                     f"{row['lift_real']:.2f} on reals): evidence there does not tell fakes apart.")
    if not (ranking["verdict"] == "fakes").any():
        counts = ranking.iloc[0] if len(ranking) else None
        seen = f" ({counts['n_fakes']} caught fakes, {counts['n_reals']} correct reals)" if counts is not None else ""
        lines.insert(0, f"No region carries reliably more evidence on fakes than on real faces{seen}: no advice.")
    return lines


def tips(ranking: pd.DataFrame, peaks: pd.DataFrame, top: int = 3) -> list[str]:
    """Tips for a person, each carrying its measured numbers, for the top `top` regions with verdict "fakes" that are
    the strongest region of at least one caught fake."""
    chosen = ranking[ranking["verdict"] == "fakes"].head(top)
    lines = []
    for _, row in chosen.iterrows():
        peak = peaks.set_index("region").loc[row["region"]]
        if not peak["n_peak_fake"]:  # a region that is never any fake's strongest has no tip of this form
            continue
        lines.append(f"In {_percent(peak['peak_fake'])} of caught fakes ({peak['n_peak_fake']} of "
                     f"{row['n_fakes']}) the strongest evidence sat in the {row['label']}, against "
                     f"{_percent(peak['peak_real'])} of real faces ({peak['n_peak_real']} of {row['n_reals']}).")
    return lines
