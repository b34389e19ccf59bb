"""The real datasets as pipeline inputs: NIST16's leak-free split (in both layouts), COVERAGE, the
indexes the real_data stage writes, and the proof that no test-split file is a training input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from webiml import io
from webiml.evaluate import realsets
from webiml.evaluate.prepare import carve_validation, near_duplicate_groups, prepare_dataset, split_ids
from webiml.stage import notebook_defaults

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / "../shared/data"
shared_nist16 = pytest.mark.skipif(not (SHARED / "nist16").is_dir(), reason="../shared/data/nist16 absent")


def _img(path: Path, seed: int, h: int = 24, w: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _jpeg_mask(path: Path, m: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(m, 255, 0).astype(np.uint8)).save(path, quality=75)
    return path


def _rect() -> np.ndarray:
    m = np.zeros((24, 32), bool)
    m[4:16, 8:24] = True
    return m


def test_the_split_is_disjoint_and_covers_nist16():
    train, val, test = (split_ids("nist16", p) for p in ("train", "val", "test"))
    assert not (train & test) and not (val & test) and not (train & val)
    assert (len(train), len(val), len(test)) == (306, 77, 181)
    with pytest.raises(ValueError, match="unknown split 'dev' of nist16; known: test, train, val"):
        split_ids("nist16", "dev")
    with pytest.raises(ValueError, match="has no split"):
        split_ids("coverage", "test")


@pytest.mark.parametrize("layout", ["tp-gt", "nist"])
def test_nist16_split_applies_to_both_layouts(tmp_path, layout):
    """The redistributed Tp/+Gt/ folders (JPEG masks, white = manipulated) and NIST's own layout
    (reference table, inverted PNG masks) give the same split of the same probes."""
    test_id, train_id, outside = sorted(split_ids("nist16", "test"))[0], sorted(split_ids("nist16", "train"))[0], "NC2016_9999"
    raw = tmp_path / "NIST16"
    if layout == "tp-gt":
        for split, pid in (("test", test_id), ("train", train_id), ("train", outside)):
            _img(raw / split / "Tp" / f"{pid}.jpg", hash(pid) % 1000)
            _jpeg_mask(raw / split / "Gt" / f"{pid}_mask.jpg", _rect())
    else:
        rows = ["TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget"]
        for pid in (test_id, train_id, outside):
            _img(raw / "probe" / f"{pid}.jpg", hash(pid) % 1000)
            mask = raw / "reference" / "manipulation" / "mask" / f"{pid}.png"
            mask.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where(_rect(), 0, 255).astype(np.uint8)).save(mask)  # inverted
            rows.append(f"manipulation|{pid}|probe/{pid}.jpg|reference/manipulation/mask/{pid}.png|Y")
        (raw / "reference" / "manipulation" / "NC2016-manipulation-ref.csv").write_text("\n".join(rows) + "\n")
    for split, pid in (("test", test_id), ("train", train_id)):
        r = prepare_dataset("nist16", raw, tmp_path / split, progress=False, split=split)
        entries = io.read_index(tmp_path / split / "index.json")
        assert [Path(i).stem for i, _ in entries] == [pid] and r["n_outside_split"] == 2 and r["split"] == split
        assert np.array_equal(io.read_mask(entries[0][1]), _rect())  # white in Gt/, black in reference/: the same truth


def test_carve_validation_keeps_near_duplicates_together(tmp_path):
    base = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    paths = []
    for g in range(6):  # six photos, three near-copies of each
        photo = np.roll(base, 11 * g, axis=(0, 1)) if g else base
        photo = np.clip(photo.astype(int) + 40 * g, 0, 255).astype(np.uint8) if g % 2 else photo[::-1]
        for k in range(3):
            p = tmp_path / f"g{g}_{k}.png"
            Image.fromarray(np.clip(photo.astype(int) + k, 0, 255).astype(np.uint8)).save(p)
            paths.append(p)
    groups = near_duplicate_groups(paths)
    assert sorted(sorted(paths[i].stem[:2] for i in g) for g in groups) == [[f"g{g}"] * 3 for g in range(6)]
    val = carve_validation(paths, fraction=0.3, seed=1)
    assert len(val) == 6 and len({p.stem[:2] for p in val}) == 2  # two whole groups


def test_prepare_real_skips_absent_sets_and_lists_what_it_changed(tmp_path):
    real = tmp_path / "data" / "real"
    (real / "nist16").mkdir(parents=True)  # linked as an empty folder: absent
    cov = real / "coverage"
    _img(cov / "image" / "1.tif", 1)
    _img(cov / "image" / "1t.tif", 2)
    _jpeg_mask(cov / "mask" / "1forged.tif", _rect())
    _img(cov / "image" / "2t.tif", 3)
    _jpeg_mask(cov / "mask" / "2forged.tif", np.zeros((10, 10), bool))  # another aspect ratio: skipped
    before = {p: p.read_bytes() for p in cov.rglob("*") if p.is_file()}
    report = realsets.prepare_real(real, tmp_path / "out", progress=False)
    assert report["nist16"] is None and not (tmp_path / "out" / "nist16").exists()
    r = report["coverage"]["all"]
    assert (r["n_tampered"], r["n_authentic"], r["n_skipped"]) == (1, 1, 1) and r["skipped"][0]["reason"] == "size-mismatch"
    assert {p: p.read_bytes() for p in cov.rglob("*") if p.is_file()} == before
    index = realsets.index_path(tmp_path / "out", "coverage")
    assert all(not Path(e[0]).is_absolute() for e in json.loads(index.read_text()))  # moves with the workspace
    assert [Path(i).name for i, _ in io.read_index(index)] == ["1t.tif", "1.tif"]
    table = realsets.skips_table(report)
    assert "| nist16 | – | absent |" in table and "2t.tif | size-mismatch" in table


def test_training_stages_read_only_the_train_part():
    """The trainers' real set is NIST16 `train` (the benchmark's is `test`), by the stages' parameters."""
    train = realsets.index_path("data/realsets", "nist16", "train").as_posix()
    for nb in ("05_train_webiml", "06_train_boxprompt"):
        assert notebook_defaults(ROOT / "notebooks" / f"{nb}.ipynb")["real_dataset"] == train
    bench = notebook_defaults(ROOT / "notebooks" / "07_benchmark.ipynb")["params"]["datasets"]
    assert bench["nist16"] == realsets.index_path("data/realsets", "nist16", "test").as_posix()


@shared_nist16
def test_no_test_split_file_is_ever_a_training_input(tmp_path):
    """On the real NIST16: the prepared train part and what the trainers load from it share no file
    (by path or by content) with the test part, and no image is a near-copy across them beyond what
    the split allows (same photo, another manipulation)."""
    from webiml.samples import IndexSource
    from webiml.train_boxprompt import prepare_boxprompt_data

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "nist16").symlink_to((SHARED / "nist16").resolve(), target_is_directory=True)
    realsets.prepare_real(tmp_path / "real", tmp_path / "sets", progress=False)
    parts = {p: io.read_index(realsets.index_path(tmp_path / "sets", "nist16", p)) for p in ("train", "val", "test")}
    digest = {p: {hashlib.sha256(Path(i).read_bytes()).hexdigest() for i, _ in e} for p, e in parts.items()}
    test_files = {Path(i).resolve() for i, _ in parts["test"]}
    assert not (digest["train"] & digest["test"]) and not (digest["val"] & digest["test"])
    train_index = realsets.index_path(tmp_path / "sets", "nist16", "train")
    source = IndexSource(train_index, max_side=64)
    assert len(source) == 306 and not {Path(i).resolve() for i, _ in source.entries} & test_files
    assert {Path(i).stem for i, _ in source.entries} == split_ids("nist16", "train")
    pool = prepare_boxprompt_data({"teacher": "box", "data": {"handcrafted": 1, "authentic": 1, "base_side": [64, 64], "real_side": 64}},
                                  progress=False, real_index=train_index)
    assert pool.report["n_by_source"] == {"synthetic": 2, "real": 306}


def test_nist16_table_rows_that_do_not_fit_are_skipped_with_a_reason(tmp_path):
    raw = tmp_path / "NC2016"
    _img(raw / "probe" / "NC2016_0001.jpg", 1)
    table = raw / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    table.parent.mkdir(parents=True)
    table.write_text("TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget\n"
                     "manipulation|NC2016_0001|probe/NC2016_0001.jpg||N\nmanipulation|NC2016_0002\n")
    r = prepare_dataset("nist16", raw, tmp_path / "out", progress=False)
    assert r["n_authentic"] == 1 and r["skipped_by_reason"] == {"bad-row": 1} and ":3: 2 fields, expected 5" in r["skipped"][0]["detail"]
    table.write_bytes(b"TaskID|ProbeFileName|IsTarget\n\xff\xfe|x|Y\n")
    with pytest.raises(ValueError, match="not a readable '\\|'-separated table"):
        prepare_dataset("nist16", raw, tmp_path / "out2", progress=False)
