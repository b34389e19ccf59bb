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
from webiml.caaa.guard import GuardConfig

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
    assert json.loads((out / "index.json").read_text()) == [[(out / "imgs/good.jpg").as_posix(), (out / "masks/good.png").as_posix()]]
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
    assert report["seconds"] >= 0 and on_disk == json.loads(json.dumps({k: v for k, v in report.items() if k != "seconds"}))
    before_rerun = _snapshot(out)
    build_dataset(ann, out, progress=False)
    assert _snapshot(out) == before_rerun  # a re-run writes the same bytes (DVC sees no change downstream)
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
    build_dataset(ann, out, threshold=0.75, pairs_dir=pairs, progress=False)
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


def test_index_resolves_from_any_working_directory(folders, monkeypatch):
    """IMDL-BenCo reads an index's paths as written, against the current directory."""
    root, pairs, ann, _ = folders
    build_dataset(Path("ann"), Path("out"), pairs_dir=Path("pairs"), progress=False)  # relative paths in, as a user types them
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    [[img, mask]] = json.loads((root / "out" / "index.json").read_text())
    assert Path(img).is_file() and Path(mask).is_file()
    build_dataset(root / "ann", root / "moved", pairs_dir=root / "pairs", progress=False, index_paths="relative")
    assert json.loads((root / "moved" / "index.json").read_text()) == [["imgs/good.jpg", "masks/good.png"]]
    with pytest.raises(ValueError, match="index_paths"):
        build_dataset(root / "ann", root / "x", pairs_dir=root / "pairs", progress=False, index_paths="rel")


def _add(ann: Path, pairs: Path, pid: str, mask: np.ndarray, **rec) -> None:
    io.write_image(pairs / "pairs" / pid / "forged.jpg", np.full((H, W, 3), 90, np.uint8))
    _png(ann / "masks" / f"{pid}.png", mask)
    with open(ann / "annotations.jsonl", "a") as f:
        f.write(json.dumps({"id": pid, "forged": f"pairs/{pid}/forged.jpg", "mask": f"masks/{pid}.png",
                            "category": "spg", **rec}) + "\n")


def test_guard_refuses_labels_that_cannot_be_right(folders):
    root, pairs, ann, good = folders
    whole = np.full((H, W), 255, np.uint8)  # QES 1.0: the papers' rule alone keeps it
    _add(ann, pairs, "whole", whole, registration="registered")
    _add(ann, pairs, "unrelated", good, registration="no-shared-content")
    _add(ann, pairs, "nomanifest", good)  # status from the pair manifest below
    (pairs / "pairs.jsonl").write_text(json.dumps({"id": "nomanifest", "flags": ["no-shared-content"]}) + "\n")
    report = build_dataset(ann, root / "out", pairs_dir=pairs, progress=False)
    dropped = {d["id"]: d for d in io.read_jsonl(root / "out" / "dropped.jsonl")}
    assert dropped["whole"]["reason"] == "mask-too-large" and dropped["whole"]["qes"] == pytest.approx(1.0)
    assert "100.0%" in dropped["whole"]["detail"]
    assert dropped["unrelated"]["reason"] == dropped["nomanifest"]["reason"] == "no-shared-content"
    assert [k["id"] for k in io.read_jsonl(root / "out" / "kept.jsonl")] == ["good"]
    assert report["kept_by_qes_alone"] == 4
    assert report["removed_by_guard"] == {"mask-too-large": 1, "no-shared-content": 2}
    assert report["refused_by_guard"] == {"no-shared-content": 2, "mask-too-large": 1}

    # without QES filtering the guard still refuses, and an empty mask is refused too
    _add(ann, pairs, "empty", np.zeros((H, W), np.uint8))
    noqes = build_dataset(ann, root / "noqes", pairs_dir=pairs, threshold=-1.0, progress=False)
    assert noqes["refused_by_guard"] == {"no-shared-content": 2, "empty-mask": 1, "mask-too-large": 1}
    assert "empty" not in {k["id"] for k in io.read_jsonl(root / "noqes" / "kept.jsonl")}

    # forced: unmatched pairs kept and flagged; whole-image masks still refused
    forced = build_dataset(ann, root / "forced", pairs_dir=pairs, progress=False, guard=GuardConfig(keep_unmatched=True))
    kept = {k["id"]: k for k in io.read_jsonl(root / "forced" / "kept.jsonl")}
    assert set(kept) == {"good", "unrelated", "nomanifest"} and forced["refused_by_guard"] == {"empty-mask": 1, "mask-too-large": 1}
    assert kept["unrelated"]["flags"] == ["unmatched"] and kept["good"]["flags"] == []
    # switched off: the papers' rule alone
    off = build_dataset(ann, root / "off", pairs_dir=pairs, progress=False, guard=GuardConfig(enabled=False))
    assert off["kept"] == off["kept_by_qes_alone"] == 4 and off["removed_by_guard"] == {}
