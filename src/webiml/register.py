"""Register an authentic image to its forgery's frame (crop / rescale / shift on the web).

SIFT features on resized grey images, Lowe's ratio test, one-to-one matches, then RANSAC fits of a
similarity, an affine map and a homography; the simplest model that explains the pair wins. A fit is accepted only when the warped authentic
image covers enough of the forged frame *and* agrees with it photometrically; a pair whose
features match but whose frames do not (typically SDG: one object shared, backgrounds differ) is
reported as not registered instead of being forced into a warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .geometry import long_side_scale, resize_by


@dataclass(frozen=True)
class RegisterConfig:
    work_side: int = 800  # features are computed with the long side resized to this
    max_upscale: float = 2.0  # small images are enlarged for SIFT, at most this much
    n_features: int = 4000
    ratio: float = 0.8
    ransac_px: float = 3.0  # at work resolution
    min_inliers: int = 6  # fewer: the two images share no content
    min_spread: float = 0.05  # inliers must span at least this fraction of the forged frame's short side
    max_anisotropy: float = 3.0  # affine/homography fits stretched more than this are degenerate
    min_overlap: float = 0.5  # fraction of the forged frame the warped authentic must cover
    max_residual: float = 12.0  # median |grey difference| (0–255) in the overlap
    min_agreement: float = 0.6  # fraction of the overlap within 20 grey levels (edits cover less)
    identity_residual: float = 4.0  # same size and already this close: no warp needed
    check_side: int = 256


@dataclass
class Registration:
    """Outcome of :func:`register`. ``matrix`` maps authentic pixels to forged pixels."""

    status: str  # "identity" | "registered" | "unregistered" | "no-shared-content"
    matrix: np.ndarray | None
    model: str | None  # "identity" | "similarity" | "affine" | "homography" | None
    n_matches: int = 0
    n_inliers: int = 0
    overlap_fraction: float = 0.0
    residual: float | None = None
    detail: str = ""

    @property
    def registered(self) -> bool:
        return self.status in ("identity", "registered")


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def _down(img: np.ndarray, side: int, max_up: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the long side is ``side`` (shrinking, or growing at most ``max_up`` times);
    return the image and the 3x3 map full→resized."""
    h, w = img.shape[:2]
    s = long_side_scale(h, w, side, max_scale=max_up)
    if s == 1.0:
        return img, np.eye(3)
    small = resize_by(img, s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
    sx, sy = small.shape[1] / w, small.shape[0] / h
    return small, np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1]])


def warp_to(authentic: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Warp ``authentic`` into a frame of ``size=(w, h)``; also return the bool coverage mask.

    A pixel is covered only when its bilinear footprint lies wholly inside the authentic image:
    the rim where interpolation blends in the black border would otherwise read as a thin line
    of differences along the authentic's edge (a false edit for the SPG annotators)."""
    w, h = size
    ah, aw = authentic.shape[:2]
    ones = np.full((ah, aw), 255, np.uint8)
    kw = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if _is_affine(matrix):
        out = cv2.warpAffine(authentic, matrix[:2], (w, h), **kw)
        cov = cv2.warpAffine(ones, matrix[:2], (w, h), **kw)
    else:
        out = cv2.warpPerspective(authentic, matrix, (w, h), **kw)
        cov = cv2.warpPerspective(ones, matrix, (w, h), **kw)
    return out, cov == 255


def _is_affine(m: np.ndarray) -> bool:
    return bool(np.allclose(m[2], [0, 0, 1], atol=1e-9))


def _check(
    forged_g: np.ndarray, auth_g: np.ndarray, matrix: np.ndarray, side: int, agree_level: float = 20.0
) -> tuple[float, float, float]:
    """Overlap fraction, median |difference| and the fraction of overlap pixels that agree
    (|difference| ≤ ``agree_level``) for the warped authentic, at low resolution."""
    f_small, f_map = _down(forged_g, side)
    a_small, a_map = _down(auth_g, side * 2)
    m = f_map @ matrix @ np.linalg.inv(a_map)
    warped, cov = warp_to(a_small, m, (f_small.shape[1], f_small.shape[0]))
    cov = cv2.erode(cov.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    overlap = float(cov.mean())
    if overlap == 0:
        return 0.0, 255.0, 0.0
    f = cv2.GaussianBlur(f_small, (3, 3), 0).astype(np.int16)
    a = cv2.GaussianBlur(warped, (3, 3), 0).astype(np.int16)
    d = np.abs(f - a)[cov]
    return overlap, float(np.median(d)), float((d <= agree_level).mean())


_SIFT: dict[int, cv2.SIFT] = {}


def _features(img_g: np.ndarray, n: int):
    sift = _SIFT.setdefault(n, cv2.SIFT_create(nfeatures=n))
    return sift.detectAndCompute(img_g, None)


def register(forged: np.ndarray, authentic: np.ndarray, cfg: RegisterConfig = RegisterConfig()) -> Registration:
    """Estimate the map authentic → forged and decide whether the pair is registrable."""
    fg, ag = _grey(forged), _grey(authentic)
    if fg.shape == ag.shape:
        overlap, res, _ = _check(fg, ag, np.eye(3), cfg.check_side)
        if res <= cfg.identity_residual:
            return Registration("identity", np.eye(3), "identity", overlap_fraction=overlap, residual=res)

    f_small, f_map = _down(fg, cfg.work_side, cfg.max_upscale)
    a_small, a_map = _down(ag, cfg.work_side, cfg.max_upscale)
    kf, df = _features(f_small, cfg.n_features)
    ka, da = _features(a_small, cfg.n_features)
    if df is None or da is None or len(kf) < 2 or len(ka) < 2:
        return Registration("no-shared-content", None, None, detail="no features")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, df, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < cfg.ratio * p[1].distance]
    # One-to-one: many authentic points matching one forged point let RANSAC "explain" them all
    # with a collapsed (scale ~ 0) map.
    best: dict[int, cv2.DMatch] = {}
    for g in good:
        if g.trainIdx not in best or g.distance < best[g.trainIdx].distance:
            best[g.trainIdx] = g
    good = list(best.values())
    n_matches = len(good)
    if n_matches < cfg.min_inliers:
        return Registration("no-shared-content", None, None, n_matches, 0, detail=f"{n_matches} matches < {cfg.min_inliers}")
    src = np.float32([ka[g.queryIdx].pt for g in good])
    dst = np.float32([kf[g.trainIdx].pt for g in good])

    min_spread = cfg.min_spread * min(f_small.shape[:2])
    candidates = []
    sim, inl = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_px, maxIters=4000, confidence=0.999, refineIters=20
    )
    if sim is not None and inl is not None:
        m = np.vstack([sim, [0, 0, 1]])
        if _sane(m) and _spread(dst[inl.ravel() > 0]) >= min_spread:
            candidates.append(("similarity", m, int(inl.sum())))
    aff, inl_a = cv2.estimateAffine2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=cfg.ransac_px, maxIters=4000, confidence=0.999, refineIters=20
    )
    if aff is not None and inl_a is not None:
        m = np.vstack([aff, [0, 0, 1]])
        if _sane(m, cfg.max_anisotropy) and _spread(dst[inl_a.ravel() > 0]) >= min_spread:
            candidates.append(("affine", m, int(inl_a.sum())))
    hom, inl_h = cv2.findHomography(src, dst, cv2.RANSAC, cfg.ransac_px, maxIters=4000, confidence=0.999)
    if hom is not None and inl_h is not None and _sane(hom, cfg.max_anisotropy) and _spread(dst[inl_h.ravel() > 0]) >= min_spread:
        candidates.append(("homography", hom, int(inl_h.sum())))
    best_inliers = max((c[2] for c in candidates), default=0)
    if best_inliers < cfg.min_inliers:
        return Registration("no-shared-content", None, None, n_matches, best_inliers, detail=f"{best_inliers} RANSAC inliers < {cfg.min_inliers}")

    results = []
    for model, m_small, n_in in candidates:
        if n_in < cfg.min_inliers:
            continue
        m_full = np.linalg.inv(f_map) @ m_small @ a_map
        overlap, res, agree = _check(fg, ag, m_full, cfg.check_side)
        results.append((model, m_full, n_in, overlap, res, agree))
    # An SDG pair whose pasted object fills half the frame has a small *median* difference; the
    # agreeing fraction still tells that the rest of the frame is another photo.
    ok = [r for r in results if r[3] >= cfg.min_overlap and r[4] <= cfg.max_residual and r[5] >= cfg.min_agreement]
    if ok:
        # Prefer the simpler model unless a richer one is clearly better.
        ok.sort(key=lambda r: r[4] + {"similarity": 0.0, "affine": 0.5, "homography": 1.0}[r[0]])
        model, m_full, n_in, overlap, res, _ = ok[0]
        return Registration("registered", m_full, model, n_matches, n_in, overlap, res)
    model, m_full, n_in, overlap, res, agree = min(results, key=lambda r: r[4])
    if overlap < cfg.min_overlap:
        why = f"overlap {overlap:.2f} < {cfg.min_overlap}"
    elif res > cfg.max_residual:
        why = f"median |diff| {res:.1f} > {cfg.max_residual}"
    else:
        why = f"only {agree:.0%} of the overlap agrees (< {cfg.min_agreement:.0%})"
    return Registration("unregistered", m_full, model, n_matches, n_in, overlap, res, detail=why)


def _sane(m: np.ndarray, max_anisotropy: float = 4.0) -> bool:
    """Reject degenerate fits: RANSAC happily collapses unrelated matches onto a line or a point."""
    if abs(m[2, 2]) < 1e-12:
        return False
    a = m[:2, :2] / m[2, 2]
    det = float(np.linalg.det(a))
    sv = np.linalg.svd(a, compute_uv=False)
    return (
        1 / 64 < det < 64
        and sv[0] / max(sv[1], 1e-12) <= max_anisotropy
        and float(np.abs(m[2, :2]).max() / abs(m[2, 2])) < 2e-3
    )


def _spread(points: np.ndarray) -> float:
    """The smaller side of the inliers' bounding box (pixels)."""
    if len(points) < 2:
        return 0.0
    ext = points.max(axis=0) - points.min(axis=0)
    return float(ext.min())


def transform_error(
    estimated: np.ndarray, true: np.ndarray, forged_size: tuple[int, int], authentic_size: tuple[int, int], step: int = 8
) -> float:
    """Mean distance, in forged-frame pixels, between where the two maps (authentic → forged) send a
    grid of authentic pixels, over the pixels that truly land inside the forged frame; sizes are
    (width, height)."""
    w, h = authentic_size
    xs, ys = np.meshgrid(np.arange(0, w, step, dtype=np.float64), np.arange(0, h, step, dtype=np.float64))
    pts = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])

    def apply(m: np.ndarray) -> np.ndarray:
        q = m @ pts
        return q[:2] / q[2]

    t = apply(true)
    inside = (t[0] >= 0) & (t[1] >= 0) & (t[0] <= forged_size[0] - 1) & (t[1] <= forged_size[1] - 1)
    if not inside.any():
        raise ValueError("the true map sends no authentic pixel into the forged frame")
    return float(np.linalg.norm(apply(estimated)[:, inside] - t[:, inside], axis=0).mean())
