"""Hostile files given to every reader and every loader over many items: each bad item is
quarantined with its named reason, the run goes on and counts right, the inputs are unchanged,
output names never collide, and every JSON written is valid (no NaN)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from webiml import io
from webiml.cli import main as cli

pytestmark = pytest.mark.hostile

H, W = 24, 32
LONG = "x" * 300 + ".png"  # a name over 255 bytes: ENAMETOOLONG


# ------------------------------------------------------------------------------ the files


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_claiming(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` grey pixels, with no pixel data (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")


def _rgb(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _truth(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[4:12, 6:20] = True
    return m


def _save(path: Path, a: np.ndarray, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path, **kw)
    return path


def _truncated(path: Path) -> Path:
    """A valid file of ``path``'s format cut in the middle of its pixel data."""
    _save(path, _rgb(7), **({"quality": 90} if path.suffix == ".jpg" else {}))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _hostile(folder: Path, kind: str) -> Path:
    """One hostile file in ``folder``; the expected reason is :data:`REASON` [kind]."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{kind}.png"
    if kind == "bomb":  # Pillow's own DecompressionBombError
        p.write_bytes(_png_claiming(30000, 30000))
    elif kind == "over-cap":  # 81 Mpx: under Pillow's limits, over ours (64 Mpx), images and masks alike
        p.write_bytes(_png_claiming(9000, 9000))
    elif kind == "truncated-png":
        _truncated(p)
    elif kind == "truncated-jpg":
        p = _truncated(folder / "truncated.jpg")
    elif kind == "long-name":
        p = folder / LONG
    elif kind == "directory":
        p.mkdir()
    elif kind == "symlink-loop":
        p.symlink_to(p.name)
    elif kind == "fifo":  # opening it would block forever
        os.mkfifo(p)
    elif kind == "missing":
        pass
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "text":
        p.write_text("not an image\n" * 10)
    return p


REASON = {"bomb": "too-large", "over-cap": "too-large", "truncated-png": "truncated", "truncated-jpg": "truncated",
          "long-name": "name-too-long", "directory": "not-an-image", "symlink-loop": "unreadable",
          "fifo": "not-an-image", "missing": "missing-file", "empty": "empty-file", "text": "not-an-image"}


def _digest(folder: Path) -> dict[str, str]:
    """Every regular file under ``folder`` (not following links) with its hash: inputs must stay as they were."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _strict_json(path: Path):
    """Parse as strict JSON: a bare NaN/Infinity fails."""
    def refuse(c):
        raise AssertionError(f"{path}: {c} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


# ---------------------------------------------------------------------------- the readers


READERS = {"read_image": io.read_image, "image_size": io.image_size, "read_mask_pixels": io.read_mask_pixels,
           "read_soft_mask": io.read_soft_mask, "read_mask": io.read_mask}


@pytest.mark.parametrize("kind", sorted(REASON))
@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_reader_rejects_a_hostile_file_with_its_reason(tmp_path, kind, reader):
    p = _hostile(tmp_path / "in", kind)
    before = _digest(tmp_path / "in")
    if reader == "image_size" and kind.startswith("truncated"):  # headers only: the data is not decoded
        assert io.image_size(p) == (W, H)
        return
    with pytest.raises(io.Rejected) as ei:
        READERS[reader](p)
    assert ei.value.reason == REASON[kind] and ei.value.path == str(p)
    assert ei.value.reason in io.REASONS
    assert _digest(tmp_path / "in") == before


def test_a_mask_at_the_image_size_is_never_too_large_and_another_size_is_refused_from_its_header(tmp_path):
    p = tmp_path / "m.png"
    p.write_bytes(_png_claiming(9000, 9000))  # over the 64 Mpx default, no pixel data
    with pytest.raises(io.Rejected) as ei:  # refused before decoding: the header says 9000x9000
        io.read_mask(p, size=(W, H))
    assert ei.value.reason == "too-large"
    with pytest.raises(io.Rejected) as ei:  # the image it belongs to is that large: decoded (and found broken)
        io.read_mask(p, size=(9000, 9000))
    assert (ei.value.reason, ei.value.detail) == ("corrupt", "cannot load this image")
    io.write_mask(p, _truth())
    with pytest.raises(io.Rejected) as ei:
        io.read_mask(p, size=(W + 1, H))
    assert (ei.value.reason, ei.value.detail) == ("size-mismatch", f"mask {W}x{H} vs image {W + 1}x{H}")


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P-transparent", "LA"])
def test_wrong_modes_are_converted_not_refused(tmp_path, mode):
    m = _truth()
    grey = np.where(m, 255, 0).astype(np.uint8)
    if mode == "CMYK":
        p = tmp_path / "m.jpg"
        Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).convert("CMYK").save(p, quality=100)
    elif mode == "I;16":
        p = tmp_path / "m.png"
        Image.fromarray(grey.astype(np.uint16) * 257).save(p)
    elif mode == "P-transparent":
        p = tmp_path / "m.png"
        im = Image.fromarray((m * 1).astype(np.uint8), "P")
        im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
        im.info["transparency"] = 0
        im.save(p, transparency=0)
    else:
        p = tmp_path / "m.png"
        Image.fromarray(np.stack([grey, np.full_like(grey, 255)], axis=2), "LA").save(p)
    rgb, info = io.read_image(p)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8 and info.mode == mode.split("-")[0]
    assert io.image_size(p) == (W, H)
    np.testing.assert_array_equal(io.read_mask(p, size=(W, H)), m)
    io.check_entry(p, p)


def test_a_multi_page_tiff_reads_its_first_page_and_says_so(tmp_path):
    p = tmp_path / "pages.tif"
    first, second = _rgb(1), _rgb(2)
    Image.fromarray(first).save(p, save_all=True, append_images=[Image.fromarray(second)])
    rgb, info = io.read_image(p)
    np.testing.assert_array_equal(rgb, first)
    assert "multi-page" in info.flags
    single = _save(tmp_path / "one.tif", first)
    assert "multi-page" not in io.read_image(single)[1].flags


# ------------------------------------------------------------------------ index loaders


def _index(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A BenCo index of good entries and one entry per hostile file (as image or as mask);
    returns it with {image name: (side, reason)} for the bad ones."""
    d = tmp_path / "ds"
    good = _save(d / "good.png", _rgb(1))
    io.write_mask(d / "good_gt.png", _truth())
    neg = _save(d / "neg.png", _rgb(2))
    entries = [[str(good), str(d / "good_gt.png")], [str(neg), io.NEGATIVE]]
    expect = {}
    for kind in ("bomb", "over-cap", "truncated-png", "long-name", "directory", "symlink-loop"):
        bad = _hostile(d / "bad_masks", kind)
        img = _save(d / f"img_{kind}.png", _rgb(3))
        entries.append([str(img), str(bad)])
        expect[img.name] = ("mask", REASON[kind])
        bad_img = _hostile(d / "bad_images", kind)
        entries.append([str(bad_img), str(d / "good_gt.png")])
        expect[bad_img.name] = ("image", REASON[kind])
    io.write_json(d / "index.json", entries)
    return d / "index.json", expect


class _Zero(torch.nn.Module):
    def forward(self, x):
        return {"logits": torch.zeros(x.shape[0], 1, *x.shape[2:])}


def _lm():
    from webiml.infer import LoadedModel

    return LoadedModel("zero", _Zero(), Path("zero.pt"))


def test_benchmark_skips_each_bad_entry_blaming_the_right_file(tmp_path):
    from webiml.evaluate.benchmark import evaluate_model

    index, expect = _index(tmp_path)
    before = _digest(tmp_path / "ds")
    summary, rows = evaluate_model(_lm(), index, progress=False)
    assert [r["name"] for r in rows] == ["good.png", "neg.png"]
    assert (summary["n_images"], summary["n_tampered"], summary["n_skipped"]) == (2, 1, len(expect))
    got = {Path(s["image"]).name: (s["side"], s["reason"]) for s in summary["skipped"]}
    assert got == expect
    for s in summary["skipped"]:  # the path named is the bad file
        assert s["path"] == (s["mask"] if s["side"] == "mask" else s["image"])
    assert _digest(tmp_path / "ds") == before


@pytest.mark.parametrize("entries", [[], "negative-only"])
def test_an_index_without_tampered_images_gives_valid_json_with_null(tmp_path, entries):
    from webiml.evaluate.benchmark import evaluate_model

    if entries == "negative-only":
        entries = [[str(_save(tmp_path / f"n{i}.png", _rgb(i))), io.NEGATIVE] for i in range(3)]
    io.write_json(tmp_path / "index.json", entries)
    summary, _ = evaluate_model(_lm(), tmp_path / "index.json", progress=False)
    io.write_json(tmp_path / "out.json", summary)
    back = _strict_json(tmp_path / "out.json")
    assert back["pixel_f1"] is None and back["image_auc"] is None
    assert back["n_images"] == len(entries) and back["n_tampered"] == 0


def test_json_writers_turn_non_finite_numbers_into_null(tmp_path):
    obj = {"a": float("nan"), "b": [np.float32("inf"), float("-inf"), 1.5], "c": np.array([np.nan, 2.0]), "d": (np.int64(3),)}
    io.write_json(tmp_path / "x.json", obj)
    io.write_jsonl(tmp_path / "x.jsonl", [obj])
    with io.JsonlWriter(tmp_path / "y.jsonl") as w:
        w.write(obj)
    want = {"a": None, "b": [None, None, 1.5], "c": [None, 2.0], "d": [3]}
    assert _strict_json(tmp_path / "x.json") == want
    for f in ("x.jsonl", "y.jsonl"):
        assert json.loads((tmp_path / f).read_text(), parse_constant=lambda c: pytest.fail(c)) == want
    assert io.to_json({"v": 1.0, "p": Path("a/b")}) == '{"v": 1.0, "p": "a/b"}'  # finite values as before


def test_index_source_leaves_out_each_bad_entry_with_its_reason(tmp_path):
    from webiml.samples import IndexSource

    index, expect = _index(tmp_path)
    src = IndexSource(index)
    # decided from the headers; a truncated file has a sound header and is caught when read
    assert [p.name for p, _ in src.entries] == ["good.png", "neg.png", "img_truncated-png.png", "truncated-png.png"]
    got = {Path(r["image"]).name: (r["side"], r["reason"]) for r in src.rejected}
    assert got == {k: v for k, v in expect.items() if v[1] != "truncated"}
    n = len(src.rejected)
    rgb, target = src[2]  # both truncated entries fail: replaced by the next readable one, recorded
    np.testing.assert_array_equal(rgb, _rgb(1))
    assert target.sum() == _truth().sum()
    assert [(Path(r["image"]).name, r["side"], r["reason"]) for r in src.rejected[n:]] == [
        ("img_truncated-png.png", "mask", "truncated"), ("truncated-png.png", "image", "truncated")]


def test_index_readers_name_the_file_on_bad_text(tmp_path):
    p = tmp_path / "index.json"
    p.write_bytes(b'[["a.png", "\xff"]]')
    with pytest.raises(ValueError, match=r"index\.json: not UTF-8"):
        io.read_index(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"index\.json: JSON nested too deeply"):
        io.read_index(p)
    p.write_text('[["a.png", "Negative"],]')
    with pytest.raises(ValueError, match=r"index\.json: not valid JSON \(Expecting value at line 1, column 24"):
        io.read_index(p)
    j = tmp_path / "rows.jsonl"
    j.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"rows\.jsonl, line 2: not valid JSON"):
        io.read_jsonl(j)
    with pytest.raises(ValueError, match="name too long"):
        io.read_index(tmp_path / LONG)
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        io.read_index(tmp_path / "absent.json")


# ------------------------------------------------------------------------- prepare-dataset


def test_prepare_dataset_quarantines_bad_masks_and_images_and_goes_on(tmp_path):
    from webiml.evaluate.prepare import prepare_dataset

    raw = tmp_path / "raw"
    img_dir, mask_dir = raw / "DSO-1", raw / "DSO-1-Fake-Images-Masks"
    _save(img_dir / "normal-1.png", _rgb(1))
    _save(img_dir / "splicing-1.png", _rgb(2))
    _save(mask_dir / "splicing-1.png", np.where(_truth(), 0, 255).astype(np.uint8))  # inverted: black = spliced
    for i, kind in enumerate(("bomb", "over-cap", "truncated-png"), start=2):
        _save(img_dir / f"splicing-{i}.png", _rgb(i))
        (mask_dir / f"splicing-{i}.png").write_bytes(_hostile(tmp_path / "src", kind).read_bytes())
    _truncated(img_dir / "splicing-9.png")
    _save(mask_dir / "splicing-9.png", np.zeros((H, W), np.uint8))
    before = _digest(raw)
    r = prepare_dataset("dso1", raw, tmp_path / "out", progress=False)
    assert (r["n_images"], r["n_tampered"], r["n_skipped"]) == (2, 1, 4)
    got = {Path(s["image"]).name: (s["reason"], s["detail"].split(":")[0]) for s in r["skipped"]}
    assert got == {"splicing-2.png": ("unreadable-mask", "too-large"), "splicing-3.png": ("unreadable-mask", "too-large"),
                   "splicing-4.png": ("unreadable-mask", "truncated"), "splicing-9.png": ("truncated", got["splicing-9.png"][1])}
    assert _digest(raw) == before
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == [
        "DSO-1__splicing-1.png", "index.json", "masks", "rejected.jsonl", "report.json"]
    assert _strict_json(tmp_path / "out" / "report.json")["n_skipped"] == 4


def test_prepare_dataset_notes_a_multi_page_tiff(tmp_path):
    from webiml.evaluate.prepare import prepare_dataset

    raw = tmp_path / "raw" / "cam"
    Image.fromarray(_rgb(1)).save(_mkdir(raw / "tampered-realistic") / "t.tif", save_all=True,
                                  append_images=[Image.fromarray(_rgb(2))])
    io.write_mask(raw / "ground-truth" / "t.png", _truth())
    r = prepare_dataset("korus", tmp_path / "raw", tmp_path / "out", progress=False)
    assert r["n_tampered"] == 1 and r["notes_by_kind"] == {"multi-page": 1}


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def test_prepare_dataset_mask_names_never_collide(tmp_path):
    from webiml.evaluate.prepare import _mask_name, prepare_dataset

    raw = tmp_path / "raw"
    truths = {}
    _save(raw / "f" / "x_orig.png", _rgb(0))
    for k, rel in enumerate(("f/x_1.png", "f/x_1.jpg", "sub/x_1.png", "sub__x_1.png"), start=1):
        _save(raw / rel, _rgb(k))
        m = np.zeros((H, W), bool)
        m[k : k + 3, :] = True  # f/x_1.png and f/x_1.jpg share their mask (IMD2020 pairs by stem)
        io.write_mask((raw / rel).with_name(f"{Path(rel).stem}_mask.png"), m)
        truths[rel] = m
    truths["f/x_1.png"] = truths["f/x_1.jpg"]
    before = _digest(raw)
    r = prepare_dataset("imd2020", raw, tmp_path / "out", progress=False)
    assert (r["n_tampered"], r["n_skipped"]) == (4, 0)
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        "f__x_1.png", "f__x_1.png.png", "sub__x_1.png", "sub__x_1.png.png"]
    for img, m in io.read_benco_index(tmp_path / "out" / "index.json"):
        if m is not None:
            np.testing.assert_array_equal(io.read_mask(m), truths[img.relative_to(raw).as_posix()])
    assert _digest(raw) == before
    # the name with its extension already taken too: a number is added
    taken: set[str] = set()
    assert [_mask_name(raw, raw / n, taken) for n in ("a.png.jpg", "a.jpg", "a.png")] == ["a.png.png", "a.png", "a-2.png"]


# ---------------------------------------------------------------------------- instances


def test_coco_instances_quarantine_bad_images_and_refuse_bad_ids(tmp_path):
    from webiml.instances import coco_instances

    imgs = tmp_path / "imgs"
    _save(imgs / "good.png", _rgb(1))
    files = ["good.png"] + [_hostile(imgs, k).name for k in ("bomb", "truncated-png", "directory", "symlink-loop")] + [LONG]
    seg = [[0, 0, W, 0, W, H, 0, H]]
    coco = {"images": [{"id": i, "file_name": f, "width": W, "height": H} for i, f in enumerate(files)],
            "annotations": [{"id": i, "image_id": i, "segmentation": seg, "iscrowd": 0} for i in range(len(files))]}
    p = tmp_path / "coco.json"
    p.write_text(json.dumps(coco))
    rejected: list = []
    got = list(coco_instances(p, imgs, rejected=rejected))
    assert [g.name for g in got] == ["good.png"]
    assert [r["reason"] for r in rejected] == ["too-large", "truncated", "not-an-image", "unreadable", "name-too-long"]

    for bad in ([1], {"a": 1}, None, True):
        p.write_text(json.dumps({**coco, "images": [{**coco["images"][0], "id": bad}]}))
        with pytest.raises(ValueError, match=r"coco\.json: images\[0\] needs an 'id'"):
            list(coco_instances(p, imgs))
    p.write_text(json.dumps({**coco, "annotations": [{**coco["annotations"][0], "image_id": [0]}]}))
    with pytest.raises(ValueError, match=r"coco\.json: annotations\[0\] needs"):
        list(coco_instances(p, imgs))
    p.write_text('{"images": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(ValueError, match=r"coco\.json: JSON nested too deeply"):
        list(coco_instances(p, imgs))


# ------------------------------------------------------------------------------- collect


def test_collect_quarantines_a_bomb_truth_mask_and_goes_on(tmp_path, rgb):
    from dataclasses import replace

    from webiml.collect import CollectConfig, candidates_from, collect
    from webiml.synth import EVIDENT_PAIRS, spg_edit

    root = tmp_path / "noso"
    auth = rgb("chelsea")[:128, :192]
    for nn, kind in (("01", None), ("02", "bomb"), ("03", "over-cap"), ("04", "truncated-png")):
        e = spg_edit(auth, np.random.default_rng(int(nn)), "sticker")
        io.write_image(root / f"{nn}.png", auth)
        io.write_image(root / f"{nn}_mod.png", e.forged)
        gt = root / f"{nn}_mod_gt.png"
        if kind in (None, "truncated-png"):
            io.write_mask(gt, e.mask)
            if kind:
                gt.write_bytes(gt.read_bytes()[: len(gt.read_bytes()) // 2])
        else:
            gt.write_bytes(_hostile(tmp_path / "src", kind).read_bytes())
    before = _digest(root)
    cfg = CollectConfig(workers=1, seed=3, synthetic=replace(EVIDENT_PAIRS, base_side=(128, 192)))
    report = collect(candidates_from(["noso"], noso_root=root), tmp_path / "out", cfg, audit=tmp_path / "audit",
                     progress=False)
    assert report["n_accepted"] == 1 and report["n_rejected"] == 3
    assert report["rejected_by_reason"] == {"too-large": 2, "truncated": 1}
    assert sorted(p.name for p in (tmp_path / "out" / "pairs").iterdir()) == ["noso-01_mod"]
    rej = {r["id"]: r for r in io.read_jsonl(tmp_path / "out" / "rejected.jsonl")}
    assert rej["noso-02_mod"]["path"].endswith("02_mod_gt.png")
    assert _digest(root) == before


# --------------------------------------------------------------------------- pseudo-masks


def _pseudo(tmp_path: Path, boxes: str | bytes, name: str = "boxes.csv", images: Path | None = None,
            out: str = "out") -> tuple[int, Path]:
    (tmp_path / name).write_bytes(boxes.encode() if isinstance(boxes, str) else boxes)
    out = tmp_path / out
    rc = cli(["pseudo-masks", "--boxes", str(tmp_path / name), "--images", str(images or tmp_path / "imgs"),
              "--out", str(out), "--teacher", "box", "--quiet"])
    return rc, out


def test_pseudo_masks_colliding_stems_get_distinct_masks(tmp_path, capsys):
    names = ["a.png", "a.jpg", "sub/x.png", "sub__x.png", "a.png.png"]
    for k, n in enumerate(names):
        _save(tmp_path / "imgs" / n, _rgb(k))
    boxes = "".join(f"{n},{2 * k},0,{2 * k + 4},4\n" for k, n in enumerate(names))  # a different box each
    before = _digest(tmp_path / "imgs")
    rc, out = _pseudo(tmp_path, boxes)
    assert rc == 0
    index = io.read_benco_index(out / "index.json")
    assert len({m for _, m in index}) == len(names) == len(list((out / "masks").iterdir()))
    for k, (img, m) in enumerate(index):
        soft = io.read_soft_mask(m)
        assert img.relative_to(tmp_path / "imgs").as_posix() == names[k]
        assert soft[:4, 2 * k : 2 * k + 4].min() == 255 and soft.sum() == 255 * 16
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        "a.jpg.png", "a.png", "a.png.png", "sub__x.png", "sub__x.png.png"]
    assert _digest(tmp_path / "imgs") == before


def test_pseudo_masks_header_by_names_and_bad_rows_quarantined(tmp_path):
    for n in ("a.png", "b.png", "c.png"):
        _save(tmp_path / "imgs" / n, _rgb(1))
    # no header; the first row has a non-numeric coordinate: quarantined, not mistaken for a header
    rc, out = _pseudo(tmp_path, "a.png,1,x,5,5\nb.png,0,0,4,4\nb.png,1,2,3\nc.png,0,0,8,8\n")
    assert rc == 0
    r = _strict_json(out / "report.json")
    assert (r["n_listed"], r["n_masks"], r["rejected_by_reason"]) == (3, 1, {"bad-row": 2})
    rej = {x["image"]: x["detail"] for x in io.read_jsonl(out / "rejected.jsonl")}
    assert rej["a.png"].endswith("boxes.csv:1: coordinates must be numbers, got ['1', 'x', '5', '5']")
    assert "boxes.csv:3: expected image,x0,y0,x1,y1 (5 fields), got 4" in rej["b.png"]  # its partial boxes: not used
    # a header in another order is honoured by its names
    rc, out = _pseudo(tmp_path, "X1,y0,File_Name,x0,y1\n4,0,a.png,0,2\n", out="out2")
    assert rc == 0
    soft = io.read_soft_mask(io.read_benco_index(out / "index.json")[0][1])
    assert soft[:2, :4].min() == 255 and soft.sum() == 255 * 8


@pytest.mark.parametrize("boxes, name, message", [
    ("file,left_x,top_y,w,h\na.png,0,0,4,4\n", "boxes.csv", "header 'file,left_x,top_y,w,h' cannot be mapped"),
    ("image,x0,y0,x1,x1\na.png,0,0,4,4\n", "boxes.csv", "cannot be mapped"),
    (b"a.png,0,0,4,4\n\xff\xfe,1,1,2,2\n", "boxes.csv", "boxes.csv: not UTF-8 text"),
    ("a.png," + "1" * 200_000 + ",0,4,4\n", "boxes.csv", "boxes.csv:1: not a readable CSV row"),
    ('{"images": [{"id": [1], "file_name": "a.png"}], "annotations": []}', "boxes.json", r"boxes.json: images\[0\]: 'id'"),
    ('{"images": [{"id": {"a": 1}, "file_name": "a.png"}], "annotations": []}', "boxes.json", r"'id' must be"),
    ('{"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"image_id": [1], "bbox": [0, 0, 1, 1]}]}',
     "boxes.json", r"annotations\[0\] refers to image_id \[1\]"),
    ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", "boxes.json", "boxes.json: JSON nested too deeply"),
])
def test_pseudo_masks_refuses_an_unreadable_boxes_file_in_one_line(tmp_path, capsys, boxes, name, message):
    _save(tmp_path / "imgs" / "a.png", _rgb(1))
    rc, out = _pseudo(tmp_path, boxes, name)
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err  # a bad boxes file: a data error
    assert len(err.strip().splitlines()) == 1 and err.startswith("webiml pseudo-masks: error: ")
    assert __import__("re").search(message, err), err
    assert not out.exists()


def test_pseudo_masks_quarantines_hostile_images_and_goes_on(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    _save(imgs / "good.png", _rgb(1))
    kinds = ("bomb", "over-cap", "truncated-jpg", "long-name", "directory", "symlink-loop", "fifo")
    names = ["good.png"] + [_hostile(imgs, k).name for k in kinds]
    before = _digest(imgs)
    rc, out = _pseudo(tmp_path, "".join(f"{n},0,0,4,4\n" for n in names))
    assert rc == 0 and "Traceback" not in capsys.readouterr().err
    r = _strict_json(out / "report.json")
    assert (r["n_listed"], r["n_masks"], r["n_rejected"]) == (len(names), 1, len(kinds))
    got = {x["image"]: x["reason"] for x in io.read_jsonl(out / "rejected.jsonl")}
    assert got == {n: REASON[k] for n, k in zip(names[1:], kinds)}
    assert _digest(imgs) == before


def test_pseudo_masks_with_a_missing_images_folder_says_so(tmp_path, capsys):
    rc, _ = _pseudo(tmp_path, "a.png,0,0,4,4\n", images=tmp_path / "nowhere")
    assert rc == 2 and "no such folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------ benchmark


def test_benchmark_refuses_a_repeated_dataset_name(tmp_path, capsys):
    rc = cli(["benchmark", "--model", str(tmp_path / "none.pt"), "--dataset", "a=x.json", "--dataset", "a=y.json",
              "--out", str(tmp_path / "b.json")])
    err = capsys.readouterr().err
    assert rc == 2 and "--dataset a is given twice (x.json and y.json)" in err and "Traceback" not in err
    assert not (tmp_path / "b.json").exists()


def test_pseudo_masks_never_reads_outside_the_images_folder(tmp_path):
    """Image names in a stranger's boxes file are relative paths inside --images: an absolute
    name, ``..`` or a link out of the folder is quarantined as unsafe, and nothing outside is read."""
    _save(tmp_path / "imgs" / "good.png", _rgb(1))
    _save(tmp_path / "secret.png", _rgb(2))
    (tmp_path / "imgs" / "link.png").symlink_to(tmp_path / "secret.png")
    names = ["good.png", str(tmp_path / "secret.png"), "../secret.png", "link.png"]
    rc, out = _pseudo(tmp_path, "".join(f"{n},0,0,4,4\n" for n in names))
    assert rc == 0
    got = {x["image"]: x["reason"] for x in io.read_jsonl(out / "rejected.jsonl")}
    assert got == {n: "unsafe-path" for n in names[1:]}
    assert [Path(i).name for i, _ in io.read_benco_index(out / "index.json")] == ["good.png"]
