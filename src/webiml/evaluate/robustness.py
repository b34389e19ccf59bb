"""Robustness perturbations for benchmark images: JPEG re-compression, down-scaling, Gaussian blur
and additive Gaussian noise, at the levels the field reports.

Every function takes a numpy ``Generator`` (only ``noise`` draws from it), so a seeded run is
reproducible. A perturbation that changes the size (``resize``) is applied to the truth mask too,
by nearest neighbour with pixel centres aligned, so image and mask stay registered.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..geometry import resize_by

#: default levels: JPEG quality, scale factor, blur sigma (px), noise std (on 0..255)
PERTURBATIONS: dict[str, tuple[float, ...]] = {
    "jpeg": (90, 70, 50),
    "resize": (0.75, 0.5),
    "blur": (1, 2, 3),
    "noise": (3, 7, 15),
}


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {a.dtype} {a.shape}")
    return a


def perturb(rgb: np.ndarray, kind: str, level: float, rng: np.random.Generator) -> np.ndarray:
    """Return a perturbed copy of an ``HxWx3`` uint8 RGB image.

    ``kind``/``level``: ``jpeg`` quality in 1..100; ``resize`` scale factor > 0 (area
    interpolation when shrinking); ``blur`` Gaussian sigma in pixels; ``noise`` Gaussian standard
    deviation on the 0..255 scale (clipped, rounded).
    """
    a = _check_rgb(rgb)
    level = float(level)
    if kind == "jpeg":
        if not 1 <= level <= 100:
            raise ValueError(f"jpeg quality must be in 1..100, got {level}")
        bgr = cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(round(level))])
        if not ok:
            raise ValueError("JPEG encoding failed")
        return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if level <= 0:
        raise ValueError(f"{kind} level must be > 0, got {level}")
    if kind == "resize":
        return resize_by(a, level)
    if kind == "blur":
        return cv2.GaussianBlur(a, (0, 0), sigmaX=level, sigmaY=level, borderType=cv2.BORDER_REFLECT_101)
    if kind == "noise":
        noisy = a.astype(np.float32) + rng.normal(0.0, level, a.shape).astype(np.float32)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    raise ValueError(f"unknown perturbation {kind!r}; expected one of {sorted(PERTURBATIONS)}")


def perturb_pair(
    rgb: np.ndarray, mask: np.ndarray | None, kind: str, level: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Perturb an image and keep its truth ``mask`` (HxW, any dtype, or ``None``) aligned: the
    mask is resized by nearest neighbour when the size changes, otherwise returned unchanged."""
    if mask is not None and np.shape(mask) != np.shape(rgb)[:2]:
        raise ValueError(f"mask shape {np.shape(mask)} does not match image shape {np.shape(rgb)[:2]}")
    out = perturb(rgb, kind, level, rng)
    if mask is None or out.shape[:2] == np.shape(mask):
        return out, mask
    m = np.asarray(mask)
    # INTER_NEAREST_EXACT samples at pixel centres; plain INTER_NEAREST drifts by half a pixel
    resized = cv2.resize(m.astype(np.uint8), (out.shape[1], out.shape[0]), interpolation=cv2.INTER_NEAREST_EXACT)
    return out, resized.astype(m.dtype)
