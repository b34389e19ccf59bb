"""Boxes: the simulated annotator, reading box files, validation and rasterisation."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from webiml import boxes as B


def _two_regions() -> np.ndarray:
    m = np.zeros((100, 160), bool)
    m[10:30, 20:60] = True  # 40 x 20
    m[50:90, 100:150] = True  # 50 x 40
    m[95:97, 5:7] = True  # 4 px: below min_area
    return m


def test_boxes_from_mask_exact_without_noise():
    bx = B.boxes_from_mask(_two_regions(), np.random.default_rng(0), looseness=(0.0, 0.0), jitter=0.0)
    assert bx == [(20.0, 10.0, 60.0, 30.0), (100.0, 50.0, 150.0, 90.0)]
    assert all(isinstance(v, float) for b in bx for v in b)


def test_boxes_from_mask_min_area_and_connectivity():
    m = _two_regions()
    assert len(B.boxes_from_mask(m, np.random.default_rng(0), min_area=1)) == 3
    diag = np.zeros((20, 20), bool)
    diag[5:10, 5:10] = diag[10:15, 10:15] = True  # touching at a corner: one 8-connected region
    assert len(B.boxes_from_mask(diag, np.random.default_rng(0))) == 1
    assert B.boxes_from_mask(np.zeros((8, 8)), np.random.default_rng(0)) == []


def test_boxes_from_mask_looseness_grows_symmetrically():
    bx = B.boxes_from_mask(_two_regions(), np.random.default_rng(0), looseness=(0.1, 0.1), jitter=0.0)
    x0, y0, x1, y1 = bx[0]
    assert (x1 - x0, y1 - y0) == pytest.approx((44.0, 22.0))
    assert ((x0 + x1) / 2, (y0 + y1) / 2) == pytest.approx((40.0, 20.0))


def test_boxes_from_mask_random_boxes_cover_region_and_stay_in_image():
    m = np.zeros((60, 80), bool)
    m[0:30, 50:80] = True  # touches the top and right borders
    rng = np.random.default_rng(3)
    for _ in range(50):
        (x0, y0, x1, y1), = B.boxes_from_mask(m, rng, looseness=(0.0, 0.15), jitter=0.05)
        assert 0 <= x0 < x1 <= 80 and 0 <= y0 < y1 <= 60
        # centre moved by at most jitter * size, size at most (1 + 0.15) * region
        assert abs((x0 + x1) / 2 - 65) <= 0.05 * 30 + 1e-9 or x1 == 80
        assert x1 - x0 <= 30 * 1.15 + 1e-9 and y1 - y0 <= 30 * 1.15 + 1e-9
    a = B.boxes_from_mask(m, np.random.default_rng(7))
    assert a == B.boxes_from_mask(m, np.random.default_rng(7))


@pytest.mark.parametrize("kw", [{"looseness": (0.2, 0.1)}, {"looseness": (-0.1, 0.1)}, {"jitter": 1.0}])
def test_boxes_from_mask_rejects_bad_settings(kw):
    with pytest.raises(ValueError):
        B.boxes_from_mask(np.ones((10, 10)), np.random.default_rng(0), **kw)
    with pytest.raises(ValueError, match="2-D"):
        B.boxes_from_mask(np.ones((10, 10, 3)), np.random.default_rng(0))


def test_boxes_to_mask_integer_and_fractional():
    m = B.boxes_to_mask([(2, 3, 6, 5)], (10, 8))
    assert m.shape == (8, 10) and m.sum() == 4 * 2 and m[3:5, 2:6].all()
    # a fractional box covers every pixel it touches; parts outside the image are ignored
    m = B.boxes_to_mask([(1.5, 0.2, 3.1, 1.0), (8.5, 6.5, 20, 20)], (10, 8))
    assert m[0, 1:4].all() and m[0].sum() == 3 and m[1].sum() == 0
    assert m[6:8, 8:10].all() and m.sum() == 3 + 4


def test_boxes_round_trip_to_bounding_rectangles():
    m = _two_regions()
    bx = B.boxes_from_mask(m, np.random.default_rng(0), looseness=(0, 0), jitter=0)
    filled = B.boxes_to_mask(bx, (m.shape[1], m.shape[0]))
    big = m.copy()
    big[95:] = False  # the region below min_area gets no box
    assert filled.sum() == 40 * 20 + 50 * 40 and filled[big].all() and not filled[95:].any()


def test_check_boxes_clips_with_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert B.check_boxes([(1, 2, 5, 6)], (10, 10)) == [(1.0, 2.0, 5.0, 6.0)]
    with pytest.warns(UserWarning, match=r"cat.png: box 1 .* clipped"):
        out = B.check_boxes([(1, 2, 5, 6), (-3, 4, 12, 9)], (10, 10), on_bad="error", name="cat.png")
    assert out == [(1.0, 2.0, 5.0, 6.0), (0.0, 4.0, 10.0, 9.0)]


@pytest.mark.parametrize("box,why", [((20, 1, 30, 5), "entirely outside"), ((3, 3, 3, 8), "zero area"),
                                     ((5, 5, 2, 8), "zero area"), ((0, 0, float("nan"), 4), "zero area")])
def test_check_boxes_bad_boxes(box, why):
    with pytest.raises(ValueError, match=f"box 0 .*{why}"):
        B.check_boxes([box], (10, 10), on_bad="error")
    with pytest.warns(UserWarning, match=f"{why}.*dropped"):
        assert B.check_boxes([box, (1, 1, 2, 2)], (10, 10)) == [(1.0, 1.0, 2.0, 2.0)]
    with pytest.raises(ValueError, match="on_bad"):
        B.check_boxes([box], (10, 10), on_bad="ignore")


def test_read_boxes_coco(tmp_path):
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 7, "file_name": "sub/b.png"}, {"id": 9, "file_name": "c.jpg"}],
        "annotations": [
            {"id": 1, "image_id": 1, "bbox": [10, 20, 30, 40]},
            {"id": 2, "image_id": 7, "bbox": [0.5, 1.5, 2, 3]},
            {"id": 3, "image_id": 1, "bbox": [0, 0, 5, 5]},
        ],
    }
    p = tmp_path / "boxes.json"
    p.write_text(json.dumps(coco))
    assert B.read_boxes(p) == {"a.jpg": [(10.0, 20.0, 40.0, 60.0), (0.0, 0.0, 5.0, 5.0)],
                               "sub/b.png": [(0.5, 1.5, 2.5, 4.5)], "c.jpg": []}
    coco["annotations"].append({"image_id": 3, "bbox": [0, 0, 1, 1]})
    p.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match=r"boxes.json: annotations\[3\] refers to image_id 3"):
        B.read_boxes(p)
    coco["annotations"][-1] = {"image_id": 1, "bbox": [0, 0, 1]}
    p.write_text(json.dumps(coco))
    with pytest.raises(ValueError, match="bbox must be"):
        B.read_boxes(p)
    p.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="'images' and 'annotations'"):
        B.read_boxes(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        B.read_boxes(p)


@pytest.mark.parametrize("header", ["image,x0,y0,x1,y1\n", ""])
def test_read_boxes_csv(tmp_path, header):
    p = tmp_path / "boxes.csv"
    p.write_text(header + "a.jpg,1,2,3,4\nb.jpg, 0.5, 0, 10, 12.25\n\na.jpg,5,6,7,8\n")
    assert B.read_boxes(p) == {"a.jpg": [(1.0, 2.0, 3.0, 4.0), (5.0, 6.0, 7.0, 8.0)], "b.jpg": [(0.5, 0.0, 10.0, 12.25)]}


def test_read_boxes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        B.read_boxes(tmp_path / "missing.csv")
    p = tmp_path / "boxes.csv"
    p.write_text("a.jpg,1,2,3,4\na.jpg,1,2,3\n")
    with pytest.raises(ValueError, match=r"boxes.csv:2: expected image,x0,y0,x1,y1"):
        B.read_boxes(p)
    p.write_text("a.jpg,1,2,3,4\na.jpg,1,two,3,4\n")
    with pytest.raises(ValueError, match=r"boxes.csv:2: coordinates must be numbers"):
        B.read_boxes(p)
    (tmp_path / "boxes.txt").write_text("a.jpg 1 2 3 4")
    with pytest.raises(ValueError, match="COCO-style .json or"):
        B.read_boxes(tmp_path / "boxes.txt")
