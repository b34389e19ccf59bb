"""Tests for webiml.register: accuracy on known similarity maps, and the refusal cases."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from webiml.register import Registration, RegisterConfig, register, transform_error, warp_to
from webiml.photos import load_photos
from webiml.synth import WebPairConfig, crop_resize_matrix, decode, encode, make_web_pair, object_from, paste_object


def _sized(img: np.ndarray) -> tuple[int, int]:
    return img.shape[1], img.shape[0]


def _web_copy(photo: np.ndarray, scale: float, angle: float, crop: tuple[float, float, float, float],
              shift: tuple[int, int], quality: int = 70) -> tuple[np.ndarray, np.ndarray]:
    """Rescale ``photo`` (INTER_AREA / LINEAR), rotate it by ``angle`` degrees about its centre, cut
    the window ``crop`` (fractions of the rescaled size) moved by ``shift`` px and JPEG it.

    Returns the forged-like image and the true 3x3 map photo → image.
    """
    h, w = photo.shape[:2]
    sw, sh = round(w * scale), round(h * scale)
    scaled = cv2.resize(photo, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    m_scale = crop_resize_matrix(0, 0, sw / w, sh / h)
    x0, y0 = round(crop[0] * sw) + shift[0], round(crop[1] * sh) + shift[1]
    x1, y1 = round(crop[2] * sw) + shift[0], round(crop[3] * sh) + shift[1]
    rot = np.vstack([cv2.getRotationMatrix2D(((sw - 1) / 2, (sh - 1) / 2), angle, 1.0), [0, 0, 1]])
    m_crop = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1]], np.float64) @ rot
    size = (x1 - x0, y1 - y0)
    out = cv2.warpAffine(scaled, m_crop[:2], size, flags=cv2.INTER_LINEAR)
    cover = cv2.warpAffine(np.ones((sh, sw), np.uint8), m_crop[:2], size, flags=cv2.INTER_NEAREST)
    assert cover.all(), "test setup: the window must lie inside the rotated photo"
    return decode(encode(out, "jpeg", quality)), m_crop @ m_scale


CASES = [
    # photo, scale, angle (deg), crop window (fractions), shift (px)
    ("astronaut", 0.6, 0.0, (0.05, 0.05, 0.90, 0.95), (0, 0)),
    ("astronaut", 1.3, 0.0, (0.15, 0.10, 0.85, 0.80), (3, -2)),
    ("coffee", 0.9, 3.0, (0.10, 0.10, 0.85, 0.85), (2, 5)),
    ("chelsea", 1.1, -4.0, (0.12, 0.12, 0.85, 0.85), (-3, 0)),
    ("rocket", 0.75, 2.0, (0.10, 0.10, 0.90, 0.88), (0, 4)),
    ("grace_hopper", 1.0, 0.0, (0.06, 0.08, 0.80, 0.85), (5, 0)),
    ("china", 0.7, 1.0, (0.05, 0.05, 0.95, 0.95), (-2, -2)),
]


@pytest.fixture(scope="module")
def accuracy(rgb):
    """Registration of every case in CASES: (name, status, error px)."""
    rows = []
    for name, scale, angle, crop, shift in CASES:
        authentic = rgb(name)
        forged, truth = _web_copy(authentic, scale, angle, crop, shift)
        reg = register(forged, authentic)
        err = None
        if reg.matrix is not None:
            err = transform_error(reg.matrix, truth, _sized(forged), _sized(authentic))
        rows.append((name, scale, angle, reg, err))
    return rows


@pytest.mark.parametrize("i", range(len(CASES)))
def test_register_recovers_known_similarity(accuracy, i):
    name, scale, angle, reg, err = accuracy[i]
    assert reg.status == "registered", (name, reg.status, reg.detail)
    assert reg.registered and reg.model in ("similarity", "affine", "homography")
    assert reg.matrix.shape == (3, 3)
    assert reg.n_inliers >= 6 and reg.n_matches >= reg.n_inliers
    assert reg.overlap_fraction >= 0.5 and reg.residual <= 12.0
    assert err < 1.0, f"{name} scale {scale} rot {angle}: transform error {err:.3f} px"


def test_register_mean_error(accuracy):
    errs = [r[4] for r in accuracy]
    mean = float(np.mean(errs))
    assert mean < 0.3, f"mean transform error over {len(errs)} cases: {mean:.3f} px ({np.round(errs, 3)})"


def test_registered_warp_matches_forged(rgb):
    authentic = rgb("coffee")
    forged, _ = _web_copy(authentic, 0.8, 2.0, (0.1, 0.1, 0.9, 0.9), (1, 1), quality=90)
    reg = register(forged, authentic)
    warped, cov = warp_to(authentic, reg.matrix, _sized(forged))
    assert cov.mean() > 0.97
    d = np.abs(warped.astype(np.int16) - forged.astype(np.int16)).mean(axis=2)[cov]
    assert np.median(d) < 4.0


def test_identity_when_only_recompressed(rgb):
    authentic = rgb("astronaut")
    forged = decode(encode(authentic, "jpeg", 90))
    reg = register(forged, authentic)
    assert reg.status == "identity" and reg.model == "identity" and reg.registered
    np.testing.assert_array_equal(reg.matrix, np.eye(3))
    assert reg.residual <= RegisterConfig().identity_residual
    assert reg.overlap_fraction > 0.95


def test_same_size_but_shifted_is_registered_not_identity(rgb):
    photo = rgb("chelsea")
    authentic, forged = photo[:260, :400], photo[6:266, 9:409]
    reg = register(forged, authentic)
    assert reg.status == "registered"
    truth = np.array([[1, 0, -9], [0, 1, -6], [0, 0, 1]], np.float64)
    assert transform_error(reg.matrix, truth, _sized(forged), _sized(authentic)) < 0.5


@pytest.mark.parametrize(
    "forged_name, forged_box, authentic_name, authentic_box",
    [
        ("coffee", (50, 350, 100, 500), "astronaut", (100, 400, 100, 500)),
        ("coffee", None, "astronaut", None),
        ("chelsea", None, "rocket", None),
        ("china", None, "coffee", None),
    ],
)
def test_unrelated_photos_share_no_content(rgb, forged_name, forged_box, authentic_name, authentic_box):
    def cut(name, box):
        img = rgb(name)
        return img if box is None else img[box[0] : box[1], box[2] : box[3]]

    reg = register(cut(forged_name, forged_box), cut(authentic_name, authentic_box))
    assert reg.status == "no-shared-content", (reg.status, reg.detail)
    assert not reg.registered and reg.matrix is None and reg.model is None
    assert reg.detail


@pytest.mark.parametrize("seed", range(5))
def test_sdg_like_pair_is_not_registered(rgb, seed):
    rng = np.random.default_rng(seed)
    background = rgb(["coffee", "rocket", "china"][seed % 3])
    source = rgb(["astronaut", "chelsea"][seed % 2])
    alpha = object_from(source, rng, size_px=(300, 500))
    forged, a, _ = paste_object(background, source, alpha, rng)
    forged = decode(encode(forged, "jpeg", 85))
    reg = register(forged, source)
    assert reg.status in ("unregistered", "no-shared-content"), (reg.status, reg.overlap_fraction, reg.residual)
    assert not reg.registered
    if reg.status == "unregistered":
        assert reg.detail


def test_sdg_pair_with_large_object_is_not_registered():
    # collect's synthetic pair #1 at seed 3 with base_side=(256, 320): an SDG pair (a cat's eye
    # from 'chelsea' pasted onto 'rocket'), truth mask = 45% of the forged frame.
    p = make_web_pair(np.random.default_rng([3, 1]), load_photos("web"), WebPairConfig(base_side=(256, 320)))
    if p.category != "sdg" or p.transform is not None:  # precondition, not the bug: fail for real
        pytest.fail(f"setup: expected an SDG pair, got {p.category}")
    forged, authentic = decode(p.forged_bytes), decode(p.authentic_bytes)
    reg = register(forged, authentic)
    if reg.registered:
        warped, cov = warp_to(authentic, reg.matrix, _sized(forged))
        d = np.abs(forged.astype(np.int16) - warped.astype(np.int16)).mean(axis=2)
        outside = float(np.median(d[cov & ~p.mask]))
        # Observed: status 'registered', overlap 0.89, residual 7, but median |diff| outside the
        # pasted object = 60 grey levels: the "registered authentic" is wrong for the whole background.
        assert outside < 12.0, (reg.status, reg.overlap_fraction, reg.residual, outside)
    assert not reg.registered


def test_featureless_images_share_no_content():
    flat = np.full((120, 160, 3), 128, np.uint8)
    other = np.full((100, 150, 3), 40, np.uint8)
    reg = register(flat, other)
    assert reg.status == "no-shared-content" and reg.matrix is None


def test_registration_dataclass():
    r = Registration("unregistered", None, None)
    assert not r.registered and r.n_inliers == 0 and r.residual is None


# -------------------------------------------------------------------------------- warp_to


def test_warp_to_pure_translation_coverage():
    auth = np.arange(30 * 40 * 3, dtype=np.uint8).reshape(30, 40, 3)
    m = np.array([[1, 0, 5], [0, 1, 3], [0, 0, 1]], np.float64)
    out, cov = warp_to(auth, m, (50, 40))
    assert out.shape == (40, 50, 3) and cov.shape == (40, 50) and cov.dtype == bool
    expected = np.zeros((40, 50), bool)
    expected[3:33, 5:45] = True
    np.testing.assert_array_equal(cov, expected)
    np.testing.assert_array_equal(out[3:33, 5:45], auth)
    assert out[~cov].max() == 0
    # A shift to the left/up crops the authentic instead.
    out2, cov2 = warp_to(auth, np.array([[1, 0, -7], [0, 1, -4], [0, 0, 1]], np.float64), (20, 20))
    assert cov2.all() and np.array_equal(out2, auth[4:24, 7:27])


def test_warp_to_homography_branch():
    auth = np.full((30, 40, 3), 200, np.uint8)
    m = np.array([[1, 0, 2], [0, 1, 1], [1e-4, 0, 1]], np.float64)
    out, cov = warp_to(auth, m, (50, 40))
    assert cov.any() and not cov.all()
    assert (out[cov] == 200).all()  # covered pixels read the authentic only
    outside = cv2.dilate(cov.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert outside.any() and out[outside].max() == 0


def test_warp_to_subpixel_rim_is_not_covered():
    """A sub-pixel shift blends the black border into the authentic's edge: those rim pixels
    are not covered (else they would read as a line of differences)."""
    auth = np.full((30, 40, 3), 200, np.uint8)
    out, cov = warp_to(auth, np.array([[1, 0, 5.5], [0, 1, 3.25], [0, 0, 1]], np.float64), (50, 40))
    assert (out[cov] == 200).all()
    rim = (out[..., 0] > 0) & ~cov
    assert rim.any() and (out[rim][:, 0] < 200).all()
    assert cov.sum() >= 29 * 39  # at most one row and one column are lost


# ------------------------------------------------------------------------ transform_error


def test_transform_error_values():
    eye = np.eye(3)
    assert transform_error(eye, eye, (100, 80), (100, 80)) == 0.0
    shift = np.array([[1, 0, 2], [0, 1, 0], [0, 0, 1]], np.float64)
    assert transform_error(shift, eye, (100, 80), (100, 80)) == pytest.approx(2.0)
    diag = np.array([[1, 0, 3], [0, 1, 4], [0, 0, 1]], np.float64)
    assert transform_error(diag, eye, (100, 80), (100, 80)) == pytest.approx(5.0)
    # Only points that truly land inside the forged frame count.
    far = np.array([[1, 0, 1000], [0, 1, 0], [0, 0, 1]], np.float64)
    with pytest.raises(ValueError):
        transform_error(eye, far, (100, 80), (100, 80))
    # sizes in the order (forged, authentic): the authentic grid {0, 8, ...}² lands 50 px right, and
    # only x, y in {0, 8} fall inside the 60 × 9 forged frame; the estimate is 10% too large
    true = np.array([[1, 0, 50], [0, 1, 0], [0, 0, 1]], np.float64)
    est = np.array([[1.1, 0, 50], [0, 1.1, 0], [0, 0, 1]], np.float64)
    assert transform_error(est, true, (60, 9), (100, 100)) == pytest.approx(0.1 * (8 + 8 + 8 * np.sqrt(2)) / 4)
