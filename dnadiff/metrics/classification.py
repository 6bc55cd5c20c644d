"""Classification metrics of one evaluation: top-1 accuracy, MCC, macro F1 and AUROC (sklearn)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score

METRICS: tuple[str, ...] = ("accuracy", "mcc", "f1", "auroc")


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Metrics of predicted class probabilities ``proba`` (N, C) against labels ``y_true`` (N,).

    F1 is macro-averaged; AUROC is the positive-class ROC AUC for two classes and the
    one-vs-rest macro average otherwise (NaN when a class is missing from ``y_true``).
    """
    y_true = np.asarray(y_true)
    pred = proba.argmax(axis=1)
    n_classes = proba.shape[1]
    if len(np.unique(y_true)) < n_classes:
        auroc = float("nan")
    elif n_classes == 2:
        auroc = float(roc_auc_score(y_true, proba[:, 1]))
    else:
        auroc = float(roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=np.arange(n_classes)))
    return {
        "accuracy": float(accuracy_score(y_true, pred)),
        "mcc": float(matthews_corrcoef(y_true, pred)),
        "f1": float(f1_score(y_true, pred, average="macro", labels=np.arange(n_classes), zero_division=0)),
        "auroc": auroc,
    }


def summarize(rows: list[dict[str, float]]) -> dict[str, float]:
    """``<metric>_mean`` and ``<metric>_std`` (sample std, ddof=1; 0 for a single row) over rows."""
    out: dict[str, float] = {}
    for m in METRICS:
        vals = np.array([r[m] for r in rows], dtype=float)
        out[f"{m}_mean"] = float(np.nanmean(vals)) if vals.size else float("nan")
        out[f"{m}_std"] = float(np.nanstd(vals, ddof=1)) if vals.size > 1 else 0.0
    return out
