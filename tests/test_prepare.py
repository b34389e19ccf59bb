"""Benchmark preparers on tiny fixtures that mimic each raw download's layout and mask convention."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from webiml import io
from webiml.evaluate.prepare import PREPARERS, fit_mask, prepare_dataset

H, W = 24, 32


def _img(path: Path, h: int = H, w: int = W, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return path


def _mask(path: Path, m: np.ndarray, inverted: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(m ^ inverted, 255, 0).astype(np.uint8)).save(path)
    return path


def _rect(h: int = H, w: int = W, y0: int = 5, y1: int = 15, x0: int = 8, x1: int = 20) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _snapshot(raw: Path) -> dict[str, str]:
    return {str(p.relative_to(raw)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(raw.rglob("*")) if p.is_file()}


def _run(name: str, raw: Path, tmp_path: Path, key=lambda p: p.name, **kw) -> tuple[dict, dict]:
    """Prepare, check the raw folder is untouched and the outputs are consistent; return the
    report and ``{key(image path): truth mask or None}`` read back from the index."""
    before = _snapshot(raw)
    out = tmp_path / f"out-{name}"
    report = prepare_dataset(name, raw, out, progress=False, **kw)
    assert _snapshot(raw) == before  # raw files neither changed nor added
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))
    assert len(io.read_jsonl(out / "rejected.jsonl")) == report["n_skipped"] == len(report["skipped"])
    raw_index = json.loads((out / "index.json").read_text())
    truths: dict[str, np.ndarray | None] = {}
    for (img, mask), (img_s, _) in zip(io.read_benco_index(out / "index.json"), raw_index):
        assert Path(img_s).is_absolute() and img.is_relative_to(raw.resolve())  # referenced in place
        if mask is None:
            truths[key(img)] = None
            continue
        assert mask.parent == (out / "masks").resolve()
        pixels = np.asarray(Image.open(mask))
        assert set(np.unique(pixels)) <= {0, 255}
        rgb, _ = io.read_image(img)
        truths[key(img)] = io.read_mask(mask, size=(rgb.shape[1], rgb.shape[0]))
    assert report["n_images"] == len(truths)
    assert report["n_tampered"] == sum(t is not None for t in truths.values())
    assert report["n_authentic"] == sum(t is None for t in truths.values())
    return report, truths


def _reasons(report: dict) -> dict[str, str]:
    return {Path(s["image"]).name: s["reason"] for s in report["skipped"]}


def test_casiav1(tmp_path):
    raw = tmp_path / "CASIA1"
    _img(raw / "Au" / "Au_ani_0001.jpg")
    _img(raw / "Modified Tp" / "Tp" / "Sp" / "Sp_D_CNN_A_abi0002_ani0003_0259.jpg")
    _mask(raw / "CASIA 1.0 groundtruth" / "Sp" / "Sp_D_CNN_A_abi0002_ani0003_0259_gt.png", _rect())
    _img(raw / "Modified Tp" / "Tp" / "CM" / "Sp_S_CND_A_pla0016_pla0016_0196.jpg")  # no mask
    bad = raw / "Modified Tp" / "Tp" / "Sp" / "Sp_D_bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    _mask(raw / "CASIA 1.0 groundtruth" / "Sp" / "Sp_D_bad_gt.png", _rect())
    report, truths = _run("casiav1", raw, tmp_path)
    assert truths["Au_ani_0001.jpg"] is None
    assert np.array_equal(truths["Sp_D_CNN_A_abi0002_ani0003_0259.jpg"], _rect())
    assert _reasons(report) == {"Sp_S_CND_A_pla0016_pla0016_0196.jpg": "missing-mask", "Sp_D_bad.jpg": "not-an-image"}
    assert report["skipped_by_reason"] == {"missing-mask": 1, "not-an-image": 1}
    no_au, truths = _run("casiav1", raw, tmp_path, include_authentic=False)
    assert no_au["n_authentic"] == 0 and list(truths) == ["Sp_D_CNN_A_abi0002_ani0003_0259.jpg"]


def test_casiav2_tiff_resize_and_mismatch(tmp_path):
    raw = tmp_path / "CASIA2"
    _img(raw / "Au" / "Au_ani_00001.bmp")
    _img(raw / "Tp" / "Tp_D_NRN_S_N_ani10171_ani00001_12458.tif", h=48, w=64)
    _mask(raw / "CASIA 2 Groundtruth" / "Tp_D_NRN_S_N_ani10171_ani00001_12458_gt.png", _rect())  # half size
    _img(raw / "Tp" / "Tp_D_NRD_S_N_cha10002_cha10001_20094.jpg")
    _mask(raw / "CASIA 2 Groundtruth" / "Tp_D_NRD_S_N_cha10002_cha10001_20094_gt3.png", _rect())  # misnamed _gt3
    _img(raw / "Tp" / "Tp_S_NNN_S_N_art00052_art00052_11853.jpg")
    _mask(raw / "CASIA 2 Groundtruth" / "Tp_S_NNN_S_N_art00052_art00052_11853_gt.png", _rect(h=30, w=30))  # other aspect
    report, truths = _run("casiav2", raw, tmp_path)
    assert truths["Au_ani_00001.bmp"] is None
    assert np.array_equal(truths["Tp_D_NRN_S_N_ani10171_ani00001_12458.tif"], np.kron(_rect(), np.ones((2, 2), bool)))
    assert np.array_equal(truths["Tp_D_NRD_S_N_cha10002_cha10001_20094.jpg"], _rect())
    assert _reasons(report) == {"Tp_S_NNN_S_N_art00052_art00052_11853.jpg": "size-mismatch"}
    assert report["notes_by_kind"] == {"resized-mask": 1}
    assert "32x24 -> 64x48" in report["notes"][0]["detail"]


def test_columbia_colour_mask(tmp_path):
    raw = tmp_path / "Columbia"
    h, w = 48, 64
    _img(raw / "4cam_auth" / "canong3_02_sub_01.tif", h, w)
    _img(raw / "4cam_splc" / "canong3_canonxt_sub_01.tif", h, w)
    spliced = _rect(h, w, 10, 38, 20, 50)
    band = spliced ^ _rect(h, w, 13, 35, 23, 47)  # lighter inner band along the boundary
    outer = _rect(h, w, 7, 41, 17, 53) & ~spliced  # lighter red band outside
    edge = np.zeros((h, w, 3), np.uint8)
    edge[:] = (255, 0, 0)  # host: red
    edge[outer] = (255, 140, 140)
    edge[spliced] = (0, 255, 0)  # spliced: green
    edge[band] = (140, 255, 140)
    (raw / "4cam_splc" / "edgemask").mkdir(parents=True)
    Image.fromarray(edge).save(raw / "4cam_splc" / "edgemask" / "canong3_canonxt_sub_01_edgemask.jpg", quality=90)
    _img(raw / "4cam_splc" / "canong3_kodakdcs330_sub_01.tif", h, w)
    Image.fromarray(edge).save(raw / "4cam_splc" / "edgemask" / "canong3_kodakdcs330_sub_01_edgemask.bmp")
    report, truths = _run("columbia", raw, tmp_path)
    assert truths["canong3_02_sub_01.tif"] is None
    assert np.array_equal(truths["canong3_kodakdcs330_sub_01.tif"], spliced)  # lossless mask: exact
    wrong = truths["canong3_canonxt_sub_01.tif"] ^ spliced  # JPEG mask: chroma blur at the boundary only
    boundary = cv2.dilate(spliced.astype(np.uint8), np.ones((3, 3))) != cv2.erode(spliced.astype(np.uint8), np.ones((3, 3)))
    assert wrong.sum() <= 8 and not (wrong & ~boundary).any()
    assert report["n_skipped"] == 0


def test_coverage_tiff_masks(tmp_path):
    raw = tmp_path / "COVERAGE"
    _img(raw / "image" / "1.tif")
    _img(raw / "image" / "1t.tif", seed=1)
    _mask(raw / "mask" / "1forged.tif", _rect())
    _mask(raw / "mask" / "1copy.tif", _rect(y0=0, y1=4))  # the source region: not the label
    _img(raw / "image" / "2t.tif", seed=2)  # mask missing
    report, truths = _run("coverage", raw, tmp_path)
    assert truths["1.tif"] is None and np.array_equal(truths["1t.tif"], _rect())
    assert _reasons(report) == {"2t.tif": "missing-mask"}


def test_nist16_inverted_masks_from_reference_table(tmp_path):
    raw = tmp_path / "NC2016_Test0613"
    for i in (1, 2, 3):
        _img(raw / "probe" / f"NC2016_000{i}.jpg", seed=i)
    _mask(raw / "reference" / "manipulation" / "mask" / "NC2016_9999.png", _rect(), inverted=True)
    table = raw / "reference" / "manipulation" / "NC2016-manipulation-ref.csv"
    table.write_text(
        "TaskID|ProbeFileID|ProbeFileName|ProbeMaskFileName|IsTarget|BaseFileName\n"
        "manipulation|NC2016_0001|probe/NC2016_0001.jpg|reference/manipulation/mask/NC2016_9999.png|Y|x.jpg\n"
        "manipulation|NC2016_0002|probe/NC2016_0002.jpg||N|\n"
        "manipulation|NC2016_0003|probe/NC2016_0003.jpg|reference/manipulation/mask/NC2016_gone.png|Y|y.jpg\n"
    )
    report, truths = _run("nist16", raw, tmp_path)
    assert np.array_equal(truths["NC2016_0001.jpg"], _rect())  # black in the raw mask = manipulated
    assert truths["NC2016_0002.jpg"] is None
    assert _reasons(report) == {"NC2016_0003.jpg": "unreadable-mask"}
    assert "missing-file" in report["skipped"][0]["detail"]


def test_imd2020(tmp_path):
    raw = tmp_path / "IMD2020"
    _img(raw / "1a1ogs" / "c8tmz7_orig.jpg")
    _img(raw / "1a1ogs" / "c8tmz7_0.jpg", seed=1)
    _mask(raw / "1a1ogs" / "c8tmz7_0_mask.png", _rect())
    _img(raw / "1a1ogs" / "c8tmz7_1.png", seed=2)  # mask missing
    report, truths = _run("imd2020", raw, tmp_path)
    assert truths["c8tmz7_orig.jpg"] is None and np.array_equal(truths["c8tmz7_0.jpg"], _rect())
    assert _reasons(report) == {"c8tmz7_1.png": "missing-mask"}


def test_dso1_inverted(tmp_path):
    raw = tmp_path / "tifs-database"
    _img(raw / "DSO-1" / "normal-01.png")
    _img(raw / "DSO-1" / "splicing-01.png", seed=1)
    _mask(raw / "DSO-1-Fake-Images-Masks" / "splicing-01.png", _rect(), inverted=True)
    report, truths = _run("dso1", raw, tmp_path)
    assert truths["normal-01.png"] is None and np.array_equal(truths["splicing-01.png"], _rect())
    assert report["n_skipped"] == 0


def test_korus_three_levels(tmp_path):
    raw = tmp_path / "realistic-tampering-dataset"
    cam = raw / "Canon_60D"
    _img(cam / "pristine" / "r0a42c0f6t.TIF")
    _img(cam / "tampered-realistic" / "r0a42c0f6t.TIF", seed=1)
    levels = np.zeros((H, W), np.uint8)
    levels[5:15, 8:20] = 255  # semantic change
    levels[15:18, 8:20] = 128  # collateral damage
    (cam / "ground-truth").mkdir()
    Image.fromarray(levels).save(cam / "ground-truth" / "r0a42c0f6t.PNG")
    _img(raw / "Sony_A57" / "tampered-realistic" / "r0b.TIF")  # no ground truth folder
    report, truths = _run("korus", raw, tmp_path, key=lambda p: "/".join(p.parts[-2:]))
    assert truths["pristine/r0a42c0f6t.TIF"] is None
    assert np.array_equal(truths["tampered-realistic/r0a42c0f6t.TIF"], levels > 0)
    assert _reasons(report) == {"r0b.TIF": "missing-mask"}


def test_cocoglide(tmp_path):
    raw = tmp_path / "CocoGlide"
    _img(raw / "fake" / "glide_inpainting_val2017_114871_up.png")
    _mask(raw / "mask" / "dining table_114871_mask.png", _rect())
    _img(raw / "real" / "dining table_114871.png", seed=1)
    _img(raw / "fake" / "glide_inpainting_val2017_5_up.png")  # no mask
    report, truths = _run("cocoglide", raw, tmp_path)
    assert np.array_equal(truths["glide_inpainting_val2017_114871_up.png"], _rect())
    assert truths["dining table_114871.png"] is None
    assert _reasons(report) == {"glide_inpainting_val2017_5_up.png": "missing-mask"}


@pytest.mark.parametrize("name", sorted(PREPARERS))
def test_wrong_layout_names_expected_layout(tmp_path, name):
    raw = tmp_path / "raw"
    _img(raw / "stray" / "photo.jpg")
    with pytest.raises(ValueError, match=f"expected the {name} layout"):
        prepare_dataset(name, raw, tmp_path / "out", progress=False)
    assert PREPARERS[name].layout  # every preparer documents its layout


def test_bad_arguments(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(ValueError, match="unknown dataset"):
        prepare_dataset("casia3", raw, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not found"):
        prepare_dataset("casiav1", tmp_path / "absent", tmp_path / "out")
    with pytest.raises(ValueError, match="must not be inside"):
        prepare_dataset("casiav1", raw, raw / "prepared")


def test_mask_helpers(tmp_path):
    m16 = (_rect().astype(np.uint16) * 65535)
    Image.fromarray(m16).save(tmp_path / "m16.png")
    px = io.read_mask_pixels(tmp_path / "m16.png")
    assert px.dtype == np.uint8 and np.array_equal(px > 127, _rect())
    with pytest.raises(io.Rejected) as e:
        io.read_mask_pixels(tmp_path / "absent.png")
    assert e.value.reason == "missing-file"
    same, note = fit_mask(_rect(), (H, W))
    assert same is not None and note == ""
    up, note = fit_mask(_rect(), (2 * H, 2 * W))
    assert np.array_equal(up, np.kron(_rect(), np.ones((2, 2), bool))) and "nearest" in note
    none, note = fit_mask(_rect(), (W, H))  # transposed: aspect differs
    assert none is None and "aspect" in note
