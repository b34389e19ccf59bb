"""Tests for webiml.synth: shapes, SPG edits, SDG paste, web degradations and the pair generator."""

from __future__ import annotations

import math
from dataclasses import replace

import cv2
import numpy as np
import pytest

from webiml.register import warp_to
from webiml.synth import (
    CHANGE_LEVELS,
    EVIDENT_PAIRS,
    SPG_OPS,
    Degradation,
    Edit,
    WebPairConfig,
    bezier_blob,
    changed_fraction,
    closed_bezier,
    crop_resize_matrix,
    decode,
    degrade,
    encode,
    make_web_pair,
    paste_object,
    spg_edit,
)

SMALL = WebPairConfig(base_side=(256, 320))


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def img256(rgb):
    return cv2.resize(rgb("astronaut"), (256, 256), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def donor(rgb):
    return cv2.resize(rgb("coffee"), (300, 200), interpolation=cv2.INTER_AREA)


def _centroid(weights: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[: weights.shape[0], : weights.shape[1]]
    w = weights.astype(np.float64)
    return np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])


def _apply(m: np.ndarray, xy) -> np.ndarray:
    q = m @ np.array([xy[0], xy[1], 1.0])
    return q[:2] / q[2]


# ------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("seed", range(20))
def test_bezier_blob_range_and_size(seed):
    lo, hi = 60, 100
    a = bezier_blob(256, 256, _rng(seed), size_px=(lo, hi), ref_side=256, blur_kernel=(3, 11))
    assert a.dtype == np.float32 and a.shape == (256, 256)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert (a > 0.5).sum() > 0
    # The blob is inside a disc of diameter `hi` (control points at radius <= hi/2).
    assert a.sum() <= math.pi * (hi / 2) ** 2
    ys, xs = np.nonzero(a > 0.01)
    extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    assert extent <= hi + 11 + 2  # + blur kernel + antialiasing
    assert extent >= 0.45 * lo  # the farthest control point is at radius >= roundness * lo / 2


def test_bezier_blob_alpha_never_exceeds_one():
    # Blurring a 1.0 plateau in float32 gives 1.0000001 unless clipped (seeds 1, 5, 7 did).
    for seed in (1, 5, 7, 12):
        a = bezier_blob(256, 256, _rng(seed), size_px=(60, 100), ref_side=256)
        assert a.max() <= 1.0 and a.min() >= 0.0


def test_bezier_blob_three_points_not_a_sliver():
    size = 80
    for seed in range(30):
        a = bezier_blob(256, 256, _rng(seed), size_px=(size, size), ref_side=256, n_points=(3, 3), p_blur=0)
        # Evenly spread 3 points at radius >= 0.45 * size / 2 enclose a triangle at least this big.
        r = 0.45 * size / 2
        assert a.sum() >= 0.5 * math.sin(2 * math.pi / 3) * 3 * r * r, seed


def test_bezier_blob_scales_with_image_and_respects_center():
    a = bezier_blob(512, 512, _rng(3), size_px=(200, 200), ref_side=1024, p_blur=0, center=(100.0, 400.0))
    ys, xs = np.nonzero(a > 0.5)
    # size 200 at 1024² → 100 at 512²: the blob fits in a 100-px disc around (100, 400)
    assert xs.max() - xs.min() <= 101 and ys.max() - ys.min() <= 101
    assert np.hypot(xs.mean() - 100, ys.mean() - 400) < 30
    # A centre too close to the border is pulled inside the frame.
    b = bezier_blob(200, 200, _rng(3), size_px=(100, 100), ref_side=200, p_blur=0, center=(0.0, 0.0))
    assert b[0, :].max() == 0 and b[:, 0].max() == 0 and b.sum() > 500


def test_bezier_blob_is_seeded():
    a = bezier_blob(200, 300, _rng(7))
    b = bezier_blob(200, 300, _rng(7))
    c = bezier_blob(200, 300, _rng(8))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_closed_bezier_passes_through_control_points():
    pts = np.array([[10.0, 10.0], [60.0, 15.0], [70.0, 50.0], [30.0, 70.0], [5.0, 40.0]])
    curve = closed_bezier(pts, samples_per_segment=24)
    assert curve.shape == (5 * 24, 2)
    np.testing.assert_allclose(curve[::24], pts, atol=1e-12)
    # Closed: the last sample leads back towards the first point.
    assert np.linalg.norm(curve[-1] - pts[0]) < np.linalg.norm(pts[-1] - pts[0])


# ----------------------------------------------------------------------------- SPG edits


@pytest.mark.parametrize("op", SPG_OPS)
@pytest.mark.parametrize("seed", [0, 1, 4])
def test_spg_edit_is_local(op, seed, img256, donor):
    before = img256.copy()
    e = spg_edit(img256, _rng(seed), op, donor=donor, size_px=(60, 120), ref_side=256)
    assert np.array_equal(img256, before), "the input must not be modified"
    assert e.op == op
    assert e.forged.shape == img256.shape and e.forged.dtype == np.uint8
    assert e.alpha.shape == img256.shape[:2] and e.alpha.dtype == np.float32
    assert 0.0 <= e.alpha.min() and e.alpha.max() <= 1.0
    m = e.mask
    assert m.dtype == bool and m.any()
    d = np.abs(e.forged.astype(np.int16) - img256.astype(np.int16)).mean(axis=2)
    inside, outside = d[m].mean(), d[~m].mean()
    # Nothing at all changes where the footprint is zero; only the soft rim of a blurred alpha
    # (0 < alpha <= 0.5) may change outside the truth mask.
    assert d[e.alpha == 0].max() == 0
    assert outside < 0.5, (op, outside)
    assert inside > 5.0 and inside > 20 * outside, (op, inside, outside)


def test_spg_edit_is_seeded(img256, donor):
    for op in SPG_OPS:
        a = spg_edit(img256, _rng(5), op, donor=donor)
        b = spg_edit(img256, _rng(5), op, donor=donor)
        assert np.array_equal(a.forged, b.forged) and np.array_equal(a.alpha, b.alpha) and a.meta == b.meta


def test_spg_edit_errors(img256):
    with pytest.raises(ValueError, match="unknown SPG op"):
        spg_edit(img256, _rng(0), "warp")
    with pytest.raises(ValueError, match="donor"):
        spg_edit(img256, _rng(0), "splice")


# ----------------------------------------------------------------------------- SDG paste


@pytest.mark.parametrize("seed", range(5))
def test_paste_object_matrix_maps_object_onto_its_alpha(seed, rgb):
    source = cv2.resize(rgb("astronaut"), (300, 300), interpolation=cv2.INTER_AREA)
    background = rgb("coffee")[:320, :420].copy()
    alpha = bezier_blob(300, 300, _rng(100 + seed), size_px=(90, 120), ref_side=300, roundness=0.8)
    forged, a, m = paste_object(background, source, alpha, _rng(seed))
    assert forged.shape == background.shape and forged.dtype == np.uint8
    assert a.shape == background.shape[:2]
    assert m.shape == (3, 3) and np.allclose(m[2], [0, 0, 1])
    # Similarity: scale in the configured range (capped so the object fits), rotation within ±30°.
    ys, xs = np.nonzero(alpha > 0.01)
    cap = 0.8 * min(background.shape[:2]) / (max(xs.max() - xs.min(), ys.max() - ys.min()) + 1)
    s = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    theta = math.degrees(math.atan2(m[0, 1], m[0, 0]))  # OpenCV: [[cos, sin], [-sin, cos]] * s
    assert min(0.7, cap) - 1e-9 <= s <= min(1.4, cap) + 1e-9 and abs(theta) <= 30 + 1e-6
    np.testing.assert_allclose(m[:2, :2] / s, [[math.cos(math.radians(theta)), math.sin(math.radians(theta))],
                                               [-math.sin(math.radians(theta)), math.cos(math.radians(theta))]], atol=1e-9)
    # The object stays in frame and its mass is conserved (scaled by s²).
    assert a.sum() == pytest.approx(alpha.sum() * s * s, rel=0.03)
    # The map sends the source centroid onto the pasted alpha's centroid.
    assert np.linalg.norm(_apply(m, _centroid(alpha)) - _centroid(a)) < 1.0
    # Pixels of the source object land where the matrix says (away from the soft rim).
    core = cv2.erode((alpha > 0.99).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ys, xs = np.nonzero(core)
    k = _rng(0).choice(len(xs), 20, replace=False)
    for x, y in zip(xs[k], ys[k]):
        u, v = np.round(_apply(m, (x, y))).astype(int)
        assert a[v, u] > 0.9


# ----------------------------------------------------------------------- web degradations


def test_crop_resize_matrix_matches_opencv_resize():
    # A Gaussian dot at (x, y) in a 200x160 image, cropped at (30, 20) and resized by 0.5 × 0.75.
    img = np.zeros((160, 200), np.float32)
    x, y = 97.0, 81.0
    yy, xx = np.mgrid[:160, :200]
    img[:] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 3.0**2))
    crop = img[20:140, 30:190]
    out = cv2.resize(crop, (80, 90), interpolation=cv2.INTER_LINEAR)
    m = crop_resize_matrix(30, 20, 80 / 160, 90 / 120)
    assert np.linalg.norm(_apply(m, (x, y)) - _centroid(out)) < 0.1
    np.testing.assert_allclose(crop_resize_matrix(0, 0, 1, 1), np.eye(3))


def _dot_image(h: int, w: int, x: float, y: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    g = 255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    return np.repeat(g[..., None], 3, axis=2).astype(np.uint8)


HEAVY = Degradation(p_rescale=1.0, scale=(0.6, 1.25), p_crop=1.0, keep=(0.5, 0.9), p_shift=1.0, max_shift=8)


@pytest.mark.parametrize("seed", range(12))
def test_degrade_matrix_tracks_a_dot(seed):
    h, w = 240, 320
    r = _rng(1000 + seed)
    x, y = float(r.uniform(20, w - 20)), float(r.uniform(20, h - 20))
    img = _dot_image(h, w, x, y)
    box = (int(x) - 8, int(y) - 8, int(x) + 9, int(y) + 9)
    out, m, meta = degrade(img, _rng(seed), HEAVY, keep_box=box)
    assert out.dtype == np.uint8 and out.ndim == 3
    assert {"crop", "shift", "scale", "format"} <= set(meta)
    assert meta["format"] in ("jpeg", "png")
    want = _apply(m, (x, y))
    got = _centroid(out[..., 0].astype(np.float64) * (out[..., 0] > 8))
    assert np.linalg.norm(want - got) < 1.0, (want, got, meta)
    # Matrix is "crop then scale": its scale is the output/crop size ratio.
    sx, sy = meta["scale"]
    assert m[0, 0] == pytest.approx(sx) and m[1, 1] == pytest.approx(sy)


@pytest.mark.parametrize("seed", range(30))
def test_degrade_never_crops_keep_box(seed):
    h, w = 200, 300
    r = _rng(seed)
    x0, y0 = int(r.integers(0, w - 60)), int(r.integers(0, h - 60))
    box = (x0, y0, x0 + int(r.integers(10, 60)), y0 + int(r.integers(10, 60)))
    img = np.zeros((h, w, 3), np.uint8)
    out, m, _ = degrade(img, _rng(seed), HEAVY, keep_box=box)
    oh, ow = out.shape[:2]
    for cx, cy in ((box[0], box[1]), (box[2] - 1, box[3] - 1)):
        u, v = _apply(m, (cx, cy))
        assert -0.5 <= u <= ow - 0.5 and -0.5 <= v <= oh - 0.5, (box, (u, v), out.shape)


def test_degrade_without_changes_is_identity():
    img = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    none = Degradation(p_rescale=0, p_crop=0, p_shift=0, p_jpeg=0)
    out, m, meta = degrade(img, _rng(0), none)
    assert np.array_equal(out, img) and np.allclose(m, np.eye(3)) and meta == {"format": "png"}


def test_encode_decode_roundtrip():
    img = (np.arange(32 * 48 * 3) % 251).astype(np.uint8).reshape(32, 48, 3)
    assert np.array_equal(decode(encode(img, "png")), img)
    j = decode(encode(img, "jpeg", 95))
    assert j.shape == img.shape
    with pytest.raises(ValueError):
        encode(img, "gif")


# ------------------------------------------------------------------- web-like pair generator


def _truth_residual(p) -> tuple[float, float]:
    f, a = decode(p.forged_bytes), decode(p.authentic_bytes)
    warped, cov = warp_to(a, p.transform, (f.shape[1], f.shape[0]))
    cov = cv2.erode(cov.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    valid = cov & ~cv2.dilate(p.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    d = np.abs(f.astype(np.int16) - warped.astype(np.int16)).mean(axis=2)
    return float(np.median(d[valid])), float(valid.mean())


@pytest.mark.parametrize("seed", range(8))
def test_make_web_pair_spg_truth_transform(seed, web_photos):
    p = make_web_pair(_rng(seed), web_photos, SMALL, category="spg")
    assert p.category == "spg"
    f = decode(p.forged_bytes)
    assert p.mask.shape == f.shape[:2] and p.mask.dtype == bool and p.mask.any()
    assert p.transform.shape == (3, 3)
    med, valid = _truth_residual(p)
    assert valid > 0.2
    assert med < 8.0, f"median |forged - warped authentic| outside the mask = {med:.2f}"
    assert p.forged_format in ("jpeg", "png") and p.authentic_format in ("jpeg", "png")
    assert p.meta["ops"] and all(o["op"] in SPG_OPS for o in p.meta["ops"])


@pytest.mark.parametrize("seed", range(4))
def test_make_web_pair_sdg(seed, web_photos):
    p = make_web_pair(_rng(seed), web_photos, SMALL, category="sdg")
    f = decode(p.forged_bytes)
    assert p.category == "sdg" and p.transform is None
    assert p.mask.shape == f.shape[:2] and p.mask.any()
    assert p.meta["ops"][0]["op"] == "paste"
    assert p.meta["background"] != p.meta["photo"]
    # The shared object survived the authentic side's crop.
    a = decode(p.authentic_bytes)
    x0, y0, x1, y1 = p.meta["object_box"]
    assert x1 > x0 and y1 > y0 and min(a.shape[:2]) >= 16


def test_make_web_pair_is_seeded(web_photos):
    a = make_web_pair(_rng(11), web_photos, SMALL)
    b = make_web_pair(_rng(11), web_photos, SMALL)
    assert a.forged_bytes == b.forged_bytes and a.authentic_bytes == b.authentic_bytes
    assert np.array_equal(a.mask, b.mask) and a.meta == b.meta and a.category == b.category
    assert (a.transform is None and b.transform is None) or np.array_equal(a.transform, b.transform)
    c = make_web_pair(_rng(12), web_photos, SMALL)
    assert c.forged_bytes != a.forged_bytes


def test_make_web_pair_category_mix(web_photos):
    only_spg = WebPairConfig(base_side=(256, 320), sdg_fraction=0.0)
    assert {make_web_pair(_rng(s), web_photos, only_spg).category for s in range(10)} == {"spg"}
    only_sdg = WebPairConfig(base_side=(256, 320), sdg_fraction=1.0)
    assert {make_web_pair(_rng(s), web_photos, only_sdg).category for s in range(4)} == {"sdg"}


def test_make_web_pair_spg_ops_restricted(web_photos):
    cfg = WebPairConfig(base_side=(256, 320), sdg_fraction=0.0, spg_ops=("blur",), p_second_edit=0.0)
    for s in range(3):
        p = make_web_pair(_rng(s), web_photos, cfg)
        assert [o["op"] for o in p.meta["ops"]] == ["blur"]


def test_make_web_pair_errors(web_photos):
    with pytest.raises(ValueError, match="two photos"):
        make_web_pair(_rng(0), web_photos[:1], SMALL)
    with pytest.raises(ValueError, match="unknown category"):
        make_web_pair(_rng(0), web_photos, SMALL, category="gan")


def test_changed_fraction_counts_footprint_pixels_the_edit_moved():
    before = np.full((40, 40, 3), 100, np.uint8)
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1.0
    assert changed_fraction(before, Edit(before.copy(), alpha, "blur")) == 0.0  # blur of a flat patch
    after = before.copy()
    after[10:20, 10:30] += CHANGE_LEVELS + 1  # half the footprint moved, in one channel is enough
    after[20:30, 10:30, 0] += CHANGE_LEVELS  # not beyond the threshold
    assert changed_fraction(before, Edit(after, alpha, "color")) == pytest.approx(0.5)
    assert changed_fraction(before, Edit(after, np.zeros_like(alpha), "color")) == 0.0  # no footprint


def _truth_outside_authentic(p) -> float:
    """Fraction of the truth the authentic image does not contain (in the forged frame; nearest
    pixel, unlike warp_to's coverage, which also drops the interpolated rim)."""
    a = decode(p.authentic_bytes)
    f = decode(p.forged_bytes)
    ones = np.full(a.shape[:2], 255, np.uint8)
    cov = cv2.warpPerspective(ones, np.asarray(p.transform, float), (f.shape[1], f.shape[0]), flags=cv2.INTER_NEAREST) > 0
    return float((p.mask & ~cov).sum() / max(p.mask.sum(), 1))


def test_evident_pairs_show_every_edit(web_photos):
    """Pair corpora: each SPG edit changes >= min_changed of its footprint and the authentic's crop
    keeps it; the default recipe (single-image uses) may do neither."""
    evident = replace(EVIDENT_PAIRS, base_side=(256, 320), sdg_fraction=0.0)
    plain = replace(evident, min_changed=0.0, authentic_keeps_edit=False)
    outside = []
    for s in range(24):
        p = make_web_pair(_rng([5, s]), web_photos, evident)
        assert all(o["changed"] >= evident.min_changed for o in p.meta["ops"]), p.meta["ops"]
        assert _truth_outside_authentic(p) < 0.02
        q = make_web_pair(_rng([5, s]), web_photos, plain)
        assert p.meta["ops"][0]["op"] == q.meta["ops"][0]["op"]  # redraws keep the op: the same mix of edits
        outside.append(_truth_outside_authentic(q))
    assert max(outside) > 0.1  # without it some authentic crops cut the edit away


def test_evident_pairs_option_leaves_the_forged_side_alone(web_photos):
    """``authentic_keeps_edit`` changes only the authentic crop: forged image and truth are those of
    the plain recipe (so the single-image test split can keep its images)."""
    plain = WebPairConfig(base_side=(256, 320), sdg_fraction=0.0)
    keeps = replace(plain, authentic_keeps_edit=True)
    for s in range(6):
        a, b = make_web_pair(_rng([6, s]), web_photos, plain), make_web_pair(_rng([6, s]), web_photos, keeps)
        assert a.forged_bytes == b.forged_bytes and np.array_equal(a.mask, b.mask)
