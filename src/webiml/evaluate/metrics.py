"""Metrics for manipulation localization: per-image pixel scores, image-level detection scores,
the inflated variants some papers report, and :class:`BenchmarkAccumulator` that combines them.

Conventions (docs/methods.md): the prediction is binarised at ``threshold`` (default 0.5, strict ``>``),
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


def threshold_curve(prob: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
    """True and false positives of ``prob >= t`` at every distinct value ``t`` of ``prob``, from the
    highest down, with the numbers of positive and negative pixels: ``(tp, fp, n_pos, n_neg)``.

    One sort serves :func:`pixel_auc` and :func:`best_threshold_f1` (sorting the pixels dominates a
    benchmark's cost; scikit-learn's ROC sorts twice in float64). Exact, ties included.
    """
    _check_shapes(prob, truth)
    p = np.asarray(prob).ravel()
    if p.dtype.kind != "f":
        p = p.astype(np.float32)
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise ValueError("prob must be probabilities in [0, 1]")
    t = np.asarray(truth).astype(bool, copy=False).ravel()
    order = np.argsort(p)[::-1]  # order within a run of equal values does not matter: only run ends are kept
    p = p[order]
    tp = np.cumsum(t[order])
    last = np.flatnonzero(np.r_[p[1:] != p[:-1], True])  # the last pixel of each run = one threshold
    tp = tp[last]
    n_pos = int(tp[-1]) if tp.size else 0
    return tp, last + 1 - tp, n_pos, int(p.size) - n_pos


def pixel_auc(prob: np.ndarray, truth: np.ndarray, curve: tuple | None = None) -> float:
    """Pixel-level ROC AUC of a probability map against a bool truth; NaN when truth is constant.
    ``curve``: :func:`threshold_curve` of the same pair, when already computed."""
    tp, fp, n_pos, n_neg = threshold_curve(prob, truth) if curve is None else curve
    if n_pos == 0 or n_neg == 0:
        return math.nan
    tpr, fpr = np.r_[0, tp] / n_pos, np.r_[0, fp] / n_neg
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)  # the trapezoidal rule


# --------------------------------------------------------------------------- image level


def image_scores(scores: Iterable[float], labels: Iterable[bool], threshold: float = 0.5) -> dict[str, float]:
    """Image-level detection metrics over all images: ROC AUC of ``scores`` (NaN when ``labels``
    hold one class only), accuracy and F1 of ``score > threshold`` (positive = tampered), counts."""
    from sklearn.metrics import roc_auc_score

    s = np.asarray(list(scores), dtype=np.float64).ravel()
    y = np.asarray(list(labels)).astype(bool).ravel()
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("image scores must be finite")
    n_tampered = int(y.sum())
    pred = s > threshold
    tp = int(np.count_nonzero(pred & y))
    return {
        "image_auc": float(roc_auc_score(y, s)) if 0 < n_tampered < y.size else math.nan,
        "image_acc": float(np.mean(pred == y)) if y.size else math.nan,
        "image_f1": _ratio(2 * tp, int(pred.sum()) + n_tampered),
        "n_images": int(y.size),
        "n_tampered": n_tampered,
        "n_authentic": int(y.size) - n_tampered,
    }


# -------------------------------------------------------------- inflated pixel variants


def inverted_f1(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """max(F1 of the binarised map, F1 of its complement), as in CAT-Net/TruFor evaluation code.

    **Inflates scores**: it forgives a model that marks the authentic part instead of the edit.
    Report it separately from :func:`pixel_scores`' F1 and label it.
    """
    p = _binary(prob, threshold)
    return max(pixel_scores(p, truth)["f1"], pixel_scores(~p, truth)["f1"])


def best_threshold_f1(prob: np.ndarray, truth: np.ndarray, curve: tuple | None = None) -> float:
    """The image's best F1 over every threshold (prediction = ``prob >= t``), computed exactly.
    ``curve``: :func:`threshold_curve` of the same pair, when already computed.

    **Inflates scores**: the threshold is tuned on the truth of each image (an oracle). Report it
    separately and label it. 0 when the truth is empty.
    """
    tp, fp, n_pos, _ = threshold_curve(prob, truth) if curve is None else curve
    if n_pos == 0:
        return 0.0
    return float(np.max(2.0 * tp / (tp + fp + n_pos)))


# ----------------------------------------------------------------------- the benchmark


INFLATED = ("pixel_f1_inverted", "pixel_f1_best_threshold")


class BenchmarkAccumulator:
    """Collects per-image scalars of a benchmark run and summarises them (the conventions of docs/methods.md).

    Pixel metrics (threshold ``threshold``, per image) are averaged over tampered images only;
    image-level AUC/accuracy/F1 use every image. A truth that is ``None`` or all zero is an
    authentic image (all-zero truths are also counted in ``n_empty_truth``). Only scalars are kept,
    so memory does not grow with image size.
    """

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self._rows: list[dict] = []
        self.n_empty_truth = 0

    def add(
        self, prob: np.ndarray, truth: np.ndarray | None, score: float | None = None, name: str | None = None
    ) -> dict:
        """Score one image: ``prob`` HxW in [0, 1], ``truth`` HxW bool (``None`` = authentic),
        ``score`` the image-level score (default: the maximum of ``prob``). Returns its row."""
        prob = np.asarray(prob)
        if prob.ndim != 2:
            raise ValueError(f"prob must be a 2-D map, got shape {prob.shape}")
        if prob.size and (np.nanmin(prob) < 0 or np.nanmax(prob) > 1):
            raise ValueError("prob must be probabilities in [0, 1]")
        if truth is not None:
            _check_shapes(prob, truth)
            truth = np.asarray(truth).astype(bool, copy=False)
            if not truth.any():
                self.n_empty_truth += 1
                truth = None
        score = float(prob.max()) if score is None else float(score)
        row: dict = {"name": name if name is not None else f"#{len(self._rows)}", "tampered": truth is not None,
                     "score": score}
        if truth is None:
            row.update(f1=None, iou=None)
        else:
            s = pixel_scores(prob, truth, self.threshold)
            row.update(s)
            curve = threshold_curve(prob, truth)
            row["auc"] = pixel_auc(prob, truth, curve)
            row["f1_inverted"] = inverted_f1(prob, truth, self.threshold)
            row["f1_best_threshold"] = best_threshold_f1(prob, truth, curve)
        self._rows.append(row)
        return row

    def rows(self) -> list[dict]:
        """Per-image rows (name, tampered, score, and f1/iou/... for tampered images; ``None`` else)."""
        return [dict(r) for r in self._rows]

    def summary(self) -> dict:
        """Pixel metrics averaged over tampered images, image-level metrics over all images.

        ``pixel_f1_inverted`` and ``pixel_f1_best_threshold`` inflate scores; they are listed
        under ``inflated`` and must be reported apart from ``pixel_f1``.
        """
        tampered = [r for r in self._rows if r["tampered"]]

        def mean(key: str) -> float:
            vals = [r[key] for r in tampered if not math.isnan(r[key])]
            return float(np.mean(vals)) if vals else math.nan

        out: dict = {f"pixel_{k}": mean(k) for k in (*KEYS, "auc")}
        out.update(image_scores([r["score"] for r in self._rows], [r["tampered"] for r in self._rows]))
        out["n_empty_truth"] = self.n_empty_truth
        out["pixel_f1_inverted"] = mean("f1_inverted")
        out["pixel_f1_best_threshold"] = mean("f1_best_threshold")
        out["threshold"] = self.threshold
        out["inflated"] = list(INFLATED)
        return out
