"""Pixel metrics against scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    jaccard_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from webiml.evaluate import (
    BenchmarkAccumulator,
    best_threshold_f1,
    image_scores,
    inverted_f1,
    mean_scores,
    pixel_auc,
    threshold_curve,
    pixel_scores,
)


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


@pytest.mark.parametrize("seed", range(6))
def test_pixel_auc_matches_sklearn_with_ties_and_float32(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((31, 29)) < rng.uniform(0.02, 0.6)
    prob = np.clip(truth * 0.2 + rng.random((31, 29)) * 0.8, 0, 1).astype(np.float32 if seed % 2 else np.float64)
    if seed % 3 == 0:
        prob = np.round(prob, 1)  # many ties, across both classes
    curve = threshold_curve(prob, truth)
    assert pixel_auc(prob, truth) == pytest.approx(roc_auc_score(truth.ravel(), prob.ravel()), abs=1e-12)
    assert pixel_auc(prob, truth, curve) == pixel_auc(prob, truth)
    assert best_threshold_f1(prob, truth, curve) == best_threshold_f1(prob, truth)
    tp, fp, n_pos, n_neg = curve
    assert (n_pos, n_neg) == (int(truth.sum()), truth.size - int(truth.sum()))
    assert tp[-1] + fp[-1] == truth.size and np.all(np.diff(tp) >= 0) and np.all(np.diff(fp) >= 0)


# ------------------------------------------------------------------------ image level


@pytest.mark.parametrize("seed", range(4))
def test_image_scores_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(40) < 0.4
    scores = np.clip(labels * 0.3 + rng.random(40) * 0.7, 0, 1)
    got = image_scores(scores, labels)
    assert got["image_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert got["image_acc"] == pytest.approx(accuracy_score(labels, scores > 0.5))
    assert got["image_f1"] == pytest.approx(f1_score(labels, scores > 0.5, zero_division=0))
    assert (got["n_images"], got["n_tampered"], got["n_authentic"]) == (40, labels.sum(), 40 - labels.sum())
    assert image_scores(scores, labels, threshold=0.8)["image_acc"] == pytest.approx(accuracy_score(labels, scores > 0.8))


def test_image_scores_single_class_and_errors():
    one = image_scores([0.9, 0.2, 0.7], [True, True, True])
    assert math.isnan(one["image_auc"]) and one["image_acc"] == pytest.approx(2 / 3)
    assert one["image_f1"] == pytest.approx(f1_score([1, 1, 1], [1, 0, 1]))
    none = image_scores([0.1, 0.6], [False, False])
    assert math.isnan(none["image_auc"]) and none["image_acc"] == 0.5 and none["image_f1"] == 0.0
    with pytest.raises(ValueError, match="labels"):
        image_scores([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="finite"):
        image_scores([0.1, float("nan")], [True, False])


# ------------------------------------------------------------------- inflated variants


@pytest.mark.parametrize("seed", range(4))
def test_inverted_f1(seed):
    rng = np.random.default_rng(seed)
    prob, truth = rng.random((20, 24)), rng.random((20, 24)) < 0.3
    y = truth.ravel()
    want = max(f1_score(y, prob.ravel() > 0.5), f1_score(y, ~(prob.ravel() > 0.5)))
    assert inverted_f1(prob, truth) == pytest.approx(want)
    assert inverted_f1(prob, truth) >= pixel_scores(prob, truth)["f1"]
    # a model that marks exactly the authentic part gets full marks: that is the inflation
    assert inverted_f1((~truth).astype(float), truth) == 1.0
    assert pixel_scores((~truth).astype(float), truth)["f1"] == 0.0


def _sk_best_f1(prob, truth):
    p, r, _ = precision_recall_curve(truth.ravel(), prob.ravel())
    f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)
    return float(f.max())


@pytest.mark.parametrize("seed", range(5))
def test_best_threshold_f1_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((17, 23)) < rng.uniform(0.05, 0.5)
    prob = np.clip(truth * 0.25 + rng.random((17, 23)) * 0.75, 0, 1)
    if seed % 2:
        prob = np.round(prob, 1)  # many ties
    got = best_threshold_f1(prob, truth)
    assert got == pytest.approx(_sk_best_f1(prob, truth), abs=1e-12)
    assert got >= pixel_scores(prob, truth)["f1"] - 1e-12


def test_best_threshold_f1_edge_cases():
    truth = np.zeros((4, 4), bool)
    truth[:2] = True
    assert best_threshold_f1(truth.astype(float), truth) == 1.0
    assert best_threshold_f1(np.ones((4, 4)), truth) == pytest.approx(2 * 8 / (16 + 8))  # all-one map
    assert best_threshold_f1(np.ones((4, 4)), np.zeros((4, 4), bool)) == 0.0
    with pytest.raises(ValueError):
        best_threshold_f1(np.full((4, 4), 2.0), truth)


# ------------------------------------------------------------------------ accumulator


def test_accumulator_matches_sklearn():
    rng = np.random.default_rng(7)
    acc = BenchmarkAccumulator()
    tampered, scores, labels = [], [], []
    for i in range(12):
        prob = rng.random((15, 19))
        kind = i % 4
        if kind == 0:
            truth = None  # authentic
        elif kind == 1:
            truth = np.zeros((15, 19), bool)  # empty mask: counted as authentic
        else:
            truth = rng.random((15, 19)) < 0.35
            if i == 2:
                prob = np.ones((15, 19))  # all-one prediction
        score = None if i % 3 else float(rng.random())
        row = acc.add(prob, truth, score=score, name=f"img{i}")
        assert row["name"] == f"img{i}" and row["tampered"] == (kind >= 2)
        scores.append(prob.max() if score is None else score)
        labels.append(kind >= 2)
        if kind >= 2:
            tampered.append((prob, truth))
    s = acc.summary()
    y = [t.ravel() for _, t in tampered]
    p = [(pr > 0.5).ravel() for pr, _ in tampered]
    assert s["pixel_f1"] == pytest.approx(np.mean([f1_score(a, b, zero_division=0) for a, b in zip(y, p)]))
    assert s["pixel_iou"] == pytest.approx(np.mean([jaccard_score(a, b, zero_division=0) for a, b in zip(y, p)]))
    assert s["pixel_precision"] == pytest.approx(np.mean([precision_score(a, b, zero_division=0) for a, b in zip(y, p)]))
    assert s["pixel_recall"] == pytest.approx(np.mean([recall_score(a, b, zero_division=0) for a, b in zip(y, p)]))
    assert s["pixel_auc"] == pytest.approx(np.mean([roc_auc_score(t.ravel(), pr.ravel()) for pr, t in tampered]))
    assert s["image_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert s["image_acc"] == pytest.approx(accuracy_score(labels, np.array(scores) > 0.5))
    assert s["image_f1"] == pytest.approx(f1_score(labels, np.array(scores) > 0.5))
    assert (s["n_images"], s["n_tampered"], s["n_authentic"], s["n_empty_truth"]) == (12, 6, 6, 3)
    assert s["pixel_f1_best_threshold"] == pytest.approx(np.mean([_sk_best_f1(pr, t) for pr, t in tampered]))
    assert s["pixel_f1_inverted"] >= s["pixel_f1"]
    assert set(s["inflated"]) == {"pixel_f1_inverted", "pixel_f1_best_threshold"}
    rows = acc.rows()
    assert len(rows) == 12 and rows[0]["f1"] is None and rows[0]["score"] == scores[0]
    assert all(v is None or isinstance(v, (str, bool, int, float)) for r in rows for v in r.values())  # scalars only
    assert rows[2]["f1"] == pytest.approx(f1_score(y[0], p[0]))
    rows[2]["f1"] = -1  # rows() hands out copies
    assert acc.rows()[2]["f1"] != -1


def test_accumulator_authentic_only_and_errors():
    acc = BenchmarkAccumulator()
    acc.add(np.zeros((4, 4)), None)
    acc.add(np.full((4, 4), 0.9), None)
    s = acc.summary()
    assert math.isnan(s["pixel_f1"]) and math.isnan(s["image_auc"]) and s["n_tampered"] == 0
    assert s["image_acc"] == 0.5
    with pytest.raises(ValueError, match="shape"):
        acc.add(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="2-D"):
        acc.add(np.zeros((4, 4, 1)), None)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        acc.add(np.full((4, 4), 3.0), None)
    assert acc.summary()["n_images"] == 2
