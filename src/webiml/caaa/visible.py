"""What a pair can show: the visible truth and the ceiling of a pair-based annotator.

An annotator that sees only the forged image and its authentic source can find an edit only where
the two differ. Truth masks often mark more: NoSo's mark both the source and the target of a
copy-move, and only the target changes. For a registered pair:

* ``difference``: per pixel, the largest |forged − registered authentic| over the colour channels
  (0 where the registered authentic does not cover the forged frame);
* visible truth: the truth pixels whose difference exceeds ``min_diff`` grey levels (default
  :data:`webiml.synth.CHANGE_LEVELS`, the synthetic corpus's own "changed" rule, above JPEG noise);
* ``ceiling_iou``: the best IoU with the truth of a threshold on the difference, chosen per image
  with the truth (an oracle): what thresholding the pair itself reaches. Not a strict bound (a
  model may fill unchanged pixels between changed ones), but the scale on which a pair-based
  annotator's IoU is read.

Unregistered pairs (SDG: the authentic is another photo) have no pixel-wise difference: their
evidence is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..synth import CHANGE_LEVELS


def difference(forged: np.ndarray, registered: np.ndarray, overlap: np.ndarray | None = None) -> np.ndarray:
    """uint8 HxW: max over channels of |forged − registered|, 0 outside ``overlap`` (bool HxW)."""
    if forged.shape != registered.shape:
        raise ValueError(f"forged {forged.shape} and registered authentic {registered.shape} differ in shape")
    d = np.abs(forged.astype(np.int16) - registered.astype(np.int16))
    d = (d.max(axis=2) if d.ndim == 3 else d).astype(np.uint8)
    if overlap is not None:
        d[~np.asarray(overlap, dtype=bool)] = 0
    return d


def ceiling_iou(diff: np.ndarray, truth: np.ndarray) -> float | None:
    """The best IoU with ``truth`` of ``diff > t`` over every threshold t (None for an empty truth).

    Exact and fast: pixels are counted per difference level (uint8), so every threshold is a suffix
    sum of two histograms.
    """
    d = np.asarray(diff)
    t = np.asarray(truth, dtype=bool)
    if d.shape != t.shape:
        raise ValueError(f"difference {d.shape} and truth {t.shape} differ in shape")
    if d.dtype != np.uint8:
        raise ValueError("ceiling_iou needs a uint8 difference map (see difference())")
    n_truth = int(t.sum())
    if n_truth == 0:
        return None
    pos = np.bincount(d[t], minlength=256)[::-1].cumsum()[::-1]  # [k]: truth pixels with d >= k
    neg = np.bincount(d[~t], minlength=256)[::-1].cumsum()[::-1]
    tp, fp = pos[1:], neg[1:]  # predictions d > t for t = 0..254  <=>  d >= k for k = 1..255
    iou = tp / (n_truth + fp)
    return float(iou.max())


@dataclass
class Evidence:
    """What one registered pair can show about its truth."""

    visible: np.ndarray  # bool HxW: the visible truth
    visible_fraction: float  # share of the truth that is visible
    ceiling_iou: float | None


def evidence(forged: np.ndarray, registered: np.ndarray | None, overlap: np.ndarray | None,
             truth: np.ndarray, min_diff: int = CHANGE_LEVELS) -> Evidence | None:
    """The :class:`Evidence` of a pair (None when it has no registered authentic)."""
    if registered is None:
        return None
    t = np.asarray(truth, dtype=bool)
    d = difference(forged, registered, overlap)
    visible = t & (d > min_diff)
    n = int(t.sum())
    return Evidence(visible, float(visible.sum() / n) if n else 0.0, ceiling_iou(d, t))
