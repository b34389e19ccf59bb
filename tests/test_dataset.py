"""build_dataset on a tiny fake annotation folder."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webiml import io
from webiml.caaa.dataset import build_dataset

H, W = 12, 16


def _snapshot(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


def _png(path: Path, a: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a.astype(np.uint8)).save(path)


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """pairs/ with three forged images; ann/ with three records (one mask missing)."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    pairs, ann = tmp_path / "pairs", tmp_path / "ann"
    for pid in ("good", "doubt", "nomask"):
        io.write_image(pairs / "pairs" / pid / "forged.jpg", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    good = np.zeros((H, W), np.uint8)
    good[0:2, 0:10] = 255  # 20 confident pixels
    good[2, 0:2] = 128  # 128/255 > 0.5: in the binary mask, not confident
    good[2, 2:4] = 127  # 127/255 < 0.5: out of the binary mask
    good[3, 0:4] = 20  # weak but > 1/16
    _png(ann / "masks" / "good.png", good)  # QES = 20 / 28
    doubt = np.zeros((H, W), np.uint8)
    doubt[4:8, 4:8] = 200  # positive, never confident: QES 0
    _png(ann / "masks" / "doubt.png", doubt)
    recs = [
        {"id": "good", "forged": "pairs/good/forged.jpg", "mask": "masks/good.png", "category": "spg",
         "category_prob": 0.9, "aligned": True, "qes": 20 / 28, "annotator": "dass", "seconds": 0.1},
        {"id": "doubt", "forged": "pairs/doubt/forged.jpg", "mask": "masks/doubt.png", "category": "sdg",
         "category_prob": 0.8, "aligned": False, "qes": 0.0, "annotator": "corr", "seconds": 0.1},
        {"id": "nomask", "forged": "pairs/nomask/forged.jpg", "mask": "masks/nomask.png", "category": "sdg",
         "category_prob": 0.7, "aligned": False, "qes": 0.9, "annotator": "corr", "seconds": 0.1},
    ]
    ann.mkdir(exist_ok=True)
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    (ann / "meta.json").write_text(json.dumps({"pairs_dir": "pairs", "method": "caaa"}))
    return tmp_path, pairs, ann, good


def test_build_dataset(folders):
    root, pairs, ann, good = folders
    before = _snapshot(pairs, ann)
    out = root / "out"
    report = build_dataset(ann, out, progress=False)  # pairs_dir from meta, relative to the CWD

    assert sorted(p.name for p in (out / "imgs").iterdir()) == ["good.jpg"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["good.png"]
    assert (out / "imgs" / "good.jpg").read_bytes() == (pairs / "pairs/good/forged.jpg").read_bytes()
    assert json.loads((out / "index.json").read_text()) == [["imgs/good.jpg", "masks/good.png"]]
    [(img, mask)] = io.read_benco_index(out / "index.json")
    assert img.exists() and mask.exists()
    raw = np.asarray(Image.open(out / "masks" / "good.png"))
    assert set(np.unique(raw)) == {0, 255}
    np.testing.assert_array_equal(raw == 255, good > 127)

    kept = io.read_jsonl(out / "kept.jsonl")
    assert [k["id"] for k in kept] == ["good"] and kept[0]["qes"] == pytest.approx(20 / 28, abs=1e-6)
    dropped = {d["id"]: d for d in io.read_jsonl(out / "dropped.jsonl")}
    assert dropped["doubt"]["reason"] == "qes<=0.5" and dropped["doubt"]["qes"] == 0.0
    assert dropped["nomask"]["reason"] == "missing-mask" and dropped["nomask"]["qes"] is None

    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert (report["threshold"], report["n"], report["kept"], report["dropped"]) == (0.5, 3, 1, 2)
    assert report["per_category"] == {"spg": {"kept": 1, "dropped": 0}, "sdg": {"kept": 0, "dropped": 2}}
    hist = report["qes_histogram"]
    assert len(hist["counts"]) == 20 and len(hist["edges"]) == 21
    assert hist["counts"][0] == 1 and hist["counts"][14] == 1 and sum(hist["counts"]) == 2  # 0.0 and 0.714
    assert report["dropped_by_reason"] == {"missing-mask": 1, "qes<=0.5": 1}
    assert report["qes_mismatches"] == 0
    assert _snapshot(pairs, ann) == before


def test_rerun_overwrites_and_warns(folders, caplog):
    root, pairs, ann, _ = folders
    out = root / "out"
    (out / "imgs").mkdir(parents=True)
    (out / "imgs" / "stale.jpg").write_bytes(b"old")
    (out / "notes.txt").write_text("not ours")
    recs = io.read_jsonl(ann / "annotations.jsonl")
    recs[0]["qes"] = 0.1  # a record that disagrees with its mask
    (ann / "annotations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    with caplog.at_level(logging.WARNING, logger="webiml.caaa.dataset"):
        report = build_dataset(ann, out, threshold=0.75, pairs_dir=pairs, progress=False)
    assert report["kept"] == 0 and report["qes_mismatches"] == 1
    assert any("good" in r.message for r in caplog.records)
    assert list((out / "imgs").iterdir()) == [] and json.loads((out / "index.json").read_text()) == []
    assert (out / "notes.txt").read_text() == "not ours"
    assert {d["reason"] for d in io.read_jsonl(out / "dropped.jsonl")} == {"qes<=0.75", "missing-mask"}


def test_bad_inputs_never_crash(folders):
    root, pairs, ann, good = folders
    (pairs / "pairs/doubt/forged.jpg").unlink()
    _png(ann / "masks" / "wrongsize.png", np.full((5, 5), 255))
    io.write_image(pairs / "pairs/wrongsize/forged.jpg", np.zeros((H, W, 3), np.uint8))
    with open(ann / "annotations.jsonl", "a") as f:
        f.write(json.dumps({"id": "wrongsize", "forged": "pairs/wrongsize/forged.jpg", "mask": "masks/wrongsize.png",
                            "category": "spg", "qes": 1.0}) + "\n")
        f.write(json.dumps({"id": "good", "forged": "pairs/good/forged.jpg", "mask": "masks/good.png",
                            "category": "spg", "qes": 0.7}) + "\n")
    report = build_dataset(ann, root / "out", pairs_dir=pairs, progress=False)
    assert report["kept"] == 1
    assert report["dropped_by_reason"] == {"duplicate-id": 1, "missing-image": 1, "missing-mask": 1,
                                           "size-mismatch": 1}


def test_refuses_to_write_over_inputs(folders):
    _, pairs, ann, _ = folders
    with pytest.raises(ValueError):
        build_dataset(ann, ann, progress=False)
    assert (ann / "masks" / "good.png").exists()
