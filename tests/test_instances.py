"""Instance-mask sources for Object Jitter: COCO JSON, bundled photos, synthetic blobs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from webiml import instances as inst
from webiml.io import write_image
from webiml.photos import Photo

H, W = 48, 64


def _uncompressed_rle(m: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major flattening, starting with zeros."""
    flat = m.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0] + runs
    return {"size": [m.shape[0], m.shape[1]], "counts": runs}


@pytest.fixture
def coco(tmp_path: Path) -> dict:
    """A tiny COCO dataset: one good image with polygon / compressed RLE / uncompressed RLE /
    crowd / too-small instances, a corrupt image, a missing image, an image of the wrong size and
    an image whose only instance is too small."""
    rng = np.random.default_rng(0)
    for name in ("good.png", "wrong_size.png", "small_only.png"):
        shape = (H + 4, W, 3) if name == "wrong_size.png" else (H, W, 3)
        write_image(tmp_path / name, rng.integers(0, 256, shape, dtype=np.uint8))
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg" * 4)

    rle_mask = np.zeros((H, W), bool)
    rle_mask[5:30, 40:60] = True  # 25 x 20 = 500 px
    raw_mask = np.zeros((H, W), bool)
    cv2.circle(raw_mask.view(np.uint8), (20, 34), 11, 1, -1)
    compressed = mask_utils.encode(np.asfortranarray(rle_mask.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")  # as stored in JSON
    polygon = [4.0, 4.0, 36.0, 4.0, 36.0, 22.0, 4.0, 22.0]
    big = _uncompressed_rle(np.ones((H, W), bool))
    images = [
        {"id": 1, "file_name": "good.png", "height": H, "width": W},
        {"id": 2, "file_name": "corrupt.jpg", "height": H, "width": W},
        {"id": 3, "file_name": "missing.png", "height": H, "width": W},
        {"id": 4, "file_name": "wrong_size.png", "height": H, "width": W},
        {"id": 5, "file_name": "small_only.png", "height": H, "width": W},
    ]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [polygon]},
        {"id": 11, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": compressed},
        {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": _uncompressed_rle(raw_mask)},
        {"id": 13, "image_id": 1, "category_id": 1, "iscrowd": 1, "segmentation": big},
        {"id": 14, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},
        {"id": 20, "image_id": 2, "category_id": 1, "iscrowd": 0, "segmentation": compressed},
        {"id": 30, "image_id": 3, "category_id": 1, "iscrowd": 0, "segmentation": compressed},
        {"id": 40, "image_id": 4, "category_id": 1, "iscrowd": 0, "segmentation": compressed},
        {"id": 50, "image_id": 5, "category_id": 1, "iscrowd": 0, "segmentation": [[1, 1, 5, 1, 5, 5, 1, 5]]},
    ]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": [{"id": 1, "name": "thing"}]}))
    return {"path": path, "dir": tmp_path, "polygon": polygon, "rle_mask": rle_mask, "raw_mask": raw_mask}


def test_coco_masks_and_rejections(coco):
    rejected: list = []
    out = list(inst.coco_instances(coco["path"], coco["dir"], rejected=rejected))
    assert [o.name for o in out] == ["good.png"]
    good = out[0]
    assert good.rgb.shape == (H, W, 3) and good.rgb.dtype == np.uint8
    assert len(good.masks) == 3  # crowd and the 16 px² instance are dropped
    assert all(m.dtype == bool and m.shape == (H, W) for m in good.masks)
    poly, comp, raw = good.masks
    # polygon: pycocotools' own rasterisation, and close to OpenCV's fill of the same rectangle
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([coco["polygon"]], H, W))).astype(bool)
    np.testing.assert_array_equal(poly, ref)
    cv_fill = np.zeros((H, W), np.uint8)
    cv2.fillPoly(cv_fill, [np.array(coco["polygon"]).reshape(-1, 2).astype(np.int32)], 1)
    iou = (poly & cv_fill.astype(bool)).sum() / (poly | cv_fill.astype(bool)).sum()
    assert iou > 0.85
    np.testing.assert_array_equal(comp, coco["rle_mask"])
    np.testing.assert_array_equal(raw, coco["raw_mask"])

    by_path = {Path(r["path"]).name: r["reason"] for r in rejected}
    assert set(by_path) == {"corrupt.jpg", "missing.png", "wrong_size.png"}  # small_only: skipped, not rejected
    assert by_path["corrupt.jpg"] in ("corrupt", "truncated", "not-an-image")
    assert by_path["missing.png"] == "missing-file"
    assert by_path["wrong_size.png"] == "size-mismatch"


def test_coco_limit_min_area_and_no_rejected_list(coco):
    assert list(inst.coco_instances(coco["path"], coco["dir"], limit=0)) == []
    assert coco["raw_mask"].sum() < 450 < coco["rle_mask"].sum()
    (only,) = inst.coco_instances(coco["path"], coco["dir"], min_area=450)  # no crash without `rejected`
    assert len(only.masks) == 2  # polygon (~600 px) and compressed RLE (500 px); the circle is dropped
    np.testing.assert_array_equal(only.masks[1], coco["rle_mask"])
    assert list(inst.coco_instances(coco["path"], coco["dir"], min_area=10_000)) == []


def test_coco_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        list(inst.coco_instances(tmp_path / "nope.json", tmp_path))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        list(inst.coco_instances(bad, tmp_path))
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(ValueError, match="not a COCO"):
        list(inst.coco_instances(bad, tmp_path))
    bad.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}],
                               "annotations": [{"id": 7, "image_id": 1, "iscrowd": 0, "segmentation": {"size": [8, 8]}}]}))
    with pytest.raises(ValueError, match="annotation 7"):
        list(inst.coco_instances(bad, tmp_path))


def test_photo_instances():
    out = inst.photo_instances("train")
    assert [o.name for o in out] == ["voc"]
    voc = out[0]
    assert len(voc.masks) > 1
    assert all(m.dtype == bool and m.shape == voc.rgb.shape[:2] and m.any() for m in voc.masks)
    assert inst.photo_instances("test") == []


def test_synthetic_instances():
    rng = np.random.default_rng(0)
    img = cv2.resize(np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_NEAREST)
    plain = Photo("plain", "train", img)
    with_inst = Photo("owned", "train", img, (np.ones((120, 160), bool),))
    out = inst.synthetic_instances([plain, with_inst], rng, per_photo=3)
    assert [o.name for o in out] == ["plain"]  # a photo with its own instances gets none
    masks = out[0].masks
    assert len(masks) == 3
    for m in masks:
        assert m.dtype == bool and m.shape == (120, 160)
        assert 0 < m.mean() < 0.9
    again = inst.synthetic_instances([plain], np.random.default_rng(0), per_photo=3)[0].masks
    assert all(np.array_equal(a, b) for a, b in zip(masks, again))
    with pytest.raises(ValueError, match="per_photo"):
        inst.synthetic_instances([plain], rng, per_photo=0)


def test_instance_source_dispatch(coco):
    out = list(inst.instance_source("coco", annotations=coco["path"], image_dir=coco["dir"]))
    assert [o.name for o in out] == ["good.png"]
    assert [o.name for o in inst.instance_source("photos", split="train")] == ["voc"]
    with pytest.raises(ValueError, match="unknown instance source 'lvis'"):
        inst.instance_source("lvis")
