"""Object Jitter (docs/methods.md): enlarged re-paste of an object on itself, label = enlarged footprint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from webiml.jitter import JitterConfig, JitterRejected, jitter_blur_kernel, jitter_pad, object_jitter

H, W = 96, 128
NO_BLUR = JitterConfig(p_blur=0.0)


@pytest.fixture
def img() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)


def rect(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.mark.parametrize(
    "h, w, k",
    [(15, 15, 0), (8, 15, 0), (16, 8, 3), (8, 31, 3), (32, 10, 5), (63, 63, 5), (10, 64, 7),
     (127, 5, 7), (128, 128, 9), (255, 1, 9), (256, 256, 11), (40, 1000, 11)],
)
def test_blur_kernel_table(h, w, k):
    assert jitter_blur_kernel(h, w) == k


def test_pad_is_rounded_sixteenth():
    assert [jitter_pad(n) for n in (7, 8, 23, 24, 40, 48, 100)] == [0, 1, 1, 2, 3, 3, 6]


def test_label_is_enlarged_footprint_centred(img):
    # box 48 wide (pad round(3.0) = 3) and 40 high (pad round(2.5) = 3, halves rounded up)
    inst = rect(20, 60, 30, 78)
    j = object_jitter(img, [inst], np.random.default_rng(0), NO_BLUR)
    expected = rect(17, 63, 27, 81)
    np.testing.assert_array_equal(j.mask, expected)
    assert j.objects == (0,) and j.boxes == ((27, 17, 81, 63),)
    ys, xs = np.nonzero(j.mask)
    assert (ys.min() + ys.max()) / 2 == (20 + 59) / 2 and (xs.min() + xs.max()) / 2 == (30 + 77) / 2
    grown = cv2.resize(img[20:60, 30:78], (48 + 6, 40 + 6), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(j.image[17:63, 27:81], grown)
    np.testing.assert_array_equal(j.image[~expected], img[~expected])


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_border_clipping(img, corner):
    # 32 x 32 object flush with the border: pad 2 each side, the outer 2 px fall off the image
    if corner == "top-left":
        inst, label, src = rect(0, 32, 0, 32), rect(0, 34, 0, 34), np.s_[2:36, 2:36]
        box = (0, 0, 34, 34)
    else:
        inst, label, src = rect(H - 32, H, W - 32, W), rect(H - 34, H, W - 34, W), np.s_[0:34, 0:34]
        box = (W - 34, H - 34, W, H)
    j = object_jitter(img, [inst], np.random.default_rng(0), NO_BLUR)
    np.testing.assert_array_equal(j.mask, label)
    assert j.boxes == (box,)
    y0, x0 = np.nonzero(inst)[0].min(), np.nonzero(inst)[1].min()
    grown = cv2.resize(img[y0 : y0 + 32, x0 : x0 + 32], (36, 36), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(j.image[label].reshape(34, 34, 3), grown[src])


def test_irregular_object_footprint(img):
    inst = np.zeros((H, W), np.uint8)
    cv2.circle(inst, (64, 48), 30, 1, -1)  # box 61 x 61 -> pad 4 -> 69 x 69
    j = object_jitter(img, [inst.astype(bool)], np.random.default_rng(0), NO_BLUR)
    ys, xs = np.nonzero(j.mask)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (18 - 4, 78 + 4, 34 - 4, 94 + 4)
    assert j.mask[inst.astype(bool)].all()  # the enlarged disk covers the original
    assert j.mask.sum() / inst.sum() == pytest.approx((69 / 61) ** 2, rel=0.03)


def test_outside_pixels_unchanged_and_input_untouched(img):
    ring = np.zeros((H, W), np.uint8)
    cv2.ellipse(ring, (60, 50), (35, 25), 20, 0, 360, 1, 6)
    instances = [ring.astype(bool), rect(5, 30, 90, 120)]
    before_img, before_inst = img.copy(), [m.copy() for m in instances]
    img.setflags(write=False)  # photos are read-only arrays
    for seed in range(20):
        j = object_jitter(img, instances, np.random.default_rng(seed), JitterConfig(p_blur=0.5))
        np.testing.assert_array_equal(j.mask, j.alpha > 0.5)
        untouched = j.alpha == 0
        np.testing.assert_array_equal(j.image[untouched], img[untouched])
        inside = np.zeros((H, W), bool)
        for x0, y0, x1, y1 in j.boxes:
            inside[y0:y1, x0:x1] = True
        assert not (j.alpha > 0)[~inside].any()
        assert j.image.dtype == np.uint8 and j.mask.dtype == bool
    np.testing.assert_array_equal(img, before_img)
    assert all(np.array_equal(a, b) for a, b in zip(instances, before_inst))


def test_blur_probability_and_feathered_edges(img):
    inst = rect(20, 60, 30, 78)
    blurred = 0
    for seed in range(400):
        a = object_jitter(img, [inst], np.random.default_rng(seed)).alpha
        soft = ((a > 0) & (a < 1)).any()
        blurred += soft
        if soft:  # kernel 5 (long side 48): even the box-flush edges are feathered
            assert a[40, 27] < 0.99 and a[40, 26] > 0 and a[40, 24] == 0
    assert 0.14 < blurred / 400 < 0.26


def test_rejections(img):
    too_thin = rect(10, 50, 10, 17)  # 7 px wide
    too_small = rect(60, 75, 60, 75)  # 15 x 15 = 225 px² box
    with pytest.raises(JitterRejected) as e:
        object_jitter(img, [too_thin, too_small], np.random.default_rng(0))
    assert e.value.reason == "no-eligible-object"
    with pytest.raises(JitterRejected, match="no-eligible-object"):
        object_jitter(img, [], np.random.default_rng(0))
    # 8 x 32 = 256 px² box is eligible; area means box area, so a 1-px diagonal qualifies too
    assert object_jitter(img, [too_thin, rect(10, 18, 40, 72)], np.random.default_rng(0), NO_BLUR).objects == (1,)
    diagonal = np.zeros((H, W), bool)
    diagonal[30 + np.arange(40), 30 + np.arange(40)] = True
    assert object_jitter(img, [diagonal], np.random.default_rng(0), NO_BLUR).mask.any()
    # ... but blurring a 1-px line leaves no alpha above 0.5
    with pytest.raises(JitterRejected) as e:
        object_jitter(img, [diagonal], np.random.default_rng(0), JitterConfig(p_blur=1.0))
    assert e.value.reason == "empty-mask"
    with pytest.raises(JitterRejected) as e:
        object_jitter(img, [rect(4, H - 4, 4, W - 4)], np.random.default_rng(0))
    assert e.value.reason == "mask-too-large"
    assert object_jitter(img, [rect(4, H - 4, 4, W - 4)], np.random.default_rng(0), JitterConfig(p_blur=0, max_fraction=1.0)).mask.all()


def test_second_object_rule(img):
    a, b, tiny = rect(10, 40, 10, 50), rect(50, 90, 70, 120), rect(0, 5, 0, 5)
    counts = {1: 0, 2: 0}
    for seed in range(400):
        j = object_jitter(img, [a, tiny, b], np.random.default_rng(seed), NO_BLUR)
        counts[len(j.objects)] += 1
        assert set(j.objects) <= {0, 2} and len(set(j.objects)) == len(j.objects)
        if len(j.objects) == 2:  # label = union of both enlarged footprints
            np.testing.assert_array_equal(j.mask, rect(8, 42, 7, 53) | rect(47, 93, 67, 123))
    assert 0.42 < counts[2] / 400 < 0.58
    # one eligible object (the other is tiny), or "many" set to 3: never a second
    for seed in range(50):
        assert len(object_jitter(img, [a, tiny], np.random.default_rng(seed), NO_BLUR).objects) == 1
        assert len(object_jitter(img, [a, b], np.random.default_rng(seed), JitterConfig(p_blur=0, many_objects=3)).objects) == 1
    always = JitterConfig(p_blur=0, p_second=1.0)
    assert sorted(object_jitter(img, [a, b], np.random.default_rng(0), always).objects) == [0, 1]


def test_deterministic_with_seed(img):
    instances = [rect(10, 40, 10, 50), rect(50, 90, 70, 120), rect(20, 70, 60, 90)]
    for seed in range(5):
        j1 = object_jitter(img, instances, np.random.default_rng(seed))
        j2 = object_jitter(img, instances, np.random.default_rng(seed))
        np.testing.assert_array_equal(j1.image, j2.image)
        np.testing.assert_array_equal(j1.mask, j2.mask)
        assert j1.objects == j2.objects and j1.boxes == j2.boxes
    picks = {object_jitter(img, instances, np.random.default_rng(s)).objects for s in range(30)}
    assert len(picks) > 3


def test_bad_input(img):
    with pytest.raises(ValueError, match="instance 1 has shape"):
        object_jitter(img, [rect(10, 40, 10, 50), np.ones((H, W + 1), bool)], np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        object_jitter(img.astype(np.float32), [rect(10, 40, 10, 50)], np.random.default_rng(0))
    # 0/255 uint8 masks are accepted like bool ones
    j = object_jitter(img, [rect(20, 60, 30, 78).astype(np.uint8) * 255], np.random.default_rng(0), NO_BLUR)
    np.testing.assert_array_equal(j.mask, rect(17, 63, 27, 81))
