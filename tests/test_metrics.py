"""Pixel metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score, precision_score, recall_score, roc_auc_score

from webiml.evaluate import mean_scores, pixel_auc, pixel_scores


def _sklearn(pred: np.ndarray, truth: np.ndarray) -> dict:
    y, p = truth.ravel().astype(int), pred.ravel().astype(int)
    return {
        "f1": f1_score(y, p, zero_division=0),
        "iou": jaccard_score(y, p, zero_division=0),
        "precision": precision_score(y, p, zero_division=0),
        "recall": recall_score(y, p, zero_division=0),
    }


@pytest.mark.parametrize("seed", range(6))
def test_matches_sklearn_on_random_masks(seed):
    rng = np.random.default_rng(seed)
    prob = rng.random((23, 31))
    truth = rng.random((23, 31)) < rng.uniform(0.05, 0.6)
    got = pixel_scores(prob, truth)
    want = _sklearn(prob > 0.5, truth)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    assert pixel_scores(prob > 0.5, truth) == got  # bool prediction, same scores
    got7 = pixel_scores(prob, truth, threshold=0.7)
    assert got7["f1"] == pytest.approx(_sklearn(prob > 0.7, truth)["f1"])


@pytest.mark.parametrize(
    "pred, truth, expected",
    [
        (np.zeros((4, 4)), np.zeros((4, 4), bool), 0.0),  # authentic, perfect empty prediction: 0 by convention
        (np.ones((4, 4)), np.zeros((4, 4), bool), 0.0),
        (np.zeros((4, 4)), np.ones((4, 4), bool), 0.0),
        (np.ones((4, 4)), np.ones((4, 4), bool), 1.0),
    ],
)
def test_degenerate_cases(pred, truth, expected):
    got = pixel_scores(pred, truth)
    assert got["f1"] == got["iou"] == expected
    want = _sklearn(pred > 0.5, truth)
    for k in want:
        assert got[k] == pytest.approx(want[k]), k


def test_threshold_is_strict_and_truth_may_be_uint8():
    truth = np.array([[255, 0]], np.uint8)
    assert pixel_scores(np.array([[0.5, 0.0]]), truth)["recall"] == 0.0
    assert pixel_scores(np.array([[0.51, 0.0]]), truth)["f1"] == 1.0


def test_errors():
    with pytest.raises(ValueError):
        pixel_scores(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError):
        pixel_scores(np.full((2, 2), 255.0), np.zeros((2, 2), bool))
    with pytest.raises(ValueError):
        pixel_auc(np.zeros((4, 4)), np.zeros((5, 4), bool))


def test_mean_scores():
    rows = [{"f1": 1.0, "iou": 1.0, "precision": 1.0, "recall": 1.0},
            {"f1": 0.0, "iou": 0.5, "precision": 0.25, "recall": 0.0}]
    assert mean_scores(rows) == {"f1": 0.5, "iou": 0.75, "precision": 0.625, "recall": 0.5, "n": 2}
    empty = mean_scores([])
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("f1", "iou", "precision", "recall"))


def test_pixel_auc():
    rng = np.random.default_rng(1)
    truth = rng.random((16, 16)) < 0.3
    prob = np.clip(truth * 0.3 + rng.random((16, 16)) * 0.7, 0, 1)
    assert pixel_auc(prob, truth) == pytest.approx(roc_auc_score(truth.ravel(), prob.ravel()))
    assert pixel_auc(truth.astype(float), truth) == 1.0
    assert math.isnan(pixel_auc(prob, np.zeros((16, 16), bool)))
    assert math.isnan(pixel_auc(prob, np.ones((16, 16), bool)))
