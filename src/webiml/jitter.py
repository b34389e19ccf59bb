"""Object Jitter (Web-IML; docs/methods.md): re-paste an object slightly enlarged on itself, so that
only resampling and blending traces mark it. Used by the Web-IML training mixture only: its own module,
so that an edit re-runs only the train_webiml stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from . import synth


@dataclass(frozen=True)
class JitterConfig:
    """Object Jitter recipe (docs/methods.md): which objects qualify and how often each step happens."""

    min_side: int = 8  # an eligible object's box is at least min_side × min_side ...
    min_area: int = 256  # ... and at least min_area px² of *box* area
    p_blur: float = 0.2  # blur the pasted alpha first
    p_second: float = 0.5  # jitter a second object when the image has many
    many_objects: int = 2  # this many eligible objects make "many"
    max_fraction: float = 0.75  # reject a label covering more of the image


class JitterRejected(Exception):
    """No usable Object Jitter sample; ``reason`` is ``no-eligible-object``, ``empty-mask`` or
    ``mask-too-large``."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass
class Jitter:
    """An Object Jitter sample: ``image`` (uint8 RGB), ``mask`` (bool, ``alpha > 0.5``), the
    pasted soft footprint ``alpha`` (float32), the jittered instance indices ``objects`` and their
    pasted boxes ``(x0, y0, x1, y1)``: the enlarged box (plus the blur margin when the alpha was
    blurred), end-exclusive, clipped to the image. Pixels outside them are untouched."""

    image: np.ndarray
    mask: np.ndarray
    alpha: np.ndarray
    objects: tuple[int, ...]
    boxes: tuple[tuple[int, int, int, int], ...]


_JITTER_KERNELS = ((16, 0), (32, 3), (64, 5), (128, 7), (256, 9))


def jitter_blur_kernel(h: int, w: int) -> int:
    """Alpha blur kernel for an object whose box is ``h × w``, by its longer side:
    <16 none (0), <32 3, <64 5, <128 7, <256 9, else 11."""
    side = max(h, w)
    return next((k for limit, k in _JITTER_KERNELS if side < limit), 11)


def jitter_pad(n: int) -> int:
    """Enlargement per side of a box side ``n``: round(n / 16), halves rounded up."""
    return (n + 8) // 16


def _jitter_one(
    out: np.ndarray, img: np.ndarray, inst: np.ndarray, box: tuple[int, int, int, int], blur: bool
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste the enlarged crop of ``img`` at ``box`` onto ``out`` in place; return (alpha, pasted box)."""
    H, W = img.shape[:2]
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    dy, dx = jitter_pad(h), jitter_pad(w)
    size = (w + 2 * dx, h + 2 * dy)
    patch = cv2.resize(img[y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
    a = cv2.resize(inst[y0:y1, x0:x1].astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    k = jitter_blur_kernel(h, w) if blur else 0
    m = k // 2
    if k:
        # the object touches its box, so blur on a zero margin (pixels: replicated) to feather
        # those edges too instead of reflecting the alpha back at the box border
        patch = cv2.copyMakeBorder(patch, m, m, m, m, cv2.BORDER_REPLICATE)
        a = cv2.GaussianBlur(cv2.copyMakeBorder(a, m, m, m, m, cv2.BORDER_CONSTANT, value=0), (k, k), 0)
        size = (size[0] + 2 * m, size[1] + 2 * m)
    # enlarged box centred on the object's own box, then clipped to the frame
    ex0, ey0 = x0 - dx - m, y0 - dy - m
    cx0, cy0 = max(ex0, 0), max(ey0, 0)
    cx1, cy1 = min(ex0 + size[0], W), min(ey0 + size[1], H)
    sub = np.s_[cy0 - ey0 : cy1 - ey0, cx0 - ex0 : cx1 - ex0]
    alpha = np.zeros((H, W), np.float32)
    alpha[cy0:cy1, cx0:cx1] = np.clip(a[sub], 0.0, 1.0)
    out[cy0:cy1, cx0:cx1] = synth.blend(out[cy0:cy1, cx0:cx1], patch[sub], alpha[cy0:cy1, cx0:cx1])
    return alpha, (cx0, cy0, cx1, cy1)


def object_jitter(
    img: np.ndarray,
    instances: Sequence[np.ndarray],
    rng: np.random.Generator,
    cfg: JitterConfig = JitterConfig(),
) -> Jitter:
    """Object Jitter (docs/methods.md): re-paste one object (two, sometimes) slightly enlarged on itself.

    An instance is eligible when its tight box is at least ``min_side`` on each side and
    ``min_area`` px² in box area. One eligible instance is drawn; its box crop (pixels and mask)
    is enlarged by round(h/16) and round(w/16) on each side and pasted back centred on its own
    place with the resized mask as alpha (blurred first with p=``p_blur``, kernel by
    :func:`jitter_blur_kernel`). With at least ``many_objects`` eligible instances a second one is
    jittered with p=``p_second`` (cropped from the input, pasted over the first). The label is the
    union of the pasted footprints, ``alpha > 0.5``. ``img`` (uint8 RGB) is never modified.

    Raises :class:`JitterRejected` when no instance is eligible, the label is empty or it covers
    more than ``max_fraction`` of the image; ``ValueError`` for a malformed image or mask.
    """
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"object_jitter needs a uint8 HxWx3 image, got {img.dtype} {img.shape}")
    H, W = img.shape[:2]
    masks = []
    for i, m in enumerate(instances):
        m = np.asarray(m)
        if m.shape != (H, W):
            raise ValueError(f"instance {i} has shape {m.shape}, the image is {(H, W)}")
        masks.append(m > 0.5 if m.dtype != bool else m)
    boxes = [synth._box(m) for m in masks]
    eligible = [
        i
        for i, b in enumerate(boxes)
        if b is not None
        and min(b[2] - b[0], b[3] - b[1]) >= cfg.min_side
        and (b[2] - b[0]) * (b[3] - b[1]) >= cfg.min_area
    ]
    if not eligible:
        raise JitterRejected("no-eligible-object", f"none of {len(masks)} instances has a box >= "
                             f"{cfg.min_side}x{cfg.min_side} and {cfg.min_area} px²")
    chosen = [eligible[int(rng.integers(len(eligible)))]]
    if len(eligible) >= cfg.many_objects and rng.random() < cfg.p_second:
        rest = [i for i in eligible if i != chosen[0]]
        chosen.append(rest[int(rng.integers(len(rest)))])
    out = img.copy()
    alpha = np.zeros((H, W), np.float32)
    pasted = []
    for i in chosen:
        a, box = _jitter_one(out, img, masks[i], boxes[i], blur=rng.random() < cfg.p_blur)
        alpha = np.maximum(alpha, a)
        pasted.append(box)
    mask = alpha > 0.5
    if not mask.any():
        raise JitterRejected("empty-mask", f"objects {chosen}: enlarged footprint has no pixel with alpha > 0.5")
    if mask.mean() > cfg.max_fraction:
        raise JitterRejected("mask-too-large", f"label covers {mask.mean():.0%} > {cfg.max_fraction:.0%} of the image")
    return Jitter(out, mask, alpha, tuple(chosen), tuple(pasted))
