"""Annotation quality report on a fake annotation + audit folder with known IoUs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
import matplotlib.pyplot as plt
from PIL import Image

from webiml import io
from webiml.caaa import quality

S = 8


def _png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path):
    truth = np.zeros((S, S), bool)
    truth[:, :4] = True  # 32 px
    half = np.zeros((S, S), bool)
    half[:, :2] = True  # 16 px inside the truth
    soft = {
        "a": truth * 255,  # perfect: IoU 1, QES ~1
        "b": half * 255,  # IoU 0.5, F1 2/3, precision 1, recall 0.5
        "c": truth * 128,  # right region, never confident: IoU 1, QES 0
        "d": np.kron(truth, np.ones((2, 2))) * 255,  # twice the truth's size: resized, IoU 1
        "e": truth * 255,  # no truth: not scored
    }
    true_cat = {"a": "spg", "b": "spg", "c": "sdg", "d": "sdg"}
    pred_cat = {"a": "spg", "b": "sdg", "c": "sdg", "d": "sdg", "e": "spg"}
    ann, audit, pairs = tmp_path / "ann", tmp_path / "audit", tmp_path / "pairs"
    rng = np.random.default_rng(0)
    recs, audits, prs = [], [], []
    for pid, m in soft.items():
        _png(ann / "masks" / f"{pid}.png", m)
        recs.append({"id": pid, "forged": f"pairs/{pid}/forged.png", "mask": f"masks/{pid}.png",
                     "category": pred_cat[pid], "category_prob": 0.9, "aligned": True, "qes": 0.0,
                     "annotator": "x", "seconds": 0.0})
        for name in ("forged", "authentic"):
            io.write_image(pairs / "pairs" / pid / f"{name}.png", rng.integers(0, 256, (S, S, 3), dtype=np.uint8))
        prs.append(io.PairRecord(id=pid, source="synthetic", forged=f"pairs/{pid}/forged.png",
                                 authentic=f"pairs/{pid}/authentic.png", authentic_registered=None, overlap=None,
                                 transform=None, transform_model=None, forged_size=(S, S), authentic_size=(S, S),
                                 forged_sha256="", authentic_sha256="", origin={}, flags=["unregistered"]))
        if pid in true_cat:
            io.write_mask(audit / "masks" / f"{pid}.png", truth)
            audits.append({"id": pid, "category": true_cat[pid], "mask": f"masks/{pid}.png"})
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (ann / "meta.json").write_text(json.dumps({"pairs_dir": str(pairs), "method": "caaa"}))
    (audit / "audit.jsonl").write_text("".join(json.dumps(r) + "\n" for r in audits))
    (pairs / "pairs.jsonl").write_text("".join(p.to_json() + "\n" for p in prs))
    return ann, audit, pairs


def test_score_annotations(folders):
    ann, audit, _ = folders
    rows = {r["id"]: r for r in quality.score_annotations(ann, audit)}
    assert sorted(rows) == ["a", "b", "c", "d"]
    assert rows["a"]["iou"] == rows["a"]["f1"] == 1.0 and rows["a"]["qes"] == pytest.approx(1.0, abs=1e-6)
    assert (rows["b"]["iou"], rows["b"]["precision"], rows["b"]["recall"]) == (0.5, 1.0, 0.5)
    assert rows["b"]["f1"] == pytest.approx(2 / 3)
    assert rows["b"]["category"] == "spg" and rows["b"]["predicted_category"] == "sdg"
    assert rows["c"]["iou"] == 1.0 and rows["c"]["qes"] == 0.0
    assert rows["d"]["iou"] == 1.0 and rows["d"]["resized"] and not rows["a"]["resized"]


def test_summary_and_analysis(folders):
    ann, audit, _ = folders
    rows = quality.score_annotations(ann, audit)
    s = quality.summary(rows)
    assert s["overall"]["n"] == 4 and s["overall"]["mean_iou"] == pytest.approx(0.875)
    assert s["overall"]["category_accuracy"] == 0.75
    spg, sdg = s["per_category"]["spg"], s["per_category"]["sdg"]
    assert (spg["n"], spg["mean_iou"], spg["category_accuracy"]) == (2, 0.75, 0.5)
    assert spg["mean_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert (sdg["n"], sdg["mean_iou"], sdg["mean_f1"], sdg["category_accuracy"]) == (2, 1.0, 1.0, 1.0)
    assert json.loads(json.dumps(s)) == s

    a = quality.qes_analysis(rows, threshold=0.5)
    assert a["kept"]["n"] == 3 and a["kept"]["fraction"] == 0.75
    assert a["kept"]["mean_iou"] == pytest.approx(2.5 / 3) and a["dropped"]["mean_iou"] == 1.0
    assert [t["threshold"] for t in a["sweep"]] == pytest.approx(np.arange(20) * 0.05)
    assert a["sweep"][0]["kept_fraction"] == 0.75  # QES 0 is not > 0
    assert a["sweep"][-1]["kept_n"] == 3


def test_degraded_pairs_subset(folders):
    assert quality.degraded({"forged_degradation": {"format": "png"}, "authentic_degradation": {"format": "png"}}) is False
    assert quality.degraded({"forged_degradation": {"format": "jpeg", "quality": 90}, "authentic_degradation": {"format": "png"}})
    assert quality.degraded({"forged_degradation": {"format": "png"}, "authentic_degradation": {"crop": [0, 0, 4, 4], "format": "png"}})
    assert quality.degraded({"photo": "x"}) is None and quality.degraded(None) is None  # real pairs: unknown
    ann, audit, _ = folders
    assert "degraded" not in quality.summary(quality.score_annotations(ann, audit))  # the audit does not say
    rows = quality.score_annotations(ann, audit)
    for r, d in zip(rows, (True, True, False, None)):
        r["degraded"] = d
    s = quality.summary(rows)
    assert s["degraded"]["n"] == 2 and s["degraded"]["mean_iou"] == pytest.approx(0.75)  # a and b


def test_spearman_toy():
    rows = [{"qes": q, "iou": i, "category": "spg"} for q, i in [(0.1, 0.0), (0.4, 0.2), (0.7, 0.5), (0.9, 0.8)]]
    assert quality.qes_analysis(rows)["spearman"] == pytest.approx(1.0)
    rows_rev = [dict(r, iou=1 - r["iou"]) for r in rows]
    assert quality.qes_analysis(rows_rev)["spearman"] == pytest.approx(-1.0)
    flat = [dict(r, iou=0.5) for r in rows]
    assert quality.qes_analysis(flat)["spearman"] is None
    empty = quality.qes_analysis([])
    assert empty["n"] == 0 and empty["kept"]["mean_iou"] is None and empty["spearman"] is None


def test_figures(folders, tmp_path):
    ann, audit, pairs = folders
    rows = quality.score_annotations(ann, audit)
    rows[0]["refused"] = "mask-too-large"  # drawn apart in the scatter and the per-image bars
    s = quality.summary(rows)
    figs = {
        "scatter": (quality.qes_scatter(rows, 0.5), 1),
        "tradeoff": (quality.qes_tradeoff(quality.qes_analysis(rows)), 1),
        "bars": (quality.method_bars({"caaa": s, "naive": quality.summary(rows[:1])}), 1),
        "grid": (quality.example_grid(ann, audit, pairs, ["b", "e", "zz"], n=2), 8),
        "grid_meta": (quality.example_grid(ann, audit, None, ["a"]), 4),
        "grid_visible": (quality.example_grid(ann, audit, pairs, ["a", "b"], show_visible=True), 10),
        "hist": (quality.qes_histogram([r["qes"] for r in rows]), 1),
        "per_image": (quality.per_image(rows, "fake"), 1),
        "per_image_empty": (quality.per_image([], "none"), 1),
    }
    for name, (fig, n_axes) in figs.items():
        assert isinstance(fig, Figure), name
        assert len(fig.axes) == n_axes, name
    assert io.save_figure(figs["grid"][0], tmp_path / "grid.png").stat().st_size > 0
    for fig, _ in figs.values():
        plt.close(fig)


def test_qes_analysis_with_the_guard():
    rows = [{"qes": 0.9, "iou": 0.8, "refused": None}, {"qes": 1.0, "iou": 0.1, "refused": "mask-too-large"},
            {"qes": 0.2, "iou": 0.3, "refused": None}, {"qes": 0.1, "iou": 0.0, "refused": "empty-mask"}]
    a = quality.qes_analysis(rows, threshold=0.5)
    assert a["kept"] == {"n": 1, "fraction": 0.25, "mean_iou": pytest.approx(0.8)}
    assert a["kept_qes_alone"] == {"n": 2, "mean_iou": pytest.approx(0.45)}
    assert a["refused"]["n"] == 2 and a["refused"]["removed_from_qes_kept"] == 1
    assert a["refused"]["by_reason"] == {"mask-too-large": 1, "empty-mask": 1}
    assert a["dropped"]["n"] == 3
    at_half = next(s for s in a["sweep"] if s["threshold"] == 0.5)
    assert (at_half["kept_n"], at_half["guarded_kept_n"]) == (2, 1)
    assert at_half["guarded_kept_mean_iou"] == pytest.approx(0.8)
