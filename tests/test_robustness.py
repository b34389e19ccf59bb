"""Robustness perturbations: sizes, strength ordering, determinism, mask alignment."""

from __future__ import annotations

import numpy as np
import pytest

from webiml.evaluate.robustness import PERTURBATIONS, perturb, perturb_pair


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def photo(rgb):
    return rgb("astronaut")[100:292, 120:376].copy()  # 192x256 natural photo


def test_default_levels():
    assert PERTURBATIONS == {"jpeg": (90, 70, 50), "resize": (0.75, 0.5), "blur": (1, 2, 3), "noise": (3, 7, 15)}


@pytest.mark.parametrize("kind", sorted(PERTURBATIONS))
def test_every_level_keeps_type_and_changes_pixels(photo, kind):
    for level in PERTURBATIONS[kind]:
        out = perturb(photo, kind, level, np.random.default_rng(0))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        if kind == "resize":
            assert out.shape[:2] == (round(192 * level), round(256 * level))
        else:
            assert out.shape == photo.shape
            assert np.any(out != photo)


@pytest.mark.parametrize("kind", ["jpeg", "blur", "noise"])
def test_quality_drops_monotonically(photo, kind):
    levels = PERTURBATIONS[kind]  # listed from mild to strong
    psnr = [_psnr(photo, perturb(photo, kind, lv, np.random.default_rng(1))) for lv in levels]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[0] < 60  # even the mildest level is a real change


def test_noise_std_and_determinism():
    grey = np.full((200, 200, 3), 128, np.uint8)  # mid-grey: no clipping
    for std in PERTURBATIONS["noise"]:
        out = perturb(grey, "noise", std, np.random.default_rng(5))
        assert np.std(out.astype(float) - 128) == pytest.approx(std, rel=0.03)
        assert abs(np.mean(out.astype(float) - 128)) < 0.2
    a = perturb(grey, "noise", 7, np.random.default_rng(3))
    assert np.array_equal(a, perturb(grey, "noise", 7, np.random.default_rng(3)))
    assert not np.array_equal(a, perturb(grey, "noise", 7, np.random.default_rng(4)))


def test_resize_keeps_mask_aligned():
    img = np.full((120, 160, 3), 30, np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[37:91, 50:117] = True
    img[mask] = 220
    for scale in PERTURBATIONS["resize"]:
        out, m = perturb_pair(img, mask, "resize", scale, np.random.default_rng(0))
        assert m.dtype == bool and m.shape == out.shape[:2]
        bright = out[..., 0] > 125
        iou = (bright & m).sum() / (bright | m).sum()
        assert iou > 0.95, (scale, iou)
        ys, xs = np.nonzero(m)
        # centre of the region scales with the image (pixel-centre convention)
        assert (xs.mean() + 0.5) / scale - 0.5 == pytest.approx((50 + 116) / 2, abs=1.0)
        assert (ys.mean() + 0.5) / scale - 0.5 == pytest.approx((37 + 90) / 2, abs=1.0)


def test_pair_leaves_mask_alone_when_size_kept(photo):
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[10:50, 20:60] = 255
    out, m = perturb_pair(photo, mask, "jpeg", 70, np.random.default_rng(0))
    assert m is mask and out.shape == photo.shape
    out, m = perturb_pair(photo, None, "resize", 0.5, np.random.default_rng(0))
    assert m is None and out.shape[:2] == (96, 128)
    _, m = perturb_pair(photo, mask, "resize", 0.5, np.random.default_rng(0))
    assert m.dtype == np.uint8 and set(np.unique(m)) == {0, 255}


def test_errors(photo):
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(photo, "rotate", 1, rng)
    with pytest.raises(ValueError, match="1..100"):
        perturb(photo, "jpeg", 0, rng)
    with pytest.raises(ValueError, match="> 0"):
        perturb(photo, "blur", -1, rng)
    with pytest.raises(ValueError, match="uint8"):
        perturb(photo.astype(np.float32), "blur", 1, rng)
    with pytest.raises(ValueError, match="does not match"):
        perturb_pair(photo, np.zeros((5, 5), bool), "blur", 1, rng)
