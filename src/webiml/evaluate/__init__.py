"""Evaluation: localization and detection metrics under the field's conventions, benchmark dataset
preparers (:mod:`.prepare`) and robustness perturbations (:mod:`.robustness`)."""

from .metrics import (
    BenchmarkAccumulator,
    best_threshold_f1,
    image_scores,
    inverted_f1,
    mean_scores,
    pixel_auc,
    pixel_scores,
    threshold_curve,
)

__all__ = [
    "BenchmarkAccumulator",
    "best_threshold_f1",
    "image_scores",
    "inverted_f1",
    "mean_scores",
    "pixel_auc",
    "pixel_scores",
    "threshold_curve",
]
