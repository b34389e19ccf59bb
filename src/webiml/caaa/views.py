"""The views of a pair that the CAAAv2 annotators see, in training and at inference: the authentic
image registered to the forged frame, and the scale DASS works at (native, capped, small images raised)."""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry import long_side_scale, resize_by
from ..register import warp_to


def corners_in_forged(transform: np.ndarray, forged_wh: tuple[int, int], authentic_wh: tuple[int, int]) -> np.ndarray:
    """The authentic image's corners mapped by ``transform`` (authentic → forged) into the forged
    frame, normalised by its size and clipped to [0, 1]; sizes are (width, height)."""
    w, h = authentic_wh
    c = np.array([[0, 0, 1], [w - 1, 0, 1], [w - 1, h - 1, 1], [0, h - 1, 1]], float).T
    q = transform @ c
    q = q[:2] / q[2]
    q[0] /= max(forged_wh[0] - 1, 1)
    q[1] /= max(forged_wh[1] - 1, 1)
    return np.clip(q.T.ravel(), 0, 1).astype(np.float32)


def registered_view(forged: np.ndarray, authentic: np.ndarray, transform: np.ndarray | None, overlap: np.ndarray | None = None) -> np.ndarray:
    """The authentic image in the forged frame: warped by ``transform`` (pixels it does not cover
    take the forged values: no evidence there), or simply resized when there is no transform."""
    h, w = forged.shape[:2]
    if transform is None:
        return cv2.resize(authentic, (w, h), interpolation=cv2.INTER_AREA)
    reg, cov = warp_to(authentic, transform, (w, h))
    if overlap is not None:
        cov = cov & overlap
    reg[~cov] = forged[~cov]
    return reg


def native_scale(h: int, w: int, max_side: int, min_side: int = 0) -> float:
    """The scale DASS works at, in training and at inference: the image's own, long side capped at
    ``max_side`` and, for smaller images, raised to ``min_side``: at a stride-4 output an edit of
    a few hundred pixels in a small web image would otherwise span only a few output cells."""
    s = long_side_scale(h, w, max_side, max_scale=1.0)
    if min_side and max(h, w) * s < min(min_side, max_side):
        s = long_side_scale(h, w, min(min_side, max_side))
    return s


def native_view(images: list[np.ndarray], size: int, max_side: int, min_side: int = 0) -> list[np.ndarray]:
    """Aligned images (the last one a mask) at the scale the annotator sees at inference
    (:func:`native_scale`), zero-padded to at least size × size."""
    s = native_scale(*images[0].shape[:2], max_side, min_side)
    if s != 1.0:
        images = [resize_by(im, s, mask=k == len(images) - 1) for k, im in enumerate(images)]
    h, w = images[0].shape[:2]
    ph, pw = max(0, size - h), max(0, size - w)
    if ph or pw:
        images = [np.pad(im, ((0, ph), (0, pw)) + ((0, 0),) * (im.ndim - 2)) for im in images]
    return [np.ascontiguousarray(im) for im in images]


def crop_on_mask(images: list[np.ndarray], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One size² crop of aligned images at least that large (the last one a mask); it covers part
    of the mask when there is one (p = 0.8)."""
    h, w = images[0].shape[:2]
    ys, xs = np.nonzero(images[-1])
    if len(xs) and rng.random() < 0.8:
        k = int(rng.integers(len(xs)))
        y0 = int(np.clip(ys[k] - rng.integers(0, size), 0, h - size))
        x0 = int(np.clip(xs[k] - rng.integers(0, size), 0, w - size))
    else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    return [np.ascontiguousarray(im[y0 : y0 + size, x0 : x0 + size]) for im in images]
