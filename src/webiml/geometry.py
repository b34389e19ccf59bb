"""Resizing by a scale factor or to a long side, with one rule for sizes and interpolation.

Sizes are ``max(min_side, round(side * s))`` per axis. Interpolation, unless given: nearest for
masks, area when shrinking (``s < 1``), bilinear otherwise.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def long_side_scale(h: int, w: int, side: float, *, max_scale: float = math.inf) -> float:
    """The factor that brings the long side of an ``h x w`` image to ``side``, at most ``max_scale``
    (1: never enlarge)."""
    return min(max_scale, side / max(h, w))


def scaled_size(h: int, w: int, s: float, *, min_side: int = 1) -> tuple[int, int]:
    """``(width, height)`` of an ``h x w`` image scaled by ``s``, each side at least ``min_side``."""
    return max(min_side, round(w * s)), max(min_side, round(h * s))


def long_side_size(h: int, w: int, side: float, *, max_scale: float = math.inf, min_side: int = 1) -> tuple[int, int]:
    """``(width, height)`` with the long side at ``side`` (see :func:`long_side_scale`)."""
    return scaled_size(h, w, long_side_scale(h, w, side, max_scale=max_scale), min_side=min_side)


def resize_by(img: np.ndarray, s: float, *, min_side: int = 1, mask: bool = False, interpolation: int | None = None) -> np.ndarray:
    """``img`` scaled by ``s`` (a new array, even when the size does not change).

    ``mask=True`` resizes with nearest neighbour; a bool array stays bool."""
    h, w = img.shape[:2]
    if interpolation is None:
        interpolation = cv2.INTER_NEAREST if mask else cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    src = np.ascontiguousarray(img)
    if src.dtype == np.bool_:
        return cv2.resize(src.view(np.uint8), scaled_size(h, w, s, min_side=min_side), interpolation=interpolation).astype(bool)
    return cv2.resize(src, scaled_size(h, w, s, min_side=min_side), interpolation=interpolation)


def resize_long_side(img: np.ndarray, side: float, *, max_scale: float = math.inf, min_side: int = 1, mask: bool = False,
                     interpolation: int | None = None) -> np.ndarray:
    """``img`` resized so its long side is ``side`` (at most ``max_scale`` times larger; 1: never
    enlarge); otherwise as :func:`resize_by`."""
    s = long_side_scale(*img.shape[:2], side, max_scale=max_scale)
    return resize_by(img, s, min_side=min_side, mask=mask, interpolation=interpolation)
