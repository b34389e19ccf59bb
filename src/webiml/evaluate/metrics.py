"""Per-image pixel metrics for manipulation localization.

Conventions (DESIGN §2): the prediction is binarised at ``threshold`` (default 0.5, strict ``>``),
F1 and IoU are computed per image and averaged over *tampered images only*. A ratio whose
denominator is zero is 0 (scikit-learn's ``zero_division=0``), so an authentic image (empty truth)
scores F1 = IoU = 0 by construction, even for a perfect, empty prediction: leave authentic images
out of pixel averages, and use image-level metrics for them.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

KEYS = ("f1", "iou", "precision", "recall")


def _binary(pred: np.ndarray, threshold: float) -> np.ndarray:
    p = np.asarray(pred)
    if p.dtype == np.bool_:
        return p
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError("pred must be bool or probabilities in [0, 1]")
    return p > threshold


def _check_shapes(pred: np.ndarray, truth: np.ndarray) -> None:
    if np.shape(pred) != np.shape(truth):
        raise ValueError(f"prediction shape {np.shape(pred)} != truth shape {np.shape(truth)}")


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def pixel_scores(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """F1, IoU, precision and recall of one image's prediction (bool, or probabilities > threshold)
    against its bool truth mask of the same shape. Zero denominators give 0 (see module doc)."""
    _check_shapes(pred, truth)
    p = _binary(pred, threshold)
    t = np.asarray(truth).astype(bool, copy=False)
    tp = int(np.count_nonzero(p & t))
    fp = int(np.count_nonzero(p)) - tp
    fn = int(np.count_nonzero(t)) - tp
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "iou": _ratio(tp, tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


def mean_scores(scores: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Average each metric over a list of :func:`pixel_scores` dicts (NaN when the list is empty);
    ``n`` is the number of images averaged. Pass tampered images only."""
    scores = list(scores)
    out: dict[str, float] = {k: (float(np.mean([s[k] for s in scores])) if scores else math.nan) for k in KEYS}
    out["n"] = len(scores)
    return out


def pixel_auc(prob: np.ndarray, truth: np.ndarray) -> float:
    """Pixel-level ROC AUC of a probability map against a bool truth; NaN when truth is constant."""
    from sklearn.metrics import roc_auc_score

    _check_shapes(prob, truth)
    t = np.asarray(truth).astype(bool, copy=False).ravel()
    if t.all() or not t.any():
        return math.nan
    return float(roc_auc_score(t, np.asarray(prob, dtype=np.float64).ravel()))
