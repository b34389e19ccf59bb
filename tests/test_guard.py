"""The label guard (labels that cannot be right are never kept) and what a pair can show
(visible truth, ceiling)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from webiml import io
from webiml.caaa import guard as G
from webiml.caaa import quality, visible
from webiml.caaa.guard import GuardConfig
from webiml.photos import load_photo

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------ guard


def test_verdict_rules():
    assert G.verdict(0.3, "registered") is None
    assert G.verdict(0.0, "registered") == "empty-mask"
    assert G.verdict(0.76, "unregistered") == "mask-too-large"
    assert G.verdict(0.75, "identity") is None  # at the limit: kept
    assert G.verdict(0.3, "no-shared-content") == "no-shared-content"
    assert G.verdict(0.3, None) is None  # status unknown (a user's annotation folder)
    forced = GuardConfig(keep_unmatched=True)
    assert G.verdict(0.3, "no-shared-content", forced) is None
    assert G.verdict(1.0, "no-shared-content", forced) == "mask-too-large"  # forcing never keeps a whole-image mask
    assert G.flags("no-shared-content", forced) == ["unmatched"] and G.flags("registered", forced) == []
    assert G.flags("no-shared-content") == []
    off = GuardConfig(enabled=False)
    assert G.verdict(1.0, "no-shared-content", off) is None and G.verdict(0.0, None, off) is None
    assert G.verdict(0.5, "registered", GuardConfig(max_fraction=0.4)) == "mask-too-large"


def test_mask_fraction_reads_every_mask_type_like_the_dataset_build():
    u8 = np.zeros((4, 5), np.uint8)
    u8[0, :] = [127, 128, 255, 0, 200]  # 127/255 < 0.5 <= 128/255: as build_dataset binarises
    assert G.mask_fraction(u8) == pytest.approx(3 / 20)
    assert G.mask_fraction(u8.astype(np.float32) / 255) == pytest.approx(3 / 20)
    assert G.mask_fraction(u8 > 0) == pytest.approx(4 / 20)
    assert G.mask_fraction(np.zeros((0, 0), np.uint8)) == 0.0


def test_guard_params_are_strict_and_their_defaults_are_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert GuardConfig.from_dict(params["guard"]) == GuardConfig()
    with pytest.raises(ValueError) as e:
        GuardConfig.from_dict({"max_fracton": 0.5})
    msg = str(e.value)
    assert "'max_fracton'" in msg and "'guard'" in msg and "max_fraction" in msg and "keep_unmatched" in msg
    with pytest.raises(ValueError, match="max_fraction"):
        GuardConfig(max_fraction=0.0)
    import argparse

    ap = argparse.ArgumentParser()
    G.add_arguments(ap)
    assert G.from_args(ap.parse_args([])) == GuardConfig()
    assert G.from_args(ap.parse_args(["--no-guard", "--max-fraction", "0.5", "--keep-unmatched"])) == \
        GuardConfig(enabled=False, max_fraction=0.5, keep_unmatched=True)


# ------------------------------------------------------------------------ what a pair shows


def _half_visible_pair():
    """A 40x40 pair whose truth is a 10x20 box; the forgery changes only its left half."""
    rng = np.random.default_rng(0)
    authentic = rng.integers(60, 200, (40, 40, 3), dtype=np.uint8)
    truth = np.zeros((40, 40), bool)
    truth[10:20, 10:30] = True
    forged = authentic.copy()
    forged[10:20, 10:20] = 255 - forged[10:20, 10:20]  # |diff| >= 55 on every channel that moved
    forged[:, :] = np.clip(forged.astype(int) + rng.integers(-3, 4, forged.shape), 0, 255).astype(np.uint8)  # "JPEG noise"
    return forged, authentic, truth


def test_ceiling_is_half_when_only_half_of_the_truth_changes():
    forged, authentic, truth = _half_visible_pair()
    ev = visible.evidence(forged, authentic, None, truth)
    assert ev.ceiling_iou == pytest.approx(0.5)
    assert ev.visible_fraction == pytest.approx(0.5)
    expected = np.zeros_like(truth)
    expected[10:20, 10:20] = True
    np.testing.assert_array_equal(ev.visible, expected)
    # outside the registered authentic's footprint nothing is visible
    overlap = np.ones_like(truth)
    overlap[:, :15] = False
    ev = visible.evidence(forged, authentic, overlap, truth)
    assert ev.visible_fraction == pytest.approx(0.25) and ev.ceiling_iou == pytest.approx(0.25)
    assert visible.evidence(forged, None, None, truth) is None
    assert visible.ceiling_iou(np.zeros((3, 3), np.uint8), np.zeros((3, 3), bool)) is None


def test_ceiling_equals_the_best_threshold_by_brute_force():
    from sklearn.metrics import jaccard_score

    rng = np.random.default_rng(1)
    for _ in range(5):
        d = rng.integers(0, 40, (24, 24)).astype(np.uint8)
        t = rng.random((24, 24)) < 0.3
        d[t] += rng.integers(0, 30, int(t.sum())).astype(np.uint8)
        brute = max(jaccard_score(t.ravel(), (d > th).ravel(), zero_division=0) for th in range(0, 255))
        assert visible.ceiling_iou(d, t) == pytest.approx(brute, abs=1e-12)
    with pytest.raises(ValueError, match="uint8"):
        visible.ceiling_iou(d.astype(np.float32), t)


def test_quality_report_scores_against_the_visible_truth(tmp_path):
    forged, authentic, truth = _half_visible_pair()
    pairs, ann, audit = tmp_path / "pairs", tmp_path / "ann", tmp_path / "audit"
    for name, img in (("forged", forged), ("authentic", authentic)):
        io.write_image(pairs / "pairs" / "p" / f"{name}.png", img)
    rec = io.PairRecord(id="p", source="synthetic", forged="pairs/p/forged.png", authentic="pairs/p/authentic.png",
                        authentic_registered="pairs/p/authentic.png", overlap=None, transform=np.eye(3).tolist(),
                        transform_model="identity", forged_size=(40, 40), authentic_size=(40, 40), forged_sha256="",
                        authentic_sha256="", origin={}, flags=["identity"])
    (pairs / "pairs.jsonl").write_text(rec.to_json() + "\n")
    changed = np.zeros_like(truth)
    changed[10:20, 10:20] = True
    io.write_mask(ann / "masks" / "p.png", changed)  # the annotator finds exactly what changed
    (ann / "annotations.jsonl").write_text(json.dumps({"id": "p", "forged": "pairs/p/forged.png", "mask": "masks/p.png",
                                                       "category": "spg", "registration": "identity"}) + "\n")
    (ann / "meta.json").write_text(json.dumps({"pairs_dir": str(pairs), "method": "caaa"}))
    io.write_mask(audit / "masks" / "p.png", truth)
    (audit / "audit.jsonl").write_text(json.dumps({"id": "p", "category": "spg", "mask": "masks/p.png"}) + "\n")

    [row] = quality.score_annotations(ann, audit)
    assert row["iou"] == pytest.approx(0.5) and row["visible_iou"] == pytest.approx(1.0)
    assert row["ceiling_iou"] == pytest.approx(0.5) and row["visible_fraction"] == pytest.approx(0.5)
    assert row["refused"] is None and row["mask_fraction"] == pytest.approx(100 / 1600)
    s = quality.summary([row])["overall"]
    assert s["ceiling_iou"] == pytest.approx(0.5) and s["share_of_ceiling"] == pytest.approx(1.0)
    assert s["mean_visible_iou"] == pytest.approx(1.0) and s["n_visible"] == s["n_ceiling"] == 1
    # no pair folder: the truth scores alone
    (ann / "meta.json").write_text(json.dumps({"method": "caaa"}))
    [row] = quality.score_annotations(ann, audit)
    assert row["ceiling_iou"] is None and quality.summary([row])["overall"]["share_of_ceiling"] is None


# -------------------------------------------------------------------------- unrelated pairs


def _unrelated_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    coffee = load_photo("coffee").rgb
    return {
        "noise-black": (rng.integers(0, 256, (240, 320, 3), dtype=np.uint8), np.zeros((240, 320, 3), np.uint8)),
        "two-photos": (coffee, load_photo("chelsea").rgb),
        "photo-flat": (load_photo("rocket").rgb, np.full((300, 400, 3), (120, 90, 60), np.uint8)),
    }


def test_unrelated_pairs_are_never_kept_by_annotate_pair(tmp_path, tiny_models, capsys):
    from webiml.cli import main

    for name, (forged, authentic) in _unrelated_pairs().items():
        io.write_image(tmp_path / f"{name}-f.png", forged)
        io.write_image(tmp_path / f"{name}-a.png", authentic)
        args = ["annotate-pair", str(tmp_path / f"{name}-f.png"), str(tmp_path / f"{name}-a.png"),
                "-o", str(tmp_path / f"{name}-m.png"), "--models", str(tiny_models), "--json"]
        assert main(args) == 0
        r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert r["registration"] == "no-shared-content", name
        assert r["kept"] is False and r["refused"] == "no-shared-content", name
        assert r["qes_kept"] == (r["qes"] > 0.5)  # the papers' QES is still computed and reported
        # forcing it keeps only a plausible mask, flagged
        assert main([*args, "--keep-unmatched"]) == 0
        f = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert f["flags"] == ["unmatched"]
        assert f["refused"] == (None if 0 < f["mask_fraction"] <= 0.75 else "empty-mask" if f["mask_fraction"] == 0 else "mask-too-large")


def test_unrelated_pairs_are_never_kept_by_collect_annotate_build(tmp_path):
    from webiml import collect as C
    from webiml.caaa.annotate import NaiveAnnotator, annotate_corpus
    from webiml.caaa.dataset import build_dataset

    src = tmp_path / "src"
    rows = []
    for name, (forged, authentic) in _unrelated_pairs().items():
        io.write_image(src / f"{name}-f.png", forged)
        io.write_image(src / f"{name}-a.png", authentic)
        rows.append(f"{name}-f.png,{name}-a.png")
    (src / "pairs.csv").write_text("\n".join(rows) + "\n")
    before = {p: p.read_bytes() for p in src.iterdir()}

    # collect drops them by default ...
    report = C.collect(C.pairs_csv_candidates(src / "pairs.csv", src), tmp_path / "c0", C.CollectConfig(workers=1), progress=False)
    assert report["n_accepted"] == 0 and report["rejected_by_reason"] == {"no-shared-content": 3}
    # ... and a user who keeps them still gets no label from them
    C.collect(C.pairs_csv_candidates(src / "pairs.csv", src), tmp_path / "c1", C.CollectConfig(workers=1, keep_unmatched=True), progress=False)
    ann = annotate_corpus(tmp_path / "c1", NaiveAnnotator(), tmp_path / "ann", progress=False)
    assert ann["refused_by_reason"] == {"no-shared-content": 3}
    for threshold in (0.5, -1.0):  # the dataset and its no-QES ablation
        ds = build_dataset(tmp_path / "ann", tmp_path / f"ds{threshold}", threshold=threshold, progress=False)
        assert ds["kept"] == 0 and ds["refused_by_guard"] == {"no-shared-content": 3}
        dropped = io.read_jsonl(tmp_path / f"ds{threshold}" / "dropped.jsonl")
        assert all(d["reason"] == "no-shared-content" and "registration no-shared-content" in d["detail"] for d in dropped)
    assert {p: p.read_bytes() for p in src.iterdir()} == before  # inputs untouched
