"""The web degradations of check_real: each step does what it says to the forged image and its truth,
the chain applies them in order, inputs are only read, and bad candidates pass on unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from webiml import io
from webiml.collect import Candidate
from webiml.evaluate import real
from webiml.evaluate.degrade import CHAIN, CLEAN, STEPS, WebDegradation, colour_shift, conditions, degrade_pair, degraded_candidates


def _image_and_truth(h=90, w=120):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    truth = np.zeros((h, w), bool)
    truth[30:60, 40:80] = True
    return rgb, truth


def test_from_dict_is_strict():
    assert WebDegradation.from_dict({"jpeg": 70, "crop": 0.8}).steps() == ("crop", "jpeg")
    assert WebDegradation.from_dict(None).steps() == ()
    with pytest.raises(ValueError, match="unknown web degradation 'blur'.*allowed: crop, rescale, colour, jpeg"):
        WebDegradation.from_dict({"blur": 2})
    for bad in ({"crop": 0.1}, {"rescale": 0}, {"colour": 0.9}, {"jpeg": 0}):
        with pytest.raises(ValueError):
            WebDegradation.from_dict(bad)


def test_conditions_are_each_step_alone_then_the_chain():
    deg = WebDegradation(crop=0.8, rescale=0.6, colour=0.1, jpeg=70)
    conds = conditions(deg)
    assert list(conds) == [*STEPS, CHAIN]
    assert conds["rescale"] == WebDegradation(rescale=0.6) and conds[CHAIN] == deg
    assert list(conditions(WebDegradation(jpeg=70))) == ["jpeg"]  # one step: no chain beside it
    assert conditions(WebDegradation()) == {}


def test_crop_and_rescale_carry_the_truth():
    rgb, truth = _image_and_truth()
    img, mask, meta = degrade_pair(rgb, truth, WebDegradation(crop=0.5), np.random.default_rng(1))
    x0, y0, x1, y1 = meta["crop"]
    assert img.shape[:2] == mask.shape == (45, 60) and (x1 - x0, y1 - y0) == (60, 45)
    np.testing.assert_array_equal(img, rgb[y0:y1, x0:x1])
    np.testing.assert_array_equal(mask, truth[y0:y1, x0:x1])
    img, mask, _ = degrade_pair(rgb, truth, WebDegradation(rescale=0.5), np.random.default_rng(1))
    assert img.shape[:2] == mask.shape == (45, 60)
    expected = np.zeros((45, 60), bool)
    expected[15:30, 20:40] = True
    assert (mask & expected).sum() / (mask | expected).sum() > 0.9


@pytest.mark.parametrize("seed", range(8))
def test_the_crop_keeps_the_whole_edit_where_it_fits(seed):
    rgb, truth = _image_and_truth()  # the edit: rows 30-59, columns 40-79 of 90 x 120
    _, mask, meta = degrade_pair(rgb, truth, WebDegradation(crop=0.5), np.random.default_rng(seed))
    assert mask.sum() == truth.sum()
    edge = np.zeros_like(truth)
    edge[:, 100:] = True  # an edit wider than the window: any offset, the rest of the edit cut away
    _, mask, _ = degrade_pair(rgb, edge | truth, WebDegradation(crop=0.5), np.random.default_rng(seed))
    assert 0 < mask.sum() < (edge | truth).sum()


def test_colour_and_jpeg_keep_the_geometry():
    rgb, truth = _image_and_truth()
    img, mask, meta = degrade_pair(rgb, truth, WebDegradation(colour=0.1, jpeg=70), np.random.default_rng(0))
    np.testing.assert_array_equal(mask, truth)
    assert img.dtype == np.uint8 and img.shape == rgb.shape and meta == {"colour": 0.1, "jpeg": 70}
    assert np.abs(img.astype(int) - rgb).mean() > 3
    np.testing.assert_array_equal(colour_shift(rgb, 0.0), rgb)
    shifted = colour_shift(np.full((2, 2, 3), 128, np.uint8), 0.2)[0, 0]
    assert shifted[0] > shifted[1] > shifted[2]  # a warm cast


def test_degraded_candidates_write_only_under_out_dir(tmp_path, tree_digest):
    src = tmp_path / "in"
    src.mkdir()
    rgb, truth = _image_and_truth()
    io.write_image(src / "f.png", rgb)
    io.write_mask(src / "m.png", truth)
    io.write_image(src / "a.png", rgb)
    (src / "broken.png").write_bytes(b"not an image")
    before = tree_digest(src)
    cands = [Candidate("p-1", "test", str(src / "f.png"), str(src / "a.png"), str(src / "m.png")),
             Candidate("p-2", "test", str(src / "f.png"), str(src / "a.png"), None),  # no truth
             Candidate("p-3", "test", str(src / "broken.png"), str(src / "a.png"), str(src / "m.png")),  # unreadable
             Candidate("p-4", "test", str(src / "f.png"), str(src / "a.png"), str(src / "m.png"), refused=("bad", "x"))]
    deg = WebDegradation(crop=0.7, rescale=0.8, colour=0.1, jpeg=60)
    out = degraded_candidates(cands, deg, tmp_path / "out", seed=3)
    assert tree_digest(src) == before  # inputs are only read
    assert out[1:] == cands[1:]
    d = out[0]
    assert d.id == "p-1" and d.authentic == str(src / "a.png") and d.forged.endswith("p-1.jpg")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p-1.jpg", "p-1_truth.png"]
    img, mask = io.read_entry(d.forged, d.truth_mask)
    assert img.shape[:2] == mask.shape == (round(63 * 0.8), round(84 * 0.8)) and mask.any()
    again = degraded_candidates(cands[:1], deg, tmp_path / "again", seed=3)[0]
    np.testing.assert_array_equal(io.read_entry(again.forged, again.truth_mask)[1], mask)  # seeded per pair


def _quality(iou):
    return {"n": 2, "mean_iou": iou, "ceiling_iou": 0.99, "share_of_ceiling": iou / 0.99}


def _result():
    rows = {"caaa": [{"id": "a", "iou": 0.9}], "naive": [{"id": "a", "iou": 0.5}]}
    return {"n_pairs": 2, "n_collected": 2, "quality": {"caaa": _quality(0.9), "naive": _quality(0.5)},
            "dataset": {"kept": 2, "n_kept_scored": 1, "kept_mean_iou": 0.9}, "rows": rows,
            "degraded": {"jpeg": {"n_pairs": 2, "n_collected": 2, "steps": {"jpeg": 70},
                                  "vs_clean": {"caaa": {"n": 1, "mean": -0.1, "se": None}}, "quality": {"caaa": _quality(0.8), "naive": _quality(0.4)},
                                  "dataset": {"kept": 1}, "rows": {"caaa": [{"id": "a", "iou": 0.8}], "naive": [{"id": "a", "iou": 0.4}]}}}}


def test_pair_rows_and_the_degradation_table():
    r = _result()
    rows = real.pair_rows(r)
    assert {(x["method"], x["condition"], x["iou"]) for x in rows} == {("caaa", CLEAN, 0.9), ("naive", CLEAN, 0.5),
                                                                      ("caaa", "jpeg", 0.8), ("naive", "jpeg", 0.4)}
    assert "rows" not in r and "rows" not in r["degraded"]["jpeg"]
    md = real.degraded_markdown(r)
    assert "| clean | 2 | 0.900 | 0.500 | 2 (0.900) |  |" in md  # kept labels, and how good the kept ones are
    assert "| jpeg 70 | 2 | 0.800 | 0.400 | 1 | -0.100 ± n/a (1 pairs) |" in md
    assert real._paired([{"id": "a", "iou": 0.9}, {"id": "b", "iou": 0.5}], [{"id": "a", "iou": 0.7}, {"id": "c", "iou": 0.1}]) == \
        {"n": 1, "mean": pytest.approx(-0.2), "se": None}
    fig = real.condition_figure({"coverage": r, "noso": None})
    assert len(fig.axes) == 1 and [t.get_text() for t in fig.axes[0].get_xticklabels()] == [CLEAN, "jpeg"]
    assert len(real.condition_figure({}).axes) == 1  # every set absent: a figure that says so


def test_match_colours_undoes_a_colour_cast_and_keeps_the_edit():
    from webiml.caaa.annotator import match_colours

    rng = np.random.default_rng(0)
    authentic = np.clip(rng.normal(120, 40, (80, 100, 3)), 0, 255).astype(np.uint8)
    forged = authentic.copy()
    forged[20:40, 30:60] = 255 - forged[20:40, 30:60]  # the edit
    assert match_colours(authentic, forged) is authentic  # no global change: left exactly as it was
    cast = colour_shift(forged, 0.1)  # the web copy of the forgery
    matched = match_colours(authentic, cast)
    outside = np.ones((80, 100), bool)
    outside[20:40, 30:60] = False
    before = np.median(np.abs(cast.astype(int) - authentic)[outside].max(-1))
    after = np.median(np.abs(cast.astype(int) - matched)[outside].max(-1))
    assert before > 10 and after <= 3
    assert np.abs(cast.astype(int) - matched)[~outside].max(-1).mean() > 40  # the edit still shows
    assert match_colours(authentic, cast, np.zeros((80, 100), bool)) is authentic  # no overlap: nothing to fit
