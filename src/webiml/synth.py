"""Forgery operations and web degradations, shared by every synthetic generator.

Everything takes a ``numpy.random.Generator`` so that a seed reproduces a sample exactly.
Images are uint8 RGB ``HxWx3``; alphas are float32 ``HxW`` in [0, 1]; masks are bool, and the
truth mask of an edit is ``alpha > 0.5``. Geometric maps are 3x3 float64 matrices in pixel-index
coordinates (OpenCV's convention: pixel centres at integers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from .geometry import resize_by, resize_long_side

SPG_OPS = ("copy-move", "removal", "splice", "color", "blur", "sharpen", "text", "sticker")
CATEGORIES = ("spg", "sdg")


# --------------------------------------------------------------------------------- shapes


def _odd(k: int) -> int:
    return k if k % 2 else k + 1


def bezier_blob(
    h: int,
    w: int,
    rng: np.random.Generator,
    size_px: tuple[float, float] = (64, 640),
    ref_side: int = 1024,
    n_points: tuple[int, int] = (3, 8),
    p_blur: float = 0.8,
    blur_kernel: tuple[int, int] = (3, 11),
    center: tuple[float, float] | None = None,
    roundness: float = 0.45,
) -> np.ndarray:
    """A closed Bézier blob through 3–8 random points, as a float32 alpha ``HxW``.

    ``size_px`` is the blob's extent at a ``ref_side``² image and is scaled to this image; with
    probability ``p_blur`` the alpha is blurred by an odd kernel in ``blur_kernel``.
    """
    scale = math.sqrt(h * w) / ref_side
    size = rng.uniform(*size_px) * scale
    size = float(np.clip(size, 8, 0.9 * min(h, w)))
    n = int(rng.integers(n_points[0], n_points[1] + 1))
    if center is None:
        cx = rng.uniform(size / 2, w - size / 2)
        cy = rng.uniform(size / 2, h - size / 2)
    else:  # keep the blob inside the frame
        cx = float(np.clip(center[0], size / 2, w - size / 2))
        cy = float(np.clip(center[1], size / 2, h - size / 2))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    if n < 4:  # keep a 3-point blob from collapsing to a sliver
        angles = np.sort((np.arange(n) / n * 2 * np.pi + rng.uniform(0, 2 * np.pi)) % (2 * np.pi))
    radii = size / 2 * rng.uniform(roundness, 1.0, n)
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    curve = closed_bezier(pts)
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [np.round(curve * 4).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=2)
    alpha = alpha.astype(np.float32) / 255.0
    if rng.random() < p_blur:
        k = _odd(int(rng.integers(blur_kernel[0], blur_kernel[1] + 1)))
        alpha = np.clip(cv2.GaussianBlur(alpha, (k, k), 0), 0.0, 1.0)
    return alpha


def closed_bezier(points: np.ndarray, samples_per_segment: int = 24) -> np.ndarray:
    """A closed piecewise-cubic Bézier curve through ``points`` (Catmull–Rom tangents)."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    t = np.linspace(0, 1, samples_per_segment, endpoint=False)[:, None]
    out = []
    for i in range(n):
        p0, p1, p2, p3 = p[i - 1], p[i], p[(i + 1) % n], p[(i + 2) % n]
        c1 = p1 + (p2 - p0) / 6.0
        c2 = p2 - (p3 - p1) / 6.0
        seg = (1 - t) ** 3 * p1 + 3 * (1 - t) ** 2 * t * c1 + 3 * (1 - t) * t**2 * c2 + t**3 * p2
        out.append(seg)
    return np.concatenate(out)


def blend(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None].astype(np.float32)
    return np.clip(src.astype(np.float32) * a + dst.astype(np.float32) * (1 - a) + 0.5, 0, 255).astype(np.uint8)


def _shift_alpha(alpha: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(alpha, m, (alpha.shape[1], alpha.shape[0]), flags=cv2.INTER_LINEAR)


# ---------------------------------------------------------------------------- SPG edits


@dataclass
class Edit:
    """An edited image and its truth: ``forged`` (RGB), ``alpha`` (soft footprint) and metadata."""

    forged: np.ndarray
    alpha: np.ndarray
    op: str
    meta: dict = field(default_factory=dict)

    @property
    def mask(self) -> np.ndarray:
        return self.alpha > 0.5


def edit_copy_move(img: np.ndarray, rng: np.random.Generator, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    src_alpha = bezier_blob(h, w, rng, **blob_kw)
    ys, xs = np.nonzero(src_alpha > 0.01)
    bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
    for _ in range(10):
        dx = rng.uniform(-xs.min(), w - 1 - xs.max())
        dy = rng.uniform(-ys.min(), h - 1 - ys.max())
        if abs(dx) > 0.5 * bw or abs(dy) > 0.5 * bh:
            break
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = _shift_alpha(src_alpha, dx, dy)
    return Edit(blend(img, moved, alpha), alpha, "copy-move", {"shift": [float(dx), float(dy)]})


def edit_removal(img: np.ndarray, rng: np.random.Generator, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    alpha = bezier_blob(h, w, rng, **blob_kw)
    hole = (alpha > 0.02).astype(np.uint8) * 255
    method = cv2.INPAINT_TELEA if rng.random() < 0.5 else cv2.INPAINT_NS
    filled = cv2.inpaint(np.ascontiguousarray(img), hole, 5, method)
    return Edit(blend(img, filled, alpha), alpha, "removal", {"method": "telea" if method == cv2.INPAINT_TELEA else "ns"})


def edit_splice(img: np.ndarray, rng: np.random.Generator, donor: np.ndarray, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    alpha = bezier_blob(h, w, rng, **blob_kw)
    dh, dw = donor.shape[:2]
    s = max(h / dh, w / dw) * rng.uniform(1.0, 1.5)
    d = cv2.resize(donor, (max(w, int(dw * s + 1)), max(h, int(dh * s + 1))), interpolation=cv2.INTER_AREA)
    y0 = int(rng.integers(0, d.shape[0] - h + 1))
    x0 = int(rng.integers(0, d.shape[1] - w + 1))
    return Edit(blend(img, d[y0 : y0 + h, x0 : x0 + w], alpha), alpha, "splice", {})


def edit_color(img: np.ndarray, rng: np.random.Generator, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    alpha = bezier_blob(h, w, rng, **blob_kw)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hue = rng.choice([-1, 1]) * rng.uniform(10, 40)
    gain = rng.uniform(0.6, 1.4)
    hsv[..., 0] = (hsv[..., 0] + hue / 2) % 180
    hsv[..., 2] = np.clip(hsv[..., 2] * gain + rng.uniform(-15, 15), 0, 255)
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.7, 1.5), 0, 255)
    changed = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return Edit(blend(img, changed, alpha), alpha, "color", {"hue": float(hue), "gain": float(gain)})


def edit_blur(img: np.ndarray, rng: np.random.Generator, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    alpha = bezier_blob(h, w, rng, **blob_kw)
    sigma = rng.uniform(1.5, 4.0)
    return Edit(blend(img, cv2.GaussianBlur(img, (0, 0), sigma), alpha), alpha, "blur", {"sigma": float(sigma)})


def edit_sharpen(img: np.ndarray, rng: np.random.Generator, **blob_kw) -> Edit:
    h, w = img.shape[:2]
    alpha = bezier_blob(h, w, rng, **blob_kw)
    amount = rng.uniform(1.0, 2.5)
    soft = cv2.GaussianBlur(img, (0, 0), 2.0).astype(np.float32)
    sharp = np.clip(img.astype(np.float32) * (1 + amount) - soft * amount, 0, 255).astype(np.uint8)
    return Edit(blend(img, sharp, alpha), alpha, "sharpen", {"amount": float(amount)})


_WORDS = ("LOL", "nope", "WOW", "2026", "hello", "SALE", "#1", "OMG", "fake", "cat")


def edit_text(img: np.ndarray, rng: np.random.Generator, **_: object) -> Edit:
    h, w = img.shape[:2]
    text = " ".join(rng.choice(_WORDS, size=int(rng.integers(1, 3))))
    font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_TRIPLEX]))
    scale = rng.uniform(0.6, 1.6) * min(h, w) / 300
    thick = max(1, int(round(scale * rng.uniform(1.5, 3))))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x = int(rng.integers(0, max(1, w - tw)))
    y = int(rng.integers(th, max(th + 1, h - base)))
    layer = np.zeros((h, w), np.uint8)
    cv2.putText(layer, text, (x, y), font, scale, 255, thick, cv2.LINE_AA)
    alpha = layer.astype(np.float32) / 255.0
    color = np.full_like(img, rng.integers(0, 256, 3, dtype=np.uint8))
    return Edit(blend(img, color, alpha), alpha, "text", {"text": text})


def edit_sticker(img: np.ndarray, rng: np.random.Generator, **_: object) -> Edit:
    h, w = img.shape[:2]
    r = int(rng.uniform(0.05, 0.15) * min(h, w))
    cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
    layer = np.zeros((h, w), np.uint8)
    fill = np.zeros_like(img)
    c1 = tuple(int(v) for v in rng.integers(0, 256, 3))
    c2 = tuple(int(v) for v in rng.integers(0, 256, 3))
    shape = rng.choice(["circle", "star", "rect"])
    if shape == "circle":
        cv2.circle(layer, (cx, cy), r, 255, -1, cv2.LINE_AA)
        cv2.circle(fill, (cx, cy), r, c1, -1, cv2.LINE_AA)
        cv2.circle(fill, (cx, cy), max(1, r // 2), c2, -1, cv2.LINE_AA)
    elif shape == "star":
        ang = np.arange(10) * np.pi / 5 + rng.uniform(0, np.pi)
        rad = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1).astype(np.int32)
        cv2.fillPoly(layer, [pts], 255, cv2.LINE_AA)
        cv2.fillPoly(fill, [pts], c1, cv2.LINE_AA)
    else:
        cv2.rectangle(layer, (cx - r, cy - r // 2), (cx + r, cy + r // 2), 255, -1)
        cv2.rectangle(fill, (cx - r, cy - r // 2), (cx + r, cy + r // 2), c1, -1)
        cv2.rectangle(fill, (cx - r, cy - r // 2), (cx + r, cy + r // 2), c2, max(1, r // 8))
    alpha = layer.astype(np.float32) / 255.0
    return Edit(blend(img, fill, alpha), alpha, "sticker", {"shape": str(shape)})


SPG_EDITS: dict[str, Callable[..., Edit]] = {
    "copy-move": edit_copy_move,
    "removal": edit_removal,
    "splice": edit_splice,
    "color": edit_color,
    "blur": edit_blur,
    "sharpen": edit_sharpen,
    "text": edit_text,
    "sticker": edit_sticker,
}


def spg_edit(img: np.ndarray, rng: np.random.Generator, op: str, donor: np.ndarray | None = None, **blob_kw) -> Edit:
    """Apply one named in-place edit (see :data:`SPG_OPS`)."""
    if op not in SPG_EDITS:
        raise ValueError(f"unknown SPG op {op!r}; known: {SPG_OPS}")
    if op == "splice":
        if donor is None:
            raise ValueError("splice needs a donor image")
        return edit_splice(img, rng, donor, **blob_kw)
    return SPG_EDITS[op](img, rng, **blob_kw)


# ---------------------------------------------------------------------------- SDG paste


def object_from(img: np.ndarray, rng: np.random.Generator, instances: Sequence[np.ndarray] = (), p_instance: float = 0.6, **blob_kw) -> np.ndarray:
    """An object alpha on ``img``: a real instance mask when available, else a Bézier blob."""
    h, w = img.shape[:2]
    usable = [m for m in instances if m.shape == (h, w) and 0.01 * h * w <= m.sum() <= 0.4 * h * w]
    if usable and rng.random() < p_instance:
        m = usable[int(rng.integers(len(usable)))].astype(np.float32)
        if rng.random() < 0.8:
            k = _odd(int(rng.integers(3, 12)))
            m = cv2.GaussianBlur(m, (k, k), 0)
        return m
    return bezier_blob(h, w, rng, center=_textured_point(img, rng), roundness=0.7, **blob_kw)


def _textured_point(img: np.ndarray, rng: np.random.Generator, margin: float = 0.15) -> tuple[float, float]:
    """A point drawn with probability proportional to local gradient energy: objects have texture,
    flat sky does not (and nothing could match it across a pair)."""
    g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    energy = cv2.GaussianBlur(np.abs(cv2.Laplacian(g, cv2.CV_32F)), (0, 0), 8) + 1e-3
    h, w = g.shape
    my, mx = int(h * margin), int(w * margin)
    inner = energy[my : h - my, mx : w - mx]
    k = rng.choice(inner.size, p=(inner / inner.sum()).ravel())
    y, x = np.unravel_index(k, inner.shape)
    return float(x + mx), float(y + my)


def paste_object(
    background: np.ndarray,
    source: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.7, 1.4),
    rotation: tuple[float, float] = (-30.0, 30.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste the ``alpha`` object of ``source`` into ``background``, scaled and rotated.

    Returns ``(forged, alpha_in_forged_frame, matrix)`` where ``matrix`` (3x3) maps source pixel
    coordinates to forged coordinates.
    """
    bh, bw = background.shape[:2]
    ys, xs = np.nonzero(alpha > 0.01)
    cx, cy = (xs.min() + xs.max()) / 2, (ys.min() + ys.max()) / 2
    ext = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    s = rng.uniform(*scale)
    s = min(s, 0.8 * min(bh, bw) / ext)
    theta = rng.uniform(*rotation)
    half = s * ext / 2
    tx = rng.uniform(half, max(half + 1, bw - half))
    ty = rng.uniform(half, max(half + 1, bh - half))
    m = cv2.getRotationMatrix2D((float(cx), float(cy)), float(theta), float(s))
    m[:, 2] += (tx - cx, ty - cy)
    warped = cv2.warpAffine(source, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    a = cv2.warpAffine(alpha.astype(np.float32), m, (bw, bh), flags=cv2.INTER_LINEAR)
    return blend(background, warped, a), a, np.vstack([m, [0, 0, 1]])


# ----------------------------------------------------------------------- web degradations


@dataclass(frozen=True)
class Degradation:
    """How one side of a pair is degraded on its way through the web."""

    p_rescale: float = 0.7
    scale: tuple[float, float] = (0.6, 1.25)
    p_crop: float = 0.6
    keep: tuple[float, float] = (0.75, 1.0)
    p_shift: float = 0.3
    max_shift: int = 8
    p_jpeg: float = 0.8
    quality: tuple[int, int] = (60, 95)


def crop_resize_matrix(x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
    """Matrix of 'crop at (x0, y0) then resize by (sx, sy)' in OpenCV's pixel-centre convention."""
    return np.array([[sx, 0, (0.5 - x0) * sx - 0.5], [0, sy, (0.5 - y0) * sy - 0.5], [0, 0, 1]], dtype=np.float64)


def degrade(
    img: np.ndarray,
    rng: np.random.Generator,
    deg: Degradation = Degradation(),
    keep_box: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Crop/shift, rescale and pick a file format for one side.

    Returns ``(image, matrix, meta)``: ``matrix`` maps input pixel coordinates to output ones;
    ``meta['format']`` is ``"jpeg"`` (with ``quality``) or ``"png"``; encoding is left to
    :func:`encode` so the caller controls the bytes. ``keep_box=(x0, y0, x1, y1)`` is never
    cropped away (the shared object of an SDG pair).
    """
    h, w = img.shape[:2]
    x0, y0, x1, y1 = 0, 0, w, h
    meta: dict = {}
    if rng.random() < deg.p_crop:
        kw, kh = rng.uniform(*deg.keep), rng.uniform(*deg.keep)
        cw, ch = max(16, int(round(w * kw))), max(16, int(round(h * kh)))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        x1, y1 = x0 + cw, y0 + ch
        meta["crop"] = [x0, y0, x1, y1]
    if rng.random() < deg.p_shift:
        dx = int(rng.integers(1, deg.max_shift + 1))
        dy = int(rng.integers(0, deg.max_shift + 1))
        x0, y0 = min(x0 + dx, x1 - 16), min(y0 + dy, y1 - 16)
        meta["shift"] = [dx, dy]
    if keep_box is not None:
        bx0, by0, bx1, by1 = keep_box
        x0, y0 = min(x0, bx0), min(y0, by0)
        x1, y1 = max(x1, bx1), max(y1, by1)
    out = img[y0:y1, x0:x1]
    sx = sy = 1.0
    if rng.random() < deg.p_rescale:
        s = rng.uniform(*deg.scale)
        scaled = resize_by(out, s, min_side=16)
        sx, sy = scaled.shape[1] / out.shape[1], scaled.shape[0] / out.shape[0]
        out = scaled
        meta["scale"] = [float(sx), float(sy)]
    if rng.random() < deg.p_jpeg:
        meta["format"], meta["quality"] = "jpeg", int(rng.integers(deg.quality[0], deg.quality[1] + 1))
    else:
        meta["format"] = "png"
    return np.ascontiguousarray(out), crop_resize_matrix(x0, y0, sx, sy), meta


def apply_matrix_to_mask(mask: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Carry a mask (bool or alpha) through ``matrix`` into an image of ``size=(w, h)``; bool out."""
    a = cv2.warpAffine(mask.astype(np.float32), matrix[:2], size, flags=cv2.INTER_LINEAR)
    return a > 0.5


def encode(img: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    """Encode RGB to file bytes (``jpeg`` or ``png``)."""
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if fmt == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    else:
        raise ValueError(f"unknown format {fmt!r}")
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {img.shape} image as {fmt}")
    return buf.tobytes()


def decode(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------- web-like pair generator


@dataclass(frozen=True)
class WebPairConfig:
    """Recipe of the synthetic web-like corpus (collect's ``synthetic`` source)."""

    sdg_fraction: float = 0.4
    base_side: tuple[int, int] = (384, 640)
    spg_ops: tuple[str, ...] = SPG_OPS
    blob_px: tuple[float, float] = (64, 640)
    object_px: tuple[float, float] = (384, 800)
    p_second_edit: float = 0.3
    degradation: Degradation = Degradation()
    # Evidence of SPG edits in the pair (off: the single-image test split and training mixtures
    # use the forged side only and keep the original recipe).
    min_changed: float = 0.0  # an edit must change this fraction of its footprint (else the op is redrawn)
    authentic_keeps_edit: bool = False  # the authentic side's crop keeps the edited region


# The recipe of pair corpora (collect's synthetic source, the annotators' training pool): every
# SPG edit has evidence in the pair, so its truth can be recovered from the pair at all.
EVIDENT_PAIRS = WebPairConfig(min_changed=0.25, authentic_keeps_edit=True)


@dataclass
class SyntheticPair:
    """A generated pair as it would arrive from the web, with its hidden truth."""

    category: str
    forged_bytes: bytes
    authentic_bytes: bytes
    forged_format: str
    authentic_format: str
    mask: np.ndarray  # truth in the forged frame (as decoded)
    transform: np.ndarray | None  # authentic -> forged pixel map (SPG); None for SDG
    meta: dict


def random_base(photo: np.ndarray, rng: np.random.Generator, side: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A random crop (50–100% per side) of ``photo`` resized so its long side is in ``side``.

    Returns the base image and the 3x3 map photo→base (to carry instance masks along).
    """
    h, w = photo.shape[:2]
    cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    long_side = int(rng.integers(side[0], side[1] + 1))
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
        x_flip = True
    else:
        x_flip = False
    base = resize_long_side(crop, long_side, min_side=32)
    nh, nw = base.shape[:2]
    m = crop_resize_matrix(x0, y0, nw / cw, nh / ch)
    if x_flip:
        flip = np.array([[-1, 0, nw - 1], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
        m = flip @ m
    return base, m


CHANGE_LEVELS = 12  # grey levels (max over channels) a pixel must move to count as changed
MAX_DRAWS = 10


def changed_fraction(before: np.ndarray, edit: Edit) -> float:
    """Fraction of the edit's footprint whose pixels it moved by more than :data:`CHANGE_LEVELS`."""
    foot = edit.mask
    if not foot.any():
        return 0.0
    diff = np.abs(edit.forged.astype(np.int16) - before.astype(np.int16)).max(2)
    return float((diff[foot] > CHANGE_LEVELS).mean())


def _box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    ys, xs = np.nonzero(mask)
    return None if len(xs) == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)


def _carry_instances(instances: Sequence[np.ndarray], m: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    return [apply_matrix_to_mask(i, m, size) for i in instances]


def make_web_pair(
    rng: np.random.Generator,
    photos: Sequence,
    cfg: WebPairConfig = WebPairConfig(),
    category: str | None = None,
) -> SyntheticPair:
    """One web-like forged/authentic pair with truth (see :class:`WebPairConfig`).

    ``photos`` are :class:`webiml.photos.Photo`. SPG: an in-place edit of a photo, each side then
    degraded on its own. SDG: an object of the authentic photo pasted into another photo.
    Each op's metadata records the fraction of its footprint it ``changed``.
    """
    if len(photos) < 2:
        raise ValueError("need at least two photos (splice donors and SDG backgrounds)")
    category = category or ("sdg" if rng.random() < cfg.sdg_fraction else "spg")
    i, j = rng.choice(len(photos), size=2, replace=False)
    blob_kw = {"size_px": cfg.blob_px}
    base, m_base = random_base(photos[i].rgb, rng, cfg.base_side)
    bh, bw = base.shape[:2]
    meta: dict = {"photo": photos[i].name}
    if category == "spg":
        donor, _ = random_base(photos[j].rgb, rng, cfg.base_side)
        n_edits = 2 if rng.random() < cfg.p_second_edit else 1
        forged, alpha, ops = base, np.zeros((bh, bw), np.float32), []
        for _ in range(n_edits):
            op = str(rng.choice(cfg.spg_ops))
            kw = {} if op in ("text", "sticker") else blob_kw
            best, best_changed = None, -1.0
            for _draw in range(MAX_DRAWS):  # the same op elsewhere / otherwise: the mix of ops is kept
                e = spg_edit(forged, rng, op, donor=donor, **kw)
                changed = changed_fraction(forged, e)
                if changed > best_changed:
                    best, best_changed = e, changed
                if changed >= cfg.min_changed:
                    break
            forged, alpha = best.forged, np.maximum(alpha, best.alpha)
            ops.append({"op": op, **best.meta, "changed": round(best_changed, 3)})
            if op == "splice":
                meta["donor"] = photos[j].name
        meta["ops"] = ops
        auth_base = base
    elif category == "sdg":
        inst = _carry_instances(photos[i].instances, m_base, (bw, bh)) if photos[i].instances else []
        obj = object_from(base, rng, inst, size_px=cfg.object_px)
        keep = _box(obj > 0.01)
        background, _ = random_base(photos[j].rgb, rng, cfg.base_side)
        forged, alpha, m_obj = paste_object(background, base, obj, rng)
        meta.update({"background": photos[j].name, "ops": [{"op": "paste", "object_map": m_obj.tolist()}]})
        meta["object_box"] = list(keep)
        auth_base = base
    else:
        raise ValueError(f"unknown category {category!r}; expected one of {CATEGORIES}")

    f_img, f_m, f_meta = degrade(forged, rng, cfg.degradation, keep_box=_box(alpha > 0.5))
    a_keep = meta.get("object_box") or (_box(alpha > 0.5) if cfg.authentic_keeps_edit else None)
    a_img, a_m, a_meta = degrade(auth_base, rng, cfg.degradation, keep_box=a_keep)
    f_bytes = encode(f_img, f_meta["format"], f_meta.get("quality", 95))
    a_bytes = encode(a_img, a_meta["format"], a_meta.get("quality", 95))
    mask = apply_matrix_to_mask(alpha, f_m, (f_img.shape[1], f_img.shape[0]))
    transform = f_m @ np.linalg.inv(a_m) if category == "spg" else None
    meta.update({"forged_degradation": f_meta, "authentic_degradation": a_meta})
    return SyntheticPair(category, f_bytes, a_bytes, f_meta["format"], a_meta["format"], mask, transform, meta)
