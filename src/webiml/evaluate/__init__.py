"""Evaluation: pixel-level localization metrics under the field's conventions."""

from .metrics import mean_scores, pixel_auc, pixel_scores

__all__ = ["mean_scores", "pixel_auc", "pixel_scores"]
