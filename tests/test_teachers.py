"""Box-prompted teachers: box, GrabCut and SAM (plumbing only: SAM weights are not shipped)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from webiml import boxes as B
from webiml.models.teachers import BoxTeacher, GrabCutTeacher, SamTeacher, make_teacher, teacher_quality


def _scene(seed: int = 0, h: int = 240, w: int = 320, centre=(170, 110), radii=(60, 45)) -> tuple[np.ndarray, np.ndarray]:
    """A noisy blue background with a noisy orange ellipse: a clear object."""
    rng = np.random.default_rng(seed)
    img = (rng.normal(0, 12, (h, w, 3)) + (40, 90, 160)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    obj = ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 < 1
    img[obj] = (rng.normal(0, 12, (int(obj.sum()), 3)) + (200, 120, 40)).clip(0, 255).astype(np.uint8)
    return img, obj


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(jaccard_score(truth.ravel(), pred.ravel() > 0.5))


def test_box_teacher_is_the_filled_union():
    img, _ = _scene()
    bx = [(10, 20, 50, 60), (40, 50, 100, 70.5)]
    p = BoxTeacher()(img, bx)
    assert p.dtype == np.float32 and p.shape == img.shape[:2]
    assert np.array_equal(p, B.boxes_to_mask(bx, (320, 240)).astype(np.float32))
    assert p.sum() == 40 * 40 + 60 * 21 - 10 * 10


def test_grabcut_segments_a_clear_object():
    img, obj = _scene()
    bx = B.boxes_from_mask(obj, np.random.default_rng(0))
    p = GrabCutTeacher()(img, bx)
    assert p.dtype == np.float32 and p.shape == obj.shape and 0 <= p.min() and p.max() <= 1
    assert _iou(p, obj) > 0.7
    assert _iou(BoxTeacher()(img, bx), obj) < 0.8  # the box alone is clearly worse
    assert not p[~B.boxes_to_mask(bx, (320, 240))].any()  # nothing outside the box


def test_grabcut_downscales_big_crops_and_unions_objects():
    img, obj = _scene(1)
    img2, obj2 = _scene(2, centre=(60, 60), radii=(30, 25))
    img[obj2], obj = img2[obj2], obj | obj2
    bx = B.boxes_from_mask(obj, np.random.default_rng(1))
    assert len(bx) == 2
    p = GrabCutTeacher(max_side=48)(img, bx)
    assert _iou(p, obj) > 0.7
    assert ((p > 0) & (p < 1)).any()  # upsampled from the small crop: soft edges


def test_grabcut_is_deterministic_whatever_opencv_rng_state():
    from webiml.samples import handcrafted_samples
    from webiml.photos import load_photos

    # a photo forgery on which GrabCut's k-means initialisation matters
    rgb, truth = handcrafted_samples(load_photos("train"), 2, np.random.default_rng(0), (320, 400))[1]
    bx = B.boxes_from_mask(truth > 0.5, np.random.default_rng(0))
    t = GrabCutTeacher()
    first = t(rgb, bx)
    cv2.setRNGSeed(123)
    assert np.array_equal(t(rgb, bx), first)
    cv2.setRNGSeed(123)
    assert not np.array_equal(GrabCutTeacher(seed=5)(rgb, bx), first)


def test_grabcut_falls_back_to_the_box_when_degenerate():
    img, _ = _scene()
    t, box = GrabCutTeacher(), BoxTeacher()
    for bx in ([(100.0, 100.0, 102.0, 103.0)], [(0.0, 0.0, 320.0, 240.0)]):  # too small; no background
        assert np.array_equal(t(img, bx), box(img, bx))
    assert not t(img, []).any()


def test_teachers_validate_input():
    img, _ = _scene()
    with pytest.raises(ValueError, match="uint8"):
        GrabCutTeacher()(img.astype(np.float32), [(0, 0, 5, 5)])
    with pytest.warns(UserWarning, match="clipped"):
        p = BoxTeacher()(img, [(-10, -10, 5, 5)])
    assert p.sum() == 25
    with pytest.raises(ValueError, match="iterations"):
        GrabCutTeacher(iterations=0)


def test_make_teacher():
    assert isinstance(make_teacher("box"), BoxTeacher)
    t = make_teacher("grabcut", iterations=2)
    assert isinstance(t, GrabCutTeacher) and t.iterations == 2
    with pytest.raises(ValueError, match="unknown teacher 'dino'.*box, grabcut, sam"):
        make_teacher("dino")


def test_sam_without_weights_says_so(tmp_path):
    for ckpt in (None, tmp_path / "sam_vit_b.pth"):
        with pytest.raises(FileNotFoundError, match="SAM weights are not shipped"):
            make_teacher("sam", checkpoint=ckpt)
    with pytest.raises(ValueError, match="model_type"):
        SamTeacher(tmp_path / "x.pth", model_type="vit_s")


def test_teacher_quality_matches_sklearn():
    samples = [_scene(s, centre=(100 + 30 * s, 100), radii=(40 + 5 * s, 30)) for s in range(3)]
    samples.append((samples[0][0], np.zeros((240, 320), bool)))  # authentic: skipped
    q = teacher_quality(BoxTeacher(), samples, rng=5)
    rng, ious, f1s = np.random.default_rng(5), [], []
    for img, truth in samples[:3]:
        pred = B.boxes_to_mask(B.boxes_from_mask(truth, rng), (320, 240))
        ious.append(jaccard_score(truth.ravel(), pred.ravel()))
        f1s.append(f1_score(truth.ravel(), pred.ravel()))
    assert q["n"] == 3
    assert q["iou"] == pytest.approx(np.mean(ious)) and q["f1"] == pytest.approx(np.mean(f1s))
    assert teacher_quality(GrabCutTeacher(), samples, rng=5)["iou"] > q["iou"]


@pytest.mark.slow
def test_sam_teacher_plumbing_with_random_vit_b(tmp_path):
    """Loads a randomly initialised vit_b checkpoint and runs one small image (about 25 s on 2 CPU
    cores: SAM always encodes at 1024²). The mask is meaningless: only shapes and ranges are checked."""
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    state = sam_model_registry["vit_b"]().state_dict()
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, ckpt)  # half the disk
    del state
    t = make_teacher("sam", checkpoint=ckpt, model_type="vit_b")
    img = _scene(h=48, w=64, centre=(30, 24), radii=(15, 10))[0]
    assert not t(img, []).any()  # no boxes: no encoder run
    p = t(img, [(10, 10, 40, 36), (30, 5, 60, 30)])
    assert p.dtype == np.float32 and p.shape == (48, 64)
    assert np.isfinite(p).all() and 0 <= p.min() and p.max() <= 1


def test_pseudo_masks_cli_turns_user_boxes_into_a_dataset(tmp_path):
    import json

    from webiml import io
    from webiml.cli import main as cli

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        io.write_image(imgs / name, np.full((40, 60, 3), 120, np.uint8))
    coco = {"images": [{"id": i, "file_name": n} for i, n in enumerate(["a.png", "b.png", "c.png", "gone.png"])],
            "annotations": [{"image_id": 0, "bbox": [10, 5, 20, 10]},      # x, y, w, h
                            {"image_id": 1, "bbox": [100, 100, 5, 5]},     # outside the 60x40 image
                            {"image_id": 3, "bbox": [0, 0, 5, 5]}]}
    (tmp_path / "boxes.json").write_text(json.dumps(coco))
    before = {p.name: p.read_bytes() for p in imgs.iterdir()}
    out = tmp_path / "out"
    assert cli(["pseudo-masks", "--boxes", str(tmp_path / "boxes.json"), "--images", str(imgs), "--out", str(out),
                "--teacher", "box", "--quiet"]) == 0
    r = json.loads((out / "report.json").read_text())
    assert (r["n_masks"], r["n_negative"], r["n_rejected"]) == (1, 1, 2)
    assert r["rejected_by_reason"] == {"bad-boxes": 1, "missing-file": 1}
    index = io.read_benco_index(out / "index.json")
    assert [(p.name, m is None) for p, m in index] == [("a.png", False), ("c.png", True)]
    mask = io.read_soft_mask(index[0][1])
    assert mask.shape == (40, 60) and mask[5:15, 10:30].min() == 255 and mask.sum() == 255 * 200
    assert {p.name: p.read_bytes() for p in imgs.iterdir()} == before  # inputs untouched
