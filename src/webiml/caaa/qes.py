"""Quality Evaluation Score (QES) of a soft annotation mask.

QES = #(p > 15/16) / (#(p > 1/16) + eps): the share of the predicted region that is confident.
An annotation is kept iff QES > 0.5; an all-zero mask has QES 0 and is dropped.
"""

from __future__ import annotations

import numpy as np


QES_HIGH = 15 / 16
QES_LOW = 1 / 16
DEFAULT_THRESHOLD = 0.5


def _counts(prob: np.ndarray) -> tuple[int, int]:
    """(#confident, #positive) pixels of a probability map given as float in [0, 1], bool or uint8."""
    p = np.asarray(prob)
    if p.dtype == np.bool_:
        n = int(np.count_nonzero(p))
        return n, n
    if p.dtype == np.uint8:
        # v/255 > t  <=>  v > 255 t; no uint8 value sits exactly on either boundary
        return int(np.count_nonzero(p > 255 * QES_HIGH)), int(np.count_nonzero(p > 255 * QES_LOW))
    if not (np.issubdtype(p.dtype, np.floating) or np.issubdtype(p.dtype, np.integer)):
        raise ValueError(f"QES needs a numeric probability map, got dtype {p.dtype}")
    if p.size and (np.nanmin(p) < -1e-6 or np.nanmax(p) > 1 + 1e-6):
        raise ValueError("QES needs probabilities in [0, 1] (or a uint8 map in 0–255)")
    return int(np.count_nonzero(p > QES_HIGH)), int(np.count_nonzero(p > QES_LOW))


def qes(prob: np.ndarray, eps: float = 1e-6) -> float:
    """QES of a soft mask: float in [0, 1], or uint8 in 0–255 (read as value/255), or bool."""
    high, low = _counts(prob)
    return float(high / (low + eps))


def keep(q: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Whether an annotation with QES ``q`` is kept (strictly greater than ``threshold``)."""
    return bool(q > threshold)
