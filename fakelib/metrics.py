"""Binary metrics at 0.5 and at the validation-chosen threshold, ROC/PR curves and the confusion matrix.

Label 1 is "fake" (generated) throughout, so precision and recall are about catching fakes. Metrics that
need both classes (ROC-AUC, average precision, precision, recall, F1) are `None` when a set holds only one.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


# A saved threshold outside this range says the probabilities are not calibrated; it is clipped into it.
THRESHOLD_RANGE = (0.05, 0.95)


# A group of validation reals counts on its own in `choose_threshold` from this many images: the false-alarm rate
# of a smaller group is too noisy to steer a threshold (its reals still count in the pooled rate).
MIN_GROUP_REALS = 30


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray | None = None) -> float:
    """The validation threshold maximizing Youden's J against the worst group of reals, clipped to
    `THRESHOLD_RANGE`; 0.5 if one class is missing.

    J(t) = TPR(t) - max(FPR(t) over all reals, FPR(t) of each group of reals with >= `MIN_GROUP_REALS`), with
    `groups` (n,) the source of each image (`data.PreparedData.split_groups`); without groups, or with one, it
    is Youden's J. Youden's J balances both error kinds, so it stays sensible when classes are imbalanced or
    when a new generator shifts every score (the failure mode of a fixed 0.5). Taking the worst group keeps it
    from trading one source's reals for another's: pooled, easy reals from extra folders lowered the shipped
    detector's threshold until it kept 67% of its own source's test reals (docs/results.md, round 16).
    """
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if labels.min(initial=1) == labels.max(initial=0) or len(np.unique(labels)) < 2:
        return 0.5
    candidates = np.unique(probabilities)[::-1]  # descending: "fake" at p >= t
    fakes = probabilities[labels == 1]
    reals = probabilities[labels == 0]

    def called_fake(scores: np.ndarray) -> np.ndarray:
        """(n_candidates,) share of `scores` at or above each candidate."""
        return (len(scores) - np.searchsorted(np.sort(scores), candidates, side="left")) / len(scores)

    false_alarms = called_fake(reals)
    if groups is not None:
        real_groups = np.asarray(groups)[labels == 0]
        for group in np.unique(real_groups):
            members = reals[real_groups == group]
            if len(members) >= MIN_GROUP_REALS:
                false_alarms = np.maximum(false_alarms, called_fake(members))
    best = int(np.argmax(called_fake(fakes) - false_alarms))
    low, high = THRESHOLD_RANGE
    return float(min(max(float(candidates[best]), low), high))


def calibration_errors(labels: np.ndarray, probabilities: np.ndarray, bins: int = 15) -> dict:
    """Expected calibration error (equal-width bins, weighted by count) and Brier score of p_fake.

    ECE is the mean gap between the predicted probability and the observed share of fakes, bin by bin:
    0.05 means a face given p_fake = 0.8 is fake between 75 and 85% of the time, on average over bins.
    """
    labels = np.asarray(labels, dtype=np.float64).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    if not labels.size:
        return {"ece": None, "brier": None}
    index = np.minimum((probabilities * bins).astype(int), bins - 1)
    gaps = [abs(probabilities[index == b].mean() - labels[index == b].mean()) * (index == b).sum()
            for b in range(bins) if (index == b).any()]
    return {"ece": _finite(sum(gaps) / labels.size), "brier": _finite(np.mean((probabilities - labels) ** 2))}


def ece_floor(probabilities: np.ndarray, bins: int = 15, draws: int = 200, seed: int = 0) -> dict:
    """The expected calibration error a perfectly calibrated model would still show on this many faces.

    Labels are drawn from the probabilities themselves (so they are calibrated by construction) `draws` times;
    the mean and 95th percentile of their ECE is the sampling noise of the estimate. On 589 test faces it is
    about 0.045 (95%: 0.06), so a measured ECE near it cannot be told from perfect calibration.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    if not probabilities.size:
        return {"mean": None, "p95": None}
    rng = np.random.default_rng(seed)
    values = [calibration_errors(rng.random(probabilities.size) < probabilities, probabilities, bins)["ece"]
              for _ in range(draws)]
    return {"mean": _finite(np.mean(values)), "p95": _finite(np.percentile(values, 95))}


def fit_platt(labels: np.ndarray, logits: np.ndarray, balanced: bool = True) -> tuple[float, float]:
    """(scale, bias) minimizing the log loss of sigmoid(scale * logit + bias) on held-out data (Platt scaling).

    With `balanced`, each class carries half of the loss, so the probabilities assume even odds of real and fake
    instead of the held-out set's own class shares.
    Falls back to the identity (1, 0) when one class is missing or the fit would invert the ranking.
    """
    from scipy.optimize import minimize

    labels = np.asarray(labels, dtype=np.float64).ravel()
    logits = np.asarray(logits, dtype=np.float64).ravel()
    if len(np.unique(labels)) < 2:
        return 1.0, 0.0

    weights = np.where(labels == 1, 0.5 / labels.sum(), 0.5 / (1 - labels).sum()) if balanced else \
        np.full(labels.size, 1.0 / labels.size)

    def loss(params: np.ndarray) -> float:
        z = params[0] * logits + params[1]
        return float(np.sum(weights * (np.logaddexp(0.0, z) - labels * z)))  # binary cross-entropy on the logit

    result = minimize(loss, np.array([1.0, 0.0]), method="Nelder-Mead", options={"xatol": 1e-6, "fatol": 1e-9})
    scale, bias = (float(value) for value in result.x)
    return (scale, bias) if scale > 0 and math.isfinite(scale) and math.isfinite(bias) else (1.0, 0.0)


def share_interval(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float] | None:
    """Wilson score interval of the share `hits / n` (scipy's `binomtest`), or None for an empty group.

    faces-shift's groups hold 25 to 400 faces: at 25, a share measured at 68% is anywhere from 48% to 83%.
    """
    if n <= 0:
        return None
    from scipy.stats import binomtest

    interval = binomtest(int(hits), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def group_rates(labels: np.ndarray, probabilities: np.ndarray, groups: np.ndarray, threshold=0.5,
                prefix: str = "") -> dict[str, dict]:
    """Per group of images (a source, `data.groups_of`; a faces-shift collection): what a user meets at the
    threshold. A real group's figure is the share kept as real (`kept_real`), a fake group's the share caught
    (`caught`), each with its 95% Wilson interval (`<share>_ci95`), and the group's mean p_fake; keys after
    `prefix`. A group's class is its first image's; images without a probability (NaN) are not counted.

    Args:
        labels, probabilities, groups: (n,) each; 0 = real, 1 = fake.
        threshold: one number, or one per image (`binary_metrics`).
    """
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    groups = np.asarray(groups).ravel()
    called_fake = probabilities >= np.broadcast_to(np.asarray(threshold, dtype=np.float64), probabilities.shape)
    usable = ~np.isnan(probabilities)
    rows = {}
    for group in sorted(set(groups.tolist())):
        members = usable & (groups == group)
        n = int(members.sum())
        is_fake = bool(n) and labels[members][0] == 1
        hits = int(called_fake[members].sum() if is_fake else n - called_fake[members].sum())
        share = f"{prefix}{'caught' if is_fake else 'kept_real'}"
        interval = share_interval(hits, n)
        rows[str(group)] = {"label": "fake" if is_fake else "real", "n": n, share: hits / n if n else None,
                            f"{share}_ci95": list(interval) if interval else None,
                            f"{prefix}mean_p_fake": float(probabilities[members].mean()) if n else None}
    return rows


def source_rows(metrics: dict) -> list[dict]:
    """One row per source group of a run's (or combination's) `val_groups` and `test_groups`: group, class, and
    per split its n, share (kept as real, or caught) and 95% interval; empty for runs from before they were
    recorded. What the model card and 02_train show."""
    splits = {split: metrics.get(f"{split}_groups") or {} for split in ("val", "test")}
    rows = []
    for group in sorted({*splits["val"], *splits["test"]}):
        found = {split: table.get(group) for split, table in splits.items()}
        label = next(row["label"] for row in found.values() if row)
        share = "caught" if label == "fake" else "kept_real"
        row = {"group": group, "class": label}
        for split, name in (("val", "validation"), ("test", "test")):
            figures = found[split] or {}
            row.update({f"{name}_n": figures.get("n", 0), name: figures.get(share),
                        f"{name}_ci95": figures.get(f"{share}_ci95")})
        rows.append(row)
    return rows


def _threshold_value(threshold) -> float | list[float]:
    """A threshold as reported: the number, or the sorted distinct values of per-face thresholds (one if all agree)."""
    if np.ndim(threshold) == 0:
        return float(threshold)
    values = np.unique(np.asarray(threshold, dtype=np.float64))
    return float(values[0]) if values.size == 1 else [float(value) for value in values]


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC, average precision, per-class rates and confusion matrix.

    Args:
        labels: (n,) 0 = real, 1 = fake.
        probabilities: (n,) predicted probability of fake.
        threshold: a face is called fake when its probability is >= threshold; one number, or one per face (a
            detector with a small-image regime, `expert.Combination`), then reported as the sorted distinct values.

    Returns:
        A JSON-ready dict; metrics needing both classes are None when only one is present.
    """
    labels = np.asarray(labels).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64).ravel()
    predicted = (probabilities >= threshold).astype(int)
    n_real, n_fake = int((labels == 0).sum()), int((labels == 1).sum())
    matrix = skm.confusion_matrix(labels, predicted, labels=[0, 1])
    both = n_real > 0 and n_fake > 0
    result = {
        "n": int(labels.size), "n_real": n_real, "n_fake": n_fake, "threshold": _threshold_value(threshold),
        "accuracy": _finite(skm.accuracy_score(labels, predicted)) if labels.size else None,
        "precision": None, "recall": None, "f1": None, "roc_auc": None, "average_precision": None,
        "real_rate": _finite(matrix[0, 0] / n_real) if n_real else None,   # reals called real (specificity)
        "fake_rate": _finite(matrix[1, 1] / n_fake) if n_fake else None,   # fakes called fake (recall)
        "confusion_matrix": matrix.astype(int).tolist(),
    }
    if both:
        result.update(
            precision=_finite(skm.precision_score(labels, predicted, zero_division=0)),
            recall=_finite(skm.recall_score(labels, predicted, zero_division=0)),
            f1=_finite(skm.f1_score(labels, predicted, zero_division=0)),
            roc_auc=_finite(skm.roc_auc_score(labels, probabilities)),
            average_precision=_finite(skm.average_precision_score(labels, probabilities)),
        )
    return result


# Metrics that depend on the decision threshold (ROC-AUC and average precision do not).
THRESHOLD_KEYS = ("accuracy", "precision", "recall", "f1", "real_rate", "fake_rate")


def prefixed(metrics: dict, prefix: str, suffix: str = "", keys: tuple[str, ...] | None = None) -> dict:
    """`{prefix_key_suffix: value}` for flat tables such as metrics.json and results.csv."""
    keys = keys or ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "real_rate",
                    "fake_rate")
    return {f"{prefix}_{key}{suffix}": metrics[key] for key in keys}


def curves(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray] | None:
    """ROC (fpr, tpr) and precision-recall points, or None when a class is missing."""
    labels = np.asarray(labels).astype(int)
    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr, _ = skm.roc_curve(labels, probabilities)
    precision, recall, _ = skm.precision_recall_curve(labels, probabilities)
    return {"fpr": fpr, "tpr": tpr, "precision": precision, "recall": recall}
