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


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The threshold maximizing Youden's J (TPR - FPR) on validation data; 0.5 if one class is missing.

    Youden's J balances both error kinds, so it stays sensible when classes are imbalanced or when a new
    generator shifts every score (the failure mode of a fixed 0.5).
    """
    labels = np.asarray(labels).astype(int)
    if labels.min(initial=1) == labels.max(initial=0) or len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = skm.roc_curve(labels, probabilities)
    best = int(np.argmax(tpr - fpr))
    threshold = float(thresholds[best])
    return float(min(max(threshold, 1e-6), 1.0)) if math.isfinite(threshold) else 0.5


def binary_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1, ROC-AUC, average precision, per-class rates and confusion matrix.

    Args:
        labels: (n,) 0 = real, 1 = fake.
        probabilities: (n,) predicted probability of fake.
        threshold: a face is called fake when its probability is >= threshold.

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
        "n": int(labels.size), "n_real": n_real, "n_fake": n_fake, "threshold": float(threshold),
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
